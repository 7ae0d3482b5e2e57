//! Splitting one update over rayon's threads without allocating: parameters, gradients and up
//! to three state buffers are halved together until a piece is small, and the halves run in
//! `rayon::join`. The split depends only on the length, so reductions add their partial sums in
//! the same order on any number of threads.

/// Elements below which a piece runs on one thread.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

/// Up to three state buffers, each as long as the parameters or empty when unused.
pub(crate) type Bufs<'a> = [&'a mut [f32]; 3];

fn split_buf(b: &mut [f32], mid: usize) -> (&mut [f32], &mut [f32]) {
    if b.is_empty() {
        (&mut [], &mut [])
    } else {
        b.split_at_mut(mid)
    }
}

/// A piece of the parameters, its gradients and its buffers.
type Piece<'a> = (&'a mut [f32], &'a [f32], Bufs<'a>);

fn split<'a>(p: &'a mut [f32], g: &'a [f32], b: Bufs<'a>) -> (Piece<'a>, Piece<'a>) {
    let mid = p.len() / 2;
    let (p0, p1) = p.split_at_mut(mid);
    let (g0, g1) = g.split_at(mid);
    let [a, bb, c] = b;
    let (a0, a1) = split_buf(a, mid);
    let (b0, b1) = split_buf(bb, mid);
    let (c0, c1) = split_buf(c, mid);
    ((p0, g0, [a0, b0, c0]), (p1, g1, [a1, b1, c1]))
}

/// Runs `f` over pieces of the buffers, in parallel when they are long.
pub(crate) fn par_for<F>(p: &mut [f32], g: &[f32], b: Bufs<'_>, f: &F)
where
    F: Fn(&mut [f32], &[f32], Bufs<'_>) + Sync,
{
    if p.len() <= PAR_CHUNK {
        f(p, g, b);
        return;
    }
    let ((p0, g0, b0), (p1, g1, b1)) = split(p, g, b);
    rayon::join(|| par_for(p0, g0, b0, f), || par_for(p1, g1, b1, f));
}

/// Runs `f` over pieces like [`par_for`] and adds up what each returns (two sums), in an
/// order fixed by the length alone.
pub(crate) fn par_sum<F>(p: &mut [f32], g: &[f32], b: Bufs<'_>, f: &F) -> [f64; 2]
where
    F: Fn(&mut [f32], &[f32], Bufs<'_>) -> [f64; 2] + Sync,
{
    if p.len() <= PAR_CHUNK {
        return f(p, g, b);
    }
    let ((p0, g0, b0), (p1, g1, b1)) = split(p, g, b);
    let (x, y) = rayon::join(|| par_sum(p0, g0, b0, f), || par_sum(p1, g1, b1, f));
    [x[0] + y[0], x[1] + y[1]]
}

/// The sum of squares of `x`, in f64, split like [`par_sum`].
pub(crate) fn sum_squares(x: &[f32]) -> f64 {
    if x.len() <= PAR_CHUNK {
        return x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    }
    let (a, b) = x.split_at(x.len() / 2);
    let (a, b) = rayon::join(|| sum_squares(a), || sum_squares(b));
    a + b
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_element_is_visited_once_with_its_buffers() {
        let n = 3 * PAR_CHUNK + 17;
        let mut p = vec![0.0f32; n];
        let g: Vec<f32> = (0..n).map(|i| i as f32).collect();
        let mut a = vec![1.0f32; n];
        par_for(
            &mut p,
            &g,
            [&mut a, &mut [], &mut []],
            &|p, g, [a, b, c]| {
                assert!(b.is_empty() && c.is_empty());
                for ((p, g), a) in p.iter_mut().zip(g).zip(a.iter_mut()) {
                    *p += g + 1.0;
                    *a += 1.0;
                }
            },
        );
        assert!(p.iter().enumerate().all(|(i, &v)| v == i as f32 + 1.0));
        assert!(a.iter().all(|&v| v == 2.0));
    }

    #[test]
    fn sums_do_not_depend_on_the_thread_count() {
        let x: Vec<f32> = (0..5 * PAR_CHUNK + 3)
            .map(|i| ((i * 7919) % 1000) as f32 * 1e-3)
            .collect();
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let three = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let s1 = one.install(|| sum_squares(&x));
        let s3 = three.install(|| sum_squares(&x));
        assert_eq!(s1.to_bits(), s3.to_bits());
        let naive: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((s1 - naive).abs() < 1e-9 * naive);
    }
}
