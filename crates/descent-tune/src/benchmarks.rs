//! Standard test functions for samplers, on the unit cube (as in `../shared/ANCHORS.md`), and
//! the runner that measures regret and sampler time on them.

use std::time::Instant;

use crate::error::Result;
use crate::sampler::Sampler;
use crate::study::{OptimizeOptions, Study};

/// A function to minimize on `[0, 1]^dim` with a known minimum.
#[derive(Clone, Copy, Debug)]
pub struct TestFunction {
    /// Its name.
    pub name: &'static str,
    /// Dimensions.
    pub dim: usize,
    /// The global minimum.
    pub minimum: f64,
    /// The function.
    pub f: fn(&[f64]) -> f64,
}

/// Branin-Hoo, x1 in [-5, 10] and x2 in [0, 15] mapped from the unit square; minimum
/// 0.397887.
pub const BRANIN: TestFunction = TestFunction {
    name: "branin",
    dim: 2,
    minimum: 0.397_887_357_729_738,
    f: branin,
};

/// Hartmann-6 on the unit cube; minimum -3.32237.
pub const HARTMANN6: TestFunction = TestFunction {
    name: "hartmann6",
    dim: 6,
    minimum: -3.322_368_011_391_339,
    f: hartmann6,
};

fn branin(x: &[f64]) -> f64 {
    use std::f64::consts::PI;
    let x1 = 15.0 * x[0] - 5.0;
    let x2 = 15.0 * x[1];
    let b = 5.1 / (4.0 * PI * PI);
    let c = 5.0 / PI;
    let t = 1.0 / (8.0 * PI);
    (x2 - b * x1 * x1 + c * x1 - 6.0).powi(2) + 10.0 * (1.0 - t) * x1.cos() + 10.0
}

fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886],
        [0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991],
        [0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650],
        [0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381],
    ];
    -(0..4)
        .map(|i| {
            let e: f64 = (0..6).map(|j| A[i][j] * (x[j] - P[i][j]).powi(2)).sum();
            ALPHA[i] * (-e).exp()
        })
        .sum::<f64>()
}

/// One run: `n_trials` trials of `f` with `sampler` in memory. Returns the regret (best
/// minus the minimum) and the mean seconds per trial spent outside the function.
pub fn run(f: &TestFunction, sampler: impl Sampler + 'static, n_trials: u64) -> Result<(f64, f64)> {
    let study = Study::builder(f.name).sampler(sampler).build()?;
    let start = Instant::now();
    let opts = OptimizeOptions {
        n_trials: Some(n_trials),
        ..Default::default()
    };
    study.optimize(
        |trial| {
            let mut x = [0.0; 8];
            for (i, xi) in x.iter_mut().enumerate().take(f.dim) {
                *xi = trial.suggest_float(&format!("x{i}"), 0.0, 1.0)?;
            }
            Ok((f.f)(&x[..f.dim]))
        },
        &opts,
    )?;
    let seconds = start.elapsed().as_secs_f64() / n_trials as f64;
    let best = study
        .best_trial()?
        .and_then(|t| t.value)
        .unwrap_or(f64::INFINITY);
    Ok((best - f.minimum, seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minima_are_where_the_literature_puts_them() {
        let pi = std::f64::consts::PI;
        for (x1, x2) in [(-pi, 12.275), (pi, 2.275), (9.42478, 2.475)] {
            let v = branin(&[(x1 + 5.0) / 15.0, x2 / 15.0]);
            assert!((v - BRANIN.minimum).abs() < 1e-5, "{v}");
        }
        let h = hartmann6(&[0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573]);
        assert!((h - HARTMANN6.minimum).abs() < 1e-5, "{h}");
    }
}
