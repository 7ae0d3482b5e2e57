//! A fixed-size fork-join pool that splits one piece of work into contiguous parts.
//!
//! Every split depends only on the size of the work and the number of threads, so the same
//! thread count always gives the same partition, and with it bit-identical results.

use crate::{MatMut, TensorError};

/// Runs work on a fixed number of threads. `Pool::new(1)` runs everything on the caller's
/// thread and starts no threads at all.
#[derive(Debug)]
pub struct Pool {
    threads: usize,
    inner: Option<rayon::ThreadPool>,
}

/// The parts of `0..total` for `parts` workers, each a multiple of `align` long but the last.
fn part_range(total: usize, parts: usize, align: usize, p: usize) -> (usize, usize) {
    let units = total.div_ceil(align);
    let per = units.div_ceil(parts);
    let start = (p * per * align).min(total);
    let end = ((p + 1) * per * align).min(total);
    (start, end - start)
}

/// A `MatMut` taken apart so that each worker can rebuild its own disjoint piece.
#[derive(Clone, Copy)]
struct RawMat {
    ptr: usize,
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl Pool {
    /// A pool of `threads` threads (at least 1).
    pub fn new(threads: usize) -> Result<Self, TensorError> {
        let threads = threads.max(1);
        let inner = if threads == 1 {
            None
        } else {
            Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .thread_name(|i| format!("descent-{i}"))
                    .build()
                    .map_err(|e| TensorError::Pool {
                        threads,
                        reason: e.to_string(),
                    })?,
            )
        };
        Ok(Self { threads, inner })
    }

    /// Number of threads work is split over.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` inside the pool, so that rayon's parallel iterators in `f` use its threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        match &self.inner {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Calls `f(p)` for every part `p` in `0..parts`, in parallel, and waits for all.
    pub fn run(&self, parts: usize, f: impl Fn(usize) + Sync) {
        match &self.inner {
            Some(pool) if parts > 1 => pool.scope(|s| {
                let f = &f;
                for p in 1..parts {
                    s.spawn(move |_| f(p));
                }
                f(0);
            }),
            _ => (0..parts).for_each(f),
        }
    }

    /// How many parts to cut `total` units into, no part smaller than `min_part` units.
    fn parts_for(&self, total: usize, min_part: usize) -> usize {
        (total / min_part.max(1)).clamp(1, self.threads)
    }

    /// Splits `m` into horizontal bands of whole multiples of `align` rows (the last may be
    /// shorter) and calls `f(first_row, band)` on each in parallel. Bands shorter than
    /// `min_rows` are not made: small matrices stay on one thread.
    pub fn split_rows(
        &self,
        m: MatMut<'_>,
        align: usize,
        min_rows: usize,
        f: impl Fn(usize, MatMut<'_>) + Sync,
    ) {
        let parts = self.parts_for(m.rows(), min_rows.max(align));
        if parts <= 1 {
            return f(0, m);
        }
        let (rs, cs) = m.strides();
        let raw = RawMat {
            ptr: m.ptr() as usize,
            rows: m.rows(),
            cols: m.cols(),
            rs,
            cs,
        };
        self.run(parts, |p| {
            let (start, len) = part_range(raw.rows, parts, align.max(1), p);
            if len == 0 {
                return;
            }
            // SAFETY: the bands `start..start + len` of different parts are disjoint rows of
            // the exclusive view `m`, which outlives this call, so each band is exclusive too.
            let band = unsafe {
                let ptr = (raw.ptr as *mut f32).add(start * raw.rs);
                let reach = (len - 1) * raw.rs + (raw.cols.max(1) - 1) * raw.cs + 1;
                let slice = std::slice::from_raw_parts_mut(ptr, reach);
                MatMut::strided(slice, len, raw.cols, raw.rs, raw.cs).expect("band fits")
            };
            f(start, band);
        });
    }

    /// Like [`Pool::split_rows`], over columns: `f(first_col, block)`.
    pub fn split_cols(
        &self,
        m: MatMut<'_>,
        align: usize,
        min_cols: usize,
        f: impl Fn(usize, MatMut<'_>) + Sync,
    ) {
        self.split_rows(m.t(), align, min_cols, |j, block| f(j, block.t()));
    }

    /// Splits `data` into one contiguous chunk per thread (multiples of `align` elements) and
    /// calls `f(offset, chunk)` on each in parallel.
    pub fn split_slice(
        &self,
        data: &mut [f32],
        align: usize,
        min_len: usize,
        f: impl Fn(usize, &mut [f32]) + Sync,
    ) {
        let len = data.len();
        self.split_rows(
            MatMut::new(data, len, 1).expect("column view of a slice"),
            align,
            min_len,
            |start, band| {
                let n = band.rows();
                // SAFETY: a one-column band of a contiguous slice is itself a contiguous slice.
                let chunk = unsafe { std::slice::from_raw_parts_mut(band.ptr(), n) };
                f(start, chunk)
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_everything_once() {
        for total in [0, 1, 7, 64, 100, 513] {
            for parts in 1..5 {
                for align in [1, 8, 16] {
                    let mut next = 0;
                    for p in 0..parts {
                        let (s, l) = part_range(total, parts, align, p);
                        assert_eq!(s, next.min(total));
                        if l > 0 {
                            assert!(p == parts - 1 || l % align == 0 || s + l == total);
                        }
                        next = s + l;
                    }
                    assert_eq!(next, total, "total {total} parts {parts} align {align}");
                }
            }
        }
    }

    #[test]
    fn split_rows_and_cols_touch_each_element_once() {
        let pool = Pool::new(3).unwrap();
        for (r, c) in [(1, 1), (5, 3), (64, 17), (100, 40)] {
            let mut data = vec![0.0f32; r * c];
            pool.split_rows(
                MatMut::new(&mut data, r, c).unwrap(),
                4,
                1,
                |i0, mut band| {
                    for i in 0..band.rows() {
                        for j in 0..band.cols() {
                            let v = band.at(i, j);
                            band.set(i, j, v + ((i0 + i) * c + j) as f32 + 1.0);
                        }
                    }
                },
            );
            pool.split_cols(
                MatMut::new(&mut data, r, c).unwrap(),
                2,
                1,
                |j0, mut block| {
                    for i in 0..block.rows() {
                        for j in 0..block.cols() {
                            let v = block.at(i, j);
                            block.set(i, j, v + (i * c + j0 + j) as f32 + 1.0);
                        }
                    }
                },
            );
            for (k, v) in data.iter().enumerate() {
                assert_eq!(*v, 2.0 * (k as f32 + 1.0));
            }
        }
    }

    #[test]
    fn split_slice_covers_the_slice() {
        let pool = Pool::new(2).unwrap();
        let mut data = vec![0.0f32; 1001];
        pool.split_slice(&mut data, 16, 1, |off, chunk| {
            for (i, x) in chunk.iter_mut().enumerate() {
                *x += (off + i) as f32;
            }
        });
        assert!(data.iter().enumerate().all(|(i, x)| *x == i as f32));
    }
}
