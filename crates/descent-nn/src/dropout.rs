//! Dropout (Srivastava et al. 2014; PyTorch's `nn.Dropout` and `nn.Dropout2d`) and
//! `nn.Flatten`.

use descent_tensor::backend::{Backend, BackendError, Span};
use descent_tensor::Rng8;

use crate::layer::{mix_seed, numel, Backward, DeviceIo, Forward, Layer};
use crate::par::{images, Scratch};

/// Mask entries drawn from one random stream: the masks are the same on any number of
/// threads, since chunks, not threads, own the streams.
const CHUNK: usize = 4096;

/// In training, zeroes each value (or, with `channels`, each whole channel of an `(N, C, ...)`
/// input) with probability `p` and scales the rest by `1 / (1 - p)`; in evaluation, passes
/// values through. Masks come from the step's seed, eight streams per chunk of 4096 entries
/// ([`Rng8`], two 24-bit draws from each 64-bit value): the same on any number of threads,
/// on any CPU and after a resume.
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
                fill_mask(mix_seed(seed, c), threshold, keep, mask);
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

/// Mask entries `0` (dropped: a 24-bit draw below `threshold`) or `keep`, 16 from each step
/// of eight streams: entry `i` of a block of 16 takes bits 40..64 of lane `i` (`i < 8`), else
/// bits 16..40 of lane `i - 8`.
fn fill_mask(seed: u64, threshold: u64, keep: f32, mask: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512.
        return unsafe { fill_mask_avx512(seed, threshold, keep, mask) };
    }
    fill_mask_lanes(seed, threshold, keep, mask)
}

/// [`fill_mask`] compiled for AVX-512 (the same integer arithmetic, so the same masks).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn fill_mask_avx512(seed: u64, threshold: u64, keep: f32, mask: &mut [f32]) {
    fill_mask_lanes(seed, threshold, keep, mask)
}

#[inline(always)]
fn fill_mask_lanes(seed: u64, threshold: u64, keep: f32, mask: &mut [f32]) {
    let mut rng = Rng8::new(seed);
    for block in mask.chunks_mut(16) {
        let r = rng.next_u64s();
        let mut draws = [0u64; 16];
        for i in 0..8 {
            draws[i] = r[i] >> 40;
            draws[i + 8] = (r[i] >> 16) & 0xFF_FFFF;
        }
        for (m, &d) in block.iter_mut().zip(&draws) {
            *m = if d < threshold { 0.0 } else { keep };
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

    fn is_view(&self) -> bool {
        true
    }

    fn on_device(&self) -> Result<(), String> {
        Ok(())
    }

    fn device_forward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        x: Span,
        y: Span,
    ) -> Result<(), BackendError> {
        let n = batch * self.shape[0];
        be.copy(y.sub(0, n), x.sub(0, n))
    }

    fn device_backward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        io: DeviceIo,
    ) -> Result<(), BackendError> {
        let Some(dx) = io.dx else { return Ok(()) };
        let n = batch * self.shape[0];
        be.copy(dx.sub(0, n), io.dy.sub(0, n))
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

#[cfg(test)]
mod tests {
    use descent_tensor::Pool;

    use super::*;

    fn run(layer: &Dropout, batch: usize, threads: usize, seed: u64) -> Vec<f32> {
        let n = batch * numel(&layer.shape);
        let x = vec![1.0f32; n];
        let mut y = vec![f32::NAN; n];
        let mut ws = vec![0.0; layer.workspace_len(batch, threads)];
        let pool = Pool::new(threads).unwrap();
        let mut buffers = [];
        let mut f = Forward::train(&pool, &[], &mut buffers, seed);
        (f.batch, f.cap, f.threads) = (batch, batch, threads);
        layer.forward(&mut f, &x, &mut y, &mut ws);
        y
    }

    /// Masks are independent: two entries at any of the offsets that the streams' layout
    /// could tie together (neighbours, the 8 lanes, 16-entry blocks, chunks, the next picture
    /// of a CNN's first dropout) are both dropped with probability p² (within 4 standard
    /// deviations), and so are the same entry at two steps (the trainer's step seeds) and in two
    /// layers of one step (the chain's layer seeds).
    #[test]
    fn masks_are_independent_across_entries_steps_and_layers() {
        let p = 0.25f64;
        let layer = Dropout::new(p as f32, false, vec![64, 12, 12]);
        let step_seed = |step: u64| 7 ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03);
        let both = |a: &[f32], b: &[f32]| {
            let n = a.len().min(b.len());
            let k = a[..n]
                .iter()
                .zip(&b[..n])
                .filter(|(x, y)| **x == 0.0 && **y == 0.0);
            (k.count() as f64 / n as f64, n)
        };
        let check = |what: &str, (rate, n): (f64, usize)| {
            let sd = (p * p * (1.0 - p * p) / n as f64).sqrt();
            assert!(
                (rate - p * p).abs() < 4.0 * sd,
                "{what}: {rate} against {}",
                p * p
            );
        };
        let y = run(&layer, 16, 2, step_seed(1));
        for offset in [1, 7, 8, 15, 16, 4096, 9216] {
            check(&format!("offset {offset}"), both(&y, &y[offset..]));
        }
        for step in [2, 3, 9, 100] {
            let other = run(&layer, 16, 2, step_seed(step));
            check(&format!("steps 1 and {step}"), both(&y, &other));
        }
        for (i, j) in [(5, 9), (1, 2)] {
            let a = run(&layer, 16, 2, mix_seed(step_seed(1), i));
            let b = run(&layer, 16, 2, mix_seed(step_seed(1), j));
            check(&format!("layers {i} and {j}"), both(&a, &b));
        }
    }

    /// The drop rate is p (within 3 standard deviations), kept values are scaled by
    /// 1 / (1 - p), the masks do not depend on the thread count and change with the seed,
    /// and Dropout2d drops whole channels.
    #[test]
    fn drops_p_of_the_values_and_scales_the_rest() {
        for p in [0.1f32, 0.25, 0.5] {
            let layer = Dropout::new(p, false, vec![10_000]);
            let y = run(&layer, 20, 1, 3);
            let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
            let sd = (p as f64 * (1.0 - p as f64) / y.len() as f64).sqrt();
            assert!(
                (dropped - p as f64).abs() < 3.0 * sd,
                "p {p}: dropped {dropped}"
            );
            let keep = 1.0 / (1.0 - p);
            assert!(y.iter().all(|&v| v == 0.0 || v == keep));
            assert_eq!(y, run(&layer, 20, 2, 3), "threads change the mask");
            assert_ne!(
                y,
                run(&layer, 20, 1, 4),
                "the seed does not change the mask"
            );
        }
        let layer = Dropout::new(0.5, true, vec![8, 3, 3]);
        let y = run(&layer, 4, 1, 1);
        for channel in y.chunks_exact(9) {
            assert!(channel.iter().all(|&v| v == channel[0]), "{channel:?}");
        }
        assert!(y.contains(&0.0) && y.contains(&2.0));
    }
}
