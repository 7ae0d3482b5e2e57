//! 2-D pooling: PyTorch's `nn.MaxPool2d`, `nn.AvgPool2d` (`count_include_pad=True`) and
//! `nn.AdaptiveAvgPool2d`. Planes (one channel of one image) are split over the threads.

use crate::conv::Window;
use crate::layer::{numel, Backward, Forward, Layer};
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

    // x is one plane (h x w), y one plane (oh x ow); arg (max only) the index of each max.
    fn forward_plane(&self, x: &[f32], y: &mut [f32], arg: &mut [f32]) {
        let (_, _, w) = self.input;
        let ow = self.shape[2];
        for (o, out) in y.iter_mut().enumerate() {
            let (r0, r1, c0, c1, div) = self.cell(o / ow, o % ow);
            match self.kind {
                PoolKind::Max => {
                    let (mut best, mut at) = (f32::NEG_INFINITY, usize::MAX);
                    for r in r0..r1 {
                        for c in c0..c1 {
                            let v = x[r * w + c];
                            if v > best || v.is_nan() || at == usize::MAX {
                                (best, at) = (v, r * w + c);
                                if v.is_nan() {
                                    break;
                                }
                            }
                        }
                    }
                    *out = best;
                    arg[o] = at as f32;
                }
                _ => {
                    let mut s = 0.0;
                    for r in r0..r1 {
                        s += x[r * w + c0..r * w + c1].iter().sum::<f32>();
                    }
                    *out = s / div;
                }
            }
        }
    }

    // dy is one output plane's gradient; dx one input plane's (overwritten).
    fn backward_plane(&self, dy: &[f32], dx: &mut [f32], arg: &[f32]) {
        let (_, _, w) = self.input;
        let ow = self.shape[2];
        dx.fill(0.0);
        for (o, &g) in dy.iter().enumerate() {
            match self.kind {
                PoolKind::Max => dx[arg[o] as usize] += g,
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

    fn workspace_len(&self, cap: usize, _threads: usize) -> usize {
        match self.kind {
            PoolKind::Max => cap * numel(&self.shape),
            _ => 0,
        }
    }

    // x is (B, C, H, W), y is (B, C, OH, OW); ws holds max pooling's argmax per output.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (in_p, out_p) = self.plane_sizes();
        let planes = f.batch * self.input.0;
        let parts = self.parts(planes, f.threads);
        let (ys, args) = (Scratch::new(&mut y[..planes * out_p]), Scratch::new(ws));
        let max = self.kind == PoolKind::Max;
        f.pool.run(parts, |p| {
            let (start, end) = images(planes, parts, p);
            for q in start..end {
                // SAFETY: plane q belongs to part p alone.
                let (yq, aq) = unsafe {
                    (
                        ys.part(q * out_p, out_p),
                        if max {
                            args.part(q * out_p, out_p)
                        } else {
                            &mut []
                        },
                    )
                };
                self.forward_plane(&x[q * in_p..(q + 1) * in_p], yq, aq);
            }
        });
    }

    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        _y: &[f32],
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
        let max = self.kind == PoolKind::Max;
        b.pool.run(parts, |p| {
            let (start, end) = images(planes, parts, p);
            for q in start..end {
                // SAFETY: plane q belongs to part p alone.
                let dxq = unsafe { dxs.part(q * in_p, in_p) };
                let arg = if max {
                    &ws[q * out_p..(q + 1) * out_p]
                } else {
                    &[][..]
                };
                self.backward_plane(&dy[q * out_p..(q + 1) * out_p], dxq, arg);
            }
        });
    }
}
