//! Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms", Algorithm 2): the
//! sign of an interpolated momentum. PyTorch has no Lion; the reference trajectories come from
//! the paper's update written in torch operations (`tools/optim_reference.py`).
//!
//! ```text
//! g = ±grad
//! p = p * (1 - lr * weight_decay)
//! p = p - lr * sign(beta1 * m + (1 - beta1) * g)
//! m = beta2 * m + (1 - beta2) * g
//! ```

use super::Field;
use super::{check_beta, check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = ±grad\np = p * (1 - lr * weight_decay)\np = p - lr * sign(beta1 * m + (1 - beta1) * g)\nm = beta2 * m + (1 - beta2) * g";

impl LionConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta1", Field::Num(&mut self.beta1)),
            ("beta2", Field::Num(&mut self.beta2)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of Lion, with the paper's defaults (lr 3-10x smaller than AdamW's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LionConfig {
    /// Learning rate.
    pub lr: f32,
    /// Interpolation factor of the update direction.
    pub beta1: f32,
    /// Decay of the momentum.
    pub beta2: f32,
    /// Decoupled weight decay.
    pub weight_decay: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for LionConfig {
    fn default() -> Self {
        Self {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.99,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl LionConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct LionStep {
    c: LionConfig,
    keep: f32,
}

impl LionStep {
    pub(crate) fn new(c: LionConfig) -> Self {
        Self {
            c,
            keep: super::decay_factor(c.lr, c.weight_decay),
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [m, _, _]: Bufs<'_>) {
        let c = self.c;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let n = p.len();
        let (g, m) = (&g[..n], &mut m[..n]);
        for i in 0..n {
            let gi = sign * g[i];
            let d = m[i] * c.beta1 + gi * (1.0 - c.beta1);
            // sign(d), with sign(0) = 0 as torch.sign.
            let s = (d > 0.0) as i32 as f32 - (d < 0.0) as i32 as f32;
            p[i] = p[i] * self.keep - c.lr * s;
            m[i] = m[i] * c.beta2 + gi * (1.0 - c.beta2);
        }
    }
}
