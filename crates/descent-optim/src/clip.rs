//! Gradient clipping over the flat gradient buffer, as `torch.nn.utils.clip_grad_norm_` and
//! `clip_grad_value_`.

use crate::par::{sum_squares, Parallel, RayonPool};
use crate::OptimError;

/// The global L2 norm of all gradients (summed in f64 in an order fixed by the length, so the
/// same on any number of threads).
pub fn grad_norm(grads: &[f32]) -> f32 {
    grad_norm_on(&RayonPool, grads)
}

/// [`grad_norm`] with the pieces run by `exec`.
pub fn grad_norm_on(exec: &dyn Parallel, grads: &[f32]) -> f32 {
    sum_squares(exec, grads).sqrt() as f32
}

/// Scales all gradients by `min(1, max_norm / (norm + 1e-6))` and returns their norm before
/// clipping, as PyTorch does. With `error_if_nonfinite`, a NaN or infinite norm is an error and
/// the gradients are left alone.
pub fn clip_grad_norm(
    grads: &mut [f32],
    max_norm: f32,
    error_if_nonfinite: bool,
) -> Result<f32, OptimError> {
    clip_grad_norm_on(&RayonPool, grads, max_norm, error_if_nonfinite)
}

/// [`clip_grad_norm`] with the norm's pieces run by `exec`.
pub fn clip_grad_norm_on(
    exec: &dyn Parallel,
    grads: &mut [f32],
    max_norm: f32,
    error_if_nonfinite: bool,
) -> Result<f32, OptimError> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(OptimError::InvalidHyperparameter {
            name: "clip_norm",
            value: max_norm as f64,
            why: "the largest gradient norm must be a finite number > 0",
        });
    }
    let norm = grad_norm_on(exec, grads);
    if !norm.is_finite() && error_if_nonfinite {
        return Err(OptimError::NonFiniteGradNorm(norm));
    }
    let coef = (max_norm / (norm + 1e-6)).min(1.0);
    if coef < 1.0 {
        grads.iter_mut().for_each(|g| *g *= coef);
    }
    Ok(norm)
}

/// Clamps every gradient to `[-clip, clip]`.
pub fn clip_grad_value(grads: &mut [f32], clip: f32) -> Result<(), OptimError> {
    if !(clip.is_finite() && clip > 0.0) {
        return Err(OptimError::InvalidHyperparameter {
            name: "clip_value",
            value: clip as f64,
            why: "it must be a finite number > 0",
        });
    }
    grads.iter_mut().for_each(|g| *g = g.clamp(-clip, clip));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clips_to_the_norm_and_returns_the_old_one() {
        let mut g = vec![3.0f32, 4.0];
        let n = clip_grad_norm(&mut g, 1.0, true).unwrap();
        assert_eq!(n, 5.0);
        assert!((grad_norm(&g) - 1.0).abs() < 1e-6);
        let mut small = vec![0.3f32, 0.4];
        assert_eq!(clip_grad_norm(&mut small, 1.0, true).unwrap(), 0.5);
        assert_eq!(small, vec![0.3, 0.4]);
    }

    #[test]
    fn non_finite_norms_error_only_when_asked() {
        let mut g = vec![f32::NAN, 1.0];
        assert!(matches!(
            clip_grad_norm(&mut g, 1.0, true),
            Err(OptimError::NonFiniteGradNorm(_))
        ));
        assert_eq!(g[1], 1.0);
        assert!(clip_grad_norm(&mut g, 1.0, false).unwrap().is_nan());
        assert!(clip_grad_norm(&mut g, 0.0, false).is_err());
    }

    #[test]
    fn clamps_values() {
        let mut g = vec![-3.0f32, 0.5, 2.0];
        clip_grad_value(&mut g, 1.0).unwrap();
        assert_eq!(g, vec![-1.0, 0.5, 1.0]);
        assert!(clip_grad_value(&mut g, -1.0).is_err());
    }
}
