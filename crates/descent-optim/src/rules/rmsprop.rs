//! RMSprop (Hinton, Coursera lecture 6e), `torch.optim.RMSprop`, and the seed's adaptive rule.
//!
//! ```text
//! g   = ±grad + weight_decay * p
//! v   = alpha * v + (1 - alpha) * g²
//! m   = alpha * m + (1 - alpha) * g      (centered only)
//! den = sqrt(v - m²) + eps               (m = 0 unless centered)
//!       sqrt(v - m² + eps)               (eps_inside_sqrt: the seed's rule)
//! b   = momentum * b + g / den;  p = p - lr * b     (momentum > 0)
//! p   = p - lr * g / den                             (otherwise)
//! ```
//!
//! With `eps_inside_sqrt` and no centering or momentum this is the seed's adaptive learning
//! rate `theta -= lr / sqrt(v + eps) * grad`; PyTorch adds eps outside the root.

use super::Field;
use super::{check_lr, check_nonneg};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g   = ±grad + weight_decay * p\nv   = alpha * v + (1 - alpha) * g²\nm   = alpha * m + (1 - alpha) * g      (centered only)\nden = sqrt(v - m²) + eps               (m = 0 unless centered)\n      sqrt(v - m² + eps)               (eps_inside_sqrt: the seed's rule)\nb   = momentum * b + g / den;  p = p - lr * b     (momentum > 0)\np   = p - lr * g / den                             (otherwise)";

impl RmsPropConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("alpha", Field::Num(&mut self.alpha)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("momentum", Field::Num(&mut self.momentum)),
            ("centered", Field::Flag(&mut self.centered)),
            ("eps_inside_sqrt", Field::Flag(&mut self.eps_inside_sqrt)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of RMSprop, with PyTorch's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsPropConfig {
    /// Learning rate.
    pub lr: f32,
    /// Smoothing constant of the squared-gradient average.
    pub alpha: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// L2 penalty added to the gradient.
    pub weight_decay: f32,
    /// Momentum factor (0 = none).
    pub momentum: f32,
    /// Divide by the estimated variance instead of the raw second moment.
    pub centered: bool,
    /// Add eps inside the square root, as the seed writes the rule.
    pub eps_inside_sqrt: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for RmsPropConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
            eps_inside_sqrt: false,
            maximize: false,
        }
    }
}

impl RmsPropConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_nonneg("alpha", self.alpha)?;
        if self.alpha > 1.0 {
            return Err(OptimError::InvalidHyperparameter {
                name: "alpha",
                value: self.alpha as f64,
                why: "it must be in [0, 1]",
            });
        }
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)?;
        check_nonneg("momentum", self.momentum)
    }
}

pub(crate) struct RmsPropStep(pub RmsPropConfig);

impl RmsPropStep {
    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [v, m, b]: Bufs<'_>) {
        let c = self.0;
        match (c.centered, c.momentum > 0.0) {
            (false, false) => self.run::<false, false>(p, g, v, m, b),
            (true, false) => self.run::<true, false>(p, g, v, m, b),
            (false, true) => self.run::<false, true>(p, g, v, m, b),
            (true, true) => self.run::<true, true>(p, g, v, m, b),
        }
    }

    #[inline(always)]
    fn run<const CENTERED: bool, const MOMENTUM: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        v: &mut [f32],
        m: &mut [f32],
        b: &mut [f32],
    ) {
        let c = self.0;
        let n = p.len();
        let (g, v) = (&g[..n], &mut v[..n]);
        let m = if CENTERED { &mut m[..n] } else { m };
        let b = if MOMENTUM { &mut b[..n] } else { b };
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let w = 1.0 - c.alpha;
        let inside = c.eps_inside_sqrt;
        for i in 0..n {
            let gi = sign * g[i] + c.weight_decay * p[i];
            let vi = c.alpha * v[i] + w * gi * gi;
            v[i] = vi;
            let var = if CENTERED {
                m[i] = super::lerp(m[i], gi, w);
                vi + (-m[i]) * m[i]
            } else {
                vi
            };
            let den = if inside {
                (var + c.eps).sqrt()
            } else {
                var.sqrt() + c.eps
            };
            if MOMENTUM {
                b[i] = c.momentum * b[i] + gi / den;
                p[i] += -c.lr * b[i];
            } else {
                p[i] += -c.lr * (gi / den);
            }
        }
    }
}
