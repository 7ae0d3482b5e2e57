//! Dropout (Srivastava et al. 2014; PyTorch's `nn.Dropout` and `nn.Dropout2d`) and
//! `nn.Flatten`.

use descent_tensor::Rng;

use crate::layer::{mix_seed, numel, Backward, Forward, Layer};
use crate::par::{images, Scratch};

/// Mask entries drawn from one random stream: the masks are the same on any number of
/// threads, since chunks, not threads, own the streams.
const CHUNK: usize = 4096;

/// In training, zeroes each value (or, with `channels`, each whole channel of an `(N, C, ...)`
/// input) with probability `p` and scales the rest by `1 / (1 - p)`; in evaluation, passes
/// values through. Masks come from the step's seed, one stream per chunk of 4096 entries:
/// the same on any number of threads and after a resume.
#[derive(Clone, Debug)]
pub struct Dropout {
    /// Probability of zeroing.
    pub p: f32,
    /// Drop whole channels (`Dropout2d`) instead of single values.
    pub channels: bool,
    shape: Vec<usize>,
}

impl Dropout {
    /// Dropout of probability `p` on inputs of `shape`.
    pub fn new(p: f32, channels: bool, shape: Vec<usize>) -> Self {
        Self { p, channels, shape }
    }

    /// Values per mask entry: the channel's size for `Dropout2d`, else 1.
    fn group(&self) -> usize {
        match self.channels {
            true => numel(&self.shape[1..]),
            false => 1,
        }
    }
}

impl Layer for Dropout {
    fn kind(&self) -> &'static str {
        if self.channels {
            "Dropout2d"
        } else {
            "Dropout"
        }
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        format!("{}(p={})", self.kind(), self.p)
    }

    fn workspace_len(&self, cap: usize, _threads: usize) -> usize {
        // The scale of each value (0 or 1 / (1 - p)), per mask entry.
        cap * numel(&self.shape) / self.group()
    }

    // x and y are (B, *shape); ws holds the mask.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]) {
        let n = f.batch * numel(&self.shape);
        if !f.train || self.p == 0.0 {
            y[..n].copy_from_slice(&x[..n]);
            return;
        }
        let group = self.group();
        let entries = n / group;
        let keep = 1.0 / (1.0 - self.p);
        // Dropped when the top 24 bits of a draw fall below p · 2^24 (uniform < p).
        let threshold = (self.p as f64 * (1u64 << 24) as f64) as u64;
        let chunks = entries.div_ceil(CHUNK);
        let parts = f.threads.min(chunks).max(1);
        let (masks, ys) = (Scratch::new(&mut ws[..entries]), Scratch::new(&mut y[..n]));
        let seed = f.seed;
        f.pool.run(parts, |p| {
            let (c0, c1) = images(chunks, parts, p);
            for c in c0..c1 {
                let (e0, e1) = (c * CHUNK, ((c + 1) * CHUNK).min(entries));
                // SAFETY: chunk c belongs to part p alone, in the mask and in the output.
                let (mask, out) = unsafe {
                    (
                        masks.part(e0, e1 - e0),
                        ys.part(e0 * group, (e1 - e0) * group),
                    )
                };
                let mut rng = Rng::new(mix_seed(seed, c));
                for m in mask.iter_mut() {
                    *m = if (rng.next_u64() >> 40) < threshold {
                        0.0
                    } else {
                        keep
                    };
                }
                let xs = &x[e0 * group..e1 * group];
                for ((y, x), &m) in out
                    .chunks_exact_mut(group)
                    .zip(xs.chunks_exact(group))
                    .zip(mask.iter())
                {
                    y.iter_mut().zip(x).for_each(|(y, x)| *y = x * m);
                }
            }
        });
    }

    // dy and dx are (B, *shape): dx = dy * mask.
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
        let n = b.batch * numel(&self.shape);
        if self.p == 0.0 {
            dx[..n].copy_from_slice(&dy[..n]);
            return;
        }
        let group = self.group();
        for ((d, g), &m) in dx[..n]
            .chunks_exact_mut(group)
            .zip(dy[..n].chunks_exact(group))
            .zip(ws[..n / group].iter())
        {
            d.iter_mut().zip(g).for_each(|(d, g)| *d = g * m);
        }
    }
}

/// Flattens every dimension after the batch into one: `(N, C, H, W)` to `(N, C·H·W)`
/// (PyTorch's `nn.Flatten()` with its defaults). The values do not move.
#[derive(Clone, Debug)]
pub struct Flatten {
    shape: Vec<usize>,
}

impl Flatten {
    /// Flattens inputs of `input` shape.
    pub fn new(input: &[usize]) -> Self {
        Self {
            shape: vec![numel(input)],
        }
    }
}

impl Layer for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let n = f.batch * self.shape[0];
        y[..n].copy_from_slice(&x[..n]);
    }

    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        _ws: &mut [f32],
    ) {
        if let Some(dx) = dx {
            let n = b.batch * self.shape[0];
            dx[..n].copy_from_slice(&dy[..n]);
        }
    }
}
