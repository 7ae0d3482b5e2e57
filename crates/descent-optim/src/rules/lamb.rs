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
use crate::{par::Bufs, OptimError};

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
    bc1: f32,
    bc2: f32,
}

impl LambStep {
    pub(crate) fn new(c: LambConfig, t: u64) -> Self {
        let t = t as f64;
        Self {
            c,
            bc1: (1.0 - (c.beta1 as f64).powf(t)) as f32,
            bc2: (1.0 - (c.beta2 as f64).powf(t)) as f32,
        }
    }

    fn direction(&self, p: f32, m: f32, v: f32) -> f32 {
        (m / self.bc1) / ((v / self.bc2).sqrt() + self.c.eps) + self.c.weight_decay * p
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
        // Four at a time, so that the moments, the directions and the four f64 lanes of
        // each sum stay in vector registers.
        let whole = n / 4 * 4;
        let (m_head, m_tail) = m.split_at_mut(whole);
        let (v_head, v_tail) = v.split_at_mut(whole);
        for (((pc, gc), mc), vc) in p[..whole]
            .chunks_exact(4)
            .zip(g[..whole].chunks_exact(4))
            .zip(m_head.chunks_exact_mut(4))
            .zip(v_head.chunks_exact_mut(4))
        {
            let pc: &[f32; 4] = pc.try_into().expect("chunks of 4");
            let gc: &[f32; 4] = gc.try_into().expect("chunks of 4");
            let mc: &mut [f32; 4] = mc.try_into().expect("chunks of 4");
            let vc: &mut [f32; 4] = vc.try_into().expect("chunks of 4");
            for l in 0..4 {
                let gi = sign * gc[l];
                mc[l] = c.beta1 * mc[l] + (1.0 - c.beta1) * gi;
                vc[l] = c.beta2 * vc[l] + (1.0 - c.beta2) * gi * gi;
                let u = self.direction(pc[l], mc[l], vc[l]) as f64;
                pp[l] += (pc[l] as f64) * (pc[l] as f64);
                uu[l] += u * u;
            }
        }
        for (l, i) in (whole..n).enumerate() {
            let gi = sign * g[i];
            m_tail[l] = c.beta1 * m_tail[l] + (1.0 - c.beta1) * gi;
            v_tail[l] = c.beta2 * v_tail[l] + (1.0 - c.beta2) * gi * gi;
            let u = self.direction(p[i], m_tail[l], v_tail[l]) as f64;
            pp[l] += (p[i] as f64) * (p[i] as f64);
            uu[l] += u * u;
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
