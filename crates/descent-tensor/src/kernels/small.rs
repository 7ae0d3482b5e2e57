//! The unpacked AVX-512 product for small operands that are already in cache (attention's
//! per-head products: `32 x 128 x 32` and the like), where copying panels costs more than
//! the arithmetic: `C = alpha · A · B + beta · C` with B's rows contiguous (`b_cs == 1`) and
//! C's too, A in any layout (its values are broadcast one at a time, so `Pᵀ` is read as it
//! lies).
//!
//! Tiles of `MR` rows by `NV` vectors of 16 columns stay in registers over the whole of k;
//! each step of k loads `NV` vectors of one row of B and broadcasts `MR` values of A. The
//! last vector of a row is masked. Each value of C is one sum over k in order, whatever the
//! tile it falls in, so results do not depend on how the caller splits the rows.

use std::arch::x86_64::*;

use super::avx512::lanes;
use super::Operands;

/// `C = alpha · A · B + beta · C` on the calling thread.
///
/// # Safety
/// The operands must describe valid memory of their shapes, C not overlapping A or B;
/// `b_cs == 1` and `c_cs == 1`; the CPU must have AVX-512 F.
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn small(o: &Operands) {
    debug_assert!(o.b_cs == 1 && o.c_cs == 1);
    // Wide rows: 6 x 64 (24 accumulators); narrow ones (a head's 32 columns): 12 x 32.
    let narrow = o.n <= 32;
    let nc = if narrow { 32 } else { 64 };
    for j0 in (0..o.n).step_by(nc) {
        let w = (o.n - j0).min(nc);
        let mut i0 = 0;
        while i0 < o.m {
            // SAFETY: rows i0..i0 + step and columns j0..j0 + w are inside C, A and B.
            i0 += unsafe {
                match (narrow, o.m - i0) {
                    (true, 12..) => tile::<12, 2>(o, i0, j0, w),
                    (true, 8..) => tile::<8, 2>(o, i0, j0, w),
                    (true, 4..) => tile::<4, 2>(o, i0, j0, w),
                    (true, _) => tile::<1, 2>(o, i0, j0, w),
                    (false, 6..) => tile::<6, 4>(o, i0, j0, w),
                    (false, 4..) => tile::<4, 4>(o, i0, j0, w),
                    (false, _) => tile::<1, 4>(o, i0, j0, w),
                }
            };
        }
    }
}

/// Rows `i0..i0 + MR`, columns `j0..j0 + w` (`w <= 16 NV`) of C; returns `MR`.
#[inline]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const MR: usize, const NV: usize>(
    o: &Operands,
    i0: usize,
    j0: usize,
    w: usize,
) -> usize {
    let masks: [__mmask16; NV] = std::array::from_fn(|v| lanes(w.saturating_sub(16 * v).min(16)));
    let live = w.div_ceil(16);
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    // SAFETY: the caller keeps the rows and columns inside the operands; masked lanes are
    // not touched.
    unsafe {
        let a = o.a.add(i0 * o.a_rs);
        let b = o.b.add(j0);
        for p in 0..o.k {
            let brow = b.add(p * o.b_rs);
            let mut bv = [_mm512_setzero_ps(); NV];
            for v in 0..NV {
                if v < live {
                    bv[v] = _mm512_maskz_loadu_ps(masks[v], brow.add(16 * v));
                }
            }
            let ap = a.add(p * o.a_cs);
            for (r, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*ap.add(r * o.a_rs));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(x, bv[v], row[v]);
                }
            }
        }
        let (alpha, beta) = (_mm512_set1_ps(o.alpha), _mm512_set1_ps(o.beta));
        for (r, row) in acc.iter().enumerate() {
            let c = o.c.add((i0 + r) * o.c_rs + j0);
            for v in 0..live {
                let mut y = _mm512_mul_ps(alpha, row[v]);
                if o.beta != 0.0 {
                    let old = _mm512_maskz_loadu_ps(masks[v], c.add(16 * v));
                    y = _mm512_fmadd_ps(beta, old, y);
                }
                _mm512_mask_storeu_ps(c.add(16 * v), masks[v], y);
            }
        }
    }
    MR
}
