//! Reductions over f32 slices.

/// The sum of `v` in 16 interleaved partial sums (value `i` goes to sum `i % 16`), added
/// pairwise at the end. The compiler vectorizes this where a left-to-right `iter().sum()` has
/// to add one value at a time (f32 addition is not associative, so it may not reorder); it is
/// also more accurate. The same input gives the same bits on every machine.
#[inline(always)]
pub fn sum(v: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    for (a, x) in acc.iter_mut().zip(chunks.remainder()) {
        *a += x;
    }
    let mut n = 16;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

/// `Σ a[i] · b[i]` over the shorter of the two, in the 16 interleaved partial sums of
/// [`sum`] (so that it vectorizes), added pairwise at the end.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; 16];
    let (mut ca, mut cb) = (a.chunks_exact(16), b.chunks_exact(16));
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, x), y) in acc.iter_mut().zip(x).zip(y) {
            *s += x * y;
        }
    }
    for ((s, x), y) in acc.iter_mut().zip(ca.remainder()).zip(cb.remainder()) {
        *s += x * y;
    }
    sum(&acc)
}

/// The largest value of `v` (`-inf` for an empty slice; NaNs are passed over, as
/// `f32::max` does), in 16 interleaved running maxima so that it vectorizes.
#[inline(always)]
pub fn max(v: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 16];
    let mut chunks = v.chunks_exact(16);
    for c in &mut chunks {
        for (a, x) in acc.iter_mut().zip(c) {
            *a = a.max(*x);
        }
    }
    for (a, x) in acc.iter_mut().zip(chunks.remainder()) {
        *a = a.max(*x);
    }
    acc.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sum_matches_f64_on_any_length() {
        for len in [0, 1, 5, 16, 17, 576, 1000] {
            let v: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.0)
                .collect();
            let want: f64 = v.iter().map(|&x| x as f64).sum();
            let got = sum(&v) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{len}: {got} vs {want}"
            );
        }
        assert!(sum(&[1.0, f32::NAN]).is_nan());
    }

    #[test]
    fn dot_and_max_match_the_plain_loops_on_any_length() {
        for len in [0, 1, 5, 16, 17, 128, 1000] {
            let a: Vec<f32> = (0..len)
                .map(|i| ((i * 37) % 101) as f32 / 7.0 - 6.0)
                .collect();
            let b: Vec<f32> = (0..len)
                .map(|i| ((i * 13) % 29) as f32 / 5.0 - 2.5)
                .collect();
            let want: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let got = dot(&a, &b) as f64;
            assert!(
                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                "{len}: {got} vs {want}"
            );
            let m = a.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!(max(&a), m, "{len}");
        }
        assert_eq!(dot(&[1.0, 2.0, 3.0], &[4.0, 5.0]), 14.0);
        assert_eq!(max(&[f32::NAN, -3.0, f32::NAN]), -3.0);
    }
}
