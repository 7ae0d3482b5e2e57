//! Adamax (Kingma & Ba 2015, section 7.1), `torch.optim.Adamax`: Adam with the infinity norm.
//!
//! ```text
//! g = ±grad + weight_decay * p
//! m = beta1 * m + (1 - beta1) * g
//! u = max(beta2 * u, |g| + eps)
//! p = p - lr / (1 - beta1^t) * m / u
//! ```

use super::Field;
use super::{check_beta, check_lr, check_nonneg, lerp};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = ±grad + weight_decay * p\nm = beta1 * m + (1 - beta1) * g\nu = max(beta2 * u, |g| + eps)\np = p - lr / (1 - beta1^t) * m / u";

impl AdamaxConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta1", Field::Num(&mut self.beta1)),
            ("beta2", Field::Num(&mut self.beta2)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of Adamax, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamaxConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the infinity norm.
    pub beta2: f32,
    /// Added to |g| for stability.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdamaxConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl AdamaxConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct AdamaxStep {
    c: AdamaxConfig,
    clr: f32,
}

impl AdamaxStep {
    pub(crate) fn new(c: AdamaxConfig, t: u64) -> Self {
        let bc = 1.0 - (c.beta1 as f64).powf(t as f64);
        Self {
            c,
            clr: (c.lr as f64 / bc) as f32,
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [m, u, _]: Bufs<'_>) {
        let c = self.c;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let w1 = 1.0 - c.beta1;
        let n = p.len();
        let (g, m, u) = (&g[..n], &mut m[..n], &mut u[..n]);
        for i in 0..n {
            let gi = sign * g[i] + c.weight_decay * p[i];
            let mi = lerp(m[i], gi, w1);
            let ui = (u[i] * c.beta2).max(gi.abs() + c.eps);
            p[i] += -self.clr * (mi / ui);
            m[i] = mi;
            u[i] = ui;
        }
    }
}
