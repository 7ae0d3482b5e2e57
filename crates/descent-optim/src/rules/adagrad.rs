//! Adagrad (Duchi, Hazan & Singer 2011), `torch.optim.Adagrad`.
//!
//! ```text
//! g   = ±grad + weight_decay * p
//! clr = lr / (1 + (t - 1) * lr_decay)
//! s   = s + g²                          (s starts at initial_accumulator_value)
//! p   = p - clr * g / (sqrt(s) + eps)
//! ```

use super::Field;
use super::{check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g   = ±grad + weight_decay * p\nclr = lr / (1 + (t - 1) * lr_decay)\ns   = s + g²                          (s starts at initial_accumulator_value)\np   = p - clr * g / (sqrt(s) + eps)";

impl AdagradConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("lr_decay", Field::Num(&mut self.lr_decay)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            (
                "initial_accumulator_value",
                Field::Num(&mut self.initial_accumulator_value),
            ),
            ("eps", Field::Num(&mut self.eps)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of Adagrad, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdagradConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the learning rate per step.
    pub lr_decay: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Starting value of the sum of squares.
    pub initial_accumulator_value: f32,
    /// Added to the root for stability.
    pub eps: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdagradConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            lr_decay: 0.0,
            weight_decay: 0.0,
            initial_accumulator_value: 0.0,
            eps: 1e-10,
            maximize: false,
        }
    }
}

impl AdagradConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_nonneg("lr_decay", self.lr_decay)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        check_nonneg("initial_accumulator_value", self.initial_accumulator_value)?;
        check_nonneg("eps", self.eps)
    }
}

pub(crate) struct AdagradStep {
    c: AdagradConfig,
    clr: f32,
}

impl AdagradStep {
    pub(crate) fn new(c: AdagradConfig, t: u64) -> Self {
        let clr = c.lr as f64 / (1.0 + (t as f64 - 1.0) * c.lr_decay as f64);
        Self { c, clr: clr as f32 }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [s, _, _]: Bufs<'_>) {
        let c = self.c;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let n = p.len();
        let (g, s) = (&g[..n], &mut s[..n]);
        for i in 0..n {
            let gi = sign * g[i] + c.weight_decay * p[i];
            let si = s[i] + gi * gi;
            p[i] += -self.clr * (gi / (si.sqrt() + c.eps));
            s[i] = si;
        }
    }
}
