//! The fully connected layer `y = x·Wᵀ + b`, PyTorch's `nn.Linear`.

use descent_tensor::{matmul_serial, MatMut, MatRef, Rng};

/// A fully connected layer whose weight (`out x in`, row-major) and bias (`out`) live in a
/// flat parameter buffer at the recorded offsets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Linear {
    /// Input features.
    pub in_features: usize,
    /// Output features.
    pub out_features: usize,
    /// Offset of the weight in the flat buffer.
    pub weight: usize,
    /// Offset of the bias in the flat buffer.
    pub bias: usize,
}

impl Linear {
    /// The weight, `out x in` row-major, as a view into `params`.
    pub fn weight<'a>(&self, params: &'a [f32]) -> MatRef<'a> {
        let w = &params[self.weight..self.weight + self.out_features * self.in_features];
        MatRef::new(w, self.out_features, self.in_features).expect("weight fits its layout")
    }

    /// The bias as a slice of `params`.
    pub fn bias<'a>(&self, params: &'a [f32]) -> &'a [f32] {
        &params[self.bias..self.bias + self.out_features]
    }

    /// PyTorch's default initialization: weight and bias uniform in ±1/sqrt(in_features)
    /// (`kaiming_uniform_(a=sqrt(5))` reduces to this bound), weight first, then bias.
    pub fn init(&self, params: &mut [f32], rng: &mut Rng) {
        let bound = 1.0 / (self.in_features as f32).sqrt();
        let n = self.out_features * self.in_features;
        for v in &mut params[self.weight..self.weight + n] {
            *v = rng.uniform(-bound, bound);
        }
        for v in &mut params[self.bias..self.bias + self.out_features] {
            *v = rng.uniform(-bound, bound);
        }
    }

    // x is (B, in), weight is (out, in), bias is (out); y is (B, out).
    // `y` may be a block of columns j0..j0 + w of the full output: it gets those features.
    /// Forward on the output columns `j0..j0 + y.cols()`: `y = x·W[j0..]ᵀ + b[j0..]`.
    /// `y`'s rows must be contiguous (column stride 1).
    pub fn forward_block(&self, params: &[f32], x: MatRef<'_>, mut y: MatMut<'_>, j0: usize) {
        let w = y.cols();
        let bias = &self.bias(params)[j0..j0 + w];
        for i in 0..y.rows() {
            y.row_mut(i).copy_from_slice(bias);
        }
        let weight = self.weight(params).rows_range(j0, w);
        matmul_serial(y, x, weight.t(), 1.0, 1.0);
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
