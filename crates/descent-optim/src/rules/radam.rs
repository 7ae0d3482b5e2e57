//! RAdam (Liu et al. 2020), `torch.optim.RAdam`: Adam whose adaptive step is switched on once
//! the variance of the second moment is tractable.
//!
//! ```text
//! g     = ±grad (+ weight_decay * p  for L2 decay);  p = p * (1 - lr * wd) when decoupled
//! m     = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g²
//! rho_∞ = 2 / (1 - beta2) - 1;           rho_t = rho_∞ - 2 t beta2^t / (1 - beta2^t)
//! m̂     = m / (1 - beta1^t)
//! p     = p - lr * m̂ * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)    if rho_t > 5
//! p     = p - lr * m̂                                                 otherwise
//! r_t   = sqrt((rho_t - 4)(rho_t - 2) rho_∞ / ((rho_∞ - 4)(rho_∞ - 2) rho_t))
//! ```

use super::{check_beta, check_lr, check_nonneg, DecayMode};
use super::{Field, Moments};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g     = ±grad (+ weight_decay * p  for L2 decay);  p = p * (1 - lr * wd) when decoupled\nm     = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g²\nrho_∞ = 2 / (1 - beta2) - 1;           rho_t = rho_∞ - 2 t beta2^t / (1 - beta2^t)\nm̂     = m / (1 - beta1^t)\np     = p - lr * m̂ * r_t * sqrt(1 - beta2^t) / (sqrt(v) + eps)    if rho_t > 5\np     = p - lr * m̂                                                 otherwise\nr_t   = sqrt((rho_t - 4)(rho_t - 2) rho_∞ / ((rho_∞ - 4)(rho_∞ - 2) rho_t))";

impl RAdamConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta1", Field::Num(&mut self.beta1)),
            ("beta2", Field::Num(&mut self.beta2)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("decoupled_weight_decay", Field::Decay(&mut self.decay)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of RAdam, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RAdamConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// Weight decay factor.
    pub weight_decay: f32,
    /// How the decay is applied.
    pub decay: DecayMode,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RAdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decay: DecayMode::L2,
            maximize: false,
        }
    }
}

impl RAdamConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct RAdamStep {
    c: RAdamConfig,
    /// 1 / (1 - beta1^t), multiplied rather than divided by.
    inv_bc1: f32,
    bc2_sqrt: f32,
    mo: Moments,
    /// The rectification term when the adaptive step is on.
    rect: Option<f32>,
}

impl RAdamStep {
    pub(crate) fn new(c: RAdamConfig, t: u64) -> Self {
        let (b1, b2, tf) = (c.beta1 as f64, c.beta2 as f64, t as f64);
        let bc2 = 1.0 - b2.powf(tf);
        let rho_inf = 2.0 / (1.0 - b2) - 1.0;
        let rho_t = rho_inf - 2.0 * tf * b2.powf(tf) / bc2;
        let rect = (rho_t > 5.0).then(|| {
            (((rho_t - 4.0) * (rho_t - 2.0) * rho_inf)
                / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                .sqrt() as f32
        });
        Self {
            c,
            inv_bc1: (1.0 / (1.0 - b1.powf(tf))) as f32,
            bc2_sqrt: bc2.sqrt() as f32,
            mo: Moments::new(c.maximize, c.decay, c.lr, c.weight_decay, c.beta1, c.beta2),
            rect,
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [m, v, _]: Bufs<'_>) {
        let c = self.c;
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let [pi, _, mi, vi] = self.mo.update(p[i], g[i], m[i], v[i]);
            let mhat = mi * self.inv_bc1;
            let u = match self.rect {
                Some(r) => mhat * c.lr * (self.bc2_sqrt / (vi.sqrt() + c.eps)) * r,
                None => mhat * c.lr,
            };
            p[i] = pi - u;
            m[i] = mi;
            v[i] = vi;
        }
    }
}
