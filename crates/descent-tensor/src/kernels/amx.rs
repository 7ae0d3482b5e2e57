//! The AMX product in bf16 (Intel Advanced Matrix Extensions: eight 1 KB tile registers and
//! `tdpbf16ps`, a 16 x 16 block of f32 sums over 32 values of k per instruction) for a
//! row-major A, the layout of a forward pass (`x · Wᵀ`) and of an input gradient (`dy · W`).
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

use super::avx512::{aligned, pack_a_rows, pack_b, store_row, KC, MR, NC, NR};
use super::bf16::{aligned_u32, pair_panels, pair_rows, Packs, KC2};
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

/// One `32 x 32` block of C: `kp` pairs of k (a multiple of 16) from 32 rows of pairs at `a`
/// (`KC2` pairs apart) and a panel of `NR` columns at `b` (`NR` pairs a row), summed in the
/// four C tiles, which are left in `out` (tile t at `t·256`, rows of 16).
#[inline]
unsafe fn micro(kp: usize, a: *const u32, b: *const u32, out: *mut f32) {
    let sa = KC2 * 4;
    let sb = NR * 4;
    // SAFETY: the caller loaded the tile configuration; the tiles read 16 rows of 64 bytes
    // inside the packed panels (sized for whole tiles) and write 4 x 1 KB into `out`.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3"
        );
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
        asm!(
            "tilestored [{o} + {s}*1], tmm0",
            "tilestored [{o1} + {s}*1], tmm1",
            "tilestored [{o2} + {s}*1], tmm2",
            "tilestored [{o3} + {s}*1], tmm3",
            o = in(reg) out,
            o1 = in(reg) out.add(256),
            o2 = in(reg) out.add(512),
            o3 = in(reg) out.add(768),
            s = in(reg) 64usize,
            options(nostack),
        );
    }
}

/// `C = alpha · bf16(A) · bf16(B) + beta · C` for a row-major A (`a_cs == 1`), on AMX.
///
/// # Safety
/// The operands must describe valid memory; [`available`] must be true.
#[target_feature(enable = "avx512f,avx512bf16")]
pub(super) unsafe fn packed(o: &Operands) {
    PACKS.with_borrow_mut(|(pa, pb, ha, hb)| {
        let kc_max = o.k.min(KC);
        let kp_max = kc_max.div_ceil(2).div_ceil(TK) * TK;
        let b_panels = o.n.min(NC).div_ceil(NR);
        // Rows of A packed: whole 14-row panels of the block, and whole 32-row tiles read.
        let a_rows = MC.div_ceil(MR) * MR;
        let grow = |v: &mut Vec<f32>, n: usize| {
            if v.len() < n {
                v.resize(n, 0.0);
            }
        };
        grow(pa, a_rows * KC + 16);
        grow(pb, b_panels * NR * kc_max + 16);
        if ha.len() < a_rows * KC2 + 16 {
            ha.resize(a_rows * KC2 + 16, 0);
        }
        if hb.len() < b_panels * NR * kp_max + 16 {
            hb.resize(b_panels * NR * kp_max + 16, 0);
        }
        let pa = aligned(pa);
        let pb = aligned(pb);
        let ha = aligned_u32(ha);
        let hb = aligned_u32(hb);
        let cfg = TileConfig::new();
        let mut tiles = [0.0f32; 4 * 256 + 16];
        let tiles = aligned(&mut tiles);
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
                    pack_b(o, p0, kc, j0, nc, pb);
                    pair_panels(pb, hb, nc.div_ceil(NR), NR, kc, kp);
                    for i0 in (0..o.m).step_by(MC) {
                        let mc = (o.m - i0).min(MC);
                        pack_a_rows(o, i0, mc, p0, kc, pa);
                        // Rows past the block's last are read by the last tile but never
                        // stored: whatever they hold changes only their own sums.
                        pair_rows(pa, ha, mc.div_ceil(MR) * MR, kc);
                        for q in 0..nc.div_ceil(NR) {
                            let bp = hb.as_ptr().add(q * NR * kp);
                            let cols = (nc - q * NR).min(NR);
                            for r in (0..mc).step_by(32) {
                                micro(kp, ha.as_ptr().add(r * KC2), bp, tiles.as_mut_ptr());
                                for t in 0..4 {
                                    let (dr, dc) = (16 * (t / 2), 16 * (t % 2));
                                    let n = cols.saturating_sub(dc).min(16);
                                    let rows = (mc - r).saturating_sub(dr).min(16);
                                    for i in 0..rows {
                                        let v =
                                            _mm512_loadu_ps(tiles.as_ptr().add(t * 256 + i * 16));
                                        let c = o.c.add(
                                            (i0 + r + dr + i) * o.c_rs
                                                + (j0 + q * NR + dc) * o.c_cs,
                                        );
                                        if n > 0 {
                                            store_row(c, o.c_cs, n, v, o.alpha, beta);
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
