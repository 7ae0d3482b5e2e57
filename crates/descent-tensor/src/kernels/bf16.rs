//! The AVX512-BF16 product: the packed AVX-512 product (`avx512.rs`) with its panels rounded
//! to bfloat16 (round to nearest even, `vcvtneps2bf16`) two values of k to a 32-bit lane, and
//! a micro-kernel of `vdpbf16ps`, which adds both products of a lane's pair into an f32
//! accumulator: twice the multiply-adds of `vfmadd231ps` per instruction. C, alpha and beta
//! stay f32; so do the master weights and everything else a training step keeps.

#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::avx512::{
    grown, lanes, pack_a, pack_a_rows, pack_b, store_tile, Corner, KC, MC, MR, NC, NR, NV,
};
use super::Operands;

/// A packed row of the rows layout, in 32-bit pairs.
pub(super) const KC2: usize = KC / 2;
const _: () = assert!(KC.is_multiple_of(32));

/// Packed f32 blocks of A and B, and their bf16 pairs.
pub(super) type Packs = (Vec<f32>, Vec<f32>, Vec<u32>, Vec<u32>);

thread_local! {
    /// Per thread, reused from call to call.
    static PACKS: RefCell<Packs> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// 16 f32 of `lo` and 16 of `hi` rounded to bf16, as 16 lanes of (lo in the low half, hi in
/// the high half): the pair `vdpbf16ps` multiplies lane by lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) fn pairs(lo: __m512, hi: __m512) -> __m512i {
    // SAFETY of the transmutes: __m256bh and __m256i are both 32 bytes of plain bits.
    let lo: __m256i = unsafe { std::mem::transmute(_mm512_cvtneps_pbh(lo)) };
    let hi: __m256i = unsafe { std::mem::transmute(_mm512_cvtneps_pbh(hi)) };
    _mm512_or_si512(
        _mm512_cvtepu16_epi32(lo),
        _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(hi)),
    )
}

/// Converts `panels` packed panels of `width` values per k (`kc` of them, f32, at `src`) into
/// panels of `rows >= kc.div_ceil(2)` pairs per lane at `dst`; an odd k's last pair has a
/// zero high half, and the pairs past `kc` are zeros.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pair_panels(
    src: &[f32],
    dst: &mut [u32],
    panels: usize,
    width: usize,
    kc: usize,
    rows: usize,
) {
    let kc2 = kc.div_ceil(2);
    let vectors = width.div_ceil(16);
    // The last vector's lanes.
    let m = lanes(width - 16 * (vectors - 1));
    // SAFETY: panel q reads src[q·width·kc..][..width·kc] and writes dst[q·width·rows..]
    // [..width·rows]; the callers sized both for `panels` panels.
    unsafe {
        for q in 0..panels {
            let s = src.as_ptr().add(q * width * kc);
            let d = dst.as_mut_ptr().add(q * width * rows);
            for p2 in 0..kc2 {
                for v in 0..vectors {
                    let mask = if v + 1 == vectors { m } else { 0xffff };
                    let lo = _mm512_maskz_loadu_ps(mask, s.add(2 * p2 * width + 16 * v));
                    let hi = if 2 * p2 + 1 < kc {
                        _mm512_maskz_loadu_ps(mask, s.add((2 * p2 + 1) * width + 16 * v))
                    } else {
                        _mm512_setzero_ps()
                    };
                    let x = pairs(lo, hi);
                    _mm512_mask_storeu_epi32(d.add(p2 * width + 16 * v) as *mut i32, mask, x);
                }
            }
            std::ptr::write_bytes(d.add(kc2 * width), 0, (rows - kc2) * width);
        }
    }
}

/// Converts the rows layout's panels (`MR` rows of `KC` f32 each, `kc` used) into rows of
/// `KC2` pairs: consecutive values of a row are already a pair.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pair_rows(src: &[f32], dst: &mut [u32], rows: usize, kc: usize) {
    // SAFETY: row r reads src[r·KC..][..KC] and writes dst[r·KC2..][..KC2].
    unsafe { pair_rows_strided(src.as_ptr(), KC, rows, rows, kc, dst) }
}

/// Rows `0..rows` of `kc` f32 each, `ld` apart from `src`, as rows of `KC2` pairs in `dst`
/// (an odd `kc`'s last pair and the pairs up to the next 16 are zeros); rows `rows..total`
/// are zeros.
///
/// # Safety
/// `src` must hold the rows; `dst` must hold `total·KC2` values.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pair_rows_strided(
    src: *const f32,
    ld: usize,
    rows: usize,
    total: usize,
    kc: usize,
    dst: &mut [u32],
) {
    // SAFETY: row r reads src[r·ld..][..kc] and writes dst[r·KC2..][..KC2].
    unsafe {
        for r in 0..total {
            // Pointers past a row's end are formed with wrapping arithmetic: the masked
            // loads read nothing there.
            let s = src.wrapping_add(r * ld);
            let d = dst.as_mut_ptr().add(r * KC2);
            for p in (0..kc).step_by(32) {
                let x: __m512i = if r < rows {
                    let m0 = lanes(kc - p);
                    let m1 = lanes(kc.saturating_sub(p + 16));
                    let lo = _mm512_maskz_loadu_ps(m0, s.wrapping_add(p));
                    let hi = _mm512_maskz_loadu_ps(m1, s.wrapping_add(p + 16));
                    // The low 16 bf16 from the second argument, in order.
                    std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo))
                } else {
                    _mm512_setzero_si512()
                };
                _mm512_storeu_si512(d.add(p / 2) as *mut __m512i, x);
            }
        }
    }
}

/// Rows `0..rows` of a column-major block (row `r`, column `p` at `src + r + p·ld`) as rows
/// of `KC2` pairs over its `kc` columns, as [`pair_rows_strided`] writes them, through 16 x 16
/// transposes of pairs; rows `rows..total` (a multiple of 16) are zeros.
///
/// # Safety
/// `src` must hold the block; `dst` must hold `total·KC2` values.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pair_rows_columns(
    src: *const f32,
    ld: usize,
    rows: usize,
    total: usize,
    kc: usize,
    dst: &mut [u32],
) {
    let kc2 = kc.div_ceil(2);
    // SAFETY: column p of rows r0..r0+16 is read at src + p·ld + r0 (masked to `rows`, and
    // only for p < kc); row r of dst is written at r·KC2, 16 pairs at a time up to the next
    // 16 past kc2 (<= KC2).
    unsafe {
        for r0 in (0..total).step_by(16) {
            let m = lanes(rows.saturating_sub(r0));
            for q0 in (0..kc2).step_by(16) {
                let v: [__m512; 16] = std::array::from_fn(|t| {
                    let p = 2 * (q0 + t);
                    let col = |p: usize| {
                        if p < kc {
                            _mm512_maskz_loadu_ps(m, src.wrapping_add(p * ld + r0))
                        } else {
                            _mm512_setzero_ps()
                        }
                    };
                    _mm512_castsi512_ps(pairs(col(p), col(p + 1)))
                });
                let t = super::avx512::transpose16(v);
                for (j, row) in t.iter().enumerate() {
                    let d = dst.as_mut_ptr().add((r0 + j) * KC2 + q0);
                    _mm512_storeu_si512(d as *mut __m512i, _mm512_castps_si512(*row));
                }
            }
        }
    }
}

/// B(p0..p0+kc, j0..j0+nc) of a row-major B (`b_cs == 1`) straight into pair panels of `NR`
/// columns and `rows` pairs each, as `pack_b` then [`pair_panels`] would leave them: pairs of
/// consecutive rows, zeros past the last column and past `kc`.
///
/// # Safety
/// The block must lie inside B; `dst` must hold `nc.div_ceil(NR)·NR·rows` values.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn pair_panels_from_rows(
    o: &Operands,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [u32],
    rows: usize,
) {
    let kc2 = kc.div_ceil(2);
    // SAFETY: row p of B is read at b + (p0 + p)·b_rs + j0 + q·NR + 16·v, masked to the
    // columns left and only for p < kc; panel q is written at q·NR·rows, rows·NR values.
    unsafe {
        for q in 0..nc.div_ceil(NR) {
            let cols = (nc - q * NR).min(NR);
            let base = o.b.add(p0 * o.b_rs + j0 + q * NR);
            let d = dst.as_mut_ptr().add(q * NR * rows);
            for p2 in 0..kc2 {
                for v in 0..NR / 16 {
                    let m = lanes(cols.saturating_sub(16 * v));
                    let row = |p: usize| {
                        if p < kc {
                            _mm512_maskz_loadu_ps(m, base.wrapping_add(p * o.b_rs + 16 * v))
                        } else {
                            _mm512_setzero_ps()
                        }
                    };
                    let x = pairs(row(2 * p2), row(2 * p2 + 1));
                    _mm512_storeu_si512(d.add(p2 * NR + 16 * v) as *mut __m512i, x);
                }
            }
            std::ptr::write_bytes(d.add(kc2 * NR), 0, (rows - kc2) * NR);
        }
    }
}

/// One `MR x NR` tile over `kc2` pairs of k: as the f32 micro-kernel, two k per instruction.
#[inline]
#[target_feature(enable = "avx512f,avx512bf16")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const ROW_PANEL: bool>(
    kc2: usize,
    a: *const u32,
    b: *const u32,
    at: Corner,
    (rows, cols): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    // SAFETY: the panels hold kc2·MR and kc2·NR pairs; the corner of C is inside C.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc2 {
            let bv: [__m512bh; NV] = std::array::from_fn(|v| {
                std::mem::transmute(_mm512_loadu_si512(b.add(16 * v) as *const __m512i))
            });
            for r in 0..MR {
                let pair = *a.add(if ROW_PANEL { r * KC2 } else { r });
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(pair as i32));
                for v in 0..NV {
                    acc[r][v] = _mm512_dpbf16_ps(acc[r][v], av, bv[v]);
                }
            }
            a = a.add(if ROW_PANEL { 1 } else { MR });
            b = b.add(NR);
        }
        store_tile(&acc, at, (rows, cols), alpha, beta);
    }
}

/// `C = alpha · bf16(A) · bf16(B) + beta · C`, accumulated in f32, for any layouts.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn packed(o: &Operands) {
    PACKS.with_borrow_mut(|(pa, pb, ha, hb)| {
        let kc_max = o.k.min(KC);
        let rows_layout = o.a_cs == 1 && o.a_rs != 1;
        let a_kc = if rows_layout { KC } else { kc_max };
        let a_panels = o.m.min(MC).div_ceil(MR);
        let b_panels = o.n.min(NC).div_ceil(NR);
        let pa = grown(pa, a_panels * MR * a_kc);
        let pb = grown(pb, b_panels * NR * kc_max);
        let ha = grown(ha, a_panels * MR * a_kc.div_ceil(2));
        let hb = grown(hb, b_panels * NR * kc_max.div_ceil(2));
        // SAFETY: the blocks stay inside the shapes; the packs were sized above.
        unsafe {
            for j0 in (0..o.n).step_by(NC) {
                let nc = (o.n - j0).min(NC);
                for p0 in (0..o.k).step_by(KC) {
                    let kc = (o.k - p0).min(KC);
                    let kc2 = kc.div_ceil(2);
                    let beta = if p0 == 0 { o.beta } else { 1.0 };
                    pack_b(o, p0, kc, j0, nc, pb);
                    pair_panels(pb, hb, nc.div_ceil(NR), NR, kc, kc2);
                    for i0 in (0..o.m).step_by(MC) {
                        let mc = (o.m - i0).min(MC);
                        let panels = mc.div_ceil(MR);
                        if rows_layout {
                            pack_a_rows(o, i0, mc, p0, kc, pa);
                            pair_rows(pa, ha, panels * MR, kc);
                        } else {
                            pack_a(o, i0, mc, p0, kc, pa);
                            pair_panels(pa, ha, panels, MR, kc, kc2);
                        }
                        for q in 0..nc.div_ceil(NR) {
                            let bp = hb.as_ptr().add(q * NR * kc2);
                            let cols = (nc - q * NR).min(NR);
                            for r in 0..panels {
                                let rows = (mc - r * MR).min(MR);
                                let at = o.corner(i0 + r * MR, j0 + q * NR, p0);
                                let rc = (rows, cols);
                                if rows_layout {
                                    let ap = ha.as_ptr().add(r * MR * KC2);
                                    micro::<true>(kc2, ap, bp, at, rc, o.alpha, beta)
                                } else {
                                    let ap = ha.as_ptr().add(r * MR * kc2);
                                    micro::<false>(kc2, ap, bp, at, rc, o.alpha, beta)
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}
