//! Momentum as the seed writes it: an exponential moving average of the gradients.
//!
//! ```text
//! g = grad + weight_decay * p
//! v = beta * v + (1 - beta) * g        (v starts at 0)
//! p = p - lr * v
//! ```
//!
//! PyTorch's SGD momentum sums instead of averaging (`b = mu * b + g`), so at steady state the
//! two take the same steps when `lr_ema = lr_torch / (1 - beta)`: `--optimizer momentum --lr
//! 0.1 --beta 0.9` moves like `--optimizer sgd --lr 0.01 --momentum 0.9`. The first steps
//! differ: the average starts at zero and warms up, PyTorch's buffer starts at the first
//! gradient. (It is SGD with `momentum = dampening = beta` except for that first step.)

use super::Field;
use super::{check_beta, check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = grad + weight_decay * p\nv = beta * v + (1 - beta) * g        (v starts at 0)\np = p - lr * v";

impl MomentumConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta", Field::Num(&mut self.beta)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
        ]
    }
}

/// Hyperparameters of the seed's momentum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MomentumConfig {
    /// Learning rate.
    pub lr: f32,
    /// Averaging factor of the velocity.
    pub beta: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
}

impl Default for MomentumConfig {
    fn default() -> Self {
        Self {
            lr: 0.1,
            beta: 0.9,
            weight_decay: 0.0,
        }
    }
}

impl MomentumConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta", self.beta)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct MomentumStep(pub MomentumConfig);

impl MomentumStep {
    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [v, _, _]: Bufs<'_>) {
        let c = self.0;
        let n = p.len();
        let (g, v) = (&g[..n], &mut v[..n]);
        for i in 0..n {
            let gi = g[i] + c.weight_decay * p[i];
            v[i] = c.beta * v[i] + (1.0 - c.beta) * gi;
            p[i] -= c.lr * v[i];
        }
    }
}
