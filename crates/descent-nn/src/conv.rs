//! 2-D convolution, PyTorch's `nn.Conv2d` (kernel, stride, padding, dilation, groups, bias),
//! with an optional activation and an optional 2x2 max pooling fused onto its output.
//!
//! Images are split over the threads. The general path lowers each image to columns (im2col)
//! and multiplies them with the engine's GEMM. With AVX-512, stride-1 layers run forward as a
//! direct product (`conv_direct.rs`, the same bits as im2col), and the backward pass visits
//! only the nonzeros of a mostly-zero output gradient (`conv_sparse.rs`). [`conv2d_naive`]
//! and [`conv2d_backward_naive`] are the direct loops every path is tested against.

use descent_tensor::{matmul_serial, MatMut, MatRef, Rng};

use crate::conv_direct::DirectPlan;
use crate::conv_sparse::{SparsePlan, SPARSE_BELOW};
use crate::layer::{numel, Backward, Forward, Layer};
use crate::par::{images, Scratch};
use crate::pool2d::Pool2d;
use crate::{Activation, LayoutBuilder};

/// The geometry of a 2-D convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Kernel height and width.
    pub kernel: (usize, usize),
    /// Step between windows.
    pub stride: (usize, usize),
    /// Zeros added on each side.
    pub padding: (usize, usize),
    /// Spacing between kernel taps.
    pub dilation: (usize, usize),
}

impl Window {
    /// Output size along one axis, `None` when the window does not fit.
    fn out_len(len: usize, k: usize, s: usize, p: usize, d: usize) -> Option<usize> {
        let span = d * (k - 1) + 1;
        let padded = len + 2 * p;
        (padded >= span && s > 0).then(|| (padded - span) / s + 1)
    }

    /// Output height and width for an `h x w` input, `None` when the window is larger than
    /// the padded input.
    pub fn output(&self, h: usize, w: usize) -> Option<(usize, usize)> {
        Some((
            Self::out_len(
                h,
                self.kernel.0,
                self.stride.0,
                self.padding.0,
                self.dilation.0,
            )?,
            Self::out_len(
                w,
                self.kernel.1,
                self.stride.1,
                self.padding.1,
                self.dilation.1,
            )?,
        ))
    }
}

/// A convolution layer; weight `[out, in / groups, kh, kw]` and bias `[out]` in the flat
/// buffer.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Kernel, stride, padding, dilation.
    pub window: Window,
    /// Channel groups.
    pub groups: usize,
    /// Offset of the weight.
    pub weight: usize,
    /// Offset of the bias (when it has one).
    pub bias: Option<usize>,
    /// Activation fused onto the output.
    pub act: Option<Activation>,
    /// Input height and width.
    pub input_hw: (usize, usize),
    /// The convolution's own output height and width (before a fused pooling).
    conv_hw: (usize, usize),
    /// 2x2 max pooling fused onto the output (after the activation), so that the
    /// full-size output and its gradient stay in cache, image by image.
    pool: Option<Pool2d>,
    shape: Vec<usize>,
    /// The sparse backward pass's geometry, for layers it suits.
    sparse: Option<SparsePlan>,
    /// The direct forward pass's geometry, for stride-1 layers.
    direct: Option<DirectPlan>,
}

/// One tap row of the columns at one output row: column row `row` (channel `ci` of the
/// group), output row `oh`, the input row it reads (`None` in the padding), and the output
/// columns `lo..hi` that read inside the input, the first reading input column `first`.
struct TapRow {
    row: usize,
    ci: usize,
    oh: usize,
    ih: Option<usize>,
    lo: usize,
    hi: usize,
    first: usize,
}

/// How a thread runs the forward pass: the direct product (with its padded input and packed
/// weights) or im2col (with its columns).
enum Lowering<'a> {
    Direct(&'a DirectPlan, &'a mut [f32], &'a [f32]),
    Columns(&'a mut [f32]),
}

/// Shapes of one image's products, per group.
#[derive(Clone, Copy)]
struct Dims {
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    oh: usize,
    ow: usize,
    /// Input and output channels per group.
    cg: usize,
    og: usize,
    /// Rows of the columns matrix: cg x kh x kw.
    k: usize,
    groups: usize,
}

impl Dims {
    fn hw(&self) -> usize {
        self.oh * self.ow
    }
}

impl Conv2d {
    /// Declares `name.weight` (and `name.bias`) for `(C, H, W)` inputs. The caller has
    /// checked the channel counts against `groups` and that the window fits.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        out_channels: usize,
        window: Window,
        groups: usize,
        bias: bool,
    ) -> Self {
        let (c, h, w) = (input[0], input[1], input[2]);
        let (oh, ow) = window.output(h, w).expect("checked by the caller");
        let weight = b.param(
            b.qualify(&format!("{name}.weight")),
            vec![out_channels, c / groups, window.kernel.0, window.kernel.1],
        );
        let bias = bias.then(|| b.param(b.qualify(&format!("{name}.bias")), vec![out_channels]));
        let sparse = SparsePlan::new((c / groups, h, w), out_channels / groups, window, (oh, ow));
        let direct = DirectPlan::new((c / groups, h, w), out_channels / groups, window, (oh, ow));
        Self {
            in_channels: c,
            out_channels,
            window,
            groups,
            weight,
            bias,
            act: None,
            input_hw: (h, w),
            conv_hw: (oh, ow),
            pool: None,
            shape: vec![out_channels, oh, ow],
            sparse,
            direct,
        }
    }

    /// Fuses 2x2 max pooling with stride 2 (`pool`, built for this layer's output) onto the
    /// output, after the activation. The result is the same as the two layers in turn.
    pub fn with_max_pool(mut self, pool: Pool2d) -> Self {
        assert!(
            pool.tiled()
                && pool.input_shape() == (self.out_channels, self.conv_hw.0, self.conv_hw.1),
            "a fused pooling is 2x2 max pooling of this layer's output"
        );
        self.shape = pool.output_shape().to_vec();
        self.pool = Some(pool);
        self
    }

    /// Values of one image's pooled output (or output, without pooling).
    fn out_len(&self) -> usize {
        numel(&self.shape)
    }

    fn dims(&self) -> Dims {
        let (kh, kw) = self.window.kernel;
        let cg = self.in_channels / self.groups;
        Dims {
            c: self.in_channels,
            h: self.input_hw.0,
            w: self.input_hw.1,
            o: self.out_channels,
            oh: self.conv_hw.0,
            ow: self.conv_hw.1,
            cg,
            og: self.out_channels / self.groups,
            k: cg * kh * kw,
            groups: self.groups,
        }
    }

    fn weight_len(&self) -> usize {
        let d = self.dims();
        d.o * d.k
    }

    /// Per-thread scratch: in the backward pass the weight and bias gradients, columns,
    /// column gradients, and the sparse pass's buffers; in the forward pass, the columns or
    /// the direct pass's buffers.
    fn per_thread(&self) -> usize {
        let d = self.dims();
        let backward = self.weight_len()
            + d.o
            + 2 * d.k * d.hw()
            + self.sparse.as_ref().map_or(0, |s| s.scratch_len(d.groups));
        let direct = self.direct.as_ref().map_or(0, |p| p.scratch_len(d.groups));
        // With a fused pooling, one image's full-size output (forward) or its gradient
        // (backward) comes first.
        let full = self.pool.as_ref().map_or(0, |_| d.o * d.hw());
        full + backward.max(direct.max(d.k * d.hw()))
    }

    /// Values of the fused pooling's record of each window's winner, for `cap` images.
    fn winners_len(&self, cap: usize) -> usize {
        self.pool.as_ref().map_or(0, |_| cap * self.out_len())
    }

    /// Calls `f(tap)` for every row `(ci, ki, kj)` of a group's columns and every output
    /// row: where the tap reads (im2col and col2im walk the same taps).
    fn for_each_tap_row(&self, mut f: impl FnMut(TapRow)) {
        let d = self.dims();
        let Window {
            kernel: (kh, kw),
            stride: (sh, sw),
            padding: (ph, pw),
            dilation: (dh, dw),
        } = self.window;
        let mut row = 0;
        for ci in 0..d.cg {
            for ki in 0..kh {
                for kj in 0..kw {
                    // Output columns whose tap lands inside the input: ow in lo..hi.
                    let off = kj * dw;
                    let lo = pw.saturating_sub(off).div_ceil(sw).min(d.ow);
                    let hi = ((d.w + pw).saturating_sub(off))
                        .div_ceil(sw)
                        .min(d.ow)
                        .max(lo);
                    for oh in 0..d.oh {
                        let ih = (oh * sh + ki * dh) as isize - ph as isize;
                        f(TapRow {
                            row,
                            ci,
                            oh,
                            ih: (ih >= 0 && ih < d.h as isize).then_some(ih as usize),
                            lo,
                            hi,
                            first: (lo * sw + off).saturating_sub(pw),
                        });
                    }
                    row += 1;
                }
            }
        }
    }

    /// Writes the columns of group `g` of one image `x` (`c x h x w`) into `cols`
    /// (`k x oh·ow`): row `(ci, ki, kj)` holds the input under tap `(ki, kj)` of channel
    /// `ci` at every output position, zero where the tap falls in the padding.
    fn im2col(&self, x: &[f32], g: usize, cols: &mut [f32]) {
        let d = self.dims();
        let sw = self.window.stride.1;
        self.for_each_tap_row(|t| {
            let out = &mut cols[t.row * d.hw() + t.oh * d.ow..][..d.ow];
            let Some(ih) = t.ih else {
                out.fill(0.0);
                return;
            };
            let plane = &x[(g * d.cg + t.ci) * d.h * d.w..][..d.h * d.w];
            let src = &plane[ih * d.w..(ih + 1) * d.w];
            out[..t.lo].fill(0.0);
            out[t.hi..].fill(0.0);
            if sw == 1 {
                out[t.lo..t.hi].copy_from_slice(&src[t.first..t.first + t.hi - t.lo]);
            } else {
                for (j, o) in out[t.lo..t.hi].iter_mut().enumerate() {
                    *o = src[t.first + j * sw];
                }
            }
        });
    }

    /// Adds the column gradients `cols` of group `g` back onto the image gradient `dx`
    /// (the transpose of [`Conv2d::im2col`]).
    fn col2im(&self, cols: &[f32], g: usize, dx: &mut [f32]) {
        let d = self.dims();
        let sw = self.window.stride.1;
        self.for_each_tap_row(|t| {
            let Some(ih) = t.ih else { return };
            let plane = &mut dx[(g * d.cg + t.ci) * d.h * d.w..][..d.h * d.w];
            let dst = &mut plane[ih * d.w..(ih + 1) * d.w];
            let s = &cols[t.row * d.hw() + t.oh * d.ow..][t.lo..t.hi];
            if sw == 1 {
                // Contiguous on both sides: an add of slices, which vectorizes.
                let dst = &mut dst[t.first..t.first + s.len()];
                dst.iter_mut().zip(s).for_each(|(d, v)| *d += v);
            } else {
                for (j, v) in s.iter().enumerate() {
                    dst[t.first + j * sw] += v;
                }
            }
        });
    }

    /// Forward of one image: `y` (`o x oh·ow`) from `x` (`c x h x w`).
    fn forward_image(&self, params: &[f32], x: &[f32], y: &mut [f32], cols: &mut [f32]) {
        let d = self.dims();
        let w_all = &params[self.weight..self.weight + self.weight_len()];
        for g in 0..d.groups {
            self.im2col(x, g, cols);
            let yg = &mut y[g * d.og * d.hw()..(g + 1) * d.og * d.hw()];
            let beta = match self.bias {
                Some(b) => {
                    for (row, &bv) in yg.chunks_exact_mut(d.hw()).zip(&params[b + g * d.og..]) {
                        row.fill(bv);
                    }
                    1.0
                }
                None => 0.0,
            };
            let wg = MatRef::new(&w_all[g * d.og * d.k..(g + 1) * d.og * d.k], d.og, d.k)
                .expect("weight fits");
            let c = MatRef::new(&cols[..d.k * d.hw()], d.k, d.hw()).expect("columns fit");
            matmul_serial(
                MatMut::new(yg, d.og, d.hw()).expect("output fits"),
                wg,
                c,
                1.0,
                beta,
            );
        }
        if let Some(act) = self.act {
            act.forward(y);
        }
    }
}

impl Layer for Conv2d {
    fn kind(&self) -> &'static str {
        "Conv2d"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        let w = self.window;
        let mut s = format!(
            "Conv2d({}, {}, {}x{}",
            self.in_channels, self.out_channels, w.kernel.0, w.kernel.1
        );
        for (name, v, default) in [
            ("stride", w.stride, (1, 1)),
            ("padding", w.padding, (0, 0)),
            ("dilation", w.dilation, (1, 1)),
        ] {
            if v != default {
                s += &format!(", {name}={v:?}");
            }
        }
        if self.groups != 1 {
            s += &format!(", groups={}", self.groups);
        }
        if self.bias.is_none() {
            s += ", bias=False";
        }
        s += ")";
        if let Some(a) = self.act {
            s += &format!(" + {}", a.torch_name());
        }
        if let Some(p) = &self.pool {
            s += &format!(" + {}", p.summary());
        }
        s
    }

    fn workspace_len(&self, cap: usize, threads: usize) -> usize {
        threads * self.per_thread() + self.winners_len(cap)
    }

    fn flops(&self) -> u64 {
        let d = self.dims();
        (2 * d.o * d.k * d.hw()) as u64
    }

    fn param_count(&self) -> usize {
        self.weight_len() + self.bias.map_or(0, |_| self.out_channels)
    }

    /// PyTorch's default: weight and bias uniform in ±1/sqrt(fan_in), fan_in = in / groups
    /// x kh x kw.
    fn init(&self, params: &mut [f32], _buffers: &mut [f32], rng: &mut Rng) {
        let bound = 1.0 / (self.dims().k as f32).sqrt();
        for v in &mut params[self.weight..self.weight + self.weight_len()] {
            *v = rng.uniform(-bound, bound);
        }
        if let Some(b) = self.bias {
            for v in &mut params[b..b + self.out_channels] {
                *v = rng.uniform(-bound, bound);
            }
        }
    }

    // x is (B, C, H, W), y is (B, O, OH, OW); images split over the threads.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let d = self.dims();
        let (in_n, out_n, full_n) = (d.c * d.h * d.w, self.out_len(), d.o * d.hw());
        let parts = f.threads.min(f.batch).max(1);
        let per_thread = self.per_thread();
        let (blocks, winners) = ws.split_at_mut(f.threads * per_thread);
        let scratch = Scratch::new(blocks);
        let (out, wins) = (
            Scratch::new(&mut y[..f.batch * out_n]),
            Scratch::new(winners),
        );
        let (params, batch) = (f.params, f.batch);
        let direct = self
            .direct
            .as_ref()
            .filter(|_| descent_tensor::isa() == descent_tensor::Isa::Avx512);
        f.pool.run(parts, |p| {
            let (start, end) = images(batch, parts, p);
            // SAFETY: part p uses its own scratch block, its own images' outputs and its own
            // images' winners.
            let (block, ys, args) = unsafe {
                (
                    scratch.part(p * per_thread, per_thread),
                    out.part(start * out_n, (end - start) * out_n),
                    match self.pool {
                        Some(_) => wins.part(start * out_n, (end - start) * out_n),
                        None => &mut [][..],
                    },
                )
            };
            let (full, block) = block.split_at_mut(if self.pool.is_some() { full_n } else { 0 });
            let mut how = match direct {
                Some(plan) => {
                    let (xp, wt) = plan.split(block);
                    let w_all = &params[self.weight..self.weight + self.weight_len()];
                    plan.pack_weights(w_all, d.groups, wt);
                    Lowering::Direct(plan, xp, wt)
                }
                None => Lowering::Columns(&mut block[..d.k * d.hw()]),
            };
            for (k, n) in (start..end).enumerate() {
                let xn = &x[n * in_n..(n + 1) * in_n];
                let yn = &mut ys[k * out_n..(k + 1) * out_n];
                // The convolution's output: this image's, or the full-size one to pool.
                let conv = match self.pool {
                    Some(_) => &mut full[..],
                    None => &mut yn[..],
                };
                match &mut how {
                    Lowering::Direct(plan, xp, wt) => {
                        let relu = DirectPlan::fuses(self.act);
                        for g in 0..d.groups {
                            let bias = self.bias.map(|b| &params[b + g * d.og..b + (g + 1) * d.og]);
                            plan.forward(
                                &xn[g * d.cg * d.h * d.w..(g + 1) * d.cg * d.h * d.w],
                                xp,
                                &wt[g * plan.weights_len()..(g + 1) * plan.weights_len()],
                                bias,
                                relu,
                                &mut conv[g * d.og * d.hw()..(g + 1) * d.og * d.hw()],
                            );
                        }
                        if let Some(act) = self.act.filter(|_| !relu) {
                            act.forward(conv);
                        }
                    }
                    Lowering::Columns(cols) => self.forward_image(params, xn, conv, cols),
                }
                if let Some(pool) = &self.pool {
                    let pp = out_n / d.o;
                    let argn = &mut args[k * out_n..(k + 1) * out_n];
                    for c in 0..d.o {
                        pool.forward_plane(
                            &full[c * d.hw()..(c + 1) * d.hw()],
                            &mut yn[c * pp..(c + 1) * pp],
                            &mut argn[c * pp..(c + 1) * pp],
                        );
                    }
                }
            }
        });
    }

    // dy is (B, O, OH, OW); dx is (B, C, H, W). Each thread sums the weight gradient of its
    // images; the sums are added in thread order (the same bits for the same thread count).
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let d = self.dims();
        let (in_n, out_n, full_n) = (d.c * d.h * d.w, self.out_len(), d.o * d.hw());
        let batch = b.batch;
        let dys = Scratch::new(&mut dy[..batch * out_n]);
        let parts = b.threads.min(batch).max(1);
        let per_thread = self.per_thread();
        let wl = self.weight_len();
        let (blocks, winners) = ws.split_at_mut(b.threads * per_thread);
        let winners = &*winners;
        let scratch = Scratch::new(blocks);
        let dxs = dx.map(|dx| Scratch::new(&mut dx[..batch * in_n]));
        let params = &*b.params;
        let w_all = &params[self.weight..self.weight + wl];
        let sparse = self
            .sparse
            .as_ref()
            .filter(|_| descent_tensor::isa() == descent_tensor::Isa::Avx512);
        b.pool.run(parts, |p| {
            let (start, end) = images(batch, parts, p);
            // SAFETY: part p uses its own scratch block and its own images' input gradients.
            let block = unsafe { scratch.part(p * per_thread, per_thread) };
            let (full, block) = block.split_at_mut(if self.pool.is_some() { full_n } else { 0 });
            let (dw, rest) = block.split_at_mut(wl);
            let (db, rest) = rest.split_at_mut(d.o);
            let (cols, rest) = rest.split_at_mut(d.k * d.hw());
            let (dcols, rest) = rest.split_at_mut(d.k * d.hw());
            let mut sp = sparse.map(|plan| (plan, plan.scratch(rest, d.groups)));
            let mut reordered = false;
            if let Some((_, s)) = sp.as_mut() {
                s.dwr.fill(0.0);
            }
            dw.fill(0.0);
            db.fill(0.0);
            for n in start..end {
                let xn = &x[n * in_n..(n + 1) * in_n];
                // SAFETY: image n belongs to part p alone.
                let dyn_ = unsafe { dys.part(n * out_n, out_n) };
                // Through the fused activation first, image by image: the gradient is then
                // in cache for the products below. With a fused pooling, the output is the
                // pooled one: its values are the activation's outputs at the windows'
                // winners, the only places the gradient reaches, where it is spread to next.
                if let Some(act) = self.act {
                    act.backward(&y[n * out_n..(n + 1) * out_n], dyn_);
                }
                let dyn_: &[f32] = match &self.pool {
                    None => dyn_,
                    Some(pool) => {
                        let pp = out_n / d.o;
                        let argn = &winners[n * out_n..(n + 1) * out_n];
                        for c in 0..d.o {
                            let r = c * pp..(c + 1) * pp;
                            let plane = &mut full[c * d.hw()..(c + 1) * d.hw()];
                            pool.backward_plane(&[], &[], &dyn_[r.clone()], plane, &argn[r]);
                        }
                        full
                    }
                };
                // SAFETY: image n belongs to part p alone.
                let mut dxn = dxs.map(|s| unsafe { s.part(n * in_n, in_n) });
                for g in 0..d.groups {
                    let dyg = &dyn_[g * d.og * d.hw()..][..d.og * d.hw()];
                    let xg = &xn[g * d.cg * d.h * d.w..][..d.cg * d.h * d.w];
                    if let Some((plan, s)) = sp.as_mut() {
                        let nz = plan.compress(dyg, s);
                        if (nz as f32) < SPARSE_BELOW * dyg.len() as f32 {
                            plan.load_input(xg, s);
                            plan.weight_grad(s, g);
                            if let Some(dxn) = dxn.as_deref_mut() {
                                if !reordered {
                                    plan.reorder_weights(w_all, s);
                                    reordered = true;
                                }
                                let dxg = &mut dxn[g * d.cg * d.h * d.w..][..d.cg * d.h * d.w];
                                plan.input_grad(dyg, s, g, dxg);
                            }
                            continue;
                        }
                    }
                    self.im2col(xn, g, cols);
                    let c = MatRef::new(cols, d.k, d.hw()).expect("columns fit");
                    let dyg = MatRef::new(dyg, d.og, d.hw()).expect("gradient fits");
                    // dW_g (og x k) += dy_g (og x hw) · colsᵀ (hw x k)
                    let dwg = MatMut::new(&mut dw[g * d.og * d.k..][..d.og * d.k], d.og, d.k)
                        .expect("weight gradient fits");
                    matmul_serial(dwg, dyg, c.t(), 1.0, 1.0);
                    if let Some(dxn) = dxn.as_deref_mut() {
                        // dcols (k x hw) = W_gᵀ (k x og) · dy_g (og x hw), then each group's
                        // channels of dx are written by col2im.
                        let wg = MatRef::new(&w_all[g * d.og * d.k..][..d.og * d.k], d.og, d.k)
                            .expect("weight fits");
                        let dc = MatMut::new(dcols, d.k, d.hw()).expect("columns fit");
                        matmul_serial(dc, wg.t(), dyg, 1.0, 0.0);
                        dxn[g * d.cg * d.h * d.w..][..d.cg * d.h * d.w].fill(0.0);
                        self.col2im(dcols, g, dxn);
                    }
                }
                if self.bias.is_some() {
                    for (acc, row) in db.iter_mut().zip(dyn_.chunks_exact(d.hw())) {
                        *acc += descent_tensor::sum(row);
                    }
                }
            }
            if let Some((plan, s)) = sp.as_ref() {
                plan.add_weight_grad(s, dw);
            }
        });
        // Sum the parts' gradients into part 0's block, in order, then hand them over.
        let (first, rest) = blocks.split_at_mut(per_thread);
        let skip = if self.pool.is_some() { full_n } else { 0 };
        let grads0 = &mut first[skip..skip + wl + d.o];
        for p in 1..parts {
            let other = &rest[(p - 1) * per_thread + skip..][..wl + d.o];
            grads0.iter_mut().zip(other).for_each(|(a, b)| *a += b);
        }
        let (gw, gb) = grads0.split_at_mut(wl);
        b.put(self.weight, gw);
        if let Some(o) = self.bias {
            b.put(o, gb);
        }
    }
}

/// Calls `f(y, x, w)` with the flat indices of every output value, input value and weight
/// that meet in a direct convolution of `n` images (`c x h x w`, weight `[o, c / groups, kh,
/// kw]`), taps in the padding skipped: the loops both naive passes share.
fn for_each_tap(
    n: usize,
    (c, h, w): (usize, usize, usize),
    o: usize,
    win: Window,
    groups: usize,
    mut f: impl FnMut(usize, usize, usize),
) {
    let (oh, ow) = win.output(h, w).expect("window fits");
    let (cg, og) = (c / groups, o / groups);
    let (kh, kw) = win.kernel;
    for b in 0..n {
        for oc in 0..o {
            let g = oc / og;
            for i in 0..oh {
                for j in 0..ow {
                    let yi = ((b * o + oc) * oh + i) * ow + j;
                    for ci in 0..cg {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let ih = (i * win.stride.0 + ki * win.dilation.0) as isize
                                    - win.padding.0 as isize;
                                let iw = (j * win.stride.1 + kj * win.dilation.1) as isize
                                    - win.padding.1 as isize;
                                if ih < 0 || iw < 0 || ih >= h as isize || iw >= w as isize {
                                    continue;
                                }
                                let xi =
                                    ((b * c + g * cg + ci) * h + ih as usize) * w + iw as usize;
                                f(yi, xi, ((oc * cg + ci) * kh + ki) * kw + kj);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The direct convolution of one batch: `y` (`n x o x oh x ow`) from `x` (`n x c x h x w`),
/// weight `[o, c / groups, kh, kw]`, with f64 sums. The reference the fast path is tested
/// against.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_naive(
    x: &[f32],
    n: usize,
    chw: (usize, usize, usize),
    weight: &[f32],
    bias: Option<&[f32]>,
    o: usize,
    win: Window,
    groups: usize,
) -> Vec<f32> {
    let (oh, ow) = win.output(chw.1, chw.2).expect("window fits");
    let plane = oh * ow;
    let mut y: Vec<f64> = (0..n * o * plane)
        .map(|k| bias.map_or(0.0, |b| b[(k / plane) % o] as f64))
        .collect();
    for_each_tap(n, chw, o, win, groups, |yi, xi, wi| {
        y[yi] += x[xi] as f64 * weight[wi] as f64
    });
    y.into_iter().map(|v| v as f32).collect()
}

/// The direct backward pass: from `dy` (`n x o x oh x ow`), the gradients w.r.t. `x`, the
/// weight and the bias, with f64 sums.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_naive(
    x: &[f32],
    dy: &[f32],
    n: usize,
    chw: (usize, usize, usize),
    weight: &[f32],
    o: usize,
    win: Window,
    groups: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (oh, ow) = win.output(chw.1, chw.2).expect("window fits");
    let mut dx = vec![0.0f64; x.len()];
    let mut dw = vec![0.0f64; weight.len()];
    let mut db = vec![0.0f64; o];
    for (k, &g) in dy.iter().enumerate() {
        db[(k / (oh * ow)) % o] += g as f64;
    }
    for_each_tap(n, chw, o, win, groups, |yi, xi, wi| {
        let gy = dy[yi] as f64;
        dx[xi] += gy * weight[wi] as f64;
        dw[wi] += gy * x[xi] as f64;
    });
    let f = |v: Vec<f64>| v.into_iter().map(|v| v as f32).collect();
    (f(dx), f(dw), f(db))
}

#[cfg(test)]
mod tests {
    use descent_tensor::{Pool, Rng};

    use super::*;
    use crate::layer::Sink;

    /// A fused 2x2 max pooling gives the bits of the convolution and the pooling in turn:
    /// outputs, and the weight, bias and input gradients, with ReLU, tanh and no activation,
    /// odd output sizes (a last row and column no window covers), one and two threads.
    #[test]
    fn fused_pooling_is_the_two_layers_in_turn() {
        let cases = [
            (8, 10, 10, 16, Some(Activation::Relu)),
            (3, 8, 9, 5, Some(Activation::Tanh)),
            (9, 7, 7, 4, None),
        ];
        let mut rng = Rng::new(8);
        for (c, h, w, o, act) in cases {
            let win = Window {
                kernel: (3, 3),
                stride: (1, 1),
                padding: (0, 0),
                dilation: (1, 1),
            };
            let mut lb = LayoutBuilder::default();
            let mut conv = Conv2d::build(&mut lb, "conv", &[c, h, w], o, win, 1, true);
            conv.act = act;
            let layout = lb.finish();
            let pw = Window {
                kernel: (2, 2),
                stride: (2, 2),
                padding: (0, 0),
                dilation: (1, 1),
            };
            let pool = Pool2d::new(crate::pool2d::PoolKind::Max, pw, conv.output_shape());
            let fused = conv.clone().with_max_pool(pool.clone());
            for (batch, threads) in [(1, 1), (3, 2)] {
                let params: Vec<f32> = (0..layout.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let x: Vec<f32> = (0..batch * c * h * w)
                    .map(|_| rng.uniform(-1.0, 1.0))
                    .collect();
                let pn = batch * numel(fused.output_shape());
                let dyp: Vec<f32> = (0..pn).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let pool_t = Pool::new(threads).unwrap();
                let run_fwd = |l: &dyn Layer, x: &[f32], n: usize, ws: &mut Vec<f32>| {
                    ws.resize(l.workspace_len(batch, threads), 0.0);
                    let mut y = vec![0.0; n];
                    let mut f = Forward::eval(&pool_t, &params, &[]);
                    (f.batch, f.cap, f.threads) = (batch, batch, threads);
                    l.forward(&mut f, x, &mut y, ws);
                    y
                };
                let run_bwd =
                    |l: &dyn Layer, x: &[f32], y: &[f32], dy: &[f32], ws: &mut Vec<f32>| {
                        let mut p = params.clone();
                        let mut grads = vec![0.0; layout.len()];
                        let mut dx = vec![0.0; x.len()];
                        let mut dy = dy.to_vec();
                        let mut b = Backward {
                            pool: &pool_t,
                            batch,
                            cap: batch,
                            threads,
                            params: &mut p,
                            sink: Sink::Grads(&mut grads),
                            buffers: &[],
                            times: None,
                            seed: 0,
                            scratch: Vec::new(),
                        };
                        l.backward(&mut b, x, y, &mut dy, Some(&mut dx), ws);
                        (grads, dx)
                    };
                // In turn.
                let (mut ws_c, mut ws_p, mut ws_f) = (vec![], vec![], vec![]);
                let yc = run_fwd(&conv, &x, batch * numel(conv.output_shape()), &mut ws_c);
                let yp = run_fwd(&pool, &yc, pn, &mut ws_p);
                let (_, dyc) = run_bwd(&pool, &yc, &yp, &dyp, &mut ws_p);
                let (g_want, dx_want) = run_bwd(&conv, &x, &yc, &dyc, &mut ws_c);
                // Fused.
                let yf = run_fwd(&fused, &x, pn, &mut ws_f);
                assert_eq!(yf, yp, "c{c} {act:?}: outputs");
                let (g, dx) = run_bwd(&fused, &x, &yf, &dyp, &mut ws_f);
                assert_eq!(g, g_want, "c{c} {act:?}: parameter gradients");
                assert_eq!(dx, dx_want, "c{c} {act:?}: input gradients");
            }
        }
    }

    /// The forward pass (the direct product for stride 1 where the CPU has AVX-512, im2col
    /// and the product otherwise) against the direct loops: padding, dilation, groups, one
    /// input channel, output channels that fill no whole tile, no bias, a fused ReLU and a
    /// fused tanh, batch 1 and 3 on one and two threads.
    #[test]
    fn forward_matches_the_naive_twin() {
        let cases = [
            // (c, h, w, o, kernel, stride, padding, dilation, groups, bias, act)
            (
                1,
                28,
                28,
                32,
                (3, 3),
                (1, 1),
                (0, 0),
                (1, 1),
                1,
                true,
                Some(Activation::Relu),
            ),
            (
                32,
                26,
                26,
                64,
                (3, 3),
                (1, 1),
                (0, 0),
                (1, 1),
                1,
                true,
                Some(Activation::Relu),
            ),
            (5, 9, 7, 11, (3, 2), (1, 1), (1, 0), (1, 2), 1, false, None),
            (
                6,
                8,
                9,
                6,
                (3, 3),
                (1, 1),
                (2, 1),
                (2, 1),
                2,
                true,
                Some(Activation::Tanh),
            ),
            (4, 7, 6, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1, true, None),
            (
                3,
                9,
                7,
                4,
                (3, 3),
                (2, 1),
                (1, 1),
                (1, 1),
                1,
                true,
                Some(Activation::Relu),
            ),
        ];
        let mut rng = Rng::new(5);
        for (c, h, w, o, kernel, stride, padding, dilation, groups, bias, act) in cases {
            let win = Window {
                kernel,
                stride,
                padding,
                dilation,
            };
            let mut lb = LayoutBuilder::default();
            let mut conv = Conv2d::build(&mut lb, "conv", &[c, h, w], o, win, groups, bias);
            conv.act = act;
            assert_eq!(conv.direct.is_some(), stride == (1, 1));
            let layout = lb.finish();
            for (batch, threads) in [(1, 1), (3, 2)] {
                let params: Vec<f32> = (0..layout.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let x: Vec<f32> = (0..batch * c * h * w)
                    .map(|_| rng.uniform(-1.0, 1.0))
                    .collect();
                let wr = conv.weight..conv.weight + conv.weight_len();
                let b = conv.bias.map(|b| &params[b..b + o]);
                let mut want = conv2d_naive(&x, batch, (c, h, w), &params[wr], b, o, win, groups);
                if let Some(a) = act {
                    a.forward(&mut want);
                }
                let pool = Pool::new(threads).unwrap();
                let mut ws = vec![f32::NAN; conv.workspace_len(batch, threads)];
                let mut y = vec![f32::NAN; want.len()];
                let mut f = Forward::eval(&pool, &params, &[]);
                (f.batch, f.cap, f.threads) = (batch, batch, threads);
                conv.forward(&mut f, &x, &mut y, &mut ws);
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert!(
                        (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                        "c{c} o{o} {kernel:?} stride {stride:?} batch {batch}: y[{i}] {a} vs {b}"
                    );
                }
                // The direct product sums as im2col and the packed product do: the same bits
                // where that product runs (not for products smaller than its tile).
                let dm = conv.dims();
                let (wv, cv) = (vec![0.0; dm.og * dm.k], vec![0.0; dm.k * dm.hw()]);
                let path = descent_tensor::matmul_path(
                    MatRef::new(&wv, dm.og, dm.k).unwrap(),
                    MatRef::new(&cv, dm.k, dm.hw()).unwrap(),
                );
                if conv.direct.is_some() && path == "avx512-packed" {
                    let (in_n, out_n) = (c * h * w, numel(conv.output_shape()));
                    let mut cols = vec![0.0; dm.k * dm.hw()];
                    for n in 0..batch {
                        let mut yn = vec![0.0; out_n];
                        conv.forward_image(
                            &params,
                            &x[n * in_n..(n + 1) * in_n],
                            &mut yn,
                            &mut cols,
                        );
                        assert_eq!(yn, y[n * out_n..(n + 1) * out_n], "c{c} o{o} image {n}");
                    }
                }
            }
        }
    }

    /// The backward pass on output gradients that are mostly zeros (the sparse pass, where
    /// the CPU has AVX-512) and mostly nonzero (the dense products) against the direct loops:
    /// weight, bias and input gradients, on geometries with stride, padding, dilation, groups,
    /// channel counts that fill vectors partly (40) or need two blocks of 64 (80), batch 1
    /// and 3, one and two threads.
    #[test]
    fn backward_matches_the_naive_twin_on_sparse_and_dense_gradients() {
        let cases = [
            // (c, h, w, o, kernel, stride, padding, dilation, groups)
            (32, 12, 12, 16, (3, 3), (1, 1), (0, 0), (1, 1), 1),
            (40, 9, 7, 8, (3, 2), (2, 1), (1, 0), (1, 2), 1),
            (16, 8, 9, 6, (3, 3), (1, 2), (2, 1), (2, 1), 2),
            (80, 5, 6, 4, (1, 1), (1, 1), (0, 0), (1, 1), 1),
            (8, 6, 6, 3, (5, 5), (1, 1), (2, 2), (1, 1), 1),
        ];
        let mut rng = Rng::new(11);
        for (c, h, w, o, kernel, stride, padding, dilation, groups) in cases {
            let win = Window {
                kernel,
                stride,
                padding,
                dilation,
            };
            let mut lb = LayoutBuilder::default();
            let conv = Conv2d::build(&mut lb, "conv", &[c, h, w], o, win, groups, true);
            assert!(
                conv.sparse.is_some(),
                "{c} channels per group suit the sparse pass"
            );
            let layout = lb.finish();
            let (oh, ow) = win.output(h, w).unwrap();
            for (batch, threads) in [(1, 1), (3, 2)] {
                for density in [0.2, 0.9] {
                    let mut params: Vec<f32> =
                        (0..layout.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
                    let x: Vec<f32> = (0..batch * c * h * w)
                        .map(|_| rng.uniform(-1.0, 1.0))
                        .collect();
                    let dy: Vec<f32> = (0..batch * o * oh * ow)
                        .map(|_| {
                            let v = rng.uniform(-1.0, 1.0);
                            if rng.uniform(0.0, 1.0) < density {
                                v
                            } else {
                                0.0
                            }
                        })
                        .collect();
                    let wr = conv.weight..conv.weight + conv.weight_len();
                    let (want_dx, want_dw, want_db) = conv2d_backward_naive(
                        &x,
                        &dy,
                        batch,
                        (c, h, w),
                        &params[wr.clone()],
                        o,
                        win,
                        groups,
                    );
                    let pool = Pool::new(threads).unwrap();
                    let mut ws = vec![0.0; conv.workspace_len(batch, threads)];
                    let mut grads = vec![0.0; layout.len()];
                    let mut dx = vec![f32::NAN; x.len()];
                    let mut dy_in = dy.clone();
                    let y = vec![1.0; dy.len()];
                    let mut b = Backward {
                        pool: &pool,
                        batch,
                        cap: batch,
                        threads,
                        params: &mut params,
                        sink: Sink::Grads(&mut grads),
                        buffers: &[],
                        times: None,
                        seed: 0,
                        scratch: Vec::new(),
                    };
                    conv.backward(&mut b, &x, &y, &mut dy_in, Some(&mut dx), &mut ws);
                    let what = format!("c{c} o{o} groups {groups} batch {batch} density {density}");
                    let close = |got: &[f32], want: &[f32], part: &str| {
                        for (i, (a, b)) in got.iter().zip(want).enumerate() {
                            assert!(
                                (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                                "{what}: {part}[{i}] {a} vs {b}"
                            );
                        }
                    };
                    close(&grads[wr], &want_dw, "dW");
                    let br = conv.bias.unwrap()..conv.bias.unwrap() + o;
                    close(&grads[br], &want_db, "db");
                    close(&dx, &want_dx, "dx");
                }
            }
        }
    }
}
