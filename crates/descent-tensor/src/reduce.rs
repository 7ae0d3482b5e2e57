//! Reductions over f32 slices.

/// The sum of `v` in 16 interleaved partial sums (value `i` goes to sum `i % 16`), added
/// pairwise at the end. The compiler vectorizes this where a left-to-right `iter().sum()` has
/// to add one value at a time (f32 addition is not associative, so it may not reorder); it is
/// also more accurate. The same input gives the same bits on every machine.
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
}
