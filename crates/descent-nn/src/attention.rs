//! Causal multi-head self-attention: PyTorch's
//! `F.scaled_dot_product_attention(q, k, v, is_causal=True)` over heads, on a sequence's
//! concatenated queries, keys and values (the output of one `Linear(D, 3D)`, split as
//! `qkv.split(D, dim=-1)` and each viewed as `(heads, D / heads)`).
//!
//! Per sequence and head: `S = Q·Kᵀ / sqrt(d)`, the causal mask (position `i` sees `j <= i`),
//! `P = softmax(S)` row by row, `O = P·V`. The backward pass is the usual one through the
//! softmax: `dV = Pᵀ·dO`, `dP = dO·Vᵀ`, `dS = P ⊙ (dP - rowsum(P ⊙ dP))`, `dQ = dS·K / sqrt(d)`,
//! `dK = dSᵀ·Q / sqrt(d)`. `P` is kept from the forward pass (one `L x L` matrix per sequence
//! and head). Reference: Vaswani et al., "Attention Is All You Need" (2017); the layout is
//! nanoGPT's (karpathy/nanoGPT, `CausalSelfAttention`).

use descent_tensor::{matmul_serial, MatMut, MatRef};

use crate::layer::{Backward, Forward, Layer};
use crate::par::{images, Scratch};

/// Causal self-attention with `heads` heads on `(N, L, 3D)` inputs (queries, keys, values),
/// `(N, L, D)` outputs. It has no parameters: the projections are the Linear layers around it.
#[derive(Clone, Debug)]
pub struct CausalSelfAttention {
    /// Heads.
    pub heads: usize,
    /// Sequence length and model width.
    len: usize,
    width: usize,
    shape: Vec<usize>,
}

impl CausalSelfAttention {
    /// For `(L, 3D)` inputs; the caller has checked that `heads` divides `D`.
    pub fn new(input: &[usize], heads: usize) -> Self {
        let (len, width) = (input[0], input[1] / 3);
        Self {
            heads,
            len,
            width,
            shape: vec![len, width],
        }
    }

    fn head_dim(&self) -> usize {
        self.width / self.heads
    }

    fn scale(&self) -> f32 {
        1.0 / (self.head_dim() as f32).sqrt()
    }

    /// One sequence's queries, keys or values of head `h` (`which` 0, 1, 2) in `x`
    /// (`L x 3D`).
    fn part<'a>(&self, x: &'a [f32], which: usize, h: usize) -> MatRef<'a> {
        let off = which * self.width + h * self.head_dim();
        MatRef::strided(&x[off..], self.len, self.head_dim(), 3 * self.width, 1)
            .expect("the sequence holds its heads")
    }
}

/// Columns `off..off + w` of the `rows` rows of `x`, which are `x.len() / rows` apart.
fn cols(x: &mut [f32], off: usize, rows: usize, w: usize) -> MatMut<'_> {
    let stride = x.len() / rows;
    MatMut::strided(&mut x[off..], rows, w, stride, 1).expect("the columns fit the rows")
}

/// Row `i` of `s` (`n x n`) becomes the softmax of its first `i + 1` values; the rest zero.
fn causal_softmax(s: &mut [f32], n: usize) {
    for (i, row) in s.chunks_exact_mut(n).enumerate() {
        let (seen, masked) = row.split_at_mut(i + 1);
        let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let mut sum = 0.0;
        for v in seen.iter_mut() {
            *v = (*v - max).exp();
            sum += *v;
        }
        let inv = 1.0 / sum;
        seen.iter_mut().for_each(|v| *v *= inv);
        masked.fill(0.0);
    }
}

impl Layer for CausalSelfAttention {
    fn kind(&self) -> &'static str {
        "CausalSelfAttention"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        format!("CausalSelfAttention(heads={})", self.heads)
    }

    fn flops(&self) -> u64 {
        // Q·Kᵀ and P·V, each L x L x d per head.
        (4 * self.len * self.len * self.width) as u64
    }

    fn workspace_len(&self, cap: usize, threads: usize) -> usize {
        // P of every sequence and head, and a thread's dP.
        let ll = self.len * self.len;
        cap * self.heads * ll + threads * ll
    }

    // x is (B, L, 3D), y is (B, L, D); ws keeps P per (sequence, head).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (l, d, dh, hn) = (self.len, self.width, self.head_dim(), self.heads);
        let pairs = f.batch * hn;
        let parts = f.threads.min(pairs).max(1);
        let (probs, ys) = (Scratch::new(ws), Scratch::new(&mut y[..f.batch * l * d]));
        let scale = self.scale();
        f.pool.run(parts, |p| {
            let (start, end) = images(pairs, parts, p);
            for q in start..end {
                let (b, h) = (q / hn, q % hn);
                let xb = &x[b * l * 3 * d..(b + 1) * l * 3 * d];
                // SAFETY: pair q's P and its head's columns of sequence b are part p's alone.
                let (pm, yb) = unsafe { (probs.part(q * l * l, l * l), ys.part(b * l * d, l * d)) };
                let s = MatMut::new(pm, l, l).expect("fits");
                matmul_serial(s, self.part(xb, 0, h), self.part(xb, 1, h).t(), scale, 0.0);
                causal_softmax(pm, l);
                let o = MatMut::strided(&mut yb[h * dh..], l, dh, d, 1).expect("fits");
                matmul_serial(
                    o,
                    MatRef::new(pm, l, l).expect("fits"),
                    self.part(xb, 2, h),
                    1.0,
                    0.0,
                );
            }
        });
    }

    // dy is (B, L, D); dx is (B, L, 3D): the gradients of the queries, keys and values.
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let Some(dx) = dx else { return };
        let (l, d, dh, hn) = (self.len, self.width, self.head_dim(), self.heads);
        let pairs = b.batch * hn;
        let parts = b.threads.min(pairs).max(1);
        let (probs, grads) = ws.split_at_mut(b.cap * hn * l * l);
        let (probs, scratch) = (&*probs, Scratch::new(grads));
        let dxs = Scratch::new(&mut dx[..b.batch * l * 3 * d]);
        let dy = &*dy;
        let scale = self.scale();
        b.pool.run(parts, |p| {
            let (start, end) = images(pairs, parts, p);
            // SAFETY: part p's dP block is its own.
            let dp = unsafe { scratch.part(p * l * l, l * l) };
            for q in start..end {
                let (bi, h) = (q / hn, q % hn);
                let xb = &x[bi * l * 3 * d..(bi + 1) * l * 3 * d];
                let pm = &probs[q * l * l..(q + 1) * l * l];
                let pmat = MatRef::new(pm, l, l).expect("fits");
                let dyb = &dy[bi * l * d..(bi + 1) * l * d];
                let d_o = MatRef::strided(&dyb[h * dh..], l, dh, d, 1).expect("fits");
                // SAFETY: head h's columns of sequence bi's input gradient are part p's alone.
                let dxb = unsafe { dxs.part(bi * l * 3 * d, l * 3 * d) };
                let head = |which: usize| which * d + h * dh;
                // dV = Pᵀ·dO
                matmul_serial(cols(dxb, head(2), l, dh), pmat.t(), d_o, 1.0, 0.0);
                // dP = dO·Vᵀ, then dS = P ⊙ (dP - rowsum(P ⊙ dP)) in place
                matmul_serial(
                    MatMut::new(dp, l, l).expect("fits"),
                    d_o,
                    self.part(xb, 2, h).t(),
                    1.0,
                    0.0,
                );
                for (prow, drow) in pm.chunks_exact(l).zip(dp.chunks_exact_mut(l)) {
                    let c: f32 = prow.iter().zip(drow.iter()).map(|(p, g)| p * g).sum();
                    drow.iter_mut()
                        .zip(prow)
                        .for_each(|(g, p)| *g = p * (*g - c));
                }
                let ds = MatRef::new(dp, l, l).expect("fits");
                // dQ = dS·K · scale, dK = dSᵀ·Q · scale
                matmul_serial(
                    cols(dxb, head(0), l, dh),
                    ds,
                    self.part(xb, 1, h),
                    scale,
                    0.0,
                );
                let dk = cols(dxb, head(1), l, dh);
                matmul_serial(dk, ds.t(), self.part(xb, 0, h), scale, 0.0);
            }
        });
    }
}
