//! Hand-written matrix-product kernels, chosen by instruction set ([`Isa`]).
//!
//! AVX-512 (`avx512.rs`): one cache-blocked, packed product for every layout.
//!
//! AVX2 + FMA (`avx2.rs`): two kernels for the products that dominate an MLP's training step,
//! in the layouts the engine stores them, with no packing:
//!
//! - `nt`: `C (m x n) = alpha · A · Bᵀ + beta · C`, A `m x k` and B `n x k` with contiguous
//!   rows (a forward pass `x · Wᵀ`, W stored `out x in` as PyTorch does). Dot products
//!   along k, tiles of 2 rows of A by 4 rows of B.
//! - `tn`: `C (m x n) = alpha · A · B + beta · C` with B's rows contiguous, A any layout
//!   (a weight gradient `dZᵀ · x` with A = dZᵀ, batch along k; an input gradient `dZ · W`).
//!   Outer products over k, tiles of 6 x 16, A packed into a small panel per 6 rows.
//!
//! Each is tested against [`crate::matmul_naive`]; other layouts, and CPUs with neither, go
//! to the `gemm` crate.

use std::sync::atomic::{AtomicU8, Ordering};

/// Which hand-written kernel, if any, fits these operand layouts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kernel {
    Nt,
    Tn,
    Packed512,
}

impl Kernel {
    /// Its name in benchmarks and tests.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kernel::Nt => "avx2-nt",
            Kernel::Tn => "avx2-tn",
            Kernel::Packed512 => "avx512-packed",
        }
    }
}

/// Raw operands of one product; strides in elements.
#[derive(Clone, Copy)]
pub(crate) struct Operands {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub c: *mut f32,
    pub c_rs: usize,
    pub c_cs: usize,
    pub a: *const f32,
    pub a_rs: usize,
    pub a_cs: usize,
    pub b: *const f32,
    pub b_rs: usize,
    pub b_cs: usize,
    pub alpha: f32,
    pub beta: f32,
    /// Null, or one value per column of C (`c_cs == 1`) that the first block of k reads in
    /// place of C's old values (with `beta == 1`): `C = alpha · A · B + bias`, the bits of
    /// filling each row with the bias first. Only the AVX-512 packed, AVX512-BF16 and AMX
    /// products read it; the callers fill C themselves for the others.
    pub bias: *const f32,
}

/// The instruction sets descent's kernels are written for, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512 (F): 16-lane kernels, the packed product for every layout.
    Avx512,
    /// AVX2 and FMA: 8-lane kernels for the layouts an MLP uses, the `gemm` crate otherwise.
    Avx2,
    /// No hand-written kernel: the `gemm` crate for every product.
    Portable,
}

impl Isa {
    /// Its name (`avx512`, `avx2`, `portable`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Portable => "portable",
        }
    }

    /// Whether this CPU runs it.
    pub fn supported(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            match self {
                Isa::Avx512 => std::is_x86_feature_detected!("avx512f"),
                Isa::Avx2 => {
                    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
                }
                Isa::Portable => true,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            self == Isa::Portable
        }
    }

    /// The best this CPU runs.
    pub fn best() -> Self {
        [Isa::Avx512, Isa::Avx2]
            .into_iter()
            .find(|i| i.supported())
            .unwrap_or(Isa::Portable)
    }
}

/// 0: not chosen yet (the best the CPU has), else 1 + the index of the chosen [`Isa`].
static CHOSEN: AtomicU8 = AtomicU8::new(0);

/// The instruction set matrix products use now: the best the CPU has unless [`set_isa`]
/// chose another.
pub fn isa() -> Isa {
    match CHOSEN.load(Ordering::Relaxed) {
        1 => Isa::Avx512,
        2 => Isa::Avx2,
        3 => Isa::Portable,
        _ => Isa::best(),
    }
}

/// Makes every later matrix product of this process use `isa` (results differ in the last
/// bits between instruction sets, so a run that must match one made elsewhere can pick the
/// other machine's). Refused when this CPU lacks it.
pub fn set_isa(isa: Isa) -> Result<(), crate::TensorError> {
    if !isa.supported() {
        return Err(crate::TensorError::Unsupported { isa: isa.name() });
    }
    let code = match isa {
        Isa::Avx512 => 1,
        Isa::Avx2 => 2,
        Isa::Portable => 3,
    };
    CHOSEN.store(code, Ordering::Relaxed);
    Ok(())
}

/// The kernel for these layouts under the chosen instruction set. AVX-512: the packed product
/// for every layout, but for products with fewer rows or columns than its tile (14 x 32),
/// which take the AVX2 kernels where they fit the layout (the seed's 64 x 10 x 512 ran at 33
/// GFLOP/s packed, 75 through `nt`). AVX2: `nt` when A's rows and B's columns are contiguous along k (dot
/// products, no copy), `tn` when B's rows are contiguous along n (A is packed, whatever its
/// layout), the `gemm` crate for the rest.
pub(crate) fn choose(o: &Operands) -> Option<Kernel> {
    choose_for(isa(), o)
}

/// [`choose`] under a given instruction set.
pub(crate) fn choose_for(isa: Isa, o: &Operands) -> Option<Kernel> {
    let nt = o.a_cs == 1 && o.b_rs == 1;
    // Fewer rows or columns than one packed tile: the 8-lane kernels waste less.
    let small = o.m < 14 || o.n < 32;
    match isa {
        _ if o.k == 0 => None,
        Isa::Avx512 if !(small && (nt || o.b_cs == 1)) => Some(Kernel::Packed512),
        Isa::Avx2 | Isa::Avx512 if nt => Some(Kernel::Nt),
        Isa::Avx2 | Isa::Avx512 if o.b_cs == 1 => Some(Kernel::Tn),
        _ => None,
    }
}

/// Runs the chosen kernel.
///
/// # Safety
/// The operands must describe valid, non-overlapping (for C) memory of the given shapes, and
/// the CPU must support the kernel's instruction set (`choose` checks).
pub(crate) unsafe fn run(kernel: Kernel, o: &Operands) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: forwarded from the caller.
    unsafe {
        match kernel {
            Kernel::Nt => avx2::nt(o),
            Kernel::Tn => avx2::tn(o),
            Kernel::Packed512 => avx512::packed(o),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = (kernel, o);
        unreachable!("choose() never picks a kernel off x86_64")
    }
}

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod bf16;
#[cfg(target_arch = "x86_64")]
mod small;

/// `C = alpha · A · B + beta · C` by the unpacked kernel for small operands in cache, where
/// the AVX-512 kernels are chosen and B's and C's rows are contiguous; false (nothing done)
/// elsewhere.
///
/// # Safety
/// The operands must describe valid, non-overlapping (for C) memory of the given shapes.
pub(crate) unsafe fn run_small(o: &Operands) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 && o.b_cs == 1 && o.c_cs == 1 {
        // SAFETY: forwarded from the caller; the CPU has AVX-512 and the layouts fit.
        unsafe { small::small(o) };
        return true;
    }
    let _ = o;
    false
}

/// Whether products in bfloat16 run natively here: the AVX-512 kernels are chosen and the CPU
/// has AVX512-BF16 (`vdpbf16ps`). Elsewhere they are emulated: the same rounding of the
/// inputs, f32 products and sums.
pub fn bf16_native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        isa() == Isa::Avx512 && std::is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether bf16 products with a row-major A run on AMX tiles: the CPU has AMX-BF16, Linux
/// granted this process its state, and `DESCENT_AMX=off` is not set (it keeps them on the
/// AVX512-BF16 kernel).
pub fn amx_enabled() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        bf16_native()
            && *ON.get_or_init(|| std::env::var("DESCENT_AMX").as_deref() != Ok("off"))
            && amx::available()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `C = alpha · bf16(A) · bf16(B) + beta · C` with f32 sums, natively; false (nothing done)
/// where [`bf16_native`] is false.
///
/// # Safety
/// The operands must describe valid, non-overlapping (for C) memory of the given shapes.
pub(crate) unsafe fn run_bf16(o: &Operands) -> bool {
    #[cfg(target_arch = "x86_64")]
    if bf16_native() && o.k > 0 {
        // SAFETY: forwarded from the caller; the CPU has AVX-512 F and BF16 (checked above),
        // and AMX where `amx_enabled` says so.
        unsafe {
            if (o.a_cs == 1 || o.a_rs == 1) && amx_enabled() {
                amx::packed(o)
            } else {
                bf16::packed(o)
            }
        };
        return true;
    }
    let _ = o;
    false
}

/// `dst (cols x rows) = srcᵀ` with both row-major (unit column strides): AVX-512 register
/// transposes where the CPU has them, false when it does not (the caller then loops).
///
/// # Safety
/// The blocks must be valid for their shapes and strides and must not overlap.
pub(crate) unsafe fn transpose(
    src: *const f32,
    src_rs: usize,
    rows: usize,
    cols: usize,
    dst: *mut f32,
    dst_rs: usize,
) -> bool {
    #[cfg(target_arch = "x86_64")]
    if isa() == Isa::Avx512 {
        // SAFETY: forwarded from the caller; the CPU has AVX-512 (`isa` checked it).
        unsafe { avx512::transpose(src, src_rs, rows, cols, dst, dst_rs) };
        return true;
    }
    let _ = (src, src_rs, rows, cols, dst, dst_rs);
    false
}
