//! A fixed-size fork-join pool that splits one piece of work into contiguous parts.
//!
//! Every split depends only on the size of the work and the number of threads, so the same
//! thread count always gives the same partition, and with it bit-identical results.

use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::{MatMut, TensorError};

thread_local! {
    /// Set while a thread runs a part of a job: a nested `run` then stays on that thread.
    static IN_JOB: Cell<bool> = const { Cell::new(false) };
}

/// Spins before a worker goes to sleep; a few tens of microseconds on current CPUs. With
/// more threads than cores, spinning would take the core from a thread with work: then the
/// workers sleep almost at once.
const SPINS: u32 = 1 << 14;
const SPINS_OVERSUBSCRIBED: u32 = 1 << 6;

/// A job as the workers see it: a type-erased `&dyn Fn(usize)` living on the caller's stack.
#[derive(Clone, Copy)]
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    parts: usize,
}

struct Shared {
    /// Bumped once per job; workers wait for it to change.
    generation: AtomicU64,
    job: UnsafeCell<Job>,
    /// Workers that have not finished the current job.
    pending: AtomicUsize,
    panicked: AtomicBool,
    sleeping: AtomicUsize,
    shutdown: AtomicBool,
    spins: u32,
    lock: Mutex<()>,
    wake: Condvar,
    /// One job at a time.
    submit: Mutex<()>,
}

// SAFETY: `job` is written only by the submitter, holding `submit`, while no worker reads it
// (all finished the previous job); workers read it only after seeing the new generation.
unsafe impl Sync for Shared {}
unsafe impl Send for Shared {}

struct Workers {
    shared: Arc<Shared>,
    handles: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Workers({})", self.handles.len())
    }
}

fn noop(_: usize) {}

impl Workers {
    fn start(n: usize) -> std::io::Result<Self> {
        let noop: &'static (dyn Fn(usize) + Sync) = &noop;
        let shared = Arc::new(Shared {
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(Job { f: noop, parts: 0 }),
            pending: AtomicUsize::new(0),
            panicked: AtomicBool::new(false),
            sleeping: AtomicUsize::new(0),
            shutdown: AtomicBool::new(false),
            spins: if n + 1 > std::thread::available_parallelism().map_or(1, |c| c.get()) {
                SPINS_OVERSUBSCRIBED
            } else {
                SPINS
            },
            lock: Mutex::new(()),
            wake: Condvar::new(),
            submit: Mutex::new(()),
        });
        let mut handles = Vec::with_capacity(n);
        for w in 0..n {
            let s = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name(format!("descent-{}", w + 1))
                .spawn(move || worker(&s, w + 1));
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    drop(Workers { shared, handles });
                    return Err(e);
                }
            }
        }
        Ok(Self { shared, handles })
    }

    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync), all_parts: usize) {
        // Parts beyond the thread count are done by the threads in turn: part p by thread
        // p % parts.
        let g = |t: usize| {
            let mut p = t;
            while p < all_parts {
                f(p);
                p += parts;
            }
        };
        let g: &(dyn Fn(usize) + Sync) = &g;
        let s = &*self.shared;
        let _one_at_a_time = s.submit.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: no worker reads `job` until the generation changes below, and all finished
        // the previous job (we waited for `pending == 0`). The lifetime is erased, but the
        // `Wait` guard keeps this frame alive until every worker is done with `g`.
        unsafe {
            let g: *const (dyn Fn(usize) + Sync + '_) = g;
            *s.job.get() = Job {
                f: std::mem::transmute::<
                    *const (dyn Fn(usize) + Sync + '_),
                    *const (dyn Fn(usize) + Sync + 'static),
                >(g),
                parts,
            };
        }
        s.pending.store(self.handles.len(), SeqCst);
        s.generation.fetch_add(1, SeqCst);
        if s.sleeping.load(SeqCst) > 0 {
            let _l = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.wake.notify_all();
        }
        struct Wait<'a>(&'a Shared);
        impl Drop for Wait<'_> {
            fn drop(&mut self) {
                let mut spins = 0u32;
                while self.0.pending.load(SeqCst) != 0 {
                    // A worker that was asleep, or shares a core with us, needs the CPU.
                    if spins < self.0.spins {
                        spins += 1;
                        std::hint::spin_loop();
                    } else {
                        std::thread::yield_now();
                    }
                }
            }
        }
        let wait = Wait(s);
        IN_JOB.set(true);
        let mine = catch_unwind(AssertUnwindSafe(|| g(0)));
        IN_JOB.set(false);
        drop(wait);
        if let Err(p) = mine {
            resume_unwind(p);
        }
        if s.panicked.swap(false, SeqCst) {
            panic!("a descent pool worker panicked while running a job");
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, SeqCst);
        self.shared.generation.fetch_add(1, SeqCst);
        {
            let _l = self.shared.lock.lock().unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(s: &Shared, index: usize) {
    IN_JOB.set(true);
    // Generation 0 is the pool's start, never a job: a job submitted before this thread got
    // going is still seen as new.
    let mut seen = 0;
    loop {
        // Wait for a new generation: spin, then sleep.
        let mut spins = 0u32;
        loop {
            if s.generation.load(SeqCst) != seen {
                break;
            }
            if spins < s.spins {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let mut guard = s.lock.lock().unwrap_or_else(|e| e.into_inner());
            s.sleeping.fetch_add(1, SeqCst);
            while s.generation.load(SeqCst) == seen {
                guard = s.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
            }
            s.sleeping.fetch_sub(1, SeqCst);
            break;
        }
        seen = s.generation.load(SeqCst);
        if s.shutdown.load(SeqCst) {
            return;
        }
        // SAFETY: the submitter wrote `job` before bumping the generation and keeps the
        // closure alive until `pending` reaches 0.
        let job = unsafe { *s.job.get() };
        if index < job.parts {
            // SAFETY: as above.
            let f = unsafe { &*job.f };
            if catch_unwind(AssertUnwindSafe(|| f(index))).is_err() {
                s.panicked.store(true, SeqCst);
            }
        }
        s.pending.fetch_sub(1, SeqCst);
    }
}

/// Runs work on a fixed number of threads: the caller's and `threads - 1` workers that
/// spin briefly between jobs (a training step forks several times a millisecond) and sleep
/// when idle. Forking allocates nothing. `Pool::new(1)` starts no thread at all.
#[derive(Debug)]
pub struct Pool {
    threads: usize,
    workers: Option<Workers>,
    /// For optimizers and other code written with rayon's parallel iterators.
    rayon: std::sync::OnceLock<Option<rayon::ThreadPool>>,
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

/// The most threads a pool starts. Far more threads than cores only wait for each other, and
/// tens of thousands exhaust the process's memory maps (the runtime then aborts, which no
/// error can report).
pub const MAX_THREADS: usize = 1024;

impl Pool {
    /// A pool of `threads` threads, the caller's included; 0 means one per core. More than
    /// [`MAX_THREADS`] is refused.
    pub fn new(threads: usize) -> Result<Self, TensorError> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        if threads > MAX_THREADS {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            return Err(TensorError::Pool {
                threads,
                reason: format!(
                    "more than {MAX_THREADS}, the most a pool starts (this machine has {cores} \
                     cores; more threads than cores only wait for each other)"
                ),
            });
        }
        let workers = if threads == 1 {
            None
        } else {
            Some(Workers::start(threads - 1).map_err(|e| TensorError::Pool {
                threads,
                reason: e.to_string(),
            })?)
        };
        Ok(Self {
            threads,
            workers,
            rayon: std::sync::OnceLock::new(),
        })
    }

    /// Number of threads work is split over.
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// Runs `f` inside a rayon pool of the same size, so that rayon's parallel iterators in
    /// `f` (optimizers use them) run on that many threads.
    pub fn install<R: Send>(&self, f: impl FnOnce() -> R + Send) -> R {
        let pool = self.rayon.get_or_init(|| {
            if self.threads == 1 {
                return None;
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(self.threads)
                .thread_name(|i| format!("descent-rayon-{i}"))
                .build()
                .ok()
        });
        match pool {
            Some(pool) => pool.install(f),
            None => f(),
        }
    }

    /// Calls `f(p)` for every part `p` in `0..parts`, in parallel, and waits for all. Part 0
    /// runs on the calling thread. A panic in any part is raised again here.
    pub fn run(&self, parts: usize, f: impl Fn(usize) + Sync) {
        match &self.workers {
            Some(w) if parts > 1 && !IN_JOB.get() => w.run(parts.min(self.threads), &f, parts),
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
    fn a_pool_of_more_than_max_threads_is_refused_before_any_starts() {
        let e = Pool::new(MAX_THREADS + 1).unwrap_err().to_string();
        assert!(e.contains("more than 1024") && e.contains("cores"), "{e}");
    }

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
    fn run_covers_more_parts_than_threads_and_nests_serially() {
        use std::sync::atomic::AtomicUsize;
        let pool = Pool::new(3).unwrap();
        for parts in [1, 2, 3, 7] {
            let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
            pool.run(parts, |p| {
                hits[p].fetch_add(1, SeqCst);
                // A nested run stays on this thread instead of deadlocking.
                pool.run(2, |_| {});
            });
            assert!(hits.iter().all(|h| h.load(SeqCst) == 1), "parts {parts}");
        }
        // Many jobs in a row, with sleeps in between so that workers park and wake.
        let total = AtomicUsize::new(0);
        for i in 0..200 {
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            pool.run(3, |p| {
                total.fetch_add(p + 1, SeqCst);
            });
        }
        assert_eq!(total.load(SeqCst), 200 * 6);
    }

    #[test]
    fn a_panicking_part_panics_the_caller_and_the_pool_survives() {
        let pool = Pool::new(2).unwrap();
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, |p| assert!(p != 1, "part 1 fails"))
        }));
        assert!(r.is_err());
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(2, |p| assert!(p != 0, "part 0 fails"))
        }));
        assert!(r.is_err());
        let n = std::sync::atomic::AtomicUsize::new(0);
        pool.run(2, |_| {
            n.fetch_add(1, SeqCst);
        });
        assert_eq!(n.load(SeqCst), 2);
    }

    #[test]
    fn zero_threads_means_one_per_core() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(Pool::new(0).unwrap().threads(), cores);
        assert_eq!(Pool::new(3).unwrap().threads(), 3);
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
