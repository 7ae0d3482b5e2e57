//! The AMX product in bf16 (Intel Advanced Matrix Extensions: eight 1 KB tile registers and
//! `tdpbf16ps`, a 16 x 16 block of f32 sums over 32 values of k per instruction) for a
//! row-major A (a forward pass `x · Wᵀ`, an input gradient `dy · W`) or a column-major one (a
//! weight gradient `dyᵀ · x`, its rows gathered through 16 x 16 transposes).
//! The panels are those of the AVX512-BF16 product (`bf16.rs`): A's rows of bf16 pairs are
//! the tiles' rows as they are, B's pair panels are already in the "VNNI" layout the tiles
//! read. A `32 x 32` block of C stays in four tiles over a block of k.
//!
//! Linux hands out AMX state to a process that asks (`arch_prctl(ARCH_REQ_XCOMP_PERM)`); the
//! kernel is used where the CPU has AMX-BF16 and the request succeeds.

use std::arch::asm;
use std::arch::x86_64::*;
use std::cell::RefCell;
use std::sync::OnceLock;

use super::avx512::{aligned, grown, pack_b, store_row, KC, NC, NR};
use super::bf16::{
    pair_panels, pair_panels_from_rows, pair_rows_columns, pair_rows_strided, Packs, KC2,
};
use super::Operands;

/// Rows of A per block: a multiple of the 32 rows of a micro-tile.
const MC: usize = 192;
/// Pairs of k per tile row (64 bytes).
const TK: usize = 16;

/// Whether the CPU has AMX-TILE and AMX-BF16 and this process may use them.
pub(super) fn available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        let edx = __cpuid_count(7, 0).edx;
        let (bf16, tile) = (edx & (1 << 22) != 0, edx & (1 << 24) != 0);
        bf16 && tile && request_permission()
    })
}

/// `arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`: true when Linux granted it.
fn request_permission() -> bool {
    #[cfg(target_os = "linux")]
    {
        const SYS_ARCH_PRCTL: usize = 158;
        const ARCH_REQ_XCOMP_PERM: usize = 0x1023;
        const XFEATURE_XTILEDATA: usize = 18;
        let ret: isize;
        // SAFETY: the system call reads its two integer arguments and changes only this
        // process's permission to use extended state; rcx and r11 are clobbered by `syscall`.
        unsafe {
            asm!(
                "syscall",
                inlateout("rax") SYS_ARCH_PRCTL as isize => ret,
                in("rdi") ARCH_REQ_XCOMP_PERM,
                in("rsi") XFEATURE_XTILEDATA,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        ret == 0
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

/// The tile configuration: tiles 0-3 are C (16 rows of 16 f32), 4-5 A (16 rows of 16 pairs),
/// 6-7 B (16 pairs of 16 columns); every row 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

impl TileConfig {
    fn new() -> Self {
        let mut c = [0u8; 64];
        c[0] = 1; // palette 1
        for t in 0..8 {
            c[16 + 2 * t..18 + 2 * t].copy_from_slice(&64u16.to_le_bytes());
            c[48 + t] = 16;
        }
        TileConfig(c)
    }
}

thread_local! {
    /// Per thread: packed f32 blocks of A and B and their bf16 pairs.
    static PACKS: RefCell<Packs> =
        const { RefCell::new((Vec::new(), Vec::new(), Vec::new(), Vec::new())) };
}

/// The four C tiles (a `32 x 32` block) from `c`, rows `rs` bytes apart.
#[inline]
unsafe fn load_c(c: *const f32, rs: usize) {
    // SAFETY: the caller's block of 32 rows of 32 f32 is inside C; AMX is configured.
    unsafe {
        asm!(
            "tileloadd tmm0, [{c0} + {s}*1]",
            "tileloadd tmm1, [{c1} + {s}*1]",
            "tileloadd tmm2, [{c2} + {s}*1]",
            "tileloadd tmm3, [{c3} + {s}*1]",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.byte_add(16 * rs),
            c3 = in(reg) c.byte_add(16 * rs).add(16),
            s = in(reg) rs,
            options(nostack, readonly),
        );
    }
}

/// The four C tiles set to zero.
#[inline]
unsafe fn zero_c() {
    // SAFETY: AMX is configured (the callers' contract); only tile registers change.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3"
        )
    }
}

/// The four C tiles into `c`, rows `rs` bytes apart.
#[inline]
unsafe fn store_c(c: *mut f32, rs: usize) {
    // SAFETY: as `load_c`, written.
    unsafe {
        asm!(
            "tilestored [{c0} + {s}*1], tmm0",
            "tilestored [{c1} + {s}*1], tmm1",
            "tilestored [{c2} + {s}*1], tmm2",
            "tilestored [{c3} + {s}*1], tmm3",
            c0 = in(reg) c,
            c1 = in(reg) c.add(16),
            c2 = in(reg) c.byte_add(16 * rs),
            c3 = in(reg) c.byte_add(16 * rs).add(16),
            s = in(reg) rs,
            options(nostack),
        );
    }
}

/// Adds to the four C tiles the products over `kp` pairs of k (a multiple of 16) of 32 rows
/// of pairs at `a` (`KC2` pairs apart) and a panel of `NR` columns at `b` (`NR` pairs a row).
#[inline]
unsafe fn micro(kp: usize, a: *const u32, b: *const u32) {
    let sa = KC2 * 4;
    let sb = NR * 4;
    // SAFETY: the caller configured AMX; the tiles read 16 rows of 64 bytes inside the
    // packed panels, which are sized for whole tiles.
    unsafe {
        for p in (0..kp).step_by(TK) {
            let a0 = a.add(p);
            let a1 = a.add(16 * KC2 + p);
            let b0 = b.add(p * NR);
            let b1 = b.add(p * NR + 16);
            asm!(
                "tileloadd tmm4, [{a0} + {sa}*1]",
                "tileloadd tmm5, [{a1} + {sa}*1]",
                "tileloadd tmm6, [{b0} + {sb}*1]",
                "tileloadd tmm7, [{b1} + {sb}*1]",
                "tdpbf16ps tmm0, tmm4, tmm6",
                "tdpbf16ps tmm1, tmm4, tmm7",
                "tdpbf16ps tmm2, tmm5, tmm6",
                "tdpbf16ps tmm3, tmm5, tmm7",
                a0 = in(reg) a0,
                a1 = in(reg) a1,
                b0 = in(reg) b0,
                b1 = in(reg) b1,
                sa = in(reg) sa,
                sb = in(reg) sb,
                options(nostack, readonly),
            );
        }
    }
}

/// `C = alpha · bf16(A) · bf16(B) + beta · C` for a row-major (`a_cs == 1`) or column-major
/// (`a_rs == 1`: a weight gradient's `dyᵀ`) A, on AMX.
///
/// # Safety
/// The operands must describe valid memory; [`available`] must be true.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn packed(o: &Operands) {
    PACKS.with_borrow_mut(|(_, pb, ha, hb)| {
        let kc_max = o.k.min(KC);
        let kp_max = kc_max.div_ceil(2).div_ceil(TK) * TK;
        let b_panels = o.n.min(NC).div_ceil(NR);
        // A row-major B goes straight into pairs: no f32 pack for it.
        let pb = match o.b_cs {
            1 => &mut [][..],
            _ => grown(pb, b_panels * NR * kc_max),
        };
        let ha = grown(ha, MC * KC2);
        let hb = grown(hb, b_panels * NR * kp_max);
        let cfg = TileConfig::new();
        let mut tiles = [0.0f32; 4 * 256 + 16];
        let tiles = aligned(&mut tiles);
        let out = tiles.as_mut_ptr();
        // SAFETY: AMX is available (the caller's contract) and configured here for this
        // thread; the blocks stay inside the shapes; the packs were sized above.
        unsafe {
            asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
            for j0 in (0..o.n).step_by(NC) {
                let nc = (o.n - j0).min(NC);
                for p0 in (0..o.k).step_by(KC) {
                    let kc = (o.k - p0).min(KC);
                    let kp = kc.div_ceil(2).div_ceil(TK) * TK;
                    let beta = if p0 == 0 { o.beta } else { 1.0 };
                    if o.b_cs == 1 {
                        // A row-major B (a weight gradient's x): straight into pairs.
                        pair_panels_from_rows(o, p0, kc, j0, nc, hb, kp);
                    } else {
                        pack_b(o, p0, kc, j0, nc, pb);
                        pair_panels(pb, hb, nc.div_ceil(NR), NR, kc, kp);
                    }
                    for i0 in (0..o.m).step_by(MC) {
                        let mc = (o.m - i0).min(MC);
                        // A's rows straight from A to pairs; zeros up to whole tiles.
                        let total = mc.div_ceil(32) * 32;
                        if o.a_cs == 1 {
                            let a = o.a.add(i0 * o.a_rs + p0);
                            pair_rows_strided(a, o.a_rs, mc, total, kc, ha);
                        } else {
                            let a = o.a.add(i0 + p0 * o.a_cs);
                            pair_rows_columns(a, o.a_cs, mc, total, kc, ha);
                        }
                        for q in 0..nc.div_ceil(NR) {
                            let bp = hb.as_ptr().add(q * NR * kp);
                            let cols = (nc - q * NR).min(NR);
                            for r in (0..mc).step_by(32) {
                                let ap = ha.as_ptr().add(r * KC2);
                                let at = o.corner(i0 + r, j0 + q * NR, p0);
                                let (c, rs) = (at.c, o.c_rs * 4);
                                // C += A·B or C = A·B: C itself (or the bias) in the tiles,
                                // for every block (through `out` at the edges), so that each
                                // value is summed in the same order wherever the block falls.
                                if o.alpha == 1.0 && (beta == 0.0 || beta == 1.0) {
                                    let rows = (mc - r).min(32);
                                    let whole = rows == 32 && cols == NR && o.c_cs == 1;
                                    if whole {
                                        if beta == 1.0 {
                                            // A bias row is read with stride 0: every row.
                                            load_c(at.old, at.old_rs * 4);
                                        } else {
                                            zero_c();
                                        }
                                        micro(kp, ap, bp);
                                        store_c(c, rs);
                                        continue;
                                    }
                                    for i in 0..32 {
                                        for j in 0..32 {
                                            *out.add(i * 32 + j) =
                                                if beta == 1.0 && i < rows && j < cols {
                                                    *at.old.add(i * at.old_rs + j * o.c_cs)
                                                } else {
                                                    0.0
                                                };
                                        }
                                    }
                                    load_c(out, 128);
                                    micro(kp, ap, bp);
                                    store_c(out, 128);
                                    for i in 0..rows {
                                        for j in 0..cols {
                                            *c.add(i * o.c_rs + j * o.c_cs) = *out.add(i * 32 + j);
                                        }
                                    }
                                    continue;
                                }
                                zero_c();
                                micro(kp, ap, bp);
                                store_c(out, 128);
                                for t in 0..4 {
                                    let (dr, dc) = (16 * (t / 2), 16 * (t % 2));
                                    let n = cols.saturating_sub(dc).min(16);
                                    let rows = (mc - r).saturating_sub(dr).min(16);
                                    for i in 0..rows {
                                        if n > 0 {
                                            let v = _mm512_loadu_ps(out.add((dr + i) * 32 + dc));
                                            let c = c.add((dr + i) * o.c_rs + dc * o.c_cs);
                                            let old =
                                                at.old.add((dr + i) * at.old_rs + dc * o.c_cs);
                                            store_row(c, old, o.c_cs, n, v, o.alpha, beta);
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack));
        }
    });
}
