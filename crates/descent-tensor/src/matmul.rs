//! Matrix multiplication: `dst = alpha * a·b + beta * dst`.
//!
//! The fast path hands each thread a disjoint block of `dst` and runs descent's AVX2 kernels
//! on it (the `gemm` crate for other layouts); [`matmul_naive`] is the reference both are
//! tested against.

use crate::kernels::{self, Operands};
use crate::{Isa, MatMut, MatRef, Pool};

/// Below this many multiply-adds a product stays on one thread: the fork costs more.
const PARALLEL_MIN_MACS: usize = 1 << 20;

/// The raw operands of `c = alpha * a·b + beta * c`; `c` null when only the layouts matter.
fn operands(
    c: Option<&MatMut<'_>>,
    a: &MatRef<'_>,
    b: &MatRef<'_>,
    alpha: f32,
    beta: f32,
) -> Operands {
    let (c, (c_rs, c_cs)) = c.map_or((std::ptr::null_mut(), (0, 0)), |c| (c.ptr(), c.strides()));
    let (a_rs, a_cs) = a.strides();
    let (b_rs, b_cs) = b.strides();
    Operands {
        m: a.rows(),
        n: b.cols(),
        k: a.cols(),
        c,
        c_rs,
        c_cs,
        a: a.ptr(),
        a_rs,
        a_cs,
        b: b.ptr(),
        b_rs,
        b_cs,
        alpha,
        beta,
        bias: std::ptr::null(),
    }
}

/// Which implementation `matmul_serial` uses for these operands under the chosen
/// instruction set ([`crate::isa`]): `"avx512-packed"`, `"avx2-nt"`, `"avx2-tn"` (descent's
/// own kernels) or `"gemm"` (the `gemm` crate, for layouts they do not
/// take or CPUs without AVX2 and FMA).
pub fn matmul_path(a: MatRef<'_>, b: MatRef<'_>) -> &'static str {
    kernels::choose(&operands(None, &a, &b, 1.0, 0.0)).map_or("gemm", |k| k.name())
}

fn check_shapes(dst: &MatMut<'_>, a: &MatRef<'_>, b: &MatRef<'_>) {
    assert!(
        a.cols() == b.rows() && dst.rows() == a.rows() && dst.cols() == b.cols(),
        "matmul: dst {}x{} = a {}x{} · b {}x{} does not fit",
        dst.rows(),
        dst.cols(),
        a.rows(),
        a.cols(),
        b.rows(),
        b.cols()
    );
}

/// `dst = alpha * a·b + beta * dst` on the calling thread. With `beta == 0`, `dst` is
/// written without being read (NaNs in it do not leak through).
pub fn matmul_serial(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32) {
    matmul_serial_isa(crate::isa(), dst, a, b, alpha, beta)
}

/// [`matmul_serial`] for small operands that are already in cache (attention's per-head
/// products, a few dozen rows and columns): with AVX-512, B's and `dst`'s rows contiguous
/// (unit column strides) and A in any layout, an unpacked kernel that keeps its tile of
/// `dst` in registers over the whole of k; elsewhere [`matmul_serial`]. Each value is one sum
/// over k in order, so the bits do not depend on how the caller splits the rows.
pub fn matmul_small(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32) {
    check_shapes(&dst, &a, &b);
    if dst.rows() == 0 || dst.cols() == 0 {
        return;
    }
    let ops = operands(Some(&dst), &a, &b, alpha, beta);
    // SAFETY: as in `matmul_serial_isa`: valid views of agreeing shapes, `dst` exclusive.
    if ops.k > 0 && unsafe { kernels::run_small(&ops) } {
        return;
    }
    matmul_serial(dst, a, b, alpha, beta)
}

/// The precision of a product's inputs: f32, or rounded to bfloat16 (8 bits of mantissa, to
/// nearest even) with products and sums in f32 (the mixed precision of `torch.autocast`
/// with `dtype=torch.bfloat16` on the CPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Precision {
    /// f32 inputs.
    #[default]
    F32,
    /// bfloat16 inputs, f32 accumulation.
    Bf16,
}

/// `x` rounded to the nearest bfloat16 (ties to even), as an f32; NaN stays NaN.
pub fn round_bf16(x: f32) -> f32 {
    let b = x.to_bits();
    if x.is_nan() {
        return x;
    }
    let rounded = b.wrapping_add(0x7fff + ((b >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

thread_local! {
    /// Rounded copies of the operands for the emulated bf16 product, per thread.
    static ROUNDED: std::cell::RefCell<(Vec<f32>, Vec<f32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// `v` (`rows x cols`) copied row-major into `buf`, each value rounded to bfloat16.
fn rounded_copy<'b>(v: &MatRef<'_>, buf: &'b mut Vec<f32>) -> MatRef<'b> {
    buf.clear();
    buf.extend((0..v.rows()).flat_map(|i| (0..v.cols()).map(move |j| round_bf16(v.at(i, j)))));
    MatRef::new(buf, v.rows(), v.cols()).expect("sized to the view")
}

/// [`matmul_serial`] in `precision`. In bf16, the AVX512-BF16 kernel where
/// [`crate::bf16_native`] says so; elsewhere the inputs are rounded into copies and
/// multiplied in f32, the same arithmetic in another order.
pub fn matmul_serial_in(
    precision: Precision,
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
) {
    if precision == Precision::F32 {
        return matmul_serial(dst, a, b, alpha, beta);
    }
    check_shapes(&dst, &a, &b);
    if dst.rows() == 0 || dst.cols() == 0 {
        return;
    }
    let ops = operands(Some(&dst), &a, &b, alpha, beta);
    // SAFETY: as in `matmul_serial_isa`: valid views of agreeing shapes, `dst` exclusive.
    if unsafe { kernels::run_bf16(&ops) } {
        return;
    }
    ROUNDED.with_borrow_mut(|(ra, rb)| {
        let (ra, rb) = (rounded_copy(&a, ra), rounded_copy(&b, rb));
        matmul_serial(dst, ra, rb, alpha, beta)
    })
}

/// `dst = a·b + bias` in `precision` on the calling thread, `bias` (one value per column of
/// `dst`) added to every row: the bits of filling each row of `dst` with `bias` and then
/// [`matmul_serial_in`] with alpha 1 and beta 1, without that pass over `dst` where the
/// kernel can start its sums from the bias (the AVX-512 packed product in f32, the
/// AVX512-BF16 and AMX products in bf16, for a `dst` with contiguous rows).
///
/// # Panics
/// If `bias` does not hold one value per column of `dst`, or the shapes do not agree.
pub fn matmul_bias_in(
    precision: Precision,
    mut dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    bias: &[f32],
) {
    check_shapes(&dst, &a, &b);
    assert_eq!(bias.len(), dst.cols(), "one bias per column of the product");
    if dst.rows() == 0 || dst.cols() == 0 {
        return;
    }
    let mut ops = operands(Some(&dst), &a, &b, 1.0, 1.0);
    ops.bias = bias.as_ptr();
    let fused = ops.c_cs == 1
        && ops.k > 0
        && match precision {
            Precision::F32 => kernels::choose(&ops) == Some(kernels::Kernel::Packed512),
            Precision::Bf16 => crate::bf16_native(),
        };
    if fused {
        // SAFETY: as in `matmul_serial_isa`: valid views of agreeing shapes, `dst` exclusive;
        // the chosen kernels read `bias` for C's columns only (`c_cs == 1`), and it holds one
        // value per column.
        unsafe {
            match precision {
                Precision::F32 => kernels::run(kernels::Kernel::Packed512, &ops),
                Precision::Bf16 => {
                    kernels::run_bf16(&ops);
                }
            }
        }
        return;
    }
    for i in 0..dst.rows() {
        for (j, &v) in bias.iter().enumerate() {
            dst.set(i, j, v);
        }
    }
    matmul_serial_in(precision, dst, a, b, 1.0, 1.0)
}

/// [`matmul_serial`] with the kernels of `isa`, which the CPU must support.
pub(crate) fn matmul_serial_isa(
    isa: Isa,
    dst: MatMut<'_>,
    a: MatRef<'_>,
    b: MatRef<'_>,
    alpha: f32,
    beta: f32,
) {
    check_shapes(&dst, &a, &b);
    assert!(isa.supported(), "this CPU cannot run {}", isa.name());
    if dst.rows() == 0 || dst.cols() == 0 {
        return;
    }
    let ops = operands(Some(&dst), &a, &b, alpha, beta);
    match kernels::choose_for(isa, &ops) {
        // SAFETY: the views were checked at construction to reach only inside their buffers,
        // the shapes agree (checked above), `dst` is an exclusive borrow that `a` and `b`
        // cannot alias, and `choose` checked the CPU features and the layouts.
        Some(kernel) => unsafe { kernels::run(kernel, &ops) },
        // SAFETY: as above.
        None => unsafe { gemm_crate(&ops) },
    }
}

/// `dst = alpha * a·b + beta * dst` through the `gemm` crate on the calling thread, whatever
/// the layouts: the fallback of [`matmul_serial`] and the reference its kernels are measured
/// against. The crate allocates scratch space on each call.
pub fn matmul_gemm(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32) {
    check_shapes(&dst, &a, &b);
    if dst.rows() == 0 || dst.cols() == 0 {
        return;
    }
    // SAFETY: the views were checked at construction to reach only inside their buffers, the
    // shapes agree (checked above), and `dst` is an exclusive borrow that `a` and `b` cannot
    // alias (they are shared borrows).
    unsafe { gemm_crate(&operands(Some(&dst), &a, &b, alpha, beta)) }
}

/// # Safety
/// `o` must describe valid memory of its shapes, with `c` not overlapping `a` or `b`.
unsafe fn gemm_crate(o: &Operands) {
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            o.m,
            o.n,
            o.k,
            o.c,
            o.c_cs as isize,
            o.c_rs as isize,
            o.beta != 0.0,
            o.a,
            o.a_cs as isize,
            o.a_rs as isize,
            o.b,
            o.b_cs as isize,
            o.b_rs as isize,
            o.beta,
            o.alpha,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// `dst = alpha * a·b + beta * dst`, split over the pool's threads along the longer side of
/// `dst`. Each element is computed by exactly one thread, so results do not depend on timing.
pub fn matmul(dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32, pool: &Pool) {
    check_shapes(&dst, &a, &b);
    let (m, n, k) = (dst.rows(), dst.cols(), a.cols());
    if pool.threads() == 1 || m * n * k < PARALLEL_MIN_MACS {
        return matmul_serial(dst, a, b, alpha, beta);
    }
    if n >= m {
        pool.split_cols(dst, 16, 16, |j, block| {
            let w = block.cols();
            matmul_serial(block, a, b.cols_range(j, w), alpha, beta)
        });
    } else {
        pool.split_rows(dst, 8, 8, |i, band| {
            let h = band.rows();
            matmul_serial(band, a.rows_range(i, h), b, alpha, beta)
        });
    }
}

/// The reference: three loops, accumulating in f32 in index order.
pub fn matmul_naive(mut dst: MatMut<'_>, a: MatRef<'_>, b: MatRef<'_>, alpha: f32, beta: f32) {
    check_shapes(&dst, &a, &b);
    for i in 0..dst.rows() {
        for j in 0..dst.cols() {
            let mut s = 0.0f32;
            for p in 0..a.cols() {
                s += a.at(i, p) * b.at(p, j);
            }
            let old = if beta == 0.0 {
                0.0
            } else {
                beta * dst.at(i, j)
            };
            dst.set(i, j, alpha * s + old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rng;

    fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
        (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// A `rows x cols` view of `buf`, stored row-major, or (`transposed`) as the transpose
    /// of a row-major `cols x rows` matrix.
    fn view(buf: &[f32], rows: usize, cols: usize, transposed: bool) -> MatRef<'_> {
        match transposed {
            true => MatRef::new(buf, cols, rows).unwrap().t(),
            false => MatRef::new(buf, rows, cols).unwrap(),
        }
    }

    fn isas() -> Vec<Isa> {
        [Isa::Avx512, Isa::Avx2, Isa::Portable]
            .into_iter()
            .filter(|i| i.supported())
            .collect()
    }

    /// The small-operand product against its twin, the same sums in scalar code (one fused
    /// multiply-add per step of k, in order; then alpha, then beta's term), bit for bit, and
    /// against the naive loops: every tile height and its remainders (12, 8, 6, 4, 1 rows),
    /// columns across the narrow and wide tiles and their masked last vectors, A row-major
    /// and transposed, B and C rows further apart than their lengths (columns of wider
    /// matrices, as attention's heads are), and beta 0 over a C full of NaNs.
    #[test]
    fn small_matches_its_twin_bit_for_bit() {
        let mut rng = Rng::new(11);
        for &m in &[1, 3, 4, 5, 8, 11, 12, 13, 25, 32] {
            for &n in &[1, 15, 16, 17, 32, 33, 64, 65, 100, 128] {
                for &k in &[1, 7, 32, 129] {
                    let (ldb, ldc) = (n + 5, n + 3);
                    let ta = (m + n + k) % 2 == 0;
                    let a_buf = random(&mut rng, m * k);
                    let a = view(&a_buf, m, k, ta);
                    let b_buf = random(&mut rng, k * ldb);
                    let b = MatRef::strided(&b_buf, k, n, ldb, 1).unwrap();
                    for (alpha, beta) in [(1.0, 0.0), (0.125, 1.0), (-2.0, 0.5)] {
                        let init: Vec<f32> = match beta == 0.0 {
                            true => vec![f32::NAN; m * ldc],
                            false => random(&mut rng, m * ldc),
                        };
                        let mut got = init.clone();
                        let dst = MatMut::strided(&mut got, m, n, ldc, 1).unwrap();
                        matmul_small(dst, a, b, alpha, beta);
                        let mut naive = init.clone();
                        let dst = MatMut::strided(&mut naive, m, n, ldc, 1).unwrap();
                        matmul_naive(dst, a, b, alpha, beta);
                        for i in 0..m {
                            for j in 0..n {
                                let mut acc = 0.0f32;
                                for p in 0..k {
                                    acc = a.at(i, p).mul_add(b.at(p, j), acc);
                                }
                                let mut twin = alpha * acc;
                                if beta != 0.0 {
                                    twin = beta.mul_add(init[i * ldc + j], twin);
                                }
                                let (g, w) = (got[i * ldc + j], naive[i * ldc + j]);
                                let tol = 1e-5 * (k as f32).sqrt() * (1.0 + w.abs());
                                assert!((g - w).abs() <= tol, "m{m} n{n} k{k}: {g} vs {w}");
                                if crate::isa() == Isa::Avx512 {
                                    assert_eq!(g.to_bits(), twin.to_bits(), "m{m} n{n} k{k}");
                                }
                            }
                            // Past the row's n columns, C is untouched.
                            for j in n..ldc.min(n + 3) {
                                let (g, w) = (got[i * ldc + j], init[i * ldc + j]);
                                assert!(g.to_bits() == w.to_bits(), "m{m} n{n}: column {j}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Every combination of transposed operands, accumulation, instruction set and thread
    /// count agrees with the naive loops: the seed model's shapes, a convolution's, and
    /// shapes that cross every block and tile edge of the packed kernel (k past one block of
    /// 192, rows past 192, columns past 1536, sizes that are no multiple of a tile).
    #[test]
    fn fast_matches_naive() {
        let mut rng = Rng::new(7);
        let pools = [
            Pool::new(1).unwrap(),
            Pool::new(2).unwrap(),
            Pool::new(3).unwrap(),
        ];
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 512, 784),
            (512, 784, 64),
            (64, 10, 512),
            (10, 512, 64),
            (33, 17, 1),
            (64, 576, 288),
            (9, 49, 17),
            (200, 33, 401),
            (5, 1600, 20),
        ] {
            for ta in [false, true] {
                for tb in [false, true] {
                    let a_buf = random(&mut rng, m * k);
                    let b_buf = random(&mut rng, k * n);
                    let a = view(&a_buf, m, k, ta);
                    let b = view(&b_buf, k, n, tb);
                    let init = random(&mut rng, m * n);
                    for (alpha, beta) in [(1.0, 0.0), (-0.5, 1.0), (2.0, 0.25)] {
                        let mut want = init.clone();
                        matmul_naive(MatMut::new(&mut want, m, n).unwrap(), a, b, alpha, beta);
                        let close = |got: &[f32], what: &str| {
                            for (g, w) in got.iter().zip(&want) {
                                let tol = 1e-5 * (k as f32).sqrt() * (1.0 + w.abs());
                                assert!(
                                    (g - w).abs() <= tol,
                                    "{what} m{m} n{n} k{k} ta{ta} tb{tb}: {g} vs {w}"
                                );
                            }
                        };
                        let mut via_crate = init.clone();
                        matmul_gemm(
                            MatMut::new(&mut via_crate, m, n).unwrap(),
                            a,
                            b,
                            alpha,
                            beta,
                        );
                        close(&via_crate, "gemm crate");
                        for isa in isas() {
                            let mut got = init.clone();
                            let dst = MatMut::new(&mut got, m, n).unwrap();
                            matmul_serial_isa(isa, dst, a, b, alpha, beta);
                            close(&got, isa.name());
                            // C stored column-major: the kernels' strided stores.
                            let mut got_t: Vec<f32> =
                                (0..m * n).map(|q| init[(q % m) * n + q / m]).collect();
                            let dst = MatMut::new(&mut got_t, n, m).unwrap().t();
                            matmul_serial_isa(isa, dst, a, b, alpha, beta);
                            let back: Vec<f32> =
                                (0..m * n).map(|q| got_t[(q % n) * m + q / n]).collect();
                            close(&back, isa.name());
                        }
                        for pool in &pools {
                            let mut got = init.clone();
                            matmul(
                                MatMut::new(&mut got, m, n).unwrap(),
                                a,
                                b,
                                alpha,
                                beta,
                                pool,
                            );
                            close(&got, "engine");
                        }
                    }
                }
            }
        }
    }

    /// Products in bf16 equal the naive product of the inputs rounded to bf16 (the native
    /// AVX512-BF16 kernel where the CPU has it, and the emulation everywhere), in every
    /// layout and across every block edge; and they are not the f32 product.
    #[test]
    fn bf16_products_match_the_naive_product_of_rounded_inputs() {
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0); // a tie goes to even
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 4.0 / 256.0);
        assert_eq!(round_bf16(-1.009_765_6), -1.007_812_5);
        assert!(round_bf16(f32::NAN).is_nan());
        if !crate::bf16_native() {
            eprintln!("no AVX512-BF16 on this CPU: only the emulated bf16 product is tested");
        } else if !crate::amx_enabled() {
            eprintln!("no AMX here: row-major products in bf16 are tested on AVX512-BF16");
        }
        let mut rng = Rng::new(11);
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 512, 128),
            (200, 33, 401),
            (5, 1600, 21),
            (4096, 128, 113),
        ] {
            for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
                let a_buf = random(&mut rng, m * k);
                let b_buf = random(&mut rng, k * n);
                let a = view(&a_buf, m, k, ta);
                let b = view(&b_buf, k, n, tb);
                let (mut ra, mut rb) = (Vec::new(), Vec::new());
                let (ar, br) = (rounded_copy(&a, &mut ra), rounded_copy(&b, &mut rb));
                let init = random(&mut rng, m * n);
                for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (-0.5, 1.0)] {
                    let mut want = init.clone();
                    matmul_naive(MatMut::new(&mut want, m, n).unwrap(), ar, br, alpha, beta);
                    let mut exact = init.clone();
                    matmul_naive(MatMut::new(&mut exact, m, n).unwrap(), a, b, alpha, beta);
                    let mut got = init.clone();
                    let dst = MatMut::new(&mut got, m, n).unwrap();
                    matmul_serial_in(Precision::Bf16, dst, a, b, alpha, beta);
                    // The emulation: the rounded copies multiplied in f32.
                    let mut emulated = init.clone();
                    matmul_serial(
                        MatMut::new(&mut emulated, m, n).unwrap(),
                        ar,
                        br,
                        alpha,
                        beta,
                    );
                    // Row bands (as threads split a product) give the same bits.
                    if m > 40 {
                        let mut banded = init.clone();
                        let (top, bottom) = banded.split_at_mut(40 * n);
                        for (i0, band) in [(0, top), (40, bottom)] {
                            let h = band.len() / n;
                            let dst = MatMut::new(band, h, n).unwrap();
                            matmul_serial_in(
                                Precision::Bf16,
                                dst,
                                a.rows_range(i0, h),
                                b,
                                alpha,
                                beta,
                            );
                        }
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert!(bits(&banded) == bits(&got), "m{m} n{n} k{k}: bands differ");
                    }
                    let mut off_f32 = 0.0f32;
                    for q in 0..m * n {
                        let tol = 1e-5 * (k as f32).sqrt() * (1.0 + want[q].abs());
                        for (g, what) in [(got[q], "bf16"), (emulated[q], "emulated")] {
                            assert!(
                                (g - want[q]).abs() <= tol,
                                "{what} m{m} n{n} k{k} ta{ta} tb{tb}: {g} vs {}",
                                want[q]
                            );
                        }
                        off_f32 = off_f32.max((got[q] - exact[q]).abs());
                    }
                    if k > 16 {
                        assert!(off_f32 > 1e-4, "m{m} n{n} k{k}: bf16 gave the f32 product");
                    }
                }
            }
        }
    }

    /// A product with a bias is, bit for bit, the product into rows filled with the bias
    /// (f32 and bf16; every layout of A and B, A also strided both ways as no kernel reads
    /// it directly; edges of every block, several blocks of k) and near the naive sum.
    #[test]
    fn bias_products_equal_filling_with_the_bias() {
        let mut rng = Rng::new(5);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        for &(m, n, k) in &[
            (1, 1, 1),
            (3, 5, 7),
            (64, 512, 128),
            (200, 33, 401),
            (37, 70, 0),
        ] {
            let bias = random(&mut rng, n);
            for layout in 0..5 {
                let (ta, tb) = (layout & 1 == 1, layout & 2 == 2);
                let a_buf = random(&mut rng, 2 * m * k);
                let b_buf = random(&mut rng, k * n);
                let a = match layout {
                    4 => MatRef::strided(&a_buf, m, k, 2 * k, 2).unwrap(),
                    _ => view(&a_buf, m, k, ta),
                };
                let b = view(&b_buf, k, n, tb);
                for precision in [Precision::F32, Precision::Bf16] {
                    let mut got = vec![f32::NAN; m * n];
                    let dst = MatMut::new(&mut got, m, n).unwrap();
                    matmul_bias_in(precision, dst, a, b, &bias);
                    let mut want: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
                    let dst = MatMut::new(&mut want, m, n).unwrap();
                    matmul_serial_in(precision, dst, a, b, 1.0, 1.0);
                    let what = format!("{precision:?} m{m} n{n} k{k} layout {layout}");
                    assert!(bits(&got) == bits(&want), "{what}: not the filled product");
                    let mut naive: Vec<f32> = (0..m).flat_map(|_| bias.iter().copied()).collect();
                    matmul_naive(MatMut::new(&mut naive, m, n).unwrap(), a, b, 1.0, 1.0);
                    for (g, w) in got.iter().zip(&naive) {
                        let tol = 1e-2 * (1.0 + (k as f32).sqrt());
                        assert!((g - w).abs() <= tol, "{what}: {g} vs {w}");
                    }
                }
            }
        }
    }

    /// The engine's layouts take descent's own kernels where the CPU has them.
    #[test]
    fn seed_layouts_take_the_hand_written_kernels() {
        let x = vec![0.0; 64 * 784];
        let w = vec![0.0; 512 * 784];
        let dz = vec![0.0; 64 * 512];
        let fwd = operands(
            None,
            &MatRef::new(&x, 64, 784).unwrap(),
            &MatRef::new(&w, 512, 784).unwrap().t(),
            1.0,
            0.0,
        );
        let grad = operands(
            None,
            &MatRef::new(&dz, 64, 512).unwrap().t(),
            &MatRef::new(&x, 64, 784).unwrap(),
            1.0,
            0.0,
        );
        let name = |isa, o| kernels::choose_for(isa, o).map_or("gemm", |k| k.name());
        for isa in isas() {
            let want = match isa {
                Isa::Avx512 => ("avx512-packed", "avx512-packed"),
                Isa::Avx2 => ("avx2-nt", "avx2-tn"),
                Isa::Portable => ("gemm", "gemm"),
            };
            assert_eq!((name(isa, &fwd), name(isa, &grad)), want);
        }
    }

    /// A product over k = 0 leaves `beta · C`.
    #[test]
    fn empty_inner_dimension_scales_dst() {
        for isa in isas() {
            let mut c = [2.0f32, 4.0];
            let empty: [f32; 0] = [];
            matmul_serial_isa(
                isa,
                MatMut::new(&mut c, 1, 2).unwrap(),
                MatRef::new(&empty, 1, 0).unwrap(),
                MatRef::new(&empty, 0, 2).unwrap(),
                1.0,
                0.5,
            );
            assert_eq!(c, [1.0, 2.0], "{}", isa.name());
        }
    }

    #[test]
    fn beta_zero_ignores_nan_in_dst() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [f32::NAN];
        matmul(
            MatMut::new(&mut c, 1, 1).unwrap(),
            MatRef::new(&a, 1, 2).unwrap(),
            MatRef::new(&b, 2, 1).unwrap(),
            1.0,
            0.0,
            &Pool::new(1).unwrap(),
        );
        assert_eq!(c, [11.0]);
    }

    #[test]
    fn same_threads_give_identical_bits() {
        let mut rng = Rng::new(1);
        let a = random(&mut rng, 64 * 784);
        let b = random(&mut rng, 512 * 784);
        let pool = Pool::new(2).unwrap();
        let run = || {
            let mut c = vec![0.0; 64 * 512];
            matmul(
                MatMut::new(&mut c, 64, 512).unwrap(),
                MatRef::new(&a, 64, 784).unwrap(),
                MatRef::new(&b, 512, 784).unwrap().t(),
                1.0,
                0.0,
                &pool,
            );
            c
        };
        assert_eq!(run(), run());
    }

    #[test]
    #[should_panic(expected = "does not fit")]
    fn mismatched_shapes_are_refused() {
        let a = [0.0; 6];
        let mut c = [0.0; 4];
        matmul_naive(
            MatMut::new(&mut c, 2, 2).unwrap(),
            MatRef::new(&a, 2, 3).unwrap(),
            MatRef::new(&a, 2, 3).unwrap(),
            1.0,
            0.0,
        );
    }
}
