//! Adadelta (Zeiler 2012), `torch.optim.Adadelta`.
//!
//! ```text
//! g = ±grad + weight_decay * p
//! v = rho * v + (1 - rho) * g²
//! d = sqrt(u + eps) / sqrt(v + eps) * g
//! u = rho * u + (1 - rho) * d²
//! p = p - lr * d
//! ```

use super::Field;
use super::{check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = ±grad + weight_decay * p\nv = rho * v + (1 - rho) * g²\nd = sqrt(u + eps) / sqrt(v + eps) * g\nu = rho * u + (1 - rho) * d²\np = p - lr * d";

impl AdadeltaConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("rho", Field::Num(&mut self.rho)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of Adadelta, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdadeltaConfig {
    /// Scale of the delta (PyTorch's `lr`; 1.0 in the paper).
    pub lr: f32,
    /// Averaging factor of the squared gradients and deltas.
    pub rho: f32,
    /// Added inside both roots.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdadeltaConfig {
    fn default() -> Self {
        Self {
            lr: 1.0,
            rho: 0.9,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl AdadeltaConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return Err(OptimError::InvalidHyperparameter {
                name: "rho",
                value: self.rho as f64,
                why: "it must be in [0, 1]",
            });
        }
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct AdadeltaStep(pub AdadeltaConfig);

impl AdadeltaStep {
    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [v, u, _]: Bufs<'_>) {
        let c = self.0;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let w = 1.0 - c.rho;
        let n = p.len();
        let (g, v, u) = (&g[..n], &mut v[..n], &mut u[..n]);
        for i in 0..n {
            let gi = sign * g[i] + c.weight_decay * p[i];
            let vi = c.rho * v[i] + w * gi * gi;
            let d = (u[i] + c.eps).sqrt() / (vi + c.eps).sqrt() * gi;
            u[i] = c.rho * u[i] + w * d * d;
            v[i] = vi;
            p[i] += -c.lr * d;
        }
    }
}
