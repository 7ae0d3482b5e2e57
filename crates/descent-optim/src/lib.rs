//! Optimizers over flat `f32` buffers, with explicit, serializable state.
//!
//! An optimizer sees the model as two slices of equal length, parameters and gradients, as
//! laid out by a flat parameter store; it does not know about layers or the engine. Its state
//! (step count, per-parameter buffers) is an [`OptimizerState`] that can be saved and loaded.
//!
//! ```
//! use descent_optim::{Optimizer, Sgd, SgdConfig};
//!
//! let mut opt = Sgd::new(SgdConfig { lr: 0.1, ..SgdConfig::default() }).unwrap();
//! let mut params = vec![1.0f32, -2.0];
//! opt.step(&mut params, &[0.5, -1.0]).unwrap();
//! assert_eq!(params, vec![0.95, -1.9]);
//! ```
//!
//! Reference: `torch.optim.SGD` (PyTorch 2.x), whose update rules and defaults these follow.

mod sgd;
mod state;

pub use sgd::{Sgd, SgdConfig};
pub use state::OptimizerState;

/// What an optimizer can refuse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimError {
    /// A hyperparameter outside its valid range.
    #[error("invalid {name} = {value}: {why}")]
    InvalidHyperparameter {
        /// Its name as on the command line (`lr`, `momentum`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What a valid value looks like.
        why: &'static str,
    },
    /// Settings that contradict each other.
    #[error("{0}")]
    InvalidCombination(&'static str),
    /// Parameters and gradients of different lengths.
    #[error("{params} parameters but {grads} gradients: both must come from the same layout")]
    LengthMismatch {
        /// Parameter count.
        params: usize,
        /// Gradient count.
        grads: usize,
    },
    /// A saved state that does not belong to this optimizer or model.
    #[error("cannot load optimizer state: {0}")]
    StateMismatch(String),
}

/// One optimizer: turns gradients into parameter updates, in place.
pub trait Optimizer: Send {
    /// The optimizer's name (`sgd`, ...).
    fn name(&self) -> &'static str;

    /// Updates `params` from `grads` (same length). Runs on rayon's current pool for large
    /// buffers: call it inside `Pool::install` to choose the threads.
    fn step(&mut self, params: &mut [f32], grads: &[f32]) -> Result<(), OptimError>;

    /// The learning rate in use.
    fn lr(&self) -> f32;

    /// Sets the learning rate (schedules call this between steps).
    fn set_lr(&mut self, lr: f32);

    /// When the next update is exactly `p -= lr * grad` for every parameter (plain SGD: no
    /// momentum, weight decay or maximize), returns that `lr`, so that an engine may apply
    /// the step inside its backward pass instead of calling [`Optimizer::step`]. It must
    /// then call [`Optimizer::fused_step_done`].
    fn plain_sgd_lr(&self) -> Option<f32> {
        None
    }

    /// Records a step that the engine applied itself after [`Optimizer::plain_sgd_lr`].
    fn fused_step_done(&mut self) {}

    /// A copy of everything the next steps depend on besides the hyperparameters.
    fn state(&self) -> OptimizerState;

    /// Restores a state saved by [`Optimizer::state`] of the same optimizer and model.
    fn load_state(&mut self, state: &OptimizerState) -> Result<(), OptimError>;
}

/// Elements per task below which updates run on one thread.
pub(crate) const PAR_CHUNK: usize = 1 << 15;

pub(crate) fn check_lengths(params: &[f32], grads: &[f32]) -> Result<(), OptimError> {
    if params.len() != grads.len() {
        return Err(OptimError::LengthMismatch {
            params: params.len(),
            grads: grads.len(),
        });
    }
    Ok(())
}

pub(crate) fn check_finite_nonneg(name: &'static str, value: f32) -> Result<(), OptimError> {
    if !value.is_finite() || value < 0.0 {
        return Err(OptimError::InvalidHyperparameter {
            name,
            value: value as f64,
            why: "it must be a finite number >= 0",
        });
    }
    Ok(())
}
