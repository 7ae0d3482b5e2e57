//! A residual block, `y = body(x) + shortcut(x)` (He et al. 2016), the shortcut the identity
//! or a chain of its own (a strided 1x1 convolution and BatchNorm in ResNets).

use descent_tensor::Rng;

use crate::chain::Chain;
use crate::layer::{mix_seed, numel, Backward, Forward, Layer};

/// A residual block over two chains from the same input.
#[derive(Debug)]
pub struct Residual {
    /// The main path; not empty.
    pub body: Chain,
    /// The shortcut; `None` is the identity (then the body keeps the input's shape).
    pub shortcut: Option<Chain>,
}

impl Residual {
    fn arenas(&self, cap: usize, threads: usize) -> (usize, usize) {
        (
            self.body.arena_len(cap, threads),
            self.shortcut
                .as_ref()
                .map_or(0, |s| s.arena_len(cap, threads)),
        )
    }
}

impl Layer for Residual {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn output_shape(&self) -> &[usize] {
        self.body.output_shape()
    }

    fn summary(&self) -> String {
        let list = |c: &Chain| {
            c.layers()
                .iter()
                .map(|l| l.summary())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let short = self.shortcut.as_ref().map_or("identity".to_string(), &list);
        format!("Residual([{}] + [{short}])", list(&self.body))
    }

    fn workspace_len(&self, cap: usize, threads: usize) -> usize {
        let (body, short) = self.arenas(cap, threads);
        // Plus the shortcut's input gradient, added to the body's.
        body + short + cap * numel(self.body.input_shape())
    }

    fn param_count(&self) -> usize {
        self.body.param_count() + self.shortcut.as_ref().map_or(0, |s| s.param_count())
    }

    fn flops(&self) -> u64 {
        self.body.flops() + self.shortcut.as_ref().map_or(0, |s| s.flops())
    }

    fn init(&self, params: &mut [f32], buffers: &mut [f32], rng: &mut Rng) {
        self.body.init(params, buffers, rng);
        if let Some(s) = &self.shortcut {
            s.init(params, buffers, rng);
        }
    }

    // x is (B, *input), y is (B, *output); ws holds both chains' arenas.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let (body_n, short_n) = self.arenas(f.cap, f.threads);
        let (body_ws, rest) = ws.split_at_mut(body_n);
        let short_ws = &mut rest[..short_n];
        let seed = f.seed;
        f.seed = mix_seed(seed, 0);
        self.body.forward(f, x, body_ws);
        let n = f.batch * numel(self.output_shape());
        let out = self.body.last_output(body_ws, f.batch, f.cap, f.threads);
        let short = match &self.shortcut {
            Some(s) => {
                f.seed = mix_seed(seed, 1);
                s.forward(f, x, short_ws);
                s.last_output(short_ws, f.batch, f.cap, f.threads)
            }
            None => &x[..n],
        };
        // y = body(x) + shortcut(x) in one pass.
        for ((y, o), s) in y[..n].iter_mut().zip(&out[..n]).zip(short) {
            *y = o + s;
        }
        f.seed = seed;
    }

    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        mut dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let (cap, threads, batch) = (b.cap, b.threads, b.batch);
        let (body_n, short_n) = self.arenas(cap, threads);
        let (body_ws, rest) = ws.split_at_mut(body_n);
        let (short_ws, tmp) = rest.split_at_mut(short_n);
        let n = batch * numel(self.output_shape());
        let m = batch * numel(self.body.input_shape());
        self.body
            .output_grad(body_ws, batch, cap, threads)
            .copy_from_slice(&dy[..n]);
        self.body.backward(b, x, body_ws, dx.as_deref_mut());
        match &self.shortcut {
            Some(s) => {
                s.output_grad(short_ws, batch, cap, threads)
                    .copy_from_slice(&dy[..n]);
                let tmp = &mut tmp[..m];
                s.backward(b, x, short_ws, dx.is_some().then_some(&mut *tmp));
                if let Some(dx) = dx {
                    dx[..m]
                        .iter_mut()
                        .zip(tmp.iter())
                        .for_each(|(d, t)| *d += t);
                }
            }
            None => {
                if let Some(dx) = dx {
                    dx[..m].iter_mut().zip(&dy[..n]).for_each(|(d, g)| *d += g);
                }
            }
        }
    }
}
