//! The AVX2 + FMA kernels: `nt` (dot products, 2 x 4 tiles) and `tn` (outer products, 6 x 16
//! tiles, A packed per 6 rows). See the module above for the layouts they take.

// Register tiles read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;

use super::Operands;

/// Stores `v` into C(i, j), honouring alpha and beta (beta = 0: C is not read).
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn store(o: &Operands, i: usize, j: usize, v: f32) {
    // SAFETY: (i, j) is inside C, by the callers' loop bounds.
    unsafe {
        let p = o.c.add(i * o.c_rs + j * o.c_cs);
        *p = if o.beta == 0.0 {
            o.alpha * v
        } else {
            o.alpha * v + o.beta * *p
        };
    }
}

#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi);
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// Dot products of MR rows of A with NR rows of B (k contiguous), tail of k in scalar.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn nt_tile<const MR: usize, const NR: usize>(o: &Operands, i: usize, j: usize) {
    // SAFETY: rows i..i+MR of A and j..j+NR of B exist and hold k elements each.
    unsafe {
        let k8 = o.k / 8 * 8;
        let mut acc = [[_mm256_setzero_ps(); NR]; MR];
        let a: [*const f32; MR] = std::array::from_fn(|r| o.a.add((i + r) * o.a_rs));
        let b: [*const f32; NR] = std::array::from_fn(|c| o.b.add((j + c) * o.b_cs));
        let mut p = 0;
        while p < k8 {
            let av: [__m256; MR] = std::array::from_fn(|r| _mm256_loadu_ps(a[r].add(p)));
            for c in 0..NR {
                let bv = _mm256_loadu_ps(b[c].add(p));
                for r in 0..MR {
                    acc[r][c] = _mm256_fmadd_ps(av[r], bv, acc[r][c]);
                }
            }
            p += 8;
        }
        for r in 0..MR {
            if NR == 4 && k8 == o.k {
                // Four dot products reduced at once: hadd pairs, then the two halves.
                let s01 = _mm256_hadd_ps(acc[r][0], acc[r][1]);
                let s23 = _mm256_hadd_ps(acc[r][2], acc[r][3]);
                let s = _mm256_hadd_ps(s01, s23);
                let sums = _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps::<1>(s));
                let mut out = [0.0f32; 4];
                _mm_storeu_ps(out.as_mut_ptr(), sums);
                for c in 0..NR {
                    store(o, i + r, j + c, out[c]);
                }
                continue;
            }
            for c in 0..NR {
                let mut s = hsum(acc[r][c]);
                for q in k8..o.k {
                    s += *a[r].add(q) * *b[c].add(q);
                }
                store(o, i + r, j + c, s);
            }
        }
    }
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn nt(o: &Operands) {
    const MR: usize = 2;
    const NR: usize = 4;
    // SAFETY: every tile stays inside the shapes; see `nt_tile`.
    unsafe {
        // Blocks of B rows stay in L1 while all rows of A stream past them.
        let mut j = 0;
        while j + NR <= o.n {
            let mut i = 0;
            while i + MR <= o.m {
                nt_tile::<MR, NR>(o, i, j);
                i += MR;
            }
            if i < o.m {
                nt_tile::<1, NR>(o, i, j);
            }
            j += NR;
        }
        while j < o.n {
            let mut i = 0;
            while i + MR <= o.m {
                nt_tile::<MR, 1>(o, i, j);
                i += MR;
            }
            if i < o.m {
                nt_tile::<1, 1>(o, i, j);
            }
            j += 1;
        }
    }
}

/// C(i..i+MR, j..j+16) from outer products over k: `panel` holds A(p, i..i+MR) for
/// every p contiguously (packed, so that A's long row stride cannot thrash L1), B's row
/// segments are loaded in place.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tn_tile<const MR: usize>(o: &Operands, panel: &[f32], i: usize, j: usize) {
    // SAFETY: columns j..j+16 of B exist for every p < k; C's tile is inside C.
    unsafe {
        let mut acc = [[_mm256_setzero_ps(); 2]; MR];
        let mut ap = panel.as_ptr();
        for p in 0..o.k {
            let brow = o.b.add(p * o.b_rs + j);
            let b0 = _mm256_loadu_ps(brow);
            let b1 = _mm256_loadu_ps(brow.add(8));
            for r in 0..MR {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
                acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
            }
            ap = ap.add(MR);
        }
        let mut out = [0.0f32; 16];
        for r in 0..MR {
            _mm256_storeu_ps(out.as_mut_ptr(), acc[r][0]);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), acc[r][1]);
            if o.c_cs == 1 {
                let crow = o.c.add((i + r) * o.c_rs + j);
                let alpha = _mm256_set1_ps(o.alpha);
                for h in 0..2 {
                    let v = _mm256_mul_ps(alpha, _mm256_loadu_ps(out.as_ptr().add(8 * h)));
                    let v = if o.beta == 0.0 {
                        v
                    } else {
                        _mm256_fmadd_ps(_mm256_set1_ps(o.beta), _mm256_loadu_ps(crow.add(8 * h)), v)
                    };
                    _mm256_storeu_ps(crow.add(8 * h), v);
                }
            } else {
                for (c, v) in out.iter().enumerate() {
                    store(o, i + r, j + c, *v);
                }
            }
        }
    }
}

/// All 16-wide column blocks of rows i..i+MR.
#[inline]
#[target_feature(enable = "avx2,fma")]
unsafe fn tn_rows<const MR: usize>(o: &Operands, panel: &mut Vec<f32>, i: usize) {
    // SAFETY: A(p, i + r) exists for p < k, r < MR; tiles stay inside the shapes.
    unsafe {
        panel.clear();
        for p in 0..o.k {
            for r in 0..MR {
                panel.push(*o.a.add((i + r) * o.a_rs + p * o.a_cs));
            }
        }
        let mut j = 0;
        while j + 16 <= o.n {
            tn_tile::<MR>(o, panel, i, j);
            j += 16;
        }
    }
}

/// Columns j.. (fewer than 16) in scalar: sum over k of A(i, p) B(p, j).
#[target_feature(enable = "avx2,fma")]
unsafe fn tn_scalar(o: &Operands, j0: usize) {
    // SAFETY: indices stay within the shapes.
    unsafe {
        for i in 0..o.m {
            for j in j0..o.n {
                let mut s = 0.0;
                for p in 0..o.k {
                    s += *o.a.add(i * o.a_rs + p * o.a_cs) * *o.b.add(p * o.b_rs + j);
                }
                store(o, i, j, s);
            }
        }
    }
}

thread_local! {
    static PANEL: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tn(o: &Operands) {
    const MR: usize = 6;
    // SAFETY: every tile stays inside the shapes; see `tn_rows`. The panel buffer is
    // per thread and grows once to k * MR floats, then is reused.
    PANEL.with_borrow_mut(|panel| unsafe {
        let mut i = 0;
        while i + MR <= o.m {
            tn_rows::<MR>(o, panel, i);
            i += MR;
        }
        match o.m - i {
            0 => {}
            1 => tn_rows::<1>(o, panel, i),
            2 => tn_rows::<2>(o, panel, i),
            3 => tn_rows::<3>(o, panel, i),
            4 => tn_rows::<4>(o, panel, i),
            _ => tn_rows::<5>(o, panel, i),
        }
        if !o.n.is_multiple_of(16) {
            tn_scalar(o, o.n / 16 * 16);
        }
    })
}
