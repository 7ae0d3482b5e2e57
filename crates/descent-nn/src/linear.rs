//! The fully connected layer `y = x·Wᵀ + b`, PyTorch's `nn.Linear`, with an optional
//! activation fused onto its output.

use descent_tensor::{matmul_serial, MatMut, MatRef, Rng};

use crate::layer::{numel, Backward, Forward, Layer, Sink};
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
    /// Output shape per example.
    shape: Vec<usize>,
}

/// Features per thread below which a layer is not split.
const MIN_FEATURES_PER_THREAD: usize = 16;

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
            shape,
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
    pub fn forward_block(&self, params: &[f32], x: MatRef<'_>, mut y: MatMut<'_>, j0: usize) {
        let w = y.cols();
        let weight = self.weight(params).rows_range(j0, w);
        if self.has_bias {
            let bias = &self.bias(params)[j0..j0 + w];
            for i in 0..y.rows() {
                y.row_mut(i).copy_from_slice(bias);
            }
            matmul_serial(y, x, weight.t(), 1.0, 1.0);
        } else {
            matmul_serial(y, x, weight.t(), 1.0, 0.0);
        }
    }

    // dy is (B, out), x is (B, in); w is (out, in), rows i0..i0 + h of the full matrix.
    /// Weight gradient for the output features `i0..i0 + w.rows()`:
    /// `w = alpha · dyᵀ·x + beta · w` (alpha 1, beta 0 writes the gradient; alpha `-lr`,
    /// beta 1 applies an SGD step to the weights themselves).
    pub fn backward_weight_block(
        dy: MatRef<'_>,
        x: MatRef<'_>,
        w: MatMut<'_>,
        i0: usize,
        alpha: f32,
        beta: f32,
    ) {
        let h = w.rows();
        matmul_serial(w, dy.cols_range(i0, h).t(), x, alpha, beta);
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

    // dy is (B, out), weight is (out, in); dx is (B, in), columns j0..j0 + w of the full one.
    /// Input gradient on the input columns `j0..j0 + dx.cols()`: `dx = dy·W[:, j0..]`.
    pub fn backward_input_block(&self, params: &[f32], dy: MatRef<'_>, dx: MatMut<'_>, j0: usize) {
        let w = dx.cols();
        matmul_serial(dx, dy, self.weight(params).cols_range(j0, w), 1.0, 0.0);
    }
}

impl Layer for Linear {
    fn kind(&self) -> &'static str {
        "Linear"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        let bias = if self.has_bias { "" } else { ", bias=False" };
        let act = self
            .act
            .map_or(String::new(), |a| format!(" + {}", a.torch_name()));
        format!(
            "Linear({}, {}{bias}){act}",
            self.in_features, self.out_features
        )
    }

    fn workspace_len(&self, _cap: usize, _threads: usize) -> usize {
        // The bias gradient of a fused SGD step.
        self.out_features
    }

    fn flops(&self) -> u64 {
        let rows = numel(&self.shape) / self.out_features;
        (2 * rows * self.in_features * self.out_features) as u64
    }

    fn param_count(&self) -> usize {
        self.out_features * self.in_features + if self.has_bias { self.out_features } else { 0 }
    }

    /// PyTorch's default initialization: weight and bias uniform in ±1/sqrt(in_features)
    /// (`kaiming_uniform_(a=sqrt(5))` reduces to this bound), weight first, then bias.
    fn init(&self, params: &mut [f32], _buffers: &mut [f32], rng: &mut Rng) {
        let bound = 1.0 / (self.in_features as f32).sqrt();
        let n = self.out_features * self.in_features;
        for v in &mut params[self.weight..self.weight + n] {
            *v = rng.uniform(-bound, bound);
        }
        if self.has_bias {
            for v in &mut params[self.bias..self.bias + self.out_features] {
                *v = rng.uniform(-bound, bound);
            }
        }
    }

    // x is (R, in), R = batch x the leading dimensions; y is (R, out).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let rows = f.batch * numel(&self.shape) / self.out_features;
        let input =
            MatRef::new(&x[..rows * self.in_features], rows, self.in_features).expect("input fits");
        let out = MatMut::new(&mut y[..rows * self.out_features], rows, self.out_features)
            .expect("output fits");
        let params = f.params;
        f.pool
            .split_cols(out, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                self.forward_block(params, input, block.rb_mut(), j0);
                if let Some(act) = self.act {
                    for r in 0..block.rows() {
                        act.forward(block.row_mut(r));
                    }
                }
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
        let dy_mat = MatRef::new(dy, rows, outf).expect("gradient fits");
        let input = MatRef::new(&x[..rows * inf], rows, inf).expect("input fits");
        if let Some(dx) = dx {
            let dx = MatMut::new(&mut dx[..rows * inf], rows, inf).expect("input gradient fits");
            let params = &*b.params;
            b.pool
                .split_cols(dx, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                    self.backward_input_block(params, dy_mat, block.rb_mut(), j0);
                });
        }
        // dW (out, in) = dyᵀ (out, R) · x (R, in), one band of output features per thread;
        // with SGD, W = W - lr · dW in the same product.
        let (target, alpha, beta, sgd_lr) = match &mut b.sink {
            Sink::Grads(g) => (&mut **g, 1.0, 0.0, None),
            Sink::Sgd(lr) => (&mut *b.params, -*lr, 1.0, Some(*lr)),
        };
        let w = &mut target[self.weight..self.weight + outf * inf];
        let w = MatMut::new(w, outf, inf).expect("weight fits");
        b.pool
            .split_rows(w, 8, MIN_FEATURES_PER_THREAD, |i0, band| {
                Linear::backward_weight_block(dy_mat, input, band, i0, alpha, beta)
            });
        if self.has_bias {
            let bias = &mut target[self.bias..self.bias + outf];
            match sgd_lr {
                None => Linear::backward_bias(dy, rows, bias),
                Some(lr) => {
                    let g = &mut ws[..outf];
                    Linear::backward_bias(dy, rows, g);
                    bias.iter_mut()
                        .zip(g.iter())
                        .for_each(|(p, g)| *p -= lr * g);
                }
            }
        }
    }
}
