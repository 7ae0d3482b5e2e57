//! Vectorizable `exp` and `erf` over f32 slices, and the GELU and causal softmax built on them.
//!
//! Each is written once, branch-free, with fused multiply-adds, and compiled twice: for
//! AVX-512 (sixteen lanes, where the CPU has it) and as the plain loop. Both give the same
//! bits (the same operations in the same order; `mul_add` is one rounding either way).
//!
//! - `exp`: Cephes' `expf` (range reduction by `ln 2` in two parts, a degree-6 polynomial),
//!   within 2 ulp of the true value over the whole range, 0 below `-104`, inf above `88.73`.
//! - `erf`: Abramowitz and Stegun's 7.1.26, `1 - (a1 t + ... + a5 t^5) e^{-x^2}` with
//!   `t = 1 / (1 + p|x|)`, absolute error under 1.5e-7 (5e-7 evaluated in f32): the approximation PyTorch's
//!   vectorized `erf` (and so its CPU GELU) uses.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;

#[inline(always)]
fn exp1(x: f32) -> f32 {
    // Beyond 89 the scale overflows to inf; below -104 the result rounds to 0. (`max` and
    // `min` take the number over a NaN, so a NaN goes through the arithmetic as -104 and is
    // put back at the end: every step stays a plain vector operation.)
    #[allow(clippy::manual_clamp)] // clamp keeps a NaN, which the integer step below cannot take
    let c = x.max(-104.0).min(89.0);
    let n = c.mul_add(LOG2E, 0.5).floor();
    let r = n.mul_add(-LN2_HI, c);
    let r = n.mul_add(-LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 1.666_666_5e-1);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r) + 1.0;
    // 2^n in two factors, each a normal number, so that results down to the subnormals hold.
    // SAFETY: n is a whole number in -150..=129 (c is finite and clamped).
    let n: i32 = unsafe { n.to_int_unchecked() };
    let (n1, n2) = (n >> 1, n - (n >> 1));
    let scale = |k: i32| f32::from_bits(((k + 127) as u32) << 23);
    let e = y * scale(n1) * scale(n2);
    if x.is_nan() {
        x
    } else {
        e
    }
}

/// `ln` of f32's smallest normal number: `exp(x)` is subnormal (or 0) below it.
const LN_MIN_NORMAL: f32 = -87.336_55;

/// [`exp1`] with every result below f32's smallest normal number written as 0, computed
/// without making the subnormal (the argument is clamped first; 0 is selected after).
#[inline(always)]
fn exp_normal1(x: f32) -> f32 {
    let e = exp1(x.max(LN_MIN_NORMAL));
    if x.is_nan() {
        x
    } else if x < LN_MIN_NORMAL || e < f32::MIN_POSITIVE {
        0.0
    } else {
        e
    }
}

#[inline(always)]
fn erf1(x: f32) -> f32 {
    erf_from(x, exp1(-(x * x)))
}

/// `erf(x)` given `e = exp(-x²)` (which GELU's derivative needs too).
#[inline(always)]
fn erf_from(x: f32, e: f32) -> f32 {
    let a = x.abs();
    let t = 1.0 / a.mul_add(0.327_591_1, 1.0);
    let mut r = 1.061_405_4f32;
    r = r.mul_add(t, -1.453_152);
    r = r.mul_add(t, 1.421_413_8);
    r = r.mul_add(t, -0.284_496_74);
    r = r.mul_add(t, 0.254_829_6);
    (-(e * t)).mul_add(r, 1.0).copysign(x)
}

/// `Φ(x) = (1 + erf(x / √2)) / 2`, the standard normal CDF.
#[inline(always)]
fn cdf1(x: f32) -> f32 {
    0.5 * (1.0 + erf1(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// 1 / sqrt(2π).
const INV_SQRT_2PI: f32 = 0.398_942_3;

/// Defines a function twice: `$vis fn $name` runs `$avx`, the body compiled for AVX-512
/// (sixteen lanes), where the CPU has it, and `$plain`, the same body compiled for the
/// crate's target (SSE2 on x86-64), elsewhere. Both are the same operations in the same
/// order, so they give the same bits; a test can call `$plain` to show it. The body's own
/// calls are compiled for AVX-512 only where they inline: `descent_tensor`'s reductions
/// ([`crate::sum`], [`crate::dot`], [`crate::max`]) always do.
///
/// ```
/// descent_tensor::twice!(
///     /// `x = 2x + 1`, in place.
///     double_plus_one, double_plus_one_plain, double_plus_one_avx512,
///     (x: &mut [f32]),
///     {
///         x.iter_mut().for_each(|v| *v = 2.0 * *v + 1.0);
///     }
/// );
/// let mut v = [1.0, -3.0];
/// double_plus_one(&mut v);
/// assert_eq!(v, [3.0, -5.0]);
/// ```
#[macro_export]
macro_rules! twice {
    ($(#[$doc:meta])* $vis:vis $name:ident, $plain:ident, $avx:ident, ($($arg:ident: $t:ty),*), $body:block) => {
        $(#[$doc])*
        $vis fn $name($($arg: $t),*) {
            #[cfg(target_arch = "x86_64")]
            if $crate::isa() == $crate::Isa::Avx512 {
                // SAFETY: the CPU has AVX-512.
                return unsafe { $avx($($arg),*) };
            }
            $plain($($arg),*)
        }

        #[inline(always)]
        fn $plain($($arg: $t),*) $body

        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = "avx512f")]
        unsafe fn $avx($($arg: $t),*) {
            $plain($($arg),*)
        }
    };
}

twice!(
    /// `x = exp(x)`, in place.
    pub exp,
    exp_plain,
    exp_avx512,
    (x: &mut [f32]),
    {
        x.iter_mut().for_each(|v| *v = exp1(*v));
    }
);

twice!(
    /// `x = exp(x)`, in place, with results below f32's smallest normal number
    /// (`1.2e-38`, below `exp(-87.34)`) written as 0 rather than as subnormals. On x86 an
    /// instruction that makes or reads a subnormal takes a microcode assist (about a hundred
    /// cycles): softmax probabilities this small, carried into a loss gradient and through
    /// the products that read it, made the GPT's first steps 18% slower.
    pub exp_normal,
    exp_normal_plain,
    exp_normal_avx512,
    (x: &mut [f32]),
    {
        x.iter_mut().for_each(|v| *v = exp_normal1(*v));
    }
);

twice!(
    /// `x = erf(x)`, in place.
    pub erf,
    erf_plain,
    erf_avx512,
    (x: &mut [f32]),
    {
        x.iter_mut().for_each(|v| *v = erf1(*v));
    }
);

twice!(
    /// `x = GELU(x) = x Φ(x)`, in place (PyTorch's `approximate='none'`).
    pub gelu,
    gelu_plain,
    gelu_avx512,
    (x: &mut [f32]),
    {
        x.iter_mut().for_each(|v| *v *= cdf1(*v));
    }
);

twice!(
    /// `y = GELU(x)`: [`gelu`] out of place, in one pass over both.
    pub gelu_into,
    gelu_into_plain,
    gelu_into_avx512,
    (x: &[f32], y: &mut [f32]),
    {
        y.iter_mut().zip(x).for_each(|(y, &v)| *y = v * cdf1(v));
    }
);

twice!(
    /// `dx = dy · GELU'(x) = dy · (Φ(x) + x φ(x))`.
    pub gelu_backward,
    gelu_backward_plain,
    gelu_backward_avx512,
    (x: &[f32], dy: &[f32], dx: &mut [f32]),
    {
        for ((d, &x), &g) in dx.iter_mut().zip(x).zip(dy) {
            // One exp for both: Φ(x) = (1 + erf(z)) / 2 and φ(x) = e^{-z²} / sqrt(2π), z = x / √2.
            let z = x * std::f32::consts::FRAC_1_SQRT_2;
            let e = exp1(-(z * z));
            let cdf = 0.5 * (1.0 + erf_from(z, e));
            *d = g * x.mul_add(INV_SQRT_2PI * e, cdf);
        }
    }
);

twice!(
    /// Row `i` of `s`, an `n x n` matrix in rows of `n`, becomes the softmax of its first
    /// `i + 1` values, and the rest 0: causal attention's probabilities from its scores. Per
    /// row: the maximum, `exp(v - max)`, their sum in the 16 partial sums of [`crate::sum`],
    /// and the scaling by the sum's inverse.
    ///
    /// # Panics
    /// If `s` is shorter than `n x n`.
    pub causal_softmax,
    causal_softmax_plain,
    causal_softmax_avx512,
    (s: &mut [f32], n: usize),
    {
        for (i, row) in s[..n * n].chunks_exact_mut(n.max(1)).enumerate() {
            let (seen, masked) = row.split_at_mut(i + 1);
            let max = crate::reduce::max(seen);
            seen.iter_mut().for_each(|v| *v = exp1(*v - max));
            let inv = 1.0 / crate::reduce::sum(seen);
            seen.iter_mut().for_each(|v| *v *= inv);
            masked.fill(0.0);
        }
    }
);

twice!(
    /// The backward pass of [`causal_softmax`]: given its output `p` and the gradient `dp`
    /// of its output (both `n x n`), `dp` becomes the gradient of its input,
    /// `p ⊙ (dp - rowsum(p ⊙ dp))` over each row's first `i + 1` values, and 0 above the
    /// diagonal.
    ///
    /// # Panics
    /// If `p` or `dp` is shorter than `n x n`.
    pub causal_softmax_backward,
    causal_softmax_backward_plain,
    causal_softmax_backward_avx512,
    (p: &[f32], dp: &mut [f32], n: usize),
    {
        let rows = p[..n * n].chunks_exact(n.max(1)).zip(dp[..n * n].chunks_exact_mut(n.max(1)));
        for (i, (prow, drow)) in rows.enumerate() {
            let (seen, masked) = drow.split_at_mut(i + 1);
            let pr = &prow[..=i];
            let c = crate::reduce::dot(pr, seen);
            seen.iter_mut().zip(pr).for_each(|(g, p)| *g = p * (*g - c));
            masked.fill(0.0);
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    fn points() -> Vec<f32> {
        let mut v: Vec<f32> = (-4000..=4000).map(|i| i as f32 * 0.00271).collect();
        v.extend([
            -110.0, -104.0, -87.5, -60.0, -20.0, 20.0, 60.0, 88.0, 88.6, 88.8, 0.0, -0.0,
        ]);
        v.extend([1e-30, -1e-30, 1e-7, 5.0, -5.0, 9.0, -9.0]);
        v
    }

    /// exp within 2 ulp of f64's over the range (0 below -104; subnormal results hold); erf
    /// within 5e-7 of f64's; GELU and its derivative against f64's.
    #[test]
    fn against_f64() {
        for &x in &points() {
            let e = exp1(x) as f64;
            let want = (x as f64).exp();
            if want > f32::MAX as f64 {
                assert_eq!(e, f64::INFINITY, "exp({x})");
            } else if want > f32::MIN_POSITIVE as f64 {
                assert!(
                    ((e - want) / want).abs() < 2.5e-7,
                    "exp({x}) = {e} vs {want}"
                );
            } else {
                assert!((e - want).abs() < 6e-45, "exp({x}) = {e} vs {want}");
            }
            let r = erf1(x) as f64;
            let want = libm::erf(x as f64);
            // A&S bounds the formula by 1.5e-7; evaluated in f32 it stays within 5e-7.
            assert!((r - want).abs() < 5e-7, "erf({x}) = {r} vs {want}");
        }
        let (xs, ys): (Vec<f32>, Vec<f32>) = points()
            .into_iter()
            .filter(|x| x.abs() < 20.0)
            .map(|x| (x, ((x * 7.3).sin())))
            .unzip();
        let mut g = xs.clone();
        gelu(&mut g);
        let mut g2 = vec![f32::NAN; xs.len()];
        gelu_into(&xs, &mut g2);
        assert_eq!(g, g2, "in place and out of place");
        let mut dg = vec![0.0; xs.len()];
        gelu_backward(&xs, &ys, &mut dg);
        for i in 0..xs.len() {
            let x = xs[i] as f64;
            let cdf = 0.5 * (1.0 + libm::erf(x / std::f64::consts::SQRT_2));
            let want = x * cdf;
            // erf's error is absolute: GELU's is 5e-7 |x| at most, whatever its size.
            assert!(
                (g[i] as f64 - want).abs() <= 5e-7 * x.abs() + 2e-7 * want.abs(),
                "gelu({x})"
            );
            let dwant = ys[i] as f64
                * (cdf + x * (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt());
            assert!(
                (dg[i] as f64 - dwant).abs() < 1e-6 * (1.0 + dwant.abs()),
                "gelu'({x})"
            );
        }
        let mut nan = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY];
        exp(&mut nan);
        assert!(nan[0].is_nan() && nan[1] == f32::INFINITY && nan[2] == 0.0);
    }

    /// exp_normal is exp wherever exp is a normal number, and 0 (never a subnormal) below.
    #[test]
    fn exp_normal_is_exp_without_subnormals() {
        let mut xs = points();
        // Every f32 from just above ln(MIN_POSITIVE) to well below it.
        let mut v = -87.0f32;
        while v > -88.5 {
            xs.push(v);
            v = f32::from_bits(v.to_bits() + 97);
        }
        xs.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, LN_MIN_NORMAL]);
        let mut got = xs.clone();
        exp_normal(&mut got);
        let mut plain = xs.clone();
        exp_normal_plain(&mut plain);
        let (mut flushed, mut kept) = (0, 0);
        for ((&x, &g), &p) in xs.iter().zip(&got).zip(&plain) {
            assert_eq!(
                g.to_bits(),
                p.to_bits(),
                "exp_normal({x}): the builds differ"
            );
            assert!(!g.is_subnormal(), "exp_normal({x}) = {g:e} is subnormal");
            let want = (x as f64).exp();
            let min = f32::MIN_POSITIVE as f64;
            if x.is_nan() {
                assert!(g.is_nan());
            } else if want >= min * (1.0 + 1e-6) {
                assert_eq!(g, exp1(x), "exp_normal({x})");
                kept += 1;
            } else if want <= min * (1.0 - 1e-6) {
                assert_eq!(g, 0.0, "exp_normal({x}) = {g:e}: exp is {want:e}");
                flushed += 1;
            }
        }
        assert!(
            flushed > 100 && kept > 100,
            "{flushed} flushed, {kept} kept"
        );
    }

    /// Causal softmax and its backward pass against f64 on rows of every length up to 70,
    /// and the AVX-512 build against the plain loop, bit for bit.
    #[test]
    fn causal_softmax_against_f64() {
        let n = 70;
        let s: Vec<f32> = (0..n * n)
            .map(|i| ((i * 7919) % 1000) as f32 / 60.0 - 8.0)
            .collect();
        let dp: Vec<f32> = (0..n * n)
            .map(|i| ((i * 104729) % 997) as f32 / 300.0 - 1.6)
            .collect();
        let mut p = s.clone();
        causal_softmax(&mut p, n);
        let mut g = dp.clone();
        causal_softmax_backward(&p, &mut g, n);
        for i in 0..n {
            let row = &s[i * n..i * n + i + 1];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(v as f64));
            let e: Vec<f64> = row.iter().map(|&v| (v as f64 - m).exp()).collect();
            let z: f64 = e.iter().sum();
            let want: Vec<f64> = e.iter().map(|v| v / z).collect();
            let c: f64 = (0..=i).map(|j| want[j] * dp[i * n + j] as f64).sum();
            for j in 0..n {
                let (got, dgot) = (p[i * n + j] as f64, g[i * n + j] as f64);
                if j > i {
                    assert!(
                        got == 0.0 && dgot == 0.0,
                        "row {i} col {j} above the diagonal"
                    );
                    continue;
                }
                assert!(
                    (got - want[j]).abs() <= 1e-6 * want[j] + 1e-12,
                    "p[{i},{j}]"
                );
                let dwant = want[j] * (dp[i * n + j] as f64 - c);
                // p's rounding carries into the difference dp - c: relative to its terms.
                let tol = 1e-6 * want[j] * (1.0 + (dp[i * n + j] as f64).abs() + c.abs());
                assert!(
                    (dgot - dwant).abs() <= tol,
                    "dp[{i},{j}]: {dgot} vs {dwant}"
                );
            }
        }
        let mut plain = s.clone();
        causal_softmax_plain(&mut plain, n);
        assert!(plain
            .iter()
            .zip(&p)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        let mut plain = dp.clone();
        causal_softmax_backward_plain(&p, &mut plain, n);
        assert!(plain
            .iter()
            .zip(&g)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        causal_softmax(&mut [], 0);
    }

    /// The AVX-512 build and the plain loop give the same bits.
    #[test]
    fn every_build_gives_the_same_bits() {
        let xs = points();
        let (mut a, mut b) = (xs.clone(), xs.clone());
        exp_plain(&mut a);
        exp(&mut b);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let (mut a, mut b) = (xs.clone(), xs.clone());
        gelu_plain(&mut a);
        gelu(&mut b);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
        let dy: Vec<f32> = xs.iter().map(|x| (x * 3.1).cos()).collect();
        let (mut a, mut b) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        gelu_backward_plain(&xs, &dy, &mut a);
        gelu_backward(&xs, &dy, &mut b);
        assert_eq!(
            a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
            b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
        );
    }
}
