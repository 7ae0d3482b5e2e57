//! The backward pass of a convolution whose output gradient is mostly zeros.
//!
//! Behind a ReLU and a max pooling, most of a convolution's output gradient is zero: a 2 x 2
//! pooling passes one value of each window, a ReLU drops the negative outputs. The dense
//! products (`dW = dY · colsᵀ`, `dcols = Wᵀ · dY`) multiply those zeros anyway. Here only the
//! nonzero values are visited, each touching the input patch (weight gradient) or the weights
//! (input gradient) it meets, with activations held channels-last so that a patch's channels
//! are contiguous vectors:
//!
//! - weight gradient, row by row of `dY` (its nonzeros compressed per output channel):
//!   `dW[co, tap, :] += g · x[p + tap, :]` for every nonzero `g = dY[co, p]`, a tile of the
//!   row's taps and channels held in registers;
//! - input gradient, position by position (the nonzeros regrouped per position):
//!   `dx[p + tap, :] += Σ_co g · W[co, tap, :]`, summed in registers first.
//!
//! The products are the direct convolution's (each term is the same multiplication; only the
//! order of the sums differs), so the result matches the dense path to rounding. Used when
//! AVX-512 is available and the gradient's density is below [`SPARSE_BELOW`]; the direct
//! loops of [`crate::conv2d_backward_naive`] are the reference it is tested against.

use descent_tensor::{transpose, MatMut, MatRef};

use crate::sparse::{self as kernel, Span};
use crate::Window;

/// Densities (nonzero fraction of an image's output gradient) below which the sparse pass
/// runs. Measured on the cnn preset's second convolution (see docs/models.md).
pub const SPARSE_BELOW: f32 = 0.4;

/// The geometry of one group of a convolution, for the sparse backward pass.
#[derive(Clone, Debug)]
pub(crate) struct SparsePlan {
    /// Input channels of a group, input height and width.
    c: usize,
    h: usize,
    w: usize,
    /// Padded input width (rows of the channels-last buffers).
    wp: usize,
    /// Padding.
    ph: usize,
    pw: usize,
    /// Output channels of a group; output positions.
    og: usize,
    hw: usize,
    /// Taps of the kernel.
    taps: usize,
    /// The window cut into runs of values contiguous both in the padded channels-last input
    /// and in a `[tap, ci]` row of weights (a kernel row of taps when the dilation along the
    /// width is 1, else one tap), at most [`kernel::SPAN`] values each.
    spans: Vec<Span>,
    /// Offset (in values) of each output position's first tap in the padded channels-last
    /// input.
    base: Vec<usize>,
    /// Values of one padded channels-last image.
    plane: usize,
    /// Output rows per band: the weight gradient visits the nonzeros band by band, so that
    /// the input rows a band reads stay in L1.
    band_rows: usize,
    ow: usize,
}

/// `len` values of `ws` from the first on a 64-byte line (within 16 values), and the rest
/// after them: a vector load that straddles two lines costs two.
fn aligned(ws: &mut [f32], len: usize) -> (&mut [f32], &mut [f32]) {
    let skip = ws.as_ptr().align_offset(64).min(16);
    ws[skip..].split_at_mut(len)
}

/// Bytes of an operand that the sparse loops keep in L1 (of 32 KB or more).
const L1_BYTES: usize = 24 << 10;

/// Per-thread scratch of the sparse pass, carved from a layer's workspace.
pub(crate) struct SparseScratch<'a> {
    /// Padded channels-last input and input gradient of one group.
    pub xt: &'a mut [f32],
    pub dxt: &'a mut [f32],
    /// Nonzeros by band of positions, then output channel: `row_start[band · og + co]..` the
    /// next start index `pos` / `val`.
    pub row_start: &'a mut [f32],
    pub pos: &'a mut [f32],
    pub val: &'a mut [f32],
    /// The output gradient transposed (`hw x og`), and one position's nonzeros: channels (as
    /// bits) and values.
    pub dyt: &'a mut [f32],
    pub chan: &'a mut [f32],
    pub cval: &'a mut [f32],
    /// The weights as `[co, tap, ci]`, and the weight gradient so ordered, summed over this
    /// thread's images (all groups).
    pub wr: &'a mut [f32],
    pub dwr: &'a mut [f32],
}

impl SparsePlan {
    /// The plan for `(c, h, w)` inputs per group, `og` output channels per group, or `None`
    /// when the layer does not suit the sparse pass (fewer than 8 channels per group fill
    /// too little of a vector).
    pub(crate) fn new(
        (c, h, w): (usize, usize, usize),
        og: usize,
        win: Window,
        (oh, ow): (usize, usize),
    ) -> Option<Self> {
        if c < 8 {
            return None;
        }
        let Window {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            dilation: (dh, dw),
        } = win;
        // Rows and columns the windows reach, padding included.
        let hp = ((oh - 1) * sh + (kh - 1) * dh + 1).max(h + 2 * ph);
        let wp = ((ow - 1) * sw + (kw - 1) * dw + 1).max(w + 2 * pw);
        // Runs of taps whose channels follow each other in both layouts.
        let run = if dw == 1 { kw } else { 1 };
        let mut spans = Vec::new();
        for t in (0..kh * kw).step_by(run) {
            let (x0, k0) = (((t / kw) * dh * wp + (t % kw) * dw) * c, t * c);
            for v in (0..run * c).step_by(kernel::SPAN) {
                spans.push(Span {
                    x: x0 + v,
                    k: k0 + v,
                    len: (run * c - v).min(kernel::SPAN),
                });
            }
        }
        let base = (0..oh * ow)
            .map(|p| ((p / ow) * sh * wp + (p % ow) * sw) * c)
            .collect();
        // Input rows a band of output rows reads, and bytes of a weight row.
        let rows_read = |r: usize| (r - 1) * sh + (kh - 1) * dh + 1;
        let band_rows = (1..=oh)
            .take_while(|&r| r == 1 || rows_read(r) * wp * c * 4 <= L1_BYTES)
            .last()
            .unwrap_or(1);
        Some(Self {
            band_rows,
            ow,
            c,
            h,
            w,
            wp,
            ph,
            pw,
            og,
            hw: oh * ow,
            taps: kh * kw,
            spans,
            base,
            plane: hp * wp * c,
        })
    }

    fn k(&self) -> usize {
        self.taps * self.c
    }

    fn bands(&self) -> usize {
        (self.hw / self.ow).div_ceil(self.band_rows)
    }

    /// Index range `row_start[r]..row_start[r + 1]` (stored as bits).
    fn run(starts: &[f32], r: usize) -> (usize, usize) {
        (
            starts[r].to_bits() as usize,
            starts[r + 1].to_bits() as usize,
        )
    }

    /// Scratch values per thread for a layer of `groups` groups.
    pub(crate) fn scratch_len(&self, groups: usize) -> usize {
        let nz = self.og * self.hw;
        // The vector buffers start on 64-byte lines: 16 values of slack each.
        2 * (self.plane + 16)
            + (self.bands() * self.og + 1)
            + 2 * nz
            + nz
            + 2 * self.og
            + 2 * (groups * self.og * self.k() + 16)
    }

    /// Cuts `ws` (at least [`SparsePlan::scratch_len`] values) into the pass's buffers.
    pub(crate) fn scratch<'a>(&self, ws: &'a mut [f32], groups: usize) -> SparseScratch<'a> {
        let nz = self.og * self.hw;
        let (xt, ws) = aligned(ws, self.plane);
        let (dxt, ws) = aligned(ws, self.plane);
        let (row_start, ws) = ws.split_at_mut(self.bands() * self.og + 1);
        let (pos, ws) = ws.split_at_mut(nz);
        let (val, ws) = ws.split_at_mut(nz);
        let (dyt, ws) = ws.split_at_mut(nz);
        let (chan, ws) = ws.split_at_mut(self.og);
        let (cval, ws) = ws.split_at_mut(self.og);
        let (wr, ws) = aligned(ws, groups * self.og * self.k());
        let (dwr, _) = aligned(ws, groups * self.og * self.k());
        SparseScratch {
            xt,
            dxt,
            row_start,
            pos,
            val,
            dyt,
            chan,
            cval,
            wr,
            dwr,
        }
    }

    /// Compresses `dy` (`og x hw`) into runs of nonzeros by band and channel; returns their
    /// count.
    pub(crate) fn compress(&self, dy: &[f32], s: &mut SparseScratch<'_>) -> usize {
        let mut n = 0;
        let band = self.band_rows * self.ow;
        for b in 0..self.bands() {
            let (p0, p1) = (b * band, ((b + 1) * band).min(self.hw));
            for co in 0..self.og {
                s.row_start[b * self.og + co] = f32::from_bits(n as u32);
                let row = &dy[co * self.hw + p0..co * self.hw + p1];
                n += kernel::compress_row(row, p0, &mut s.pos[n..], &mut s.val[n..]);
            }
        }
        s.row_start[self.bands() * self.og] = f32::from_bits(n as u32);
        n
    }

    /// `wr[co, tap, ci] = w[co, ci, tap]` for the layer's weights `w` (`o x c x taps`).
    pub(crate) fn reorder_weights(&self, w: &[f32], s: &mut SparseScratch<'_>) {
        let (c, t) = (self.c, self.taps);
        for (src, dst) in w.chunks_exact(c * t).zip(s.wr.chunks_exact_mut(c * t)) {
            transpose(
                MatMut::new(dst, t, c).expect("fits"),
                MatRef::new(src, c, t).expect("fits"),
            );
        }
    }

    /// The group's input `x` (`c x h x w`) into the padded channels-last buffer.
    pub(crate) fn load_input(&self, x: &[f32], s: &mut SparseScratch<'_>) {
        s.xt.fill(0.0);
        let (c, w) = (self.c, self.w);
        for ih in 0..self.h {
            let off = ((ih + self.ph) * self.wp + self.pw) * c;
            transpose(
                MatMut::new(&mut s.xt[off..off + w * c], w, c).expect("fits"),
                MatRef::strided(&x[ih * w..], c, w, self.h * w, 1).expect("fits"),
            );
        }
    }

    /// Adds the weight gradient of the compressed rows into `dwr` (`og x taps x c`, the
    /// group's part).
    pub(crate) fn weight_grad(&self, s: &mut SparseScratch<'_>, group: usize) {
        let k = self.k();
        let dwr = &mut s.dwr[group * self.og * k..(group + 1) * self.og * k];
        for r in 0..self.bands() * self.og {
            let co = r % self.og;
            let (a, b) = Self::run(s.row_start, r);
            if a == b {
                continue;
            }
            let row = &mut dwr[co * k..(co + 1) * k];
            // SAFETY: base + a span stays inside the padded input for every position, and
            // every span inside a row of `k` values.
            unsafe {
                kernel::window_sums(
                    &s.pos[a..b],
                    &s.val[a..b],
                    |p| s.xt.as_ptr().add(self.base[p]),
                    &self.spans,
                    |sp| (sp.x, sp.k),
                    row.as_mut_ptr(),
                    kernel::Store::ADD,
                )
            };
        }
    }

    /// The input gradient of group `group` into `dx` (`c x h x w`, overwritten), from its
    /// output gradient `dy` (`og x hw`).
    pub(crate) fn input_grad(
        &self,
        dy: &[f32],
        s: &mut SparseScratch<'_>,
        group: usize,
        dx: &mut [f32],
    ) {
        // Position by position: each position's nonzero channels, from the transpose.
        let (hw, og) = (self.hw, self.og);
        transpose(
            MatMut::new(s.dyt, hw, og).expect("fits"),
            MatRef::new(dy, og, hw).expect("fits"),
        );
        s.dxt.fill(0.0);
        let k = self.k();
        let wr = &s.wr[group * og * k..(group + 1) * og * k];
        for p in 0..hw {
            let n = kernel::compress_row(&s.dyt[p * og..(p + 1) * og], 0, s.chan, s.cval);
            if n == 0 {
                continue;
            }
            let out = &mut s.dxt[self.base[p]..];
            // SAFETY: every channel's weight row holds `k` values; the spans of the position's
            // window are inside the padded input gradient.
            unsafe {
                kernel::window_sums(
                    &s.chan[..n],
                    &s.cval[..n],
                    |co| wr.as_ptr().add(co * k),
                    &self.spans,
                    |sp| (sp.k, sp.x),
                    out.as_mut_ptr(),
                    kernel::Store::ADD,
                )
            };
        }
        // Back to channel planes, dropping the padding.
        let (c, w) = (self.c, self.w);
        for ih in 0..self.h {
            let off = ((ih + self.ph) * self.wp + self.pw) * c;
            transpose(
                MatMut::strided(&mut dx[ih * w..], c, w, self.h * w, 1).expect("fits"),
                MatRef::new(&s.dxt[off..off + w * c], w, c).expect("fits"),
            );
        }
    }

    /// Adds the thread's `dwr` (`[co, tap, ci]` per group) into `dw` (`[co, ci, tap]`).
    pub(crate) fn add_weight_grad(&self, s: &SparseScratch<'_>, dw: &mut [f32]) {
        let (c, t) = (self.c, self.taps);
        for (src, dst) in s.dwr.chunks_exact(c * t).zip(dw.chunks_exact_mut(c * t)) {
            for ci in 0..c {
                for tap in 0..t {
                    dst[ci * t + tap] += src[tap * c + ci];
                }
            }
        }
    }
}
