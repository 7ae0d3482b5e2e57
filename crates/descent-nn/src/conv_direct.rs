//! The forward pass of a stride-1 convolution as a direct product, with no columns matrix.
//!
//! With stride 1, the input values under one tap at consecutive output positions are
//! consecutive in the input row, so a vector of outputs is a sum over `(ci, kh, kw)` of a
//! weight times a vector loaded straight from the input. The outputs are computed on a
//! virtual grid as wide as the padded input (`oh x wp`, the last `wp - ow` columns of each
//! row discarded), which makes the positions of a vector consecutive in the flattened input
//! across row ends; the valid lanes are compressed into the output rows as they are stored.
//! A tile of 8 output channels by 48 positions (24 vector registers) runs over the whole
//! reduction; bias and ReLU are applied before the store. The terms are summed in im2col's
//! order and in the packed product's blocks of [`descent_tensor::PACKED_KC`] (each block from
//! zero, then added to the output), so that the result has the bits of im2col and the
//! product on the same CPU.
//!
//! This replaces im2col (which copies each input value `kh x kw` times) and the packing of
//! the columns for the product. Used for stride-1 layers where AVX-512 is available; the
//! direct loops of [`crate::conv2d_naive`] are the reference it is tested against.

use crate::{Activation, Window};

/// Output channels and vectors of 16 positions per tile.
const CO: usize = 8;
const PV: usize = 3;

/// The geometry of one group of a stride-1 convolution, for the direct forward pass.
#[derive(Clone, Debug)]
pub(crate) struct DirectPlan {
    /// Input channels, height and width of a group; padding.
    c: usize,
    h: usize,
    w: usize,
    ph: usize,
    pw: usize,
    /// Padded input height and width.
    hp: usize,
    wp: usize,
    /// Output channels of a group, and that count rounded up to whole tiles.
    og: usize,
    og_pad: usize,
    /// Output height and width.
    oh: usize,
    ow: usize,
    /// Offset of each `(kh, kw)` tap in the flattened padded input.
    taps: Vec<usize>,
    /// Offset of each term `(ci, kh, kw)` of the reduction, in im2col's order.
    terms: Vec<usize>,
    /// Vectors of virtual positions, rounded up to whole tiles.
    vectors: usize,
    /// Per vector of virtual positions: the lanes that are real outputs, and the index of the
    /// first of them in the output plane.
    valid: Vec<(u16, usize)>,
}

impl DirectPlan {
    /// The plan, or `None` for a layer it does not take (stride other than 1).
    pub(crate) fn new(
        (c, h, w): (usize, usize, usize),
        og: usize,
        win: Window,
        (oh, ow): (usize, usize),
    ) -> Option<Self> {
        if win.stride != (1, 1) {
            return None;
        }
        let Window {
            kernel: (kh, kw),
            padding: (ph, pw),
            dilation: (dh, dw),
            ..
        } = win;
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        let taps: Vec<usize> = (0..kh * kw)
            .map(|t| (t / kw) * dh * wp + (t % kw) * dw)
            .collect();
        let terms = (0..c)
            .flat_map(|ci| taps.iter().map(move |t| ci * hp * wp + t))
            .collect();
        let vectors = (oh * wp).div_ceil(16 * PV) * PV;
        let valid = (0..vectors)
            .map(|v| {
                let mut mask = 0u16;
                for lane in 0..16 {
                    let q = 16 * v + lane;
                    if q < oh * wp && q % wp < ow {
                        mask |= 1 << lane;
                    }
                }
                let q0 = 16 * v;
                let first = (q0 / wp) * ow + (q0 % wp).min(ow);
                (mask, first.min(oh * ow))
            })
            .collect();
        Some(Self {
            c,
            h,
            w,
            ph,
            pw,
            hp,
            wp,
            og,
            og_pad: og.div_ceil(CO) * CO,
            oh,
            ow,
            taps,
            terms,
            vectors,
            valid,
        })
    }

    fn k(&self) -> usize {
        self.c * self.taps.len()
    }

    /// Values of the padded input: every tap of every virtual position stays inside.
    fn input_len(&self) -> usize {
        let last_tap = self.taps.last().copied().unwrap_or(0);
        (16 * self.vectors + last_tap).max(self.hp * self.wp * self.c) + 16
    }

    /// Scratch values per thread: the padded input of a group and the packed weights of all
    /// `groups`.
    pub(crate) fn scratch_len(&self, groups: usize) -> usize {
        // 16 values of slack each, to start both on a 64-byte line.
        self.input_len() + 16 + groups * self.k() * self.og_pad + 16
    }

    /// Values per channel of the padded input.
    fn c_plane(&self) -> usize {
        self.hp * self.wp
    }

    /// `wt[g][ci, tap, co]` (co padded to whole tiles with zeros) from `w` (`o x c x taps`).
    pub(crate) fn pack_weights(&self, w: &[f32], groups: usize, wt: &mut [f32]) {
        let (k, t) = (self.k(), self.taps.len());
        for g in 0..groups {
            let dst = &mut wt[g * k * self.og_pad..(g + 1) * k * self.og_pad];
            dst.fill(0.0);
            for co in 0..self.og {
                let row = &w[(g * self.og + co) * k..(g * self.og + co + 1) * k];
                for ci in 0..self.c {
                    for tap in 0..t {
                        dst[(ci * t + tap) * self.og_pad + co] = row[ci * t + tap];
                    }
                }
            }
        }
    }

    /// Values of the packed weights of one group.
    pub(crate) fn weights_len(&self) -> usize {
        self.k() * self.og_pad
    }

    /// Cuts a thread's scratch into the padded input and the packed weights.
    pub(crate) fn split<'a>(&self, ws: &'a mut [f32]) -> (&'a mut [f32], &'a mut [f32]) {
        let skip = ws.as_ptr().align_offset(64).min(16);
        let (xp, rest) = ws[skip..].split_at_mut(self.input_len());
        let skip = rest.as_ptr().align_offset(64).min(16);
        (xp, &mut rest[skip..])
    }

    /// One group's output `y` (`og x oh·ow`) from its input `x` (`c x h x w`): the padded
    /// copy in `xp`, weights packed by [`DirectPlan::pack_weights`] in `wt`, `bias` added and
    /// `relu` applied where given.
    pub(crate) fn forward(
        &self,
        x: &[f32],
        xp: &mut [f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) {
        // The padded input, channel after channel, zeros around and after.
        xp.fill(0.0);
        let plane = self.c_plane();
        for ci in 0..self.c {
            for ih in 0..self.h {
                let dst = ci * plane + (ih + self.ph) * self.wp + self.pw;
                let src = (ci * self.h + ih) * self.w;
                xp[dst..dst + self.w].copy_from_slice(&x[src..src + self.w]);
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: the CPU has AVX-512 (the caller checked); the padded input covers every
            // tap of every virtual position, `wt` holds k x og_pad values, and `y` the
            // group's outputs.
            unsafe { x86::forward(self, xp, wt, bias, relu, y) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (wt, bias, relu, y);
            unreachable!("the direct pass runs only with AVX-512");
        }
    }

    /// Whether the layer's fused activation runs inside the kernel.
    pub(crate) fn fuses(act: Option<Activation>) -> bool {
        matches!(act, Some(Activation::Relu))
    }
}

#[cfg(target_arch = "x86_64")]
// Register tiles read best with explicit indices.
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    use super::{DirectPlan, CO, PV};

    /// One term of the reduction: `acc[r][v] += w[r] · x[16v..16v + 16]`, the tile passed by
    /// value so that it stays in registers.
    #[inline(always)]
    unsafe fn step(
        mut acc: [[__m512; PV]; CO],
        x: *const f32,
        w: *const f32,
    ) -> [[__m512; PV]; CO] {
        // SAFETY: the caller's pointers hold 16·PV and CO values.
        unsafe {
            let xv: [__m512; PV] = std::array::from_fn(|v| _mm512_loadu_ps(x.add(16 * v)));
            for r in 0..CO {
                let wv = _mm512_set1_ps(*w.add(r));
                for v in 0..PV {
                    acc[r][v] = _mm512_fmadd_ps(wv, xv[v], acc[r][v]);
                }
            }
        }
        acc
    }

    /// One tile: output channels `co0..co0 + CO` at virtual positions from vector `v0`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        plan: &DirectPlan,
        xp: *const f32,
        wt: *const f32,
        bias: Option<&[f32]>,
        relu: bool,
        co0: usize,
        v0: usize,
        y: *mut f32,
    ) {
        // SAFETY: reads stay in the padded input and the packed weights; stores are masked
        // to real outputs of real channels.
        unsafe {
            // Loops over whole tiles with conditions inside, not shorter loops: the
            // accumulators must stay in registers.
            let rows = plan.og - co0;
            let mut out = [[_mm512_setzero_ps(); PV]; CO];
            if let Some(b) = bias {
                for r in 0..CO {
                    if r < rows {
                        out[r] = [_mm512_set1_ps(b[co0 + r]); PV];
                    }
                }
            }
            let x0 = xp.add(16 * v0);
            for (block, terms) in plan.terms.chunks(descent_tensor::PACKED_KC).enumerate() {
                let mut acc = [[_mm512_setzero_ps(); PV]; CO];
                let mut wk = wt.add(co0 + block * descent_tensor::PACKED_KC * plan.og_pad);
                for &off in terms {
                    acc = step(acc, x0.add(off), wk);
                    wk = wk.add(plan.og_pad);
                }
                for r in 0..CO {
                    for v in 0..PV {
                        out[r][v] = _mm512_add_ps(out[r][v], acc[r][v]);
                    }
                }
            }
            let acc = out;
            let hw = plan.oh * plan.ow;
            for r in 0..CO {
                // Channels past the last store nothing (and point at the last).
                let out = y.add((co0 + r.min(rows - 1)) * hw);
                for v in 0..PV {
                    let (mask, first) = plan.valid[v0 + v];
                    let mask = if r < rows { mask } else { 0 };
                    let a = if relu {
                        _mm512_max_ps(acc[r][v], _mm512_setzero_ps())
                    } else {
                        acc[r][v]
                    };
                    _mm512_mask_compressstoreu_ps(out.add(first).cast(), mask, a);
                }
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn forward(
        plan: &DirectPlan,
        xp: &[f32],
        wt: &[f32],
        bias: Option<&[f32]>,
        relu: bool,
        y: &mut [f32],
    ) {
        // Positions outside, channels inside: a tile's input rows stay in L1 while the
        // channels' weights stream past.
        // SAFETY: forwarded; tiles cover the virtual grid and the padded channels.
        unsafe {
            for v0 in (0..plan.vectors).step_by(PV) {
                for co0 in (0..plan.og).step_by(CO) {
                    tile(
                        plan,
                        xp.as_ptr(),
                        wt.as_ptr(),
                        bias,
                        relu,
                        co0,
                        v0,
                        y.as_mut_ptr(),
                    );
                }
            }
        }
    }
}
