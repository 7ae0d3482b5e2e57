//! LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning", Algorithm 2): Adam's
//! direction plus decoupled decay, rescaled per parameter tensor by the trust ratio
//! ||p|| / ||update||. PyTorch has no LAMB; the reference trajectories come from the paper's
//! update (with Adam's bias correction, as tinygrad and timm do) written in torch operations.
//!
//! ```text
//! g = ±grad
//! m = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g²
//! u = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * p
//! r = ||p|| / ||u||  per tensor (1 when either norm is 0)
//! p = p - lr * r * u
//! ```

use super::Field;
use super::{check_beta, check_lr, check_nonneg};
use crate::par::{sum_squares4, Bufs};
use crate::OptimError;

/// The update, as `descent optimizers` prints it.
pub(crate) const FORMULA: &str = "g = ±grad\nm = beta1 * m + (1 - beta1) * g;   v = beta2 * v + (1 - beta2) * g²\nu = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps) + weight_decay * p\nr = ||p|| / ||u||  per tensor (1 when either norm is 0)\np = p - lr * r * u";

impl LambConfig {
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

/// Hyperparameters of LAMB (defaults as tinygrad's and timm's: eps 1e-6).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LambConfig {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment.
    pub beta1: f32,
    /// Decay of the second moment.
    pub beta2: f32,
    /// Added to the denominator for stability.
    pub eps: f32,
    /// Decay added to the update before the trust ratio.
    pub weight_decay: f32,
    /// Ascend instead of descend.
    pub maximize: bool,
}

impl Default for LambConfig {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-6,
            weight_decay: 0.0,
            maximize: false,
        }
    }
}

impl LambConfig {
    pub(crate) fn validate(&self) -> Result<(), OptimError> {
        check_lr(self.lr)?;
        check_beta("beta1", self.beta1)?;
        check_beta("beta2", self.beta2)?;
        check_nonneg("eps", self.eps)?;
        check_nonneg("weight_decay", self.weight_decay)
    }
}

/// LAMB takes two passes per tensor: the first updates the moments and measures both norms,
/// the second recomputes the update from the moments and applies it scaled by the ratio.
pub(crate) struct LambStep {
    c: LambConfig,
    /// 1 / (1 - beta1^t) and 1 / (1 - beta2^t), multiplied rather than divided by.
    inv_bc1: f32,
    inv_bc2: f32,
}

impl LambStep {
    pub(crate) fn new(c: LambConfig, t: u64) -> Self {
        let t = t as f64;
        Self {
            c,
            inv_bc1: (1.0 / (1.0 - (c.beta1 as f64).powf(t))) as f32,
            inv_bc2: (1.0 / (1.0 - (c.beta2 as f64).powf(t))) as f32,
        }
    }

    fn direction(&self, p: f32, m: f32, v: f32) -> f32 {
        (m * self.inv_bc1) / ((v * self.inv_bc2).sqrt() + self.c.eps) + self.c.weight_decay * p
    }

    /// First pass: returns (||p||², ||u||²) of this piece, summed in f64 over eight lanes
    /// (a fixed order, so the same on any machine and thread count).
    #[inline(always)]
    pub(crate) fn moments(&self, p: &mut [f32], g: &[f32], [m, v, _]: Bufs<'_>) -> [f64; 2] {
        let c = self.c;
        let sign = if c.maximize { -1.0 } else { 1.0 };
        let n = p.len();
        let (p, g, m, v) = (&p[..n], &g[..n], &mut m[..n], &mut v[..n]);
        let (mut pp, mut uu) = ([0.0f64; 4], [0.0f64; 4]);
        // In blocks: the element-wise update (vectorized like Adam's) writes the directions to
        // a small buffer, then both sums of squares run over four f64 lanes.
        const BLOCK: usize = 256;
        let mut u = [0.0f32; BLOCK];
        for start in (0..n).step_by(BLOCK) {
            let k = BLOCK.min(n - start);
            let (pb, gb) = (&p[start..start + k], &g[start..start + k]);
            let (mb, vb) = (&mut m[start..start + k], &mut v[start..start + k]);
            let ub = &mut u[..k];
            for i in 0..k {
                let gi = sign * gb[i];
                let mi = c.beta1 * mb[i] + (1.0 - c.beta1) * gi;
                let vi = c.beta2 * vb[i] + (1.0 - c.beta2) * gi * gi;
                ub[i] = self.direction(pb[i], mi, vi);
                mb[i] = mi;
                vb[i] = vi;
            }
            sum_squares4(pb, &mut pp);
            sum_squares4(ub, &mut uu);
        }
        [pp.iter().sum(), uu.iter().sum()]
    }

    /// [`LambStep::moments`], with AVX2 where the CPU has it.
    pub(crate) fn moments_dispatch(&self, p: &mut [f32], g: &[f32], b: Bufs<'_>) -> [f64; 2] {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn go(k: &LambStep, p: &mut [f32], g: &[f32], b: Bufs<'_>) -> [f64; 2] {
                k.moments(p, g, b)
            }
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { go(self, p, g, b) };
        }
        self.moments(p, g, b)
    }

    /// [`LambStep::apply`], with AVX2 where the CPU has it.
    pub(crate) fn apply_dispatch(&self, ratio: f32, p: &mut [f32], b: Bufs<'_>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            #[target_feature(enable = "avx2")]
            unsafe fn go(k: &LambStep, ratio: f32, p: &mut [f32], b: Bufs<'_>) {
                k.apply(ratio, p, b)
            }
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { go(self, ratio, p, b) };
        }
        self.apply(ratio, p, b)
    }

    /// The trust ratio from the two squared norms.
    pub(crate) fn ratio([pp, uu]: [f64; 2]) -> f32 {
        if pp > 0.0 && uu > 0.0 {
            (pp.sqrt() / uu.sqrt()) as f32
        } else {
            1.0
        }
    }

    /// Second pass: `p -= lr * ratio * u`.
    #[inline(always)]
    pub(crate) fn apply(&self, ratio: f32, p: &mut [f32], [m, v, _]: Bufs<'_>) {
        let scale = self.c.lr * ratio;
        let n = p.len();
        let (m, v) = (&m[..n], &v[..n]);
        for i in 0..n {
            let u = self.direction(p[i], m[i], v[i]);
            p[i] -= scale * u;
        }
    }
}
