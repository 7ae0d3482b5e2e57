//! Normal-distribution functions for the Parzen estimators, and an `exp` the compiler can
//! vectorize (checked against `f64::exp`).

use std::f64::consts::{FRAC_1_SQRT_2, LOG2_E};

/// ln(sqrt(2 pi)).
pub const LN_SQRT_2PI: f64 = 0.918_938_533_204_672_8;

/// The standard normal CDF.
pub fn norm_cdf(x: f64) -> f64 {
    0.5 * libm::erfc(-x * FRAC_1_SQRT_2)
}

/// `Phi(b) - Phi(a)` for `a <= b`, accurate in both tails.
pub fn norm_mass(a: f64, b: f64) -> f64 {
    // Beyond 8.3 sigma a tail holds less than 1e-16: skip its erfc (most kernels of a large
    // mixture sit that far from at least one bound).
    const FAR: f64 = 8.3;
    if a < -FAR && b > FAR {
        return 1.0;
    }
    if a < -FAR && b >= 0.0 {
        return 1.0 - 0.5 * libm::erfc(b * FRAC_1_SQRT_2);
    }
    if b > FAR && a <= 0.0 {
        return 1.0 - 0.5 * libm::erfc(-a * FRAC_1_SQRT_2);
    }
    if a > 0.0 {
        0.5 * (libm::erfc(a * FRAC_1_SQRT_2) - libm::erfc(b * FRAC_1_SQRT_2))
    } else if b < 0.0 {
        0.5 * (libm::erfc(-b * FRAC_1_SQRT_2) - libm::erfc(-a * FRAC_1_SQRT_2))
    } else {
        norm_cdf(b) - norm_cdf(a)
    }
}

/// The standard normal quantile (inverse CDF) for `p` in (0, 1): Acklam's rational
/// approximation refined by one Halley step.
pub fn norm_ppf(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    let x = if p < 0.02425 {
        let q = (-2.0 * p.ln()).sqrt();
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else if p > 1.0 - 0.02425 {
        let q = (-2.0 * (1.0 - p).ln()).sqrt();
        -(((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    // One Halley step on Phi(x) - p.
    let e = norm_cdf(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// `exp(x)` for `x <= 0` (inputs below -700 give about 1e-304), branch-free so that loops
/// over it vectorize; relative error below 1e-15.
#[inline(always)]
pub fn exp_nonpos(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    const LN2_HI: f64 = 6.931_471_803_691_238e-1;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    let x = x.max(-700.0);
    let t = x * LOG2_E + SHIFT;
    let k = t - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO; // |r| <= ln2 / 2
    let mut p = 1.0 / 479_001_600.0; // 1/12!
    for d in [
        39_916_800.0,
        3_628_800.0,
        362_880.0,
        40_320.0,
        5_040.0,
        720.0,
        120.0,
        24.0,
        6.0,
        2.0,
        1.0,
        1.0,
    ] {
        p = p * r + 1.0 / d;
    }
    let ki = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    p * f64::from_bits(((ki + 1023) << 52) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_std() {
        let mut x = -700.0;
        while x <= 0.0 {
            let (a, b) = (exp_nonpos(x), x.exp());
            assert!(((a - b) / b).abs() < 2e-15, "{x}: {a} vs {b}");
            x += 0.0137;
        }
        assert_eq!(exp_nonpos(0.0), 1.0);
    }

    #[test]
    fn quantile_inverts_the_cdf() {
        for i in 1..1000 {
            let p = i as f64 / 1000.0;
            assert!((norm_cdf(norm_ppf(p)) - p).abs() < 1e-13, "{p}");
        }
        for p in [1e-10, 1e-5, 1.0 - 1e-10] {
            assert!(
                ((norm_cdf(norm_ppf(p)) - p) / p.min(1.0 - p)).abs() < 1e-6,
                "{p}"
            );
        }
        assert!((norm_mass(-1.96, 1.96) - 0.95).abs() < 1e-3);
        assert!(norm_mass(30.0, 31.0) > 0.0);
        assert!(norm_mass(-31.0, -30.0) > 0.0);
    }
}
