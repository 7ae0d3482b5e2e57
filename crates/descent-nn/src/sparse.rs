//! Sums over the nonzeros of a sparse gradient: the inner loops of the sparse backward
//! passes (convolution, linear).
//!
//! A gradient that is mostly zeros (behind ReLU, max pooling, dropout) is compressed into
//! lists of (index, value); a product with it then visits only those: for each run of
//! values, `out = alpha · Σ_e val[e] · src(idx[e]) + beta · out`, summed in registers, the
//! entries in list order (the same bits for the same lists).

/// A run of `len` values: at offset `x` from what `src` gives (a position's window in a
/// channels-last input, say), and at offset `k` of the output row (a `[tap, ci]` row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Span {
    pub x: usize,
    pub k: usize,
    pub len: usize,
}

/// Most values one span sums in registers (12 vectors of 16).
pub(crate) const SPAN: usize = 192;

/// Writes the positions (`p0` + index, as bits) and values of the nonzeros of `row` into
/// `pos` and `val`; returns how many.
pub(crate) fn compress_row(row: &[f32], p0: usize, pos: &mut [f32], val: &mut [f32]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if descent_tensor::isa() == descent_tensor::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512; `pos` and `val` hold at least `row.len()` values.
        return unsafe { x86::compress_row(row, p0, pos, val) };
    }
    let mut n = 0;
    for (p, &v) in row.iter().enumerate() {
        if v != 0.0 {
            pos[n] = f32::from_bits((p0 + p) as u32);
            val[n] = v;
            n += 1;
        }
    }
    n
}

/// How [`window_sums`] stores a run's sum: `out = alpha · sum + beta · out` (with `beta`
/// 0, `out` is not read).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Store {
    pub alpha: f32,
    pub beta: f32,
}

impl Store {
    /// `out += sum`.
    pub(crate) const ADD: Store = Store {
        alpha: 1.0,
        beta: 1.0,
    };
    /// `out = sum`.
    pub(crate) const SET: Store = Store {
        alpha: 1.0,
        beta: 0.0,
    };

    #[inline]
    fn apply(self, sum: f32, out: f32) -> f32 {
        if self.beta == 0.0 {
            self.alpha * sum
        } else {
            self.alpha * sum + self.beta * out
        }
    }
}

/// For every span: `out[o..o + len] = store(Σ_e val[e] · src(idx[e])[i..i + len])`, where
/// `(i, o) = offsets(span)` and `idx` holds indices as bits.
///
/// # Safety
/// `src` must give pointers from which every span's `i..i + len` is readable for every
/// index, and `out` must hold every span's `o..o + len`, overlapping none of them.
pub(crate) unsafe fn window_sums(
    idx: &[f32],
    val: &[f32],
    src: impl Fn(usize) -> *const f32,
    spans: &[Span],
    offsets: impl Fn(&Span) -> (usize, usize),
    out: *mut f32,
    store: Store,
) {
    #[cfg(target_arch = "x86_64")]
    if descent_tensor::isa() == descent_tensor::Isa::Avx512 {
        // SAFETY: the CPU has AVX-512; the rest is the caller's promise.
        return unsafe { x86::window_sums(idx, val, &src, spans, &offsets, out, store) };
    }
    // SAFETY: the caller's promise.
    unsafe {
        for sp in spans {
            let (i0, o0) = offsets(sp);
            for j in 0..sp.len {
                let mut sum = 0.0;
                for (i, &g) in idx.iter().zip(val) {
                    sum += g * *src(i.to_bits() as usize).add(i0 + j);
                }
                let q = out.add(o0 + j);
                *q = store.apply(sum, *q);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
// Register tiles read best with explicit indices.
#[allow(clippy::needless_range_loop)]
mod x86 {
    use std::arch::x86_64::*;

    fn lanes(n: usize) -> __mmask16 {
        if n >= 16 {
            0xffff
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn compress_row(
        row: &[f32],
        p0: usize,
        pos: &mut [f32],
        val: &mut [f32],
    ) -> usize {
        // SAFETY: loads are masked to the row; at most row.len() values are stored.
        unsafe {
            let mut n = 0;
            let step = _mm512_set1_epi32(16);
            let iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            let mut idx = _mm512_add_epi32(iota, _mm512_set1_epi32(p0 as i32));
            for p in (0..row.len()).step_by(16) {
                let m = lanes(row.len() - p);
                let v = _mm512_maskz_loadu_ps(m, row.as_ptr().add(p));
                let nz = _mm512_mask_cmp_ps_mask::<_CMP_NEQ_UQ>(m, v, _mm512_setzero_ps());
                _mm512_mask_compressstoreu_ps(val.as_mut_ptr().add(n).cast(), nz, v);
                _mm512_mask_compressstoreu_epi32(pos.as_mut_ptr().add(n).cast(), nz, idx);
                n += nz.count_ones() as usize;
                idx = _mm512_add_epi32(idx, step);
            }
            n
        }
    }

    /// [`super::window_sums`] for `R` spans of `V` vectors each, the last vector of a span
    /// holding `last` lanes: `R x V` sums in registers.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn sums<const V: usize, const R: usize>(
        idx: &[f32],
        val: &[f32],
        src: &impl Fn(usize) -> *const f32,
        (from, to): ([usize; R], [usize; R]),
        last: __mmask16,
        out: *mut f32,
        store: super::Store,
    ) {
        // SAFETY: the callers' promise; the last vector's loads and stores are masked to
        // the span.
        unsafe {
            let mut a = [[_mm512_setzero_ps(); V]; R];
            for (i, &g) in idx.iter().zip(val) {
                let x = src(i.to_bits() as usize);
                let g = _mm512_set1_ps(g);
                for r in 0..R {
                    for v in 0..V {
                        let p = x.add(from[r] + 16 * v);
                        let xv = if v + 1 == V {
                            _mm512_maskz_loadu_ps(last, p)
                        } else {
                            _mm512_loadu_ps(p)
                        };
                        a[r][v] = _mm512_fmadd_ps(g, xv, a[r][v]);
                    }
                }
            }
            let alpha = _mm512_set1_ps(store.alpha);
            let beta = _mm512_set1_ps(store.beta);
            for r in 0..R {
                for v in 0..V {
                    let m = if v + 1 == V { last } else { 0xffff };
                    let q = out.add(to[r] + 16 * v);
                    let sum = if store.beta == 0.0 {
                        _mm512_mul_ps(alpha, a[r][v])
                    } else if store.alpha == 1.0 && store.beta == 1.0 {
                        _mm512_add_ps(_mm512_maskz_loadu_ps(m, q), a[r][v])
                    } else {
                        let old = _mm512_maskz_loadu_ps(m, q);
                        _mm512_fmadd_ps(beta, old, _mm512_mul_ps(alpha, a[r][v]))
                    };
                    _mm512_mask_storeu_ps(q, m, sum);
                }
            }
        }
    }

    /// Spans three at a time where they have one length of at most 8 vectors (a 3 x 3
    /// kernel's rows of taps up to 42 channels), else one at a time.
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn window_sums(
        idx: &[f32],
        val: &[f32],
        src: &impl Fn(usize) -> *const f32,
        spans: &[super::Span],
        offsets: &impl Fn(&super::Span) -> (usize, usize),
        out: *mut f32,
        store: super::Store,
    ) {
        let mut i = 0;
        while i < spans.len() {
            let len = spans[i].len;
            let v = len.div_ceil(16);
            let last = lanes(len - (v - 1) * 16);
            let three = i + 3 <= spans.len()
                && v <= 8
                && spans[i + 1].len == len
                && spans[i + 2].len == len;
            // SAFETY: forwarded.
            unsafe {
                if three {
                    let o: [(usize, usize); 3] = std::array::from_fn(|r| offsets(&spans[i + r]));
                    let at = (o.map(|o| o.0), o.map(|o| o.1));
                    match v {
                        1 => sums::<1, 3>(idx, val, src, at, last, out, store),
                        2 => sums::<2, 3>(idx, val, src, at, last, out, store),
                        3 => sums::<3, 3>(idx, val, src, at, last, out, store),
                        4 => sums::<4, 3>(idx, val, src, at, last, out, store),
                        5 => sums::<5, 3>(idx, val, src, at, last, out, store),
                        6 => sums::<6, 3>(idx, val, src, at, last, out, store),
                        7 => sums::<7, 3>(idx, val, src, at, last, out, store),
                        _ => sums::<8, 3>(idx, val, src, at, last, out, store),
                    }
                    i += 3;
                    continue;
                }
                let (f, t) = offsets(&spans[i]);
                let at = ([f], [t]);
                match v {
                    1 => sums::<1, 1>(idx, val, src, at, last, out, store),
                    2 => sums::<2, 1>(idx, val, src, at, last, out, store),
                    3 => sums::<3, 1>(idx, val, src, at, last, out, store),
                    4 => sums::<4, 1>(idx, val, src, at, last, out, store),
                    5 => sums::<5, 1>(idx, val, src, at, last, out, store),
                    6 => sums::<6, 1>(idx, val, src, at, last, out, store),
                    7 => sums::<7, 1>(idx, val, src, at, last, out, store),
                    8 => sums::<8, 1>(idx, val, src, at, last, out, store),
                    9 => sums::<9, 1>(idx, val, src, at, last, out, store),
                    10 => sums::<10, 1>(idx, val, src, at, last, out, store),
                    11 => sums::<11, 1>(idx, val, src, at, last, out, store),
                    _ => sums::<12, 1>(idx, val, src, at, last, out, store),
                }
            }
            i += 1;
        }
    }
}
