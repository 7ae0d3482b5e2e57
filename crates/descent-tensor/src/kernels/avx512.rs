//! The AVX-512 kernel: a cache-blocked product in the style of BLIS (Van Zee and van de Geijn,
//! "BLIS: A Framework for Rapidly Instantiating BLAS Functionality", 2015) for every layout.
//! Blocks of A and B are copied into panels the micro-kernel reads in order (16 x 16
//! transposes where the layout needs them), and a `14 x 32` tile of C stays in registers
//! over a block of k.
//!
//! Measured on a 2-core Intel Xeon with AVX-512 (2026-12-01; `descent bench gemm`), one
//! thread: tiles of 14 x 32 (28 accumulators) beat 8 x 48, 12 x 32, 6 x 64 and 4 x 96;
//! packing with transposes beat unpacked dot products for `x · Wᵀ` (131 against 100
//! GFLOP/s on 64 x 512 x 784); blocks of k of 128 to 320 and other block sizes were within
//! the noise.

// Register tiles read best with explicit indices.
#![allow(clippy::needless_range_loop)]

use std::arch::x86_64::*;
use std::cell::RefCell;

use super::Operands;

/// Rows of A per micro-panel (values broadcast) and vectors of 16 columns of B per
/// micro-panel: a tile of `MR x 16·NV` = 28 accumulators.
pub(super) const MR: usize = 14;
pub(super) const NV: usize = 2;
pub(super) const NR: usize = 16 * NV;
// A micro-panel's column of A is one masked vector.
const _: () = assert!(MR <= 16);
/// Block sizes: k per packed block (a micro-panel of B, `KC x NR`, stays in L1), rows of A
/// per block (the packed block of A, `MC x KC`, stays in L2) and columns of B per block.
pub(super) const KC: usize = crate::PACKED_KC;
pub(super) const MC: usize = 14 * MR;
pub(super) const NC: usize = 1536;

/// Mask of the first `n` of 16 lanes.
#[inline]
pub(super) fn lanes(n: usize) -> __mmask16 {
    if n >= 16 {
        0xffff
    } else {
        ((1u32 << n) - 1) as __mmask16
    }
}

/// A tile's place in C and where `beta`'s old values come from: C itself, or, in the first
/// block of k of a product with a bias ([`Operands::bias`]), the bias, the same row for
/// every row of C (`old_rs` 0).
#[derive(Clone, Copy)]
pub(super) struct Corner {
    pub c: *mut f32,
    pub rs: usize,
    pub cs: usize,
    pub old: *const f32,
    pub old_rs: usize,
}

impl Operands {
    /// The corner of C at row `i`, column `j`, for the block of k from `p0`.
    pub(super) fn corner(&self, i: usize, j: usize, p0: usize) -> Corner {
        let c = self.c.wrapping_add(i * self.c_rs + j * self.c_cs);
        let (old, old_rs) = match p0 == 0 && !self.bias.is_null() {
            true => (self.bias.wrapping_add(j), 0),
            false => (c as *const f32, self.c_rs),
        };
        Corner {
            c,
            rs: self.c_rs,
            cs: self.c_cs,
            old,
            old_rs,
        }
    }
}

/// `alpha · v + beta · old` into the `n <= 16` values of C from `p`, `cs` apart, the old
/// values read from `old` (C itself, or a bias row), also `cs` apart.
#[inline(always)]
pub(super) unsafe fn store_row(
    p: *mut f32,
    old: *const f32,
    cs: usize,
    n: usize,
    v: __m512,
    alpha: f32,
    beta: f32,
) {
    // SAFETY: the n values from p and old, cs apart, are inside C and the bias (the callers'
    // bounds).
    unsafe {
        let v = _mm512_mul_ps(_mm512_set1_ps(alpha), v);
        if cs == 1 {
            let m = lanes(n);
            let v = if beta == 0.0 {
                v
            } else {
                _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(m, old), v)
            };
            _mm512_mask_storeu_ps(p, m, v);
        } else {
            let mut out = [0.0f32; 16];
            _mm512_storeu_ps(out.as_mut_ptr(), v);
            for (c, &x) in out.iter().enumerate().take(n) {
                *p.add(c * cs) = if beta == 0.0 {
                    x
                } else {
                    x + beta * *old.add(c * cs)
                };
            }
        }
    }
}

/// The transpose of a 16 x 16 block held as 16 rows.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) fn transpose16(r: [__m512; 16]) -> [__m512; 16] {
    // Pairs of rows interleaved, then pairs of pairs: u[4g + j] holds, in 128-bit lane L,
    // column 4L + j of rows 4g..4g+4.
    let t: [__m512; 16] = std::array::from_fn(|q| {
        let (a, b) = (r[q / 2 * 2], r[q / 2 * 2 + 1]);
        if q % 2 == 0 {
            _mm512_unpacklo_ps(a, b)
        } else {
            _mm512_unpackhi_ps(a, b)
        }
    });
    let u: [__m512; 16] = std::array::from_fn(|q| {
        let (g, j) = (q / 4, q % 4);
        let a = _mm512_castps_pd(t[4 * g + j / 2]);
        let b = _mm512_castps_pd(t[4 * g + 2 + j / 2]);
        _mm512_castpd_ps(if j % 2 == 0 {
            _mm512_unpacklo_pd(a, b)
        } else {
            _mm512_unpackhi_pd(a, b)
        })
    });
    // Then the 128-bit lanes: column 4L + j gathers lane L of u[j], u[4 + j], u[8 + j],
    // u[12 + j].
    let mut out = [_mm512_setzero_ps(); 16];
    for j in 0..4 {
        let v0 = _mm512_shuffle_f32x4::<0x88>(u[j], u[4 + j]);
        let v1 = _mm512_shuffle_f32x4::<0xDD>(u[j], u[4 + j]);
        let v2 = _mm512_shuffle_f32x4::<0x88>(u[8 + j], u[12 + j]);
        let v3 = _mm512_shuffle_f32x4::<0xDD>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_f32x4::<0x88>(v0, v2);
        out[8 + j] = _mm512_shuffle_f32x4::<0xDD>(v0, v2);
        out[4 + j] = _mm512_shuffle_f32x4::<0x88>(v1, v3);
        out[12 + j] = _mm512_shuffle_f32x4::<0xDD>(v1, v3);
    }
    out
}

/// Copies `rows <= 16` lines of `len` values (line `r` from `src + r·ld`, contiguous) into
/// `dst` transposed: value `p` of line `r` goes to `dst[p·stride + r]`. Lines past `rows`
/// read as zeros; `width` values are written per `p` (`rows <= width <= 16`).
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn transpose_lines(
    src: *const f32,
    ld: usize,
    rows: usize,
    len: usize,
    dst: *mut f32,
    stride: usize,
    width: usize,
) {
    // SAFETY: reads stay in the `rows` lines of `len` values; writes in `len` runs of
    // `width` values `stride` apart.
    unsafe {
        let wmask = lanes(width);
        let mut p = 0;
        while p < len {
            let n = (len - p).min(16);
            let m = lanes(n);
            let r: [__m512; 16] = std::array::from_fn(|q| {
                if q < rows {
                    _mm512_maskz_loadu_ps(m, src.add(q * ld + p))
                } else {
                    _mm512_setzero_ps()
                }
            });
            let t = transpose16(r);
            for (q, v) in t.iter().enumerate().take(n) {
                _mm512_mask_storeu_ps(dst.add((p + q) * stride), wmask, *v);
            }
            p += 16;
        }
    }
}

/// `dst (cols x rows) = srcᵀ` for row-major blocks: `src` with rows `src_rs` apart, `dst`
/// with rows `dst_rs` apart, in 16 x 16 register transposes.
///
/// # Safety
/// The blocks must be valid for their shapes and strides and must not overlap.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose(
    src: *const f32,
    src_rs: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    dst_rs: usize,
) {
    // SAFETY: each call reads rows i..i+16 of src and writes columns i..i+16 of dst.
    unsafe {
        for i in (0..rows).step_by(16) {
            let r = (rows - i).min(16);
            transpose_lines(src.add(i * src_rs), src_rs, r, cols, dst.add(i), dst_rs, r);
        }
    }
}

thread_local! {
    /// Packed blocks of A and B, per thread; they grow to their largest size once and are
    /// reused, so a training step allocates nothing after the first.
    static PACKS: RefCell<(Vec<f32>, Vec<f32>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// `v` from its first value on a 64-byte boundary.
pub(crate) fn aligned<T>(v: &mut [T]) -> &mut [T] {
    let skip = v.as_ptr().align_offset(64).min(v.len());
    &mut v[skip..]
}

/// A pack buffer of at least `n` values from a 64-byte boundary: `v` grown to `n + 16` values
/// once (so that a pack can start on a line; a vector load that straddles two lines costs
/// two) and reused after.
pub(super) fn grown<T: Copy + Default>(v: &mut Vec<T>, n: usize) -> &mut [T] {
    if v.len() < n + 16 {
        v.resize(n + 16, T::default());
    }
    aligned(v)
}

/// `alpha · acc + beta · old` into the `rows x cols` corner `at` of C from a micro-kernel's
/// `MR x NR` accumulators. Always inlined (as `store_row`), so the accumulators stay in
/// registers: a call spilled them and cost the GPT's f32 step 6%.
#[inline(always)]
pub(super) unsafe fn store_tile(
    acc: &[[__m512; NV]; MR],
    at: Corner,
    (rows, cols): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    // SAFETY: the corner of C (and its old values) is inside C (the callers' bounds).
    unsafe {
        for r in 0..rows {
            for v in 0..NV {
                let n = cols.saturating_sub(16 * v).min(16);
                if n > 0 {
                    let (c, old) = (at.c.add(r * at.rs), at.old.add(r * at.old_rs));
                    let off = 16 * v * at.cs;
                    store_row(c.add(off), old.add(off), at.cs, n, acc[r][v], alpha, beta);
                }
            }
        }
    }
}

/// Copies A(i0..i0+mc, p0..p0+kc) into micro-panels of MR rows: panel `q` holds, for each
/// p, A(i0 + q·MR + r, p0 + p) for r < MR, zeros past the last row.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_a(
    o: &Operands,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    // SAFETY: the reads stay inside A's rows i0..i0+mc and columns p0..p0+kc.
    unsafe {
        for (q, panel) in dst
            .chunks_exact_mut(MR * kc)
            .take(mc.div_ceil(MR))
            .enumerate()
        {
            let rows = (mc - q * MR).min(MR);
            let base = o.a.add((i0 + q * MR) * o.a_rs + p0 * o.a_cs);
            if o.a_rs == 1 {
                // Column-major A: the values of each p are contiguous; zeros past the last row.
                let m = lanes(rows);
                for (p, out) in panel.chunks_exact_mut(MR).enumerate() {
                    let v = _mm512_maskz_loadu_ps(m, base.add(p * o.a_cs));
                    _mm512_mask_storeu_ps(out.as_mut_ptr(), lanes(MR), v);
                }
                continue;
            }
            if o.a_cs == 1 {
                // Row-major A: 16 x 16 transposes; rows past the last are zeros.
                transpose_lines(base, o.a_rs, rows, kc, panel.as_mut_ptr(), MR, MR);
                continue;
            }
            if rows < MR {
                panel.fill(0.0);
            }
            for r in 0..rows {
                let row = base.add(r * o.a_rs);
                for p in 0..kc {
                    *panel.get_unchecked_mut(p * MR + r) = *row.add(p * o.a_cs);
                }
            }
        }
    }
}

/// Copies B(p0..p0+kc, j0..j0+nc) into micro-panels of NR columns: panel `q` holds, for
/// each p, B(p0 + p, j0 + q·NR + c) for c < NR, zeros past the last column.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_b(
    o: &Operands,
    p0: usize,
    kc: usize,
    j0: usize,
    nc: usize,
    dst: &mut [f32],
) {
    // SAFETY: the reads stay inside B's rows p0..p0+kc and columns j0..j0+nc.
    unsafe {
        for (q, panel) in dst
            .chunks_exact_mut(NR * kc)
            .take(nc.div_ceil(NR))
            .enumerate()
        {
            let cols = (nc - q * NR).min(NR);
            let base = o.b.add(p0 * o.b_rs + (j0 + q * NR) * o.b_cs);
            if o.b_cs == 1 {
                // Row-major B: each p's NR values are contiguous, masked at the edge.
                for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                    let src = base.add(p * o.b_rs);
                    for v in 0..NV {
                        let n = cols.saturating_sub(16 * v);
                        let x = _mm512_maskz_loadu_ps(lanes(n), src.add(16 * v));
                        _mm512_storeu_ps(out.as_mut_ptr().add(16 * v), x);
                    }
                }
                continue;
            }
            if o.b_rs == 1 {
                // B stored transposed (`x · Wᵀ`): 16 x 16 transposes of its columns.
                for v in 0..NV {
                    transpose_lines(
                        base.add(16 * v * o.b_cs),
                        o.b_cs,
                        cols.saturating_sub(16 * v).min(16),
                        kc,
                        panel.as_mut_ptr().add(16 * v),
                        NR,
                        16,
                    );
                }
                continue;
            }
            if cols < NR {
                panel.fill(0.0);
            }
            for c in 0..cols {
                let col = base.add(c * o.b_cs);
                for p in 0..kc {
                    *panel.get_unchecked_mut(p * NR + c) = *col.add(p * o.b_rs);
                }
            }
        }
    }
}

/// Copies A(i0..i0+mc, p0..p0+kc) of a row-major A into micro-panels of MR rows kept as rows:
/// row `r` of panel `q` at `q·MR·KC + r·KC` (a straight copy, where the column layout needs a
/// transpose), zeros past the last row.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_a_rows(
    o: &Operands,
    i0: usize,
    mc: usize,
    p0: usize,
    kc: usize,
    dst: &mut [f32],
) {
    // SAFETY: the reads stay inside A's rows i0..i0+mc and columns p0..p0+kc.
    unsafe {
        for (q, panel) in dst
            .chunks_exact_mut(MR * KC)
            .take(mc.div_ceil(MR))
            .enumerate()
        {
            let rows = (mc - q * MR).min(MR);
            for (r, out) in panel.chunks_exact_mut(KC).enumerate() {
                let out = &mut out[..kc];
                if r < rows {
                    // In vectors (a call to memcpy per row costs as much as the copy).
                    let src = o.a.add((i0 + q * MR + r) * o.a_rs + p0);
                    for p in (0..kc).step_by(16) {
                        let m = lanes(kc - p);
                        let v = _mm512_maskz_loadu_ps(m, src.add(p));
                        _mm512_mask_storeu_ps(out.as_mut_ptr().add(p), m, v);
                    }
                } else {
                    out.fill(0.0);
                }
            }
        }
    }
}

/// One `MR x NR` tile: the sum over `kc` of outer products of a packed A micro-panel and a
/// packed B micro-panel, then `alpha · sum + beta · old` into the `rows x cols` corner `at`
/// of C. The A panel holds, for each k, its MR values
/// together (`ROW_PANEL` false) or its MR rows `KC` apart (true, [`pack_a_rows`]); the sums
/// are the same either way.
#[inline]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn micro<const ROW_PANEL: bool>(
    kc: usize,
    a: *const f32,
    b: *const f32,
    at: Corner,
    (rows, cols): (usize, usize),
    alpha: f32,
    beta: f32,
) {
    // SAFETY: the panels hold kc·MR and kc·NR values; the corner of C is inside C.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); NV]; MR];
        let (mut a, mut b) = (a, b);
        for _ in 0..kc {
            let bv: [__m512; NV] = std::array::from_fn(|v| _mm512_loadu_ps(b.add(16 * v)));
            for r in 0..MR {
                let av = _mm512_set1_ps(*a.add(if ROW_PANEL { r * KC } else { r }));
                for v in 0..NV {
                    acc[r][v] = _mm512_fmadd_ps(av, bv[v], acc[r][v]);
                }
            }
            a = a.add(if ROW_PANEL { 1 } else { MR });
            b = b.add(NR);
        }
        store_tile(&acc, at, (rows, cols), alpha, beta);
    }
}

/// `C = alpha · A · B + beta · C` for any layouts: blocks of `MC x KC` of A and `KC x NC` of B
/// are packed, then every `MR x NR` tile of the block runs through [`micro`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn packed(o: &Operands) {
    PACKS.with_borrow_mut(|(pa, pb)| {
        let kc_max = o.k.min(KC);
        // A row-major A is packed as rows (a copy), anything else as columns.
        let rows_layout = o.a_cs == 1 && o.a_rs != 1;
        let a_kc = if rows_layout { KC } else { kc_max };
        let pa = grown(pa, o.m.min(MC).div_ceil(MR) * MR * a_kc);
        let pb = grown(pb, o.n.min(NC).div_ceil(NR) * NR * kc_max);
        // SAFETY: the blocks stay inside the shapes; the packs were sized above.
        unsafe {
            for j0 in (0..o.n).step_by(NC) {
                let nc = (o.n - j0).min(NC);
                for p0 in (0..o.k).step_by(KC) {
                    let kc = (o.k - p0).min(KC);
                    // The first block of k applies beta; the others add to what it left.
                    let beta = if p0 == 0 { o.beta } else { 1.0 };
                    pack_b(o, p0, kc, j0, nc, pb);
                    for i0 in (0..o.m).step_by(MC) {
                        let mc = (o.m - i0).min(MC);
                        match rows_layout {
                            true => pack_a_rows(o, i0, mc, p0, kc, pa),
                            false => pack_a(o, i0, mc, p0, kc, pa),
                        }
                        for q in 0..nc.div_ceil(NR) {
                            let bp = pb.as_ptr().add(q * NR * kc);
                            let cols = (nc - q * NR).min(NR);
                            for r in 0..mc.div_ceil(MR) {
                                let rows = (mc - r * MR).min(MR);
                                let at = o.corner(i0 + r * MR, j0 + q * NR, p0);
                                let rc = (rows, cols);
                                match rows_layout {
                                    true => {
                                        let ap = pa.as_ptr().add(r * MR * KC);
                                        micro::<true>(kc, ap, bp, at, rc, o.alpha, beta)
                                    }
                                    false => {
                                        let ap = pa.as_ptr().add(r * MR * kc);
                                        micro::<false>(kc, ap, bp, at, rc, o.alpha, beta)
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    });
}
