//! Stochastic gradient descent, `torch.optim.SGD`; also full-batch gradient descent, which is
//! the same update taken once per pass over the data.
//!
//! ```text
//! g = ±grad + weight_decay * p          (negated when maximize)
//! b = g                                 on the first step with momentum
//! b = momentum * b + (1 - dampening) g  afterwards
//! g = nesterov ? g + momentum * b : b
//! p = p - lr * g
//! ```

use super::Field;
use super::{check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = ±grad + weight_decay * p          (negated when maximize)\nb = g                                 on the first step with momentum\nb = momentum * b + (1 - dampening) g  afterwards\ng = nesterov ? g + momentum * b : b\np = p - lr * g";

impl SgdConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("momentum", Field::Num(&mut self.momentum)),
            ("dampening", Field::Num(&mut self.dampening)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("nesterov", Field::Flag(&mut self.nesterov)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of SGD, with PyTorch's defaults (`lr` 0.01 as in the seed).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    /// Learning rate.
    pub lr: f32,
    /// Momentum factor (0 = none).
    pub momentum: f32,
    /// Dampening for momentum.
    pub dampening: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        }
    }
}

impl SgdConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_nonneg("momentum", self.momentum)?;
        check_nonneg("dampening", self.dampening)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(OptimError::InvalidCombination(
                "nesterov needs momentum > 0 and dampening = 0 (e.g. momentum 0.9, dampening 0)",
            ));
        }
        Ok(())
    }

    /// True when the update is `p -= lr * grad` and nothing else.
    pub(crate) fn is_plain(&self) -> bool {
        self.momentum == 0.0 && self.weight_decay == 0.0 && !self.maximize
    }
}

/// One step's settings; `first` when the momentum buffer was just created.
pub(crate) struct SgdStep {
    pub c: SgdConfig,
    pub first: bool,
}

impl SgdStep {
    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [b, _, _]: Bufs<'_>) {
        let c = self.c;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let wd = c.weight_decay;
        if c.momentum == 0.0 {
            for (p, &g) in p.iter_mut().zip(g) {
                let d = if wd != 0.0 {
                    sign * g + wd * *p
                } else {
                    sign * g
                };
                *p -= c.lr * d;
            }
            return;
        }
        for ((p, &g), b) in p.iter_mut().zip(g).zip(b.iter_mut()) {
            let d = if wd != 0.0 {
                sign * g + wd * *p
            } else {
                sign * g
            };
            *b = if self.first {
                d
            } else {
                c.momentum * *b + (1.0 - c.dampening) * d
            };
            let u = if c.nesterov { d + c.momentum * *b } else { *b };
            *p -= c.lr * u;
        }
    }
}
