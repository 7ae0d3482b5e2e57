//! NAdam (Dozat 2016), `torch.optim.NAdam`: Adam with Nesterov momentum and a momentum
//! schedule.
//!
//! ```text
//! g    = ±grad (+ weight_decay * p  for L2 decay);  p = p * (1 - lr * wd) when decoupled
//! mu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay));  P_t = mu_1 * ... * mu_t
//! m    = beta1 * m + (1 - beta1) * g
//! v    = beta2 * v + (1 - beta2) * g²
//! den  = sqrt(v / (1 - beta2^t)) + eps
//! p    = p - lr * (1 - mu_t) / (1 - P_t) * g / den - lr * mu_{t+1} / (1 - P_{t+1}) * m / den
//! ```
//!
//! The product `P_t` is kept in f32 and saved with the state, as PyTorch keeps `mu_product`.

use super::{check_beta, check_lr, check_nonneg, DecayMode};
use super::{Field, Moments};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g    = ±grad (+ weight_decay * p  for L2 decay);  p = p * (1 - lr * wd) when decoupled\nmu_t = beta1 * (1 - 0.5 * 0.96^(t * momentum_decay));  P_t = mu_1 * ... * mu_t\nm    = beta1 * m + (1 - beta1) * g\nv    = beta2 * v + (1 - beta2) * g²\nden  = sqrt(v / (1 - beta2^t)) + eps\np    = p - lr * (1 - mu_t) / (1 - P_t) * g / den - lr * mu_{t+1} / (1 - P_{t+1}) * m / den";

impl NAdamConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta1", Field::Num(&mut self.beta1)),
            ("beta2", Field::Num(&mut self.beta2)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("decoupled_weight_decay", Field::Decay(&mut self.decay)),
            ("momentum_decay", Field::Num(&mut self.momentum_decay)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of NAdam, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NAdamConfig {
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
    /// Speed of the momentum schedule.
    pub momentum_decay: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for NAdamConfig {
    fn default() -> Self {
        Self {
            lr: 2e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decay: DecayMode::L2,
            momentum_decay: 4e-3,
            maximize: false,
        }
    }
}

impl NAdamConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        check_nonneg("momentum_decay", self.momentum_decay)
    }

    /// The momentum coefficient of step `t`.
    pub(crate) fn mu(&self, t: u64) -> f64 {
        self.beta1 as f64 * (1.0 - 0.5 * 0.96f64.powf(t as f64 * self.momentum_decay as f64))
    }
}

pub(crate) struct NAdamStep {
    c: NAdamConfig,
    /// 1 / (1 - beta2^t), multiplied rather than divided by.
    inv_bc2: f32,
    mo: Moments,
    c_grad: f32,
    c_avg: f32,
}

impl NAdamStep {
    /// `mu_product` is `P_t`, already multiplied by this step's `mu_t`.
    pub(crate) fn new(c: NAdamConfig, t: u64, mu_product: f32) -> Self {
        let (lr, mu, mu_next) = (c.lr as f64, c.mu(t), c.mu(t + 1));
        let product = mu_product as f64;
        let product_next = product * mu_next;
        Self {
            c,
            inv_bc2: (1.0 / (1.0 - (c.beta2 as f64).powf(t as f64))) as f32,
            mo: Moments::new(c.maximize, c.decay, c.lr, c.weight_decay, c.beta1, c.beta2),
            c_grad: (-lr * (1.0 - mu) / (1.0 - product)) as f32,
            c_avg: (-lr * mu_next / (1.0 - product_next)) as f32,
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [m, v, _]: Bufs<'_>) {
        let c = self.c;
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        for i in 0..n {
            let [pi, gi, mi, vi] = self.mo.update(p[i], g[i], m[i], v[i]);
            let den = (vi * self.inv_bc2).sqrt() + c.eps;
            let pi = pi + self.c_grad * (gi / den);
            p[i] = pi + self.c_avg * (mi / den);
            m[i] = mi;
            v[i] = vi;
        }
    }
}
