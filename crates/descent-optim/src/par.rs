//! Splitting one update over threads without allocating. A tensor is cut into contiguous
//! pieces whose length depends only on the tensor's length (at least [`PAR_CHUNK`] values, at
//! most [`MAX_PIECES`] pieces), and a [`Parallel`] runs the pieces. Reductions add the pieces'
//! partial sums in piece order, so results are the same on any number of threads.

use std::sync::atomic::{AtomicU64, Ordering};

/// Values below which a tensor is one piece.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// The most pieces a tensor is cut into.
const MAX_PIECES: usize = 64;

/// Up to three state buffers, each as long as the parameters or empty when unused.
pub(crate) type Bufs<'a> = [&'a mut [f32]; 3];

/// Runs the pieces of an optimizer step: `f(i)` for every `i` in `0..parts`, in any order and
/// on any threads, returning when all are done. descent's engine passes its own thread pool;
/// [`RayonPool`] uses rayon's current pool and [`Serial`] the calling thread.
pub trait Parallel: Sync {
    /// Calls `f(i)` for `i` in `0..parts` and waits for all.
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync));
}

/// Everything on the calling thread.
#[derive(Clone, Copy, Debug, Default)]
pub struct Serial;

impl Parallel for Serial {
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        (0..parts).for_each(f)
    }
}

/// rayon's current pool (the global one, or the one `ThreadPool::install` entered).
#[derive(Clone, Copy, Debug, Default)]
pub struct RayonPool;

impl Parallel for RayonPool {
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(f)
    }
}

/// The length of every piece but the last, for a tensor of `n` values.
fn piece_len(n: usize) -> usize {
    PAR_CHUNK.max(n.div_ceil(MAX_PIECES).next_multiple_of(64))
}

/// The buffers as raw parts, so that each piece can rebuild its own disjoint sub-slices.
struct Raw {
    p: *mut f32,
    g: *const f32,
    b: [(*mut f32, bool); 3],
    n: usize,
}

// SAFETY: pieces touch disjoint ranges of the buffers, and the caller's borrows outlive the
// `Parallel::run` call that uses them.
unsafe impl Sync for Raw {}

impl Raw {
    fn new(p: &mut [f32], g: &[f32], b: Bufs<'_>) -> Self {
        let n = p.len();
        assert_eq!(g.len(), n, "gradients as long as the parameters");
        let b = b.map(|x| {
            assert!(
                x.is_empty() || x.len() == n,
                "buffers as long as the parameters"
            );
            (x.as_mut_ptr(), !x.is_empty())
        });
        Self {
            p: p.as_mut_ptr(),
            g: g.as_ptr(),
            b,
            n,
        }
    }

    /// Piece `i` of length `len`.
    ///
    /// # Safety
    /// Each `i` is taken once at a time (pieces are disjoint), while the buffers `Raw::new`
    /// saw are still borrowed.
    unsafe fn piece<'a>(&self, i: usize, len: usize) -> (&'a mut [f32], &'a [f32], Bufs<'a>) {
        let lo = i * len;
        let k = len.min(self.n - lo);
        // SAFETY: lo + k <= n for every buffer; the ranges of distinct pieces do not overlap.
        unsafe {
            let b = self.b.map(|(ptr, has)| -> &'a mut [f32] {
                if has {
                    std::slice::from_raw_parts_mut(ptr.add(lo), k)
                } else {
                    &mut []
                }
            });
            (
                std::slice::from_raw_parts_mut(self.p.add(lo), k),
                std::slice::from_raw_parts(self.g.add(lo), k),
                b,
            )
        }
    }
}

/// Runs `f` over the pieces of the buffers.
pub(crate) fn par_for<F>(exec: &dyn Parallel, p: &mut [f32], g: &[f32], b: Bufs<'_>, f: &F)
where
    F: Fn(&mut [f32], &[f32], Bufs<'_>) + Sync,
{
    let len = piece_len(p.len());
    let pieces = p.len().div_ceil(len);
    if pieces <= 1 {
        return f(p, g, b);
    }
    let raw = Raw::new(p, g, b);
    exec.run(pieces, &|i| {
        // SAFETY: `run` hands out each piece once; `p`, `g`, `b` are borrowed until it returns.
        let (p, g, b) = unsafe { raw.piece(i, len) };
        f(p, g, b)
    });
}

/// Runs `f` over the pieces like [`par_for`] and adds up what each returns (two sums) in
/// piece order.
pub(crate) fn par_sum<F>(
    exec: &dyn Parallel,
    p: &mut [f32],
    g: &[f32],
    b: Bufs<'_>,
    f: &F,
) -> [f64; 2]
where
    F: Fn(&mut [f32], &[f32], Bufs<'_>) -> [f64; 2] + Sync,
{
    let len = piece_len(p.len());
    let pieces = p.len().div_ceil(len);
    if pieces <= 1 {
        return f(p, g, b);
    }
    let partial: [[AtomicU64; 2]; MAX_PIECES] = std::array::from_fn(|_| Default::default());
    let raw = Raw::new(p, g, b);
    exec.run(pieces, &|i| {
        // SAFETY: as in `par_for`.
        let (p, g, b) = unsafe { raw.piece(i, len) };
        let s = f(p, g, b);
        partial[i][0].store(s[0].to_bits(), Ordering::Relaxed);
        partial[i][1].store(s[1].to_bits(), Ordering::Relaxed);
    });
    partial[..pieces].iter().fold([0.0, 0.0], |acc, s| {
        [
            acc[0] + f64::from_bits(s[0].load(Ordering::Relaxed)),
            acc[1] + f64::from_bits(s[1].load(Ordering::Relaxed)),
        ]
    })
}

/// The sum of squares of `x`, in f64, in pieces like [`par_sum`].
pub(crate) fn sum_squares(exec: &dyn Parallel, x: &[f32]) -> f64 {
    let len = piece_len(x.len());
    let pieces = x.len().div_ceil(len).max(1);
    let partial: [AtomicU64; MAX_PIECES] = std::array::from_fn(|_| AtomicU64::new(0));
    let squares = |x: &[f32]| {
        let mut acc = [0.0; 4];
        sum_squares4(x, &mut acc);
        acc.iter().sum::<f64>()
    };
    exec.run(pieces, &|i| {
        let piece = &x[i * len..x.len().min((i + 1) * len)];
        partial[i].store(squares(piece).to_bits(), Ordering::Relaxed);
    });
    partial[..pieces]
        .iter()
        .map(|s| f64::from_bits(s.load(Ordering::Relaxed)))
        .sum()
}

/// Adds the squares of `x` into four f64 lanes (lane = index mod 4).
#[inline(always)]
pub(crate) fn sum_squares4(x: &[f32], acc: &mut [f64; 4]) {
    let mut chunks = x.chunks_exact(4);
    for c in &mut chunks {
        for l in 0..4 {
            acc[l] += (c[l] as f64) * (c[l] as f64);
        }
    }
    for (l, &v) in chunks.remainder().iter().enumerate() {
        acc[l] += (v as f64) * (v as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_visited_once_with_its_buffers() {
        for n in [0, 5, PAR_CHUNK, 3 * PAR_CHUNK + 17, 100 * PAR_CHUNK + 3] {
            let mut p = vec![0.0f32; n];
            let g: Vec<f32> = (0..n).map(|i| i as f32).collect();
            let mut a = vec![1.0f32; n];
            let f = |p: &mut [f32], g: &[f32], [a, b, c]: Bufs<'_>| {
                assert!(b.is_empty() && c.is_empty());
                for ((p, g), a) in p.iter_mut().zip(g).zip(a.iter_mut()) {
                    *p += g + 1.0;
                    *a += 1.0;
                }
            };
            par_for(&RayonPool, &mut p, &g, [&mut a, &mut [], &mut []], &f);
            assert!(
                p.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0),
                "{n}"
            );
            assert!(a.iter().all(|&v| v == 2.0), "{n}");
        }
    }

    #[test]
    fn sums_do_not_depend_on_the_threads() {
        let x: Vec<f32> = (0..5 * PAR_CHUNK + 3)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let s1 = sum_squares(&Serial, &x);
        let s3 = three.install(|| sum_squares(&RayonPool, &x));
        assert_eq!(s1.to_bits(), s3.to_bits());
        let naive: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((s1 - naive).abs() < 1e-9 * naive);
        assert!(
            piece_len(1 << 30).is_multiple_of(64)
                && (1usize << 30).div_ceil(piece_len(1 << 30)) <= MAX_PIECES
        );
    }
}
