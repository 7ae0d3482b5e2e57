//! Adam (Kingma & Ba 2015) and AdamW (Loshchilov & Hutter 2019), `torch.optim.Adam` and
//! `torch.optim.AdamW`, with AMSGrad (Reddi et al. 2018).
//!
//! ```text
//! g  = ±grad (+ weight_decay * p  for L2 decay)
//! p  = p * (1 - lr * weight_decay)      (decoupled decay: AdamW)
//! m  = beta1 * m + (1 - beta1) * g
//! v  = beta2 * v + (1 - beta2) * g²
//! v̂  = max(v̂, v) with amsgrad, else v
//! p  = p - lr / (1 - beta1^t) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)
//! ```

use super::{check_beta, check_lr, check_nonneg, DecayMode};
use super::{Field, Moments};
use crate::{par::Bufs, OptimError};

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g  = ±grad (+ weight_decay * p  for L2 decay)\np  = p * (1 - lr * weight_decay)      (decoupled decay: AdamW)\nm  = beta1 * m + (1 - beta1) * g\nv  = beta2 * v + (1 - beta2) * g²\nv̂  = max(v̂, v) with amsgrad, else v\np  = p - lr / (1 - beta1^t) * m / (sqrt(v̂) / sqrt(1 - beta2^t) + eps)";

impl AdamConfig {
    /// Every hyperparameter by its PyTorch name.
    pub(crate) fn fields(&mut self) -> Vec<(&'static str, Field<'_>)> {
        vec![
            ("lr", Field::Num(&mut self.lr)),
            ("beta1", Field::Num(&mut self.beta1)),
            ("beta2", Field::Num(&mut self.beta2)),
            ("eps", Field::Num(&mut self.eps)),
            ("weight_decay", Field::Num(&mut self.weight_decay)),
            ("decoupled_weight_decay", Field::Decay(&mut self.decay)),
            ("amsgrad", Field::Flag(&mut self.amsgrad)),
            ("maximize", Field::Flag(&mut self.maximize)),
        ]
    }
}

/// Hyperparameters of Adam and AdamW, with PyTorch's defaults for Adam
/// ([`AdamConfig::adamw`] gives AdamW's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
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
    /// Keep the running maximum of the second moment (AMSGrad).
    pub amsgrad: bool,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decay: DecayMode::L2,
            amsgrad: false,
            maximize: false,
        }
    }
}

impl AdamConfig {
    /// AdamW's defaults: decoupled weight decay of 0.01.
    pub fn adamw() -> Self {
        Self {
            weight_decay: 0.01,
            decay: DecayMode::Decoupled,
            ..Self::default()
        }
    }

    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

pub(crate) struct AdamStep {
    c: AdamConfig,
    step_size: f32,
    /// 1 / sqrt(1 - beta2^t): a multiply instead of PyTorch's divide (the divider is the
    /// bottleneck; the result moves by at most an ulp of the denominator).
    inv_bc2_sqrt: f32,
    mo: Moments,
}

impl AdamStep {
    pub(crate) fn new(c: AdamConfig, t: u64) -> Self {
        let t = t as f64;
        let bc1 = 1.0 - (c.beta1 as f64).powf(t);
        let bc2 = 1.0 - (c.beta2 as f64).powf(t);
        Self {
            c,
            step_size: (c.lr as f64 / bc1) as f32,
            inv_bc2_sqrt: (1.0 / bc2.sqrt()) as f32,
            mo: Moments::new(c.maximize, c.decay, c.lr, c.weight_decay, c.beta1, c.beta2),
        }
    }

    #[inline(always)]
    pub(crate) fn apply(&self, p: &mut [f32], g: &[f32], [m, v, vmax]: Bufs<'_>) {
        if self.c.amsgrad {
            self.run::<true>(p, g, m, v, vmax)
        } else {
            self.run::<false>(p, g, m, v, vmax)
        }
    }

    #[inline(always)]
    fn run<const AMSGRAD: bool>(
        &self,
        p: &mut [f32],
        g: &[f32],
        m: &mut [f32],
        v: &mut [f32],
        vmax: &mut [f32],
    ) {
        let c = self.c;
        let n = p.len();
        let (g, m, v) = (&g[..n], &mut m[..n], &mut v[..n]);
        let vmax = if AMSGRAD { &mut vmax[..n] } else { vmax };
        for i in 0..n {
            let [pi, _, mi, vi] = self.mo.update(p[i], g[i], m[i], v[i]);
            let second = if AMSGRAD {
                vmax[i] = vmax[i].max(vi);
                vmax[i]
            } else {
                vi
            };
            let den = second.sqrt() * self.inv_bc2_sqrt + c.eps;
            p[i] = pi + -self.step_size * (mi / den);
            m[i] = mi;
            v[i] = vi;
        }
    }
}
