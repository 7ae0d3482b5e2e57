//! The fully connected layer `y = x·Wᵀ + b`, PyTorch's `nn.Linear`, with an optional
//! activation fused onto its output.

use descent_tensor::backend::{Backend, BackendError, DMat, Region, Span as DSpan};
use descent_tensor::{matmul_bias_in, matmul_serial_in, MatMut, MatRef, Precision, Rng};

use crate::layer::{numel, Backward, DeviceIo, Forward, Layer, Sink};
use crate::par::Scratch;
use crate::sparse::{compress_row, window_sums, Span, Store};
use crate::{Activation, LayoutBuilder};

/// A fully connected layer whose weight (`out x in`, row-major) and bias (`out`) live in a
/// flat parameter buffer at the recorded offsets. It acts on the last dimension of its input,
/// as PyTorch's does: `(N, *, in)` to `(N, *, out)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Offset of the weight in the flat buffer.
    pub weight: usize,
    /// Offset of the bias in the flat buffer, when it has one.
    pub bias: usize,
    /// Whether it has a bias (PyTorch's `bias=True`).
    pub has_bias: bool,
    /// An activation applied to the output in place (a following ReLU, tanh, ...).
    pub act: Option<Activation>,
    /// The weight is an earlier layer's (weight tying): not this layer's to initialize or
    /// count, and its gradient is put first, the owner adding its own after.
    pub tied: bool,
    /// Output shape per example.
    shape: Vec<usize>,
    /// The inputs' precision in its products (f32, or bf16 with f32 sums).
    pub precision: Precision,
}

/// Densities (nonzero fraction of the output gradient) below which the backward pass visits
/// only the nonzeros, for weights of at least [`SPARSE_MIN_WEIGHT`] values. Behind ReLU and
/// dropout 0.5, the cnn preset's fc1 (9216 x 128, 25% nonzero) took 1.4 ms a step against 2.1
/// for the products, which are bound by memory there; on the seed MLP's fc1 (784 x 512, a
/// 1.6 MB weight, 25-30% nonzero behind ReLU) the products, in cache, were as fast or faster
/// (epochs 0.44-0.46 s against 0.42-0.44).
const SPARSE_BELOW: f32 = 0.3;

/// Weights (values) from which the sparse backward pass may run: 4 MB.
const SPARSE_MIN_WEIGHT: usize = 1 << 20;

/// Features per thread below which a layer is not split.
const MIN_FEATURES_PER_THREAD: usize = 16;

/// Gradient values from which the bias gradient's column sums are split among threads.
const BIAS_SPLIT_MIN: usize = 1 << 16;

/// Rows (examples x positions) from which the forward pass and the input gradient split the
/// rows among threads instead of the features, when there are at least `TALL` times as many
/// rows as output columns: each thread then packs only its own rows of the input (a GPT's
/// 4096 x 128 activations), not all of them for a few columns each. The sums are the same.
const ROW_SPLIT_MIN: usize = 512;
const TALL: usize = 4;

impl Linear {
    /// Declares `name.weight` and `name.bias` (when `bias`) for inputs of `input` shape (the
    /// last dimension is the features).
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        out_features: usize,
        bias: bool,
    ) -> Self {
        let in_features = *input.last().expect("a shape has a dimension");
        let weight = b.param(
            b.qualify(&format!("{name}.weight")),
            vec![out_features, in_features],
        );
        let bias_off = match bias {
            true => b.param(b.qualify(&format!("{name}.bias")), vec![out_features]),
            false => weight + out_features * in_features,
        };
        let mut shape = input.to_vec();
        *shape.last_mut().expect("checked") = out_features;
        Self {
            in_features,
            out_features,
            weight,
            bias: bias_off,
            has_bias: bias,
            act: None,
            tied: false,
            shape,
            precision: Precision::F32,
        }
    }

    /// A layer whose weight is the one at `weight` (`out x in`, declared by an earlier
    /// layer that shares it); it declares only `name.bias` (when `bias`).
    pub fn build_tied(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        out_features: usize,
        weight: usize,
        bias: bool,
    ) -> Self {
        let in_features = *input.last().expect("a shape has a dimension");
        let bias_off = match bias {
            true => b.param(b.qualify(&format!("{name}.bias")), vec![out_features]),
            false => 0,
        };
        let mut shape = input.to_vec();
        *shape.last_mut().expect("checked") = out_features;
        Self {
            in_features,
            out_features,
            weight,
            bias: bias_off,
            has_bias: bias,
            act: None,
            tied: true,
            shape,
            precision: Precision::F32,
        }
    }

    /// The weight, `out x in` row-major, as a view into `params`.
    pub fn weight<'a>(&self, params: &'a [f32]) -> MatRef<'a> {
        let w = &params[self.weight..self.weight + self.out_features * self.in_features];
        MatRef::new(w, self.out_features, self.in_features).expect("weight fits its layout")
    }

    /// The bias as a slice of `params` (empty without one).
    pub fn bias<'a>(&self, params: &'a [f32]) -> &'a [f32] {
        match self.has_bias {
            true => &params[self.bias..self.bias + self.out_features],
            false => &[],
        }
    }

    // x is (B, in), weight is (out, in), bias is (out); y is (B, out).
    // `y` may be a block of columns j0..j0 + w of the full output: it gets those features.
    /// Forward on the output columns `j0..j0 + y.cols()`: `y = x·W[j0..]ᵀ + b[j0..]`.
    /// `y`'s rows must be contiguous (column stride 1).
    pub fn forward_block(&self, params: &[f32], x: MatRef<'_>, y: MatMut<'_>, j0: usize) {
        let w = y.cols();
        let weight = self.weight(params).rows_range(j0, w);
        if self.has_bias {
            let bias = &self.bias(params)[j0..j0 + w];
            matmul_bias_in(self.precision, y, x, weight.t(), bias);
        } else {
            matmul_serial_in(self.precision, y, x, weight.t(), 1.0, 0.0);
        }
    }

    // dy is (B, out), x is (B, in); w is (out, in), rows i0..i0 + h of the full matrix.
    /// Weight gradient for the output features `i0..i0 + w.rows()`:
    /// `w = alpha · dyᵀ·x + beta · w` (alpha 1, beta 0 writes the gradient; alpha `-lr`,
    /// beta 1 applies an SGD step to the weights themselves).
    #[allow(clippy::too_many_arguments)]
    pub fn backward_weight_block(
        precision: Precision,
        dy: MatRef<'_>,
        x: MatRef<'_>,
        w: MatMut<'_>,
        i0: usize,
        alpha: f32,
        beta: f32,
    ) {
        let h = w.rows();
        matmul_serial_in(precision, w, dy.cols_range(i0, h).t(), x, alpha, beta);
    }

    // dy is (B, out); dbias is (out).
    /// Bias gradient: the column sums of `dy`.
    pub fn backward_bias(dy: &[f32], batch: usize, dbias: &mut [f32]) {
        let out = dbias.len();
        dbias.fill(0.0);
        for row in dy[..batch * out].chunks_exact(out) {
            for (d, g) in dbias.iter_mut().zip(row) {
                *d += g;
            }
        }
    }

    /// [`Linear::backward_bias`] with the features split among the pool's threads where
    /// there is enough to share (a GPT's 4096 x 512 gradient): each thread sums its own
    /// columns over every row, so the sums are the same on any number of threads.
    fn backward_bias_on(pool: &descent_tensor::Pool, dy: &[f32], rows: usize, dbias: &mut [f32]) {
        let out = dbias.len();
        if rows * out < BIAS_SPLIT_MIN {
            return Linear::backward_bias(dy, rows, dbias);
        }
        pool.split_slice(dbias, 16, MIN_FEATURES_PER_THREAD, |j0, band| {
            band.fill(0.0);
            let w = band.len();
            for row in dy[..rows * out].chunks_exact(out) {
                for (d, g) in band.iter_mut().zip(&row[j0..j0 + w]) {
                    *d += g;
                }
            }
        });
    }

    // dy is (R, out), mostly zeros; x is (R, in); dx is (R, in).
    /// The backward pass visiting only the nonzeros of `dy` (behind ReLU and dropout):
    /// `dx[n, :] = Σ_j dy[n, j] · W[j, :]` and `dW[j, :] = Σ_n dy[n, j] · x[n, :]`, each in
    /// registers over blocks of 192 columns, columns split over the threads. The same bits on
    /// any number of threads.
    fn backward_sparse(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        dy: &[f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let (inf, outf) = (self.in_features, self.out_features);
        let rows = dy.len() / outf;
        let nz = rows * outf;
        let (bias_g, ws) = ws.split_at_mut(outf);
        let (row_start, ws) = ws.split_at_mut(rows + 1);
        let (col_start, ws) = ws.split_at_mut(outf + 1);
        let (row_idx, ws) = ws.split_at_mut(nz);
        let (row_val, ws) = ws.split_at_mut(nz);
        let (col_idx, ws) = ws.split_at_mut(nz);
        let (col_val, ws) = ws.split_at_mut(nz);
        let dyt = &mut ws[..nz];
        // Nonzeros by row (for dx) and, through the transpose, by column (for dW).
        let mut n = 0;
        for (r, row) in dy.chunks_exact(outf).enumerate() {
            row_start[r] = f32::from_bits(n as u32);
            n += compress_row(row, 0, &mut row_idx[n..], &mut row_val[n..]);
        }
        row_start[rows] = f32::from_bits(n as u32);
        descent_tensor::transpose(
            MatMut::new(dyt, outf, rows).expect("fits"),
            MatRef::new(dy, rows, outf).expect("fits"),
        );
        let mut n = 0;
        for (j, col) in dyt.chunks_exact(rows).enumerate() {
            col_start[j] = f32::from_bits(n as u32);
            n += compress_row(col, 0, &mut col_idx[n..], &mut col_val[n..]);
        }
        col_start[outf] = f32::from_bits(n as u32);
        let run = |starts: &[f32], i: usize| {
            (
                starts[i].to_bits() as usize,
                starts[i + 1].to_bits() as usize,
            )
        };
        // Column blocks of 16 per part.
        let parts = b.threads.min(inf.div_ceil(16)).max(1);
        let cols = |p: usize| {
            let per = inf.div_ceil(16).div_ceil(parts) * 16;
            ((p * per).min(inf), ((p + 1) * per).min(inf))
        };
        let w_off = self.weight;
        if let Some(dx) = dx {
            let dxs = Scratch::new(&mut dx[..rows * inf]);
            let params = &*b.params;
            b.pool.run(parts, |p| {
                let (c0, c1) = cols(p);
                for s0 in (c0..c1).step_by(crate::sparse::SPAN) {
                    let span = [Span {
                        x: s0,
                        k: s0,
                        len: (c1 - s0).min(crate::sparse::SPAN),
                    }];
                    for r in 0..rows {
                        let (a, e) = run(row_start, r);
                        // SAFETY: columns c0..c1 of each row belong to part p alone; the
                        // weight rows hold `inf` values and the span stays inside them.
                        unsafe {
                            let out = dxs.part(r * inf, inf).as_mut_ptr();
                            window_sums(
                                &row_idx[a..e],
                                &row_val[a..e],
                                |j| params.as_ptr().add(w_off + j * inf),
                                &span,
                                |sp| (sp.x, sp.k),
                                out,
                                Store::SET,
                            );
                        }
                    }
                }
            });
        }
        let (target, store, sgd_lr) = match &mut b.sink {
            Sink::Grads(g) => (&mut **g, Store::SET, None),
            Sink::Sgd(lr) => (
                &mut *b.params,
                Store {
                    alpha: -*lr,
                    beta: 1.0,
                },
                Some(*lr),
            ),
        };
        {
            let ws_t = Scratch::new(&mut target[w_off..w_off + outf * inf]);
            b.pool.run(parts, |p| {
                let (c0, c1) = cols(p);
                for s0 in (c0..c1).step_by(crate::sparse::SPAN) {
                    let span = [Span {
                        x: s0,
                        k: s0,
                        len: (c1 - s0).min(crate::sparse::SPAN),
                    }];
                    for j in 0..outf {
                        let (a, e) = run(col_start, j);
                        // SAFETY: columns c0..c1 of each weight row belong to part p alone;
                        // the input rows hold `inf` values.
                        unsafe {
                            let out = ws_t.part(j * inf, inf).as_mut_ptr();
                            window_sums(
                                &col_idx[a..e],
                                &col_val[a..e],
                                |r| x.as_ptr().add(r * inf),
                                &span,
                                |sp| (sp.x, sp.k),
                                out,
                                store,
                            );
                        }
                    }
                }
            });
        }
        if self.has_bias {
            let bias = &mut target[self.bias..self.bias + outf];
            match sgd_lr {
                None => Linear::backward_bias(dy, rows, bias),
                Some(lr) => {
                    Linear::backward_bias(dy, rows, bias_g);
                    bias.iter_mut()
                        .zip(bias_g.iter())
                        .for_each(|(p, g)| *p -= lr * g);
                }
            }
        }
    }

    // dy is (B, out), weight is (out, in); dx is (B, in), columns j0..j0 + w of the full one.
    /// Input gradient on the input columns `j0..j0 + dx.cols()`: `dx = dy·W[:, j0..]`.
    pub fn backward_input_block(&self, params: &[f32], dy: MatRef<'_>, dx: MatMut<'_>, j0: usize) {
        let w = dx.cols();
        let weight = self.weight(params).cols_range(j0, w);
        matmul_serial_in(self.precision, dx, dy, weight, 1.0, 0.0);
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn set_precision(&mut self, precision: Precision) -> usize {
        self.precision = precision;
        1
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        let bias = if self.has_bias { "" } else { ", bias=False" };
        let bias = if self.tied {
            format!("{bias}, tied")
        } else {
            bias.to_string()
        };
        let act = self
            .act
            .map_or(String::new(), |a| format!(" + {}", a.torch_name()));
        format!(
            "Linear({}, {}{bias}){act}",
            self.in_features, self.out_features
        )
    }

    fn workspace_len(&self, cap: usize, _threads: usize) -> usize {
        // The bias gradient of a fused SGD step; for the sparse backward pass, the gradient's
        // nonzeros by row and by column, and its transpose.
        let rows = cap * numel(&self.shape) / self.out_features;
        let nz = rows * self.out_features;
        self.out_features + (rows + 1) + (self.out_features + 1) + 5 * nz
    }

    fn flops(&self) -> u64 {
        let rows = numel(&self.shape) / self.out_features;
        (2 * rows * self.in_features * self.out_features) as u64
    }

    fn param_count(&self) -> usize {
        let weight = if self.tied {
            0
        } else {
            self.out_features * self.in_features
        };
        weight + if self.has_bias { self.out_features } else { 0 }
    }

    /// PyTorch's default initialization: weight and bias uniform in ±1/sqrt(in_features)
    /// (`kaiming_uniform_(a=sqrt(5))` reduces to this bound), weight first, then bias.
    fn init(&self, params: &mut [f32], _buffers: &mut [f32], rng: &mut Rng) {
        let bound = 1.0 / (self.in_features as f32).sqrt();
        let n = self.out_features * self.in_features;
        if !self.tied {
            for v in &mut params[self.weight..self.weight + n] {
                *v = rng.uniform(-bound, bound);
            }
        }
        if self.has_bias {
            for v in &mut params[self.bias..self.bias + self.out_features] {
                *v = rng.uniform(-bound, bound);
            }
        }
    }

    fn on_device(&self) -> Result<(), String> {
        if self.tied {
            return Err("a tied Linear has no device program yet".into());
        }
        if self.precision != Precision::F32 {
            return Err("Linear runs in f32 on a device (bf16 products there are to come)".into());
        }
        match self.act {
            Some(a) if a.device().is_none() => Err(format!(
                "Linear + {} has no device program yet",
                a.torch_name()
            )),
            _ => Ok(()),
        }
    }

    // x is (R, in), R = batch x the leading dimensions; y is (R, out) = act(x Wᵀ + b).
    fn device_forward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        x: DSpan,
        y: DSpan,
    ) -> Result<(), BackendError> {
        let (inf, outf) = (self.in_features, self.out_features);
        let rows = batch * numel(&self.shape) / outf;
        let y = y.sub(0, rows * outf);
        let w = DMat::new(
            DSpan::new(Region::Params, self.weight, outf * inf),
            outf,
            inf,
        );
        be.gemm(
            DMat::new(y, rows, outf),
            DMat::new(x, rows, inf),
            w.t(),
            1.0,
            0.0,
        )?;
        let bias = self
            .has_bias
            .then(|| DSpan::new(Region::Params, self.bias, outf));
        let act = self
            .act
            .map_or(descent_tensor::backend::Act::Identity, |a| {
                a.device().expect("on_device checked it")
            });
        be.bias_act(y, bias, outf, act)
    }

    // dy is (R, out), x is (R, in): dx = dy W, dW = dyᵀ x, db = Σ_rows dy.
    fn device_backward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        io: DeviceIo,
    ) -> Result<(), BackendError> {
        let (inf, outf) = (self.in_features, self.out_features);
        let rows = batch * numel(&self.shape) / outf;
        let dy = io.dy.sub(0, rows * outf);
        if let Some(act) = self.act.and_then(|a| a.device()) {
            be.act_grad(dy, io.y.sub(0, rows * outf), act)?;
        }
        let dym = DMat::new(dy, rows, outf);
        if let Some(dx) = io.dx {
            let w = DMat::new(
                DSpan::new(Region::Params, self.weight, outf * inf),
                outf,
                inf,
            );
            be.gemm(DMat::new(dx, rows, inf), dym, w, 1.0, 0.0)?;
        }
        let dw = DMat::new(
            DSpan::new(Region::Grads, self.weight, outf * inf),
            outf,
            inf,
        );
        be.gemm(dw, dym.t(), DMat::new(io.x, rows, inf), 1.0, 0.0)?;
        if self.has_bias {
            be.col_sum(DSpan::new(Region::Grads, self.bias, outf), dy, outf, 0.0)?;
        }
        Ok(())
    }

    // x is (R, in), R = batch x the leading dimensions; y is (R, out).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let rows = f.batch * numel(&self.shape) / self.out_features;
        let input =
            MatRef::new(&x[..rows * self.in_features], rows, self.in_features).expect("input fits");
        let out = MatMut::new(&mut y[..rows * self.out_features], rows, self.out_features)
            .expect("output fits");
        let params = f.params;
        let act = |block: &mut MatMut<'_>| {
            if let Some(act) = self.act {
                for r in 0..block.rows() {
                    act.forward(block.row_mut(r));
                }
            }
        };
        if rows >= ROW_SPLIT_MIN && rows >= TALL * self.out_features {
            f.pool.split_rows(out, 8, 64, |i0, mut block| {
                let x = input.rows_range(i0, block.rows());
                self.forward_block(params, x, block.rb_mut(), 0);
                act(&mut block);
            });
            return;
        }
        f.pool
            .split_cols(out, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                self.forward_block(params, input, block.rb_mut(), j0);
                act(&mut block);
            });
    }

    // dy is (R, out), x is (R, in); dx is (R, in).
    // The input gradient comes first: it needs the weights as they were before an SGD step.
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let (inf, outf) = (self.in_features, self.out_features);
        let rows = b.batch * numel(&self.shape) / outf;
        let dy = &mut dy[..rows * outf];
        if let Some(act) = self.act {
            act.backward(&y[..rows * outf], dy);
        }
        if descent_tensor::isa() == descent_tensor::Isa::Avx512 && inf * outf >= SPARSE_MIN_WEIGHT {
            let nz = dy.iter().filter(|&&g| g != 0.0).count();
            if (nz as f32) < SPARSE_BELOW * dy.len() as f32 {
                return self.backward_sparse(b, x, dy, dx, ws);
            }
        }
        let dy_mat = MatRef::new(dy, rows, outf).expect("gradient fits");
        let input = MatRef::new(&x[..rows * inf], rows, inf).expect("input fits");
        if let Some(dx) = dx {
            let dx = MatMut::new(&mut dx[..rows * inf], rows, inf).expect("input gradient fits");
            let params = &*b.params;
            if rows >= ROW_SPLIT_MIN && rows >= TALL * inf {
                b.pool.split_rows(dx, 8, 64, |i0, mut block| {
                    let dy = dy_mat.rows_range(i0, block.rows());
                    self.backward_input_block(params, dy, block.rb_mut(), 0);
                });
            } else {
                b.pool
                    .split_cols(dx, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                        self.backward_input_block(params, dy_mat, block.rb_mut(), j0);
                    });
            }
        }
        // dW (out, in) = dyᵀ (out, R) · x (R, in), one band of output features per thread;
        // with SGD, W = W - lr · dW in the same product.
        let (target, alpha, beta, sgd_lr) = match &mut b.sink {
            Sink::Grads(g) => (&mut **g, 1.0, 0.0, None),
            Sink::Sgd(lr) => (&mut *b.params, -*lr, 1.0, Some(*lr)),
        };
        let w = &mut target[self.weight..self.weight + outf * inf];
        let w = MatMut::new(w, outf, inf).expect("weight fits");
        let precision = self.precision;
        if rows >= ROW_SPLIT_MIN && inf > outf {
            // Wider inputs than outputs (a GPT's fc_proj, 4096 x 512 into 128): each thread
            // takes a band of input features, so that it packs only its columns of x, the
            // larger operand, and all of the smaller dyᵀ.
            b.pool
                .split_cols(w, 16, MIN_FEATURES_PER_THREAD, |j0, band| {
                    let x = input.cols_range(j0, band.cols());
                    matmul_serial_in(precision, band, dy_mat.t(), x, alpha, beta)
                });
        } else {
            b.pool
                .split_rows(w, 8, MIN_FEATURES_PER_THREAD, |i0, band| {
                    Linear::backward_weight_block(precision, dy_mat, input, band, i0, alpha, beta)
                });
        }
        if self.has_bias {
            let bias = &mut target[self.bias..self.bias + outf];
            let pool = b.pool;
            match sgd_lr {
                None => Linear::backward_bias_on(pool, dy, rows, bias),
                Some(lr) => {
                    let g = &mut ws[..outf];
                    Linear::backward_bias_on(pool, dy, rows, g);
                    bias.iter_mut()
                        .zip(g.iter())
                        .for_each(|(p, g)| *p -= lr * g);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use descent_tensor::{matmul_naive, Pool};

    use super::*;

    /// The backward pass on gradients that are mostly zeros (the sparse pass, with AVX-512)
    /// and mostly not (the products) against the naive products: input, weight and bias
    /// gradients, and the fused SGD step; the same bits on one and three threads.
    #[test]
    fn backward_matches_the_naive_products() {
        let mut rng = Rng::new(4);
        for (rows, inf, outf) in [
            (64, 9216, 128),
            (5, 17, 3),
            (3, 1 << 16, 17),
            (700, 8, 128),
            (600, 160, 32),
        ] {
            for density in [0.15, 0.9] {
                let mut lb = LayoutBuilder::default();
                let l = Linear::build(&mut lb, "fc", &[inf], outf, true);
                let layout = lb.finish();
                let params: Vec<f32> = (0..layout.len()).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let x: Vec<f32> = (0..rows * inf).map(|_| rng.uniform(-1.0, 1.0)).collect();
                let dy: Vec<f32> = (0..rows * outf)
                    .map(|_| {
                        let v = rng.uniform(-1.0, 1.0);
                        if rng.uniform(0.0, 1.0) < density {
                            v
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let w = &params[l.weight..l.weight + outf * inf];
                let mut want_dx = vec![0.0; rows * inf];
                matmul_naive(
                    MatMut::new(&mut want_dx, rows, inf).unwrap(),
                    MatRef::new(&dy, rows, outf).unwrap(),
                    MatRef::new(w, outf, inf).unwrap(),
                    1.0,
                    0.0,
                );
                let mut want_dw = vec![0.0; outf * inf];
                matmul_naive(
                    MatMut::new(&mut want_dw, outf, inf).unwrap(),
                    MatRef::new(&dy, rows, outf).unwrap().t(),
                    MatRef::new(&x, rows, inf).unwrap(),
                    1.0,
                    0.0,
                );
                let close = |got: &[f32], want: &[f32], what: &str| {
                    for (i, (a, b)) in got.iter().zip(want).enumerate() {
                        assert!(
                            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                            "{rows}x{inf}x{outf} density {density}: {what}[{i}] {a} vs {b}"
                        );
                    }
                };
                // The bias gradient: dy's column sums (split among threads past 65 536 values).
                let want_db: Vec<f32> = (0..outf)
                    .map(|j| (0..rows).map(|i| dy[i * outf + j] as f64).sum::<f64>() as f32)
                    .collect();
                let mut runs = Vec::new();
                for threads in [1, 3] {
                    let pool = Pool::new(threads).unwrap();
                    let mut ws = vec![0.0; l.workspace_len(rows, threads)];
                    let mut p = params.clone();
                    let mut grads = vec![0.0; layout.len()];
                    let mut dx = vec![f32::NAN; rows * inf];
                    let mut dyc = dy.clone();
                    let mut b = Backward {
                        pool: &pool,
                        batch: rows,
                        cap: rows,
                        threads,
                        params: &mut p,
                        sink: Sink::Grads(&mut grads),
                        buffers: &[],
                        times: None,
                        seed: 0,
                        scratch: Vec::new(),
                    };
                    l.backward(&mut b, &x, &[], &mut dyc, Some(&mut dx), &mut ws);
                    close(&dx, &want_dx, "dx");
                    close(&grads[l.weight..l.weight + outf * inf], &want_dw, "dW");
                    close(&grads[l.bias..l.bias + outf], &want_db, "db");
                    // The fused SGD step: W - lr · dW.
                    let mut p2 = params.clone();
                    let mut dyc = dy.clone();
                    let mut b = Backward {
                        pool: &pool,
                        batch: rows,
                        cap: rows,
                        threads,
                        params: &mut p2,
                        sink: Sink::Sgd(0.5),
                        buffers: &[],
                        times: None,
                        seed: 0,
                        scratch: Vec::new(),
                    };
                    l.backward(&mut b, &x, &[], &mut dyc, None, &mut ws);
                    let stepped: Vec<f32> =
                        w.iter().zip(&want_dw).map(|(w, g)| w - 0.5 * g).collect();
                    close(&p2[l.weight..l.weight + outf * inf], &stepped, "SGD weight");
                    let bias = &params[l.bias..l.bias + outf];
                    let stepped: Vec<f32> = bias
                        .iter()
                        .zip(&want_db)
                        .map(|(b, g)| b - 0.5 * g)
                        .collect();
                    close(&p2[l.bias..l.bias + outf], &stepped, "SGD bias");
                    runs.push((dx, grads, p2));
                }
                assert!(runs[0] == runs[1], "threads changed the bits");
            }
        }
    }
}
