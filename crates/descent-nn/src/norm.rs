//! Normalization: PyTorch's `nn.BatchNorm1d` / `nn.BatchNorm2d` (running statistics as
//! buffers, train and eval modes) and `nn.LayerNorm`.
//!
//! Both keep the normalized input `x̂` and the inverse deviations from the forward pass; the
//! backward pass is the closed form `dx = invstd / M · (M·dx̂ - Σdx̂ - x̂·Σ(dx̂·x̂))` with
//! `dx̂ = dy·γ` (Ioffe & Szegedy 2015; Ba et al. 2016).

use descent_tensor::Rng;

use crate::layer::{numel, Backward, Forward, Layer};
use crate::par::{images, Scratch};
use crate::LayoutBuilder;

/// Batch normalization over `(N, C, *)` inputs: statistics per channel over the batch and
/// every position.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    /// Channels.
    pub channels: usize,
    /// Weight of the new batch's statistics in the running ones.
    pub momentum: f32,
    /// Added to the variance.
    pub eps: f32,
    /// Offsets of `weight` and `bias` (γ, β), when affine.
    pub affine: Option<(usize, usize)>,
    /// Offsets, among the buffers, of `running_mean`, `running_var`, `num_batches_tracked`.
    pub running: (usize, usize, usize),
    /// `BatchNorm1d` or `BatchNorm2d`.
    two_d: bool,
    shape: Vec<usize>,
}

impl BatchNorm {
    /// Declares the parameters and buffers under `name` for inputs of `input` shape
    /// (`[C]`, `[C, L]` or `[C, H, W]`).
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        momentum: f32,
        eps: f32,
        affine: bool,
    ) -> Self {
        let c = input[0];
        let q = |b: &LayoutBuilder, s: &str| b.qualify(&format!("{name}.{s}"));
        let affine = affine.then(|| {
            let w = b.param(q(b, "weight"), vec![c]);
            (w, b.param(q(b, "bias"), vec![c]))
        });
        let rm = b.buffer(q(b, "running_mean"), vec![c]);
        let rv = b.buffer(q(b, "running_var"), vec![c]);
        let nb = b.buffer(q(b, "num_batches_tracked"), vec![]);
        Self {
            channels: c,
            momentum,
            eps,
            affine,
            running: (rm, rv, nb),
            two_d: input.len() == 3,
            shape: input.to_vec(),
        }
    }

    /// Values per channel per example.
    fn spatial(&self) -> usize {
        numel(&self.shape[1..])
    }
}

impl Layer for BatchNorm {
    fn couples_rows(&self) -> bool {
        true
    }

    fn kind(&self) -> &'static str {
        if self.two_d {
            "BatchNorm2d"
        } else {
            "BatchNorm1d"
        }
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        format!("{}({})", self.kind(), self.channels)
    }

    fn workspace_len(&self, cap: usize, _threads: usize) -> usize {
        // x̂, then per channel: mean, invstd, and two gradient sums for a fused SGD step.
        cap * numel(&self.shape) + 4 * self.channels
    }

    fn param_count(&self) -> usize {
        self.affine.map_or(0, |_| 2 * self.channels)
    }

    /// γ = 1, β = 0, running mean 0, running variance 1, no batch seen.
    fn init(&self, params: &mut [f32], buffers: &mut [f32], _rng: &mut Rng) {
        let c = self.channels;
        if let Some((w, b)) = self.affine {
            params[w..w + c].fill(1.0);
            params[b..b + c].fill(0.0);
        }
        let (rm, rv, nb) = self.running;
        buffers[rm..rm + c].fill(0.0);
        buffers[rv..rv + c].fill(1.0);
        buffers[nb] = 0.0;
    }

    // x and y are (B, C, S); ws holds x̂ (B, C, S), then mean (C) and invstd (C).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (c, s, batch) = (self.channels, self.spatial(), f.batch);
        let (xhat, rest) = ws.split_at_mut(numel(&self.shape) * f.cap);
        let (mean, rest) = rest.split_at_mut(c);
        let invstd = &mut rest[..c];
        let (rm, rv, nb) = self.running;
        let m = (batch * s) as f64;
        if f.train {
            for ch in 0..c {
                let (mut sum, mut sq) = (0.0f64, 0.0f64);
                for b in 0..batch {
                    for &v in &x[(b * c + ch) * s..(b * c + ch + 1) * s] {
                        sum += v as f64;
                    }
                }
                let mu = sum / m;
                for b in 0..batch {
                    for &v in &x[(b * c + ch) * s..(b * c + ch + 1) * s] {
                        sq += (v as f64 - mu) * (v as f64 - mu);
                    }
                }
                let var = sq / m;
                mean[ch] = mu as f32;
                invstd[ch] = (1.0 / (var + self.eps as f64).sqrt()) as f32;
                if let Some(buf) = f.buffers_mut() {
                    let unbiased = if m > 1.0 { sq / (m - 1.0) } else { var };
                    let mo = self.momentum;
                    buf[rm + ch] = (1.0 - mo) * buf[rm + ch] + mo * mu as f32;
                    buf[rv + ch] = (1.0 - mo) * buf[rv + ch] + mo * unbiased as f32;
                }
            }
            if let Some(buf) = f.buffers_mut() {
                buf[nb] += 1.0;
            }
        } else {
            let buf = f.buffers();
            for ch in 0..c {
                mean[ch] = buf[rm + ch];
                invstd[ch] = 1.0 / (buf[rv + ch] + self.eps).sqrt();
            }
        }
        for b in 0..batch {
            for ch in 0..c {
                let r = (b * c + ch) * s..(b * c + ch + 1) * s;
                let (g, beta) = match self.affine {
                    Some((w, bo)) => (f.params[w + ch], f.params[bo + ch]),
                    None => (1.0, 0.0),
                };
                let (mu, is) = (mean[ch], invstd[ch]);
                for ((xh, yv), &xv) in xhat[r.clone()].iter_mut().zip(&mut y[r.clone()]).zip(&x[r])
                {
                    *xh = (xv - mu) * is;
                    *yv = *xh * g + beta;
                }
            }
        }
    }

    // dy and dx are (B, C, S). Training mode: the statistics depend on x.
    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let (c, s, batch) = (self.channels, self.spatial(), b.batch);
        let (xhat, rest) = ws.split_at_mut(numel(&self.shape) * b.cap);
        let (_mean, rest) = rest.split_at_mut(c);
        let (invstd, rest) = rest.split_at_mut(c);
        let (sum_dy, sum_dyx) = rest.split_at_mut(c);
        let sum_dyx = &mut sum_dyx[..c];
        for ch in 0..c {
            let (mut a, mut bsum) = (0.0f64, 0.0f64);
            for n in 0..batch {
                let r = (n * c + ch) * s..(n * c + ch + 1) * s;
                for (&g, &xh) in dy[r.clone()].iter().zip(&xhat[r]) {
                    a += g as f64;
                    bsum += (g * xh) as f64;
                }
            }
            sum_dy[ch] = a as f32;
            sum_dyx[ch] = bsum as f32;
        }
        if let Some(dx) = dx {
            let m = (batch * s) as f32;
            for n in 0..batch {
                for ch in 0..c {
                    let r = (n * c + ch) * s..(n * c + ch + 1) * s;
                    let g = self.affine.map_or(1.0, |(w, _)| b.params[w + ch]);
                    // With dx̂ = γ·dy: Σdx̂ = γ·Σdy and Σdx̂·x̂ = γ·Σdy·x̂.
                    let k = g * invstd[ch] / m;
                    let (sd, sdx) = (sum_dy[ch], sum_dyx[ch]);
                    for ((d, &gy), &xh) in
                        dx[r.clone()].iter_mut().zip(&dy[r.clone()]).zip(&xhat[r])
                    {
                        *d = k * (m * gy - sd - xh * sdx);
                    }
                }
            }
        }
        if let Some((w, bo)) = self.affine {
            // γ's gradient is Σdy·x̂, β's is Σdy.
            b.put(w, sum_dyx);
            b.put(bo, sum_dy);
        }
    }
}

/// Layer normalization over the last `normalized` values of each example (PyTorch's
/// `nn.LayerNorm(normalized_shape)`, with `elementwise_affine`).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    /// Values normalized together (the product of `normalized_shape`).
    pub normalized: usize,
    /// Added to the variance.
    pub eps: f32,
    /// Offsets of `weight` and `bias`, when affine.
    pub affine: Option<(usize, usize)>,
    shape: Vec<usize>,
}

impl LayerNorm {
    /// Declares `name.weight` and `name.bias` (shape `normalized_shape`, the last dimensions
    /// of `input`).
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        normalized_shape: &[usize],
        eps: f32,
        affine: bool,
    ) -> Self {
        let affine = affine.then(|| {
            let w = b.param(
                b.qualify(&format!("{name}.weight")),
                normalized_shape.to_vec(),
            );
            (
                w,
                b.param(
                    b.qualify(&format!("{name}.bias")),
                    normalized_shape.to_vec(),
                ),
            )
        });
        Self {
            normalized: numel(normalized_shape),
            eps,
            affine,
            shape: input.to_vec(),
        }
    }
}

impl Layer for LayerNorm {
    fn kind(&self) -> &'static str {
        "LayerNorm"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn workspace_len(&self, cap: usize, threads: usize) -> usize {
        // x̂, invstd per row, and each thread's γ and β gradients.
        let rows = cap * numel(&self.shape) / self.normalized;
        cap * numel(&self.shape) + rows + threads * 2 * self.normalized
    }

    fn param_count(&self) -> usize {
        self.affine.map_or(0, |_| 2 * self.normalized)
    }

    fn init(&self, params: &mut [f32], _buffers: &mut [f32], _rng: &mut Rng) {
        if let Some((w, b)) = self.affine {
            params[w..w + self.normalized].fill(1.0);
            params[b..b + self.normalized].fill(0.0);
        }
    }

    // x and y are (R, D) with R = B x the leading dimensions, D = `normalized`; rows over
    // the threads.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let d = self.normalized;
        let n = f.batch * numel(&self.shape);
        let rows = n / d;
        let (xhat, rest) = ws.split_at_mut(f.cap * numel(&self.shape));
        let parts = f.threads.min(rows).max(1);
        let (xh_s, is_s, y_s) = (
            Scratch::new(&mut xhat[..n]),
            Scratch::new(&mut rest[..rows]),
            Scratch::new(&mut y[..n]),
        );
        let (eps, affine, params) = (self.eps, self.affine, f.params);
        f.pool.run(parts, |p| {
            let (r0, r1) = images(rows, parts, p);
            // SAFETY: rows r0..r1 of every buffer belong to part p alone.
            let (xh, is, yv) = unsafe {
                (
                    xh_s.part(r0 * d, (r1 - r0) * d),
                    is_s.part(r0, r1 - r0),
                    y_s.part(r0 * d, (r1 - r0) * d),
                )
            };
            let affine = affine.map(|(w, b)| (&params[w..w + d], &params[b..b + d]));
            layer_norm_rows(&x[r0 * d..r1 * d], xh, is, yv, affine, d, eps);
        });
    }

    // dy is (R, D): dγ = Σ dy·x̂, dβ = Σ dy (per thread, then in order);
    // dx = invstd / D · (D dy γ - Σ dy γ - x̂ Σ dy γ x̂).
    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let d = self.normalized;
        let n = b.batch * numel(&self.shape);
        let rows = n / d;
        let (xhat, rest) = ws.split_at_mut(b.cap * numel(&self.shape));
        let rows_cap = b.cap * numel(&self.shape) / d;
        let (invstd, rest) = rest.split_at_mut(rows_cap);
        let parts = b.threads.min(rows).max(1);
        let (xhat, invstd, dy) = (&xhat[..n], &invstd[..rows], &dy[..n]);
        let grads = Scratch::new(&mut rest[..parts * 2 * d]);
        let dxs = dx.map(|dx| Scratch::new(&mut dx[..n]));
        let (affine, params) = (self.affine, &*b.params);
        b.pool.run(parts, |p| {
            let (r0, r1) = images(rows, parts, p);
            // SAFETY: part p's gradient block and rows r0..r1 of dx are its own.
            let gwb = unsafe { grads.part(p * 2 * d, 2 * d) };
            gwb.fill(0.0);
            let dxp = dxs.map(|s| unsafe { s.part(r0 * d, (r1 - r0) * d) });
            let gamma = affine.map(|(w, _)| &params[w..w + d]);
            let (dy, xh) = (&dy[r0 * d..r1 * d], &xhat[r0 * d..r1 * d]);
            layer_norm_backward_rows(dy, xh, &invstd[r0..r1], gwb, dxp, gamma, d);
        });
        let (first, others) = rest[..parts * 2 * d].split_at_mut(2 * d);
        for p in 1..parts {
            let o = &others[(p - 1) * 2 * d..p * 2 * d];
            first.iter_mut().zip(o).for_each(|(a, b)| *a += b);
        }
        if let Some((w, bo)) = self.affine {
            let (gw, gb) = first.split_at(d);
            b.put(w, gw);
            b.put(bo, gb);
        }
    }
}

descent_tensor::twice!(
    /// LayerNorm's forward pass on whole rows of `d` values: `xh = (x - μ) · invstd`,
    /// `is[row] = invstd = 1 / sqrt(var + eps)`, `y = xh · γ + β` (or `xh`).
    layer_norm_rows,
    layer_norm_rows_plain,
    layer_norm_rows_avx512,
    (
        x: &[f32],
        xh: &mut [f32],
        is: &mut [f32],
        y: &mut [f32],
        affine: Option<(&[f32], &[f32])>,
        d: usize,
        eps: f32
    ),
    {
        let rows = x.chunks_exact(d).zip(xh.chunks_exact_mut(d)).zip(y.chunks_exact_mut(d));
        for (((xr, hr), yr), inv_out) in rows.zip(is.iter_mut()) {
            let mu = descent_tensor::sum(xr) / d as f32;
            hr.iter_mut().zip(xr).for_each(|(h, &v)| *h = v - mu);
            // The same 16-lane sum as the mean's, over the squares (two passes: no
            // cancellation in the variance).
            let mut sq = [0.0f32; 16];
            for c in hr.chunks(16) {
                for (a, v) in sq.iter_mut().zip(c) {
                    *a += v * v;
                }
            }
            let var = descent_tensor::sum(&sq) / d as f32;
            let inv = 1.0 / (var + eps).sqrt();
            *inv_out = inv;
            hr.iter_mut().for_each(|h| *h *= inv);
            match affine {
                Some((g, bb)) => {
                    for (((y, &h), &g), &bb) in yr.iter_mut().zip(hr.iter()).zip(g).zip(bb) {
                        *y = h * g + bb;
                    }
                }
                None => yr.copy_from_slice(hr),
            }
        }
    }
);

descent_tensor::twice!(
    /// LayerNorm's backward pass on whole rows of `d` values: adds `dy · x̂` and `dy` to
    /// the two halves of `gwb` (γ's and β's gradients, `d` each), and where `dx` is given writes
    /// `dx = invstd / D · (D dx̂ - Σ dx̂ - x̂ Σ dx̂ x̂)` with `dx̂ = dy γ` (or `dy`).
    layer_norm_backward_rows,
    layer_norm_backward_rows_plain,
    layer_norm_backward_rows_avx512,
    (
        dy: &[f32],
        xhat: &[f32],
        invstd: &[f32],
        gwb: &mut [f32],
        dx: Option<&mut [f32]>,
        gamma: Option<&[f32]>,
        d: usize
    ),
    {
        let df = d as f32;
        let (gw, gb) = gwb.split_at_mut(d);
        let mut dx = dx;
        for (k, (g, xh)) in dy.chunks_exact(d).zip(xhat.chunks_exact(d)).enumerate() {
            for i in 0..d {
                gw[i] += g[i] * xh[i];
                gb[i] += g[i];
            }
            let Some(dx) = dx.as_deref_mut() else { continue };
            let dxr = &mut dx[k * d..(k + 1) * d];
            // dx̂ = dy γ, into dx first.
            match gamma {
                Some(gm) => dxr.iter_mut().zip(g).zip(gm).for_each(|((o, g), m)| *o = g * m),
                None => dxr.copy_from_slice(g),
            }
            let s1 = descent_tensor::sum(dxr);
            let mut prod = [0.0f32; 16];
            for (c, h) in dxr.chunks(16).zip(xh.chunks(16)) {
                for ((a, v), h) in prod.iter_mut().zip(c).zip(h) {
                    *a += v * h;
                }
            }
            let s2 = descent_tensor::sum(&prod);
            let kf = invstd[k] / df;
            for (o, &h) in dxr.iter_mut().zip(xh) {
                *o = kf * (df * *o - s1 - h * s2);
            }
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// LayerNorm's row loops compiled for AVX-512 give the plain loops' bits, with and without
    /// the affine parameters, on a width of whole vectors and an odd one.
    #[test]
    fn row_loops_give_the_same_bits_on_every_build() {
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        let mut rng = Rng::new(11);
        for d in [128, 37] {
            let rows = 5;
            let mut vals =
                |n: usize| -> Vec<f32> { (0..n).map(|_| rng.uniform(-3.0, 3.0)).collect() };
            let (x, dy, gamma, beta) = (vals(rows * d), vals(rows * d), vals(d), vals(d));
            for affine in [Some((&gamma[..], &beta[..])), None] {
                let mut out = Vec::new();
                for plain in [false, true] {
                    let (mut xh, mut is, mut y) =
                        (vec![0.0; rows * d], vec![0.0; rows], vec![0.0; rows * d]);
                    let (mut gwb, mut dx) = (vec![0.0; 2 * d], vec![0.0; rows * d]);
                    let gm = affine.map(|(g, _)| g);
                    if plain {
                        layer_norm_rows_plain(&x, &mut xh, &mut is, &mut y, affine, d, 1e-5);
                        layer_norm_backward_rows_plain(
                            &dy,
                            &xh,
                            &is,
                            &mut gwb,
                            Some(&mut dx),
                            gm,
                            d,
                        );
                    } else {
                        layer_norm_rows(&x, &mut xh, &mut is, &mut y, affine, d, 1e-5);
                        layer_norm_backward_rows(&dy, &xh, &is, &mut gwb, Some(&mut dx), gm, d);
                    }
                    out.push([xh, is, y, gwb, dx].map(|v| bits(&v)));
                }
                assert!(out[0] == out[1], "d {d}, affine {}", affine.is_some());
            }
        }
    }
}
