//! 2-D pooling: PyTorch's `nn.MaxPool2d`, `nn.AvgPool2d` (`count_include_pad=True`) and
//! `nn.AdaptiveAvgPool2d`. Planes (one channel of one image) are split over the threads.

use crate::conv::Window;
use crate::layer::{Backward, Forward, Layer};
use crate::par::{images, Scratch};

/// Which pooling.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PoolKind {
    /// The maximum of each window (the first one on ties, as PyTorch's CPU kernel).
    Max,
    /// The mean of each window, padding counted as zeros.
    Avg,
    /// Mean over adaptive bins: bin `i` of `n` over a length `L` spans
    /// `floor(i·L/n)..ceil((i+1)·L/n)`.
    AdaptiveAvg,
}

/// A pooling layer on `(C, H, W)` inputs.
#[derive(Clone, Debug)]
pub struct Pool2d {
    /// Max, average or adaptive average.
    pub kind: PoolKind,
    /// Window (kernel, stride, padding; dilation 1). Unused for adaptive pooling.
    pub window: Window,
    input: (usize, usize, usize),
    shape: Vec<usize>,
}

/// Planes per part below which pooling is not split.
const MIN_VALUES_PER_THREAD: usize = 1 << 14;

impl Pool2d {
    /// Max or average pooling with `window` on `(C, H, W)` inputs; the caller checked that the
    /// window fits.
    pub fn new(kind: PoolKind, window: Window, input: &[usize]) -> Self {
        let (c, h, w) = (input[0], input[1], input[2]);
        let (oh, ow) = window.output(h, w).expect("checked by the caller");
        Self {
            kind,
            window,
            input: (c, h, w),
            shape: vec![c, oh, ow],
        }
    }

    /// Adaptive average pooling to `out` (height, width).
    pub fn adaptive(out: (usize, usize), input: &[usize]) -> Self {
        Self {
            kind: PoolKind::AdaptiveAvg,
            window: Window {
                kernel: (1, 1),
                stride: (1, 1),
                padding: (0, 0),
                dilation: (1, 1),
            },
            input: (input[0], input[1], input[2]),
            shape: vec![input[0], out.0, out.1],
        }
    }

    /// Input rows `start..end` and columns of output cell `(i, j)` (clipped to the input),
    /// and the divisor of an average.
    fn cell(&self, i: usize, j: usize) -> (usize, usize, usize, usize, f32) {
        let (_, h, w) = self.input;
        let (oh, ow) = (self.shape[1], self.shape[2]);
        match self.kind {
            PoolKind::AdaptiveAvg => {
                let (r0, r1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
                let (c0, c1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
                (r0, r1, c0, c1, ((r1 - r0) * (c1 - c0)) as f32)
            }
            _ => {
                let Window {
                    kernel: (kh, kw),
                    stride: (sh, sw),
                    padding: (ph, pw),
                    ..
                } = self.window;
                let (r, c) = (
                    (i * sh) as isize - ph as isize,
                    (j * sw) as isize - pw as isize,
                );
                // PyTorch's count_include_pad: the window clipped to the padded input.
                let r_end = (r + kh as isize).min((h + ph) as isize);
                let c_end = (c + kw as isize).min((w + pw) as isize);
                let div = ((r_end - r) * (c_end - c)) as f32;
                let clip = |v: isize, hi: usize| v.clamp(0, hi as isize) as usize;
                (clip(r, h), clip(r_end, h), clip(c, w), clip(c_end, w), div)
            }
        }
    }

    // x is one plane (h x w), y one plane (oh x ow); arg (2x2 max pooling) which value of
    // each window won, 0 to 3.
    pub(crate) fn forward_plane(&self, x: &[f32], y: &mut [f32], arg: &mut [f32]) {
        let (_, _, w) = self.input;
        let ow = self.shape[2];
        if self.tiled() {
            return self.max_tiles(x, y, arg);
        }
        if self.kind == PoolKind::Max {
            return self.max_plane(x, y);
        }
        for (o, out) in y.iter_mut().enumerate() {
            let (r0, r1, c0, c1, div) = self.cell(o / ow, o % ow);
            let mut s = 0.0;
            for r in r0..r1 {
                s += x[r * w + c0..r * w + c1].iter().sum::<f32>();
            }
            *out = s / div;
        }
    }

    // x is one plane (h x w), y one plane (oh x ow). A NaN in a window gives NaN, as in
    // PyTorch. The backward pass finds each maximum again in x (the first on ties), so the
    // forward pass stores no indices.
    fn max_plane(&self, x: &[f32], y: &mut [f32]) {
        let (_, h, w) = self.input;
        let ow = self.shape[2];
        let Window {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            ..
        } = self.window;
        // Selects, not branches: on data the maximum moves unpredictably.
        let pick = |best: f32, v: f32| if (v > best) | v.is_nan() { v } else { best };
        for (i, yr) in y.chunks_exact_mut(ow).enumerate() {
            let r0 = (i * sh).saturating_sub(ph);
            let r1 = (i * sh + kh).saturating_sub(ph).min(h);
            for (j, out) in yr.iter_mut().enumerate() {
                let c0 = (j * sw).saturating_sub(pw);
                let c1 = (j * sw + kw).saturating_sub(pw).min(w);
                let mut best = x[r0 * w + c0];
                for r in r0..r1 {
                    best = x[r * w + c0..r * w + c1]
                        .iter()
                        .fold(best, |b, &v| pick(b, v));
                }
                *out = best;
            }
        }
    }

    // x is one plane (h x w), y one plane (oh x ow), arg which of each 2x2 window's values
    // won (0 to 3): the first maximum, or a NaN.
    fn max_tiles(&self, x: &[f32], y: &mut [f32], arg: &mut [f32]) {
        let (_, _, w) = self.input;
        let ow = self.shape[2];
        let rows = y.chunks_exact_mut(ow).zip(arg.chunks_exact_mut(ow));
        for (i, (yr, ar)) in rows.enumerate() {
            let (top, bottom) = (&x[2 * i * w..][..2 * ow], &x[(2 * i + 1) * w..][..2 * ow]);
            #[cfg(target_arch = "x86_64")]
            if std::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU has AVX-512; the rows hold 2·ow and ow values.
                unsafe { x86::max_row(top, bottom, yr, ar) };
                continue;
            }
            let windows = top.chunks_exact(2).zip(bottom.chunks_exact(2));
            for ((out, at), (t, b)) in yr.iter_mut().zip(ar.iter_mut()).zip(windows) {
                let (mut best, mut k) = (t[0], 0.0f32);
                for (v, idx) in [(t[1], 1.0), (b[0], 2.0), (b[1], 3.0)] {
                    // Selects, not branches: on data the maximum moves unpredictably.
                    let better = (v > best) | (v.is_nan() & !best.is_nan());
                    best = if better { v } else { best };
                    k = if better { idx } else { k };
                }
                *out = best;
                *at = k;
            }
        }
    }

    // x, y: one plane's input and output; dy the output's gradient; dx the input's
    // (overwritten); arg, for 2x2 max pooling, which value of each window won.
    pub(crate) fn backward_plane(
        &self,
        x: &[f32],
        y: &[f32],
        dy: &[f32],
        dx: &mut [f32],
        arg: &[f32],
    ) {
        let (_, h, w) = self.input;
        let ow = self.shape[2];
        if self.tiled() {
            // The gradient goes to the value that won (arg). Windows tile the plane (but an
            // odd last row or column): each value is written once, without zeroing first.
            if h % 2 == 1 || w % 2 == 1 {
                dx.fill(0.0);
            }
            for (i, (gr, ar)) in dy.chunks_exact(ow).zip(arg.chunks_exact(ow)).enumerate() {
                // Row slices, so that the loop runs without bounds checks.
                let (dt, db) = dx[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
                let pairs = dt[..2 * ow]
                    .chunks_exact_mut(2)
                    .zip(db[..2 * ow].chunks_exact_mut(2));
                #[cfg(target_arch = "x86_64")]
                if std::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512; the rows hold 2·ow and ow values.
                    unsafe { x86::spread_row(gr, ar, &mut dt[..2 * ow], &mut db[..2 * ow]) };
                    continue;
                }
                for ((&g, &k), (dt, db)) in gr.iter().zip(ar).zip(pairs) {
                    dt[0] = if k == 0.0 { g } else { 0.0 };
                    dt[1] = if k == 1.0 { g } else { 0.0 };
                    db[0] = if k == 2.0 { g } else { 0.0 };
                    db[1] = if k == 3.0 { g } else { 0.0 };
                }
            }
            return;
        }
        dx.fill(0.0);
        for (o, &g) in dy.iter().enumerate() {
            match self.kind {
                PoolKind::Max => {
                    // The first input equal to the maximum (NaN: the first NaN).
                    let (r0, r1, c0, c1, _) = self.cell(o / ow, o % ow);
                    let m = y[o];
                    let mut at = r0 * w + c0;
                    for r in r0..r1 {
                        let row = &x[r * w + c0..r * w + c1];
                        if let Some(c) = row
                            .iter()
                            .position(|&v| v == m || (m.is_nan() && v.is_nan()))
                        {
                            at = r * w + c0 + c;
                            break;
                        }
                    }
                    dx[at] += g;
                }
                _ => {
                    let (r0, r1, c0, c1, div) = self.cell(o / ow, o % ow);
                    let share = g / div;
                    for r in r0..r1 {
                        dx[r * w + c0..r * w + c1]
                            .iter_mut()
                            .for_each(|d| *d += share);
                    }
                }
            }
        }
    }

    /// Max pooling with 2x2 windows, stride 2, no padding (the usual case): the forward
    /// pass records which of the four values won, so that the backward pass reads a quarter
    /// of the input instead of the input.
    pub(crate) fn input_shape(&self) -> (usize, usize, usize) {
        self.input
    }

    pub(crate) fn tiled(&self) -> bool {
        let w = self.window;
        self.kind == PoolKind::Max && (w.kernel, w.stride, w.padding) == ((2, 2), (2, 2), (0, 0))
    }

    fn plane_sizes(&self) -> (usize, usize) {
        let (_, h, w) = self.input;
        (h * w, self.shape[1] * self.shape[2])
    }

    fn parts(&self, planes: usize, threads: usize) -> usize {
        let per_plane = self.plane_sizes().0.max(1);
        (planes * per_plane / MIN_VALUES_PER_THREAD).clamp(1, threads.max(1))
    }
}

impl Layer for Pool2d {
    fn kind(&self) -> &'static str {
        match self.kind {
            PoolKind::Max => "MaxPool2d",
            PoolKind::Avg => "AvgPool2d",
            PoolKind::AdaptiveAvg => "AdaptiveAvgPool2d",
        }
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        let w = self.window;
        match self.kind {
            PoolKind::AdaptiveAvg => {
                format!("AdaptiveAvgPool2d(({}, {}))", self.shape[1], self.shape[2])
            }
            _ if w.stride == w.kernel && w.padding == (0, 0) => {
                format!("{}({:?})", self.kind(), w.kernel)
            }
            _ => format!(
                "{}({:?}, stride={:?}, padding={:?})",
                self.kind(),
                w.kernel,
                w.stride,
                w.padding
            ),
        }
    }

    // x is (B, C, H, W), y is (B, C, OH, OW).
    fn workspace_len(&self, cap: usize, _threads: usize) -> usize {
        // 2x2 max pooling: which value of each window won.
        match self.tiled() {
            true => cap * self.input.0 * self.plane_sizes().1,
            false => 0,
        }
    }

    // x is (B, C, H, W), y is (B, C, OH, OW); ws holds 2x2 max pooling's winners.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (in_p, out_p) = self.plane_sizes();
        let planes = f.batch * self.input.0;
        let parts = self.parts(planes, f.threads);
        let ys = Scratch::new(&mut y[..planes * out_p]);
        let tiled = self.tiled();
        let args = Scratch::new(ws);
        f.pool.run(parts, |p| {
            let (start, end) = images(planes, parts, p);
            // SAFETY: planes start..end belong to part p alone, outputs and winners.
            let (yp, ap) = unsafe {
                let n = (end - start) * out_p;
                let ap = if tiled {
                    args.part(start * out_p, n)
                } else {
                    &mut [][..]
                };
                (ys.part(start * out_p, n), ap)
            };
            for (k, q) in (start..end).enumerate() {
                let yq = &mut yp[k * out_p..(k + 1) * out_p];
                let aq = if tiled {
                    &mut ap[k * out_p..(k + 1) * out_p]
                } else {
                    &mut [][..]
                };
                self.forward_plane(&x[q * in_p..(q + 1) * in_p], yq, aq);
            }
        });
    }

    // dy is (B, C, OH, OW), dx is (B, C, H, W).
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let Some(dx) = dx else { return };
        let (in_p, out_p) = self.plane_sizes();
        let planes = b.batch * self.input.0;
        let parts = self.parts(planes, b.threads);
        let dxs = Scratch::new(&mut dx[..planes * in_p]);
        let (dy, ws) = (&*dy, &*ws);
        let tiled = self.tiled();
        b.pool.run(parts, |p| {
            let (start, end) = images(planes, parts, p);
            // SAFETY: planes start..end belong to part p alone.
            let dxp = unsafe { dxs.part(start * in_p, (end - start) * in_p) };
            for (q, dxq) in (start..end).zip(dxp.chunks_exact_mut(in_p)) {
                let (xi, yo) = (q * in_p..(q + 1) * in_p, q * out_p..(q + 1) * out_p);
                let arg = if tiled { &ws[yo.clone()] } else { &[][..] };
                self.backward_plane(&x[xi], &y[yo.clone()], &dy[yo], dxq, arg);
            }
        });
    }
}

/// 2x2 max pooling rows in AVX-512: 16 windows at a time, the values of a row pair split
/// into even and odd columns by permutes. The same results as the loops they replace
/// (comparisons and selects only).
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// Even and odd values of `2n <= 32` values from `p`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn split(p: *const f32, n: usize) -> (__m512, __m512) {
        // SAFETY: the 2n values from p are readable (masked loads touch no others).
        unsafe {
            let a = _mm512_maskz_loadu_ps(lanes(2 * n), p);
            let b = _mm512_maskz_loadu_ps(lanes((2 * n).saturating_sub(16)), p.add(16));
            let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
            let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
            (
                _mm512_permutex2var_ps(a, even, b),
                _mm512_permutex2var_ps(a, odd, b),
            )
        }
    }

    /// `y[j]` = the maximum of window j of rows `top` and `bottom` (the first maximum, or the
    /// first NaN), `arg[j]` which of its four values it was (0 to 3).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_row(top: &[f32], bottom: &[f32], y: &mut [f32], arg: &mut [f32]) {
        // SAFETY: loads and stores are masked to the row.
        unsafe {
            for j in (0..y.len()).step_by(16) {
                let n = (y.len() - j).min(16);
                let (t0, t1) = split(top.as_ptr().add(2 * j), n);
                let (b0, b1) = split(bottom.as_ptr().add(2 * j), n);
                let (mut best, mut k) = (t0, _mm512_setzero_ps());
                for (v, idx) in [(t1, 1.0), (b0, 2.0), (b1, 3.0)] {
                    let greater = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, best);
                    let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v)
                        & _mm512_cmp_ps_mask::<_CMP_ORD_Q>(best, best);
                    let better = greater | nan;
                    best = _mm512_mask_blend_ps(better, best, v);
                    k = _mm512_mask_blend_ps(better, k, _mm512_set1_ps(idx));
                }
                _mm512_mask_storeu_ps(y.as_mut_ptr().add(j), lanes(n), best);
                _mm512_mask_storeu_ps(arg.as_mut_ptr().add(j), lanes(n), k);
            }
        }
    }

    /// The backward of [`max_row`]: each window's gradient `g[j]` to the value `arg[j]`
    /// names, zeros to the other three, in rows `top` and `bottom` (2·len values each).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn spread_row(g: &[f32], arg: &[f32], top: &mut [f32], bottom: &mut [f32]) {
        // SAFETY: loads and stores are masked to the rows.
        unsafe {
            let lo = _mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
            let hi =
                _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
            for j in (0..g.len()).step_by(16) {
                let n = (g.len() - j).min(16);
                let gv = _mm512_maskz_loadu_ps(lanes(n), g.as_ptr().add(j));
                let kv = _mm512_maskz_loadu_ps(lanes(n), arg.as_ptr().add(j));
                let pick = |idx: f32| {
                    let m = _mm512_cmp_ps_mask::<_CMP_EQ_OQ>(kv, _mm512_set1_ps(idx));
                    _mm512_maskz_mov_ps(m, gv)
                };
                for (row, (e, o)) in [
                    (top.as_mut_ptr(), (0.0, 1.0)),
                    (bottom.as_mut_ptr(), (2.0, 3.0)),
                ] {
                    let (even, odd) = (pick(e), pick(o));
                    let p = row.add(2 * j);
                    _mm512_mask_storeu_ps(p, lanes(2 * n), _mm512_permutex2var_ps(even, lo, odd));
                    let rest = lanes((2 * n).saturating_sub(16));
                    _mm512_mask_storeu_ps(p.add(16), rest, _mm512_permutex2var_ps(even, hi, odd));
                }
            }
        }
    }
}
