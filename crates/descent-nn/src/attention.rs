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

use descent_tensor::{matmul_small, transpose, MatMut, MatRef};

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

    /// A thread's scratch: one `L x L` dP and a head's Kᵀ and Vᵀ (`d x L` each).
    fn thread_len(&self) -> usize {
        self.len * self.len + 2 * self.head_dim() * self.len
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
        // P of every sequence and head; per thread, a dP and a head's Kᵀ and Vᵀ.
        cap * self.heads * self.len * self.len + threads * self.thread_len()
    }

    // x is (B, L, 3D), y is (B, L, D); ws keeps P per (sequence, head). Rows in blocks of
    // BLOCK: block [r0, r1) sees keys [0, r1) only, so the products skip most of the zeros
    // above the diagonal. The products are small and in cache (a head's Q, K and V are
    // L x d): the unpacked kernel, with Kᵀ copied out once per head so that B's rows are
    // contiguous.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (l, d, dh, hn) = (self.len, self.width, self.head_dim(), self.heads);
        let pairs = f.batch * hn;
        let parts = f.threads.min(pairs).max(1);
        let (probs, scratch) = ws.split_at_mut(f.cap * hn * l * l);
        let (probs, scratch) = (Scratch::new(probs), Scratch::new(scratch));
        let ys = Scratch::new(&mut y[..f.batch * l * d]);
        let (scale, per) = (self.scale(), self.thread_len());
        f.pool.run(parts, |p| {
            let (start, end) = images(pairs, parts, p);
            // SAFETY: part p's scratch is its own.
            let kt = unsafe { &mut scratch.part(p * per, per)[l * l..l * l + dh * l] };
            for q in start..end {
                let (b, h) = (q / hn, q % hn);
                let xb = &x[b * l * 3 * d..(b + 1) * l * 3 * d];
                // SAFETY: pair q's P and its head's columns of sequence b are part p's alone.
                let (pm, yb) = unsafe { (probs.part(q * l * l, l * l), ys.part(b * l * d, l * d)) };
                let (qm, km, vm) = (
                    self.part(xb, 0, h),
                    self.part(xb, 1, h),
                    self.part(xb, 2, h),
                );
                transpose(MatMut::new(kt, dh, l).expect("sized"), km);
                let kt = MatRef::new(kt, dh, l).expect("sized");
                for r0 in (0..l).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(l);
                    let s = block(pm, l, r0, r1, r1);
                    let qr = qm.rows_range(r0, r1 - r0);
                    matmul_small(s, qr, kt.cols_range(0, r1), scale, 0.0);
                }
                descent_tensor::vmath::causal_softmax(pm, l);
                for r0 in (0..l).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(l);
                    let o = cols(&mut yb[r0 * d..r1 * d], h * dh, r1 - r0, dh);
                    let pr = MatRef::strided(&pm[r0 * l..], r1 - r0, r1, l, 1).expect("fits");
                    matmul_small(o, pr, vm.rows_range(0, r1), 1.0, 0.0);
                }
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
        let (scale, per) = (self.scale(), self.thread_len());
        b.pool.run(parts, |p| {
            let (start, end) = images(pairs, parts, p);
            // SAFETY: part p's dP block and Vᵀ are its own.
            let (dp, vt) = unsafe { scratch.part(p * per, per).split_at_mut(l * l) };
            let vt = &mut vt[dh * l..2 * dh * l];
            for q in start..end {
                let (bi, h) = (q / hn, q % hn);
                let xb = &x[bi * l * 3 * d..(bi + 1) * l * 3 * d];
                let (qm, km, vm) = (
                    self.part(xb, 0, h),
                    self.part(xb, 1, h),
                    self.part(xb, 2, h),
                );
                transpose(MatMut::new(vt, dh, l).expect("sized"), vm);
                let vt = MatRef::new(vt, dh, l).expect("sized");
                let pm = &probs[q * l * l..(q + 1) * l * l];
                let dyb = &dy[bi * l * d..(bi + 1) * l * d];
                let d_o = MatRef::strided(&dyb[h * dh..], l, dh, d, 1).expect("fits");
                // SAFETY: head h's columns of sequence bi's input gradient are part p's alone.
                let dxb = unsafe { dxs.part(bi * l * 3 * d, l * 3 * d) };
                let head = |which: usize| which * d + h * dh;
                // dP = dO·Vᵀ on the blocks at or below the diagonal, then
                // dS = P ⊙ (dP - rowsum(P ⊙ dP)) in place (zero above the diagonal).
                for r0 in (0..l).step_by(BLOCK) {
                    let r1 = (r0 + BLOCK).min(l);
                    let g = block(dp, l, r0, r1, r1);
                    let dor = d_o.rows_range(r0, r1 - r0);
                    matmul_small(g, dor, vt.cols_range(0, r1), 1.0, 0.0);
                }
                descent_tensor::vmath::causal_softmax_backward(pm, dp, l);
                for c0 in (0..l).step_by(BLOCK) {
                    let c1 = (c0 + BLOCK).min(l);
                    // Key block [c0, c1) is seen by the rows from c0 on.
                    // dV = Pᵀ·dO, dK = dSᵀ·Q · scale
                    let pcol = rows(pm, l, c0, l, l).cols_range(c0, c1 - c0);
                    let dv = cols(&mut dxb[c0 * 3 * d..c1 * 3 * d], head(2), c1 - c0, dh);
                    matmul_small(dv, pcol.t(), d_o.rows_range(c0, l - c0), 1.0, 0.0);
                    let scol = rows(dp, l, c0, l, l).cols_range(c0, c1 - c0);
                    let dk = cols(&mut dxb[c0 * 3 * d..c1 * 3 * d], head(1), c1 - c0, dh);
                    matmul_small(dk, scol.t(), qm.rows_range(c0, l - c0), scale, 0.0);
                    // dQ = dS·K · scale for the query block [c0, c1), keys [0, c1).
                    let dq = cols(&mut dxb[c0 * 3 * d..c1 * 3 * d], head(0), c1 - c0, dh);
                    let ds = rows(dp, l, c0, c1, c1);
                    matmul_small(dq, ds, km.rows_range(0, c1), scale, 0.0);
                }
            }
        });
    }
}

/// Rows of a causal pass: attention is computed in blocks of this many rows.
const BLOCK: usize = 32;

/// Rows `r0..r1`, columns `0..c1` of the `l x l` matrix `m`, read only.
fn rows(m: &[f32], l: usize, r0: usize, r1: usize, c1: usize) -> MatRef<'_> {
    MatRef::strided(&m[r0 * l..], r1 - r0, c1, l, 1).expect("the block fits")
}

/// Rows `r0..r1`, columns `0..c1` of the `l x l` matrix `m`.
fn block(m: &mut [f32], l: usize, r0: usize, r1: usize, c1: usize) -> MatMut<'_> {
    MatMut::strided(&mut m[r0 * l..], r1 - r0, c1, l, 1).expect("the block fits")
}

/// The direct loops of causal attention in f64 on one batch of `n` sequences of `l` positions
/// (`x` is `n x l x 3d`): the reference the blocked passes are tested against.
#[cfg(test)]
fn attention_naive(x: &[f32], n: usize, l: usize, d: usize, heads: usize) -> Vec<f64> {
    let dh = d / heads;
    let scale = 1.0 / (dh as f64).sqrt();
    let at = |b: usize, t: usize, c: usize| x[(b * l + t) * 3 * d + c] as f64;
    let mut y = vec![0.0; n * l * d];
    for b in 0..n {
        for h in 0..heads {
            for i in 0..l {
                let s: Vec<f64> = (0..=i)
                    .map(|j| {
                        (0..dh)
                            .map(|c| at(b, i, h * dh + c) * at(b, j, d + h * dh + c))
                            .sum::<f64>()
                            * scale
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..dh {
                    y[(b * l + i) * d + h * dh + c] = (0..=i)
                        .map(|j| e[j] / z * at(b, j, 2 * d + h * dh + c))
                        .sum();
                }
            }
        }
    }
    y
}

#[cfg(test)]
mod tests {
    use descent_tensor::{Pool, Rng};

    use super::*;
    use crate::layer::Sink;

    /// Several row blocks (and a partial last one): the output against the direct loops, and
    /// the input gradient of `sum(y · r)` against central differences of them, on one and two
    /// threads.
    #[test]
    fn blocked_passes_match_the_direct_loops() {
        let (n, l, d, heads) = (2, 70, 8, 2);
        let layer = CausalSelfAttention::new(&[l, 3 * d], heads);
        let mut rng = Rng::new(2);
        let x: Vec<f32> = (0..n * l * 3 * d).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let r: Vec<f32> = (0..n * l * d).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let want = attention_naive(&x, n, l, d, heads);
        for threads in [1, 2] {
            let pool = Pool::new(threads).unwrap();
            let mut ws = vec![0.0; layer.workspace_len(n, threads)];
            let mut y = vec![0.0; n * l * d];
            let mut f = Forward::eval(&pool, &[], &[]);
            (f.batch, f.cap, f.threads) = (n, n, threads);
            layer.forward(&mut f, &x, &mut y, &mut ws);
            for (a, b) in y.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-5, "{a} vs {b}");
            }
            let (mut params, mut grads) = (vec![], vec![]);
            let mut dx = vec![f32::NAN; x.len()];
            let mut dy = r.clone();
            let mut b = Backward {
                pool: &pool,
                batch: n,
                cap: n,
                threads,
                params: &mut params,
                sink: Sink::Grads(&mut grads),
                buffers: &[],
                times: None,
                seed: 0,
                scratch: Vec::new(),
            };
            layer.backward(&mut b, &x, &y, &mut dy, Some(&mut dx), &mut ws);
            // A spread of inputs: queries, keys and values of early and late positions.
            for k in (0..x.len()).step_by(37) {
                let f = |v: f32| {
                    let mut xp = x.clone();
                    xp[k] = v;
                    let y = attention_naive(&xp, n, l, d, heads);
                    y.iter().zip(&r).map(|(y, r)| y * *r as f64).sum::<f64>()
                };
                let e = 1e-3;
                let num = (f(x[k] + e) - f(x[k] - e)) / (2.0 * e as f64);
                assert!(
                    (dx[k] as f64 - num).abs() < 1e-4 * (1.0 + num.abs()),
                    "dx[{k}] {} vs {num}",
                    dx[k]
                );
            }
        }
    }
}
