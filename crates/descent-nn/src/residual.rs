//! A residual block, `y = body(x) + shortcut(x)` (He et al. 2016), the shortcut the identity
//! or a chain of its own (a strided 1x1 convolution and BatchNorm in ResNets).

use descent_tensor::Rng;

use crate::chain::Chain;
use crate::layer::{mix_seed, numel, Backward, Forward, Layer};

/// Values per thread below which the element-wise sums and copies are not split.
const SPLIT_MIN: usize = 1 << 14;

/// A residual block over two chains from the same input.
///
/// With recomputation on ([`Layer::set_recompute`]) the body's activations live in the
/// model's shared scratch instead of the block's own workspace: the forward pass keeps only
/// the block's output (its input is the layer before's), and the backward pass runs the body
/// forward again from the input, with the same random streams and parameters, before its
/// backward pass. One body's activations are held at a time instead of every block's.
#[derive(Debug)]
pub struct Residual {
    /// The main path; not empty.
    pub body: Chain,
    /// The shortcut; `None` is the identity (then the body keeps the input's shape).
    pub shortcut: Option<Chain>,
    recompute: bool,
}

impl Residual {
    /// `y = body(x) + shortcut(x)` (`None`: the identity), keeping its activations.
    pub fn new(body: Chain, shortcut: Option<Chain>) -> Self {
        Self {
            body,
            shortcut,
            recompute: false,
        }
    }

    /// Whether the body runs again in the backward pass instead of keeping its activations.
    pub fn recomputes(&self) -> bool {
        self.recompute
    }

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
        let body = if self.recompute { 0 } else { body };
        // Plus the shortcut's input gradient, added to the body's.
        body + short + cap * numel(self.body.input_shape())
    }

    fn scratch_len(&self, cap: usize, threads: usize) -> usize {
        match self.recompute {
            true => self.body.arena_len(cap, threads),
            false => 0,
        }
    }

    fn set_recompute(&mut self, on: bool) -> usize {
        // Only the block itself, not blocks nested in it: the body's layers run without
        // the scratch it takes.
        let changed = self.recompute != on;
        self.recompute = on;
        usize::from(changed)
    }

    fn couples_rows(&self) -> bool {
        self.body.couples_rows() || self.shortcut.as_ref().is_some_and(Chain::couples_rows)
    }

    fn set_precision(&mut self, precision: descent_tensor::Precision) -> usize {
        self.body.set_precision(precision)
            + self
                .shortcut
                .as_mut()
                .map_or(0, |s| s.set_precision(precision))
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
        let mut scratch = match self.recompute {
            true => std::mem::take(&mut f.scratch),
            false => Vec::new(),
        };
        let (body_ws, short_ws) = if self.recompute {
            (&mut scratch[..body_n], &mut ws[..short_n])
        } else {
            let (body, rest) = ws.split_at_mut(body_n);
            (body, &mut rest[..short_n])
        };
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
        f.pool.split_slice(&mut y[..n], 16, SPLIT_MIN, |off, y| {
            let r = off..off + y.len();
            for ((y, o), s) in y.iter_mut().zip(&out[r.clone()]).zip(&short[r]) {
                *y = o + s;
            }
        });
        f.seed = seed;
        if self.recompute {
            f.scratch = scratch;
        }
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
        let mut scratch = match self.recompute {
            true => std::mem::take(&mut b.scratch),
            false => Vec::new(),
        };
        let (body_ws, short_ws, tmp) = if self.recompute {
            let (short, tmp) = ws.split_at_mut(short_n);
            (&mut scratch[..body_n], short, tmp)
        } else {
            let (body, rest) = ws.split_at_mut(body_n);
            let (short, tmp) = rest.split_at_mut(short_n);
            (body, short, tmp)
        };
        let seed = b.seed;
        if self.recompute {
            // The body's forward pass again, as it ran: the same parameters (no layer of
            // this block has been updated yet), random streams and batch statistics.
            let mut f = Forward::recompute(b.pool, b.params, b.buffers);
            (f.batch, f.cap, f.threads, f.seed) = (batch, cap, threads, mix_seed(seed, 0));
            self.body.forward(&mut f, x, body_ws);
        }
        let n = batch * numel(self.output_shape());
        let m = batch * numel(self.body.input_shape());
        let (pool, dy_n) = (b.pool, &dy[..n]);
        pool.split_slice(
            self.body.output_grad(body_ws, batch, cap, threads),
            16,
            SPLIT_MIN,
            |off, g| g.copy_from_slice(&dy_n[off..off + g.len()]),
        );
        b.seed = mix_seed(seed, 0);
        self.body.backward(b, x, body_ws, dx.as_deref_mut());
        b.seed = seed;
        if self.recompute {
            b.scratch = scratch;
        }
        match &self.shortcut {
            Some(s) => {
                s.output_grad(short_ws, batch, cap, threads)
                    .copy_from_slice(&dy[..n]);
                let tmp = &mut tmp[..m];
                b.seed = mix_seed(seed, 1);
                s.backward(b, x, short_ws, dx.is_some().then_some(&mut *tmp));
                b.seed = seed;
                if let Some(dx) = dx {
                    dx[..m]
                        .iter_mut()
                        .zip(tmp.iter())
                        .for_each(|(d, t)| *d += t);
                }
            }
            None => {
                if let Some(dx) = dx {
                    let dy = &dy[..n];
                    b.pool.split_slice(&mut dx[..m], 16, SPLIT_MIN, |off, d| {
                        let g = &dy[off..off + d.len()];
                        d.iter_mut().zip(g).for_each(|(d, g)| *d += g);
                    });
                }
            }
        }
    }
}
