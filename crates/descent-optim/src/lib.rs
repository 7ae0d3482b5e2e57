//! Optimizers over flat `f32` buffers, with explicit state saved by parameter name.
//!
//! An optimizer sees the model as one buffer of parameters and one of gradients, cut into
//! named tensors ([`ParamSpec`], e.g. `fc1.weight` of shape `[512, 784]`); it knows nothing
//! else about layers or the engine. Each update rule is a config struct with PyTorch's
//! defaults plus a kernel that updates a piece of the buffers in one pass; [`Optimizer`] runs
//! it over every tensor (in parallel for large ones), applies parameter groups, and saves and
//! restores the per-tensor buffers as an [`OptimizerState`].
//!
//! ```
//! use descent_optim::{Optimizer, OptimizerConfig, SgdConfig};
//!
//! let cfg = SgdConfig { lr: 0.1, momentum: 0.9, ..SgdConfig::default() };
//! let mut opt = Optimizer::flat(OptimizerConfig::Sgd(cfg), 2).unwrap();
//! let mut params = vec![1.0f32, -2.0];
//! opt.step(&mut params, &[0.5, -1.0]).unwrap();
//! assert_eq!(params, vec![0.95, -1.9]);
//! opt.step(&mut params, &[0.5, -1.0]).unwrap();
//! assert_eq!(params, vec![0.855, -1.71]); // b = 0.9 b + g = 0.95
//! ```
//!
//! The rules and their references: SGD, Adagrad, RMSprop, Adadelta, Adam, AdamW, Adamax,
//! NAdam and RAdam follow `torch.optim` (PyTorch 2.x, checked step by step against it in
//! `tests/torch_parity.rs`); the seed's momentum and adaptive rule, Lion (Chen et al. 2023)
//! and LAMB (You et al. 2020) follow their papers. [`schedule`] holds the learning-rate
//! schedules, [`clip_grad_norm`] and [`clip_grad_value`] the clipping.

mod clip;
mod device;
mod optimizer;
mod par;
mod rules;
pub mod schedule;
mod state;

pub use clip::{clip_grad_norm, clip_grad_norm_on, clip_grad_value, grad_norm, grad_norm_on};
pub use device::{DeviceGroup, DEVICE_OPTIMIZERS};
pub use optimizer::{Optimizer, ParamGroup, ParamSpec};
pub use par::{Parallel, RayonPool, Serial};
pub use rules::{
    catalog, AdadeltaConfig, AdagradConfig, AdamConfig, AdamaxConfig, DecayMode, HyperValue,
    LambConfig, LionConfig, MomentumConfig, NAdamConfig, OptimizerConfig, OptimizerInfo,
    RAdamConfig, RmsPropConfig, SgdConfig, OPTIMIZER_NAMES,
};
pub use state::{OptimizerState, ParamState};

/// What an optimizer, a schedule or a clip can refuse.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OptimError {
    /// A hyperparameter outside its valid range.
    #[error("invalid {name} = {value}: {why}")]
    InvalidHyperparameter {
        /// Its name as in PyTorch (`lr`, `momentum`, `beta1`, ...).
        name: &'static str,
        /// The value given.
        value: f64,
        /// What a valid value looks like.
        why: &'static str,
    },
    /// Settings that contradict each other.
    #[error("{0}")]
    InvalidCombination(&'static str),
    /// Buffers of another length than the tensors the optimizer was built for.
    #[error(
        "the optimizer was built for {expected} parameters but got {params} parameters and \
         {grads} gradients: build it from the same model"
    )]
    LengthMismatch {
        /// Values in the optimizer's tensors.
        expected: usize,
        /// Parameters given.
        params: usize,
        /// Gradients given.
        grads: usize,
    },
    /// Tensor names or parameter groups that do not fit together.
    #[error("parameters: {0}")]
    Layout(String),
    /// A saved state that does not belong to this optimizer or model.
    #[error("cannot load optimizer state: {0}")]
    StateMismatch(String),
    /// A momentum was set (e.g. by a one-cycle schedule) on an optimizer without one.
    #[error("{0} has no momentum or beta1 to cycle; turn momentum cycling off")]
    NoMomentum(&'static str),
    /// A hyperparameter this optimizer does not have.
    #[error("{optimizer} has no setting `{name}` (its settings: {known})")]
    UnknownHyperparameter {
        /// The optimizer.
        optimizer: &'static str,
        /// The name asked for.
        name: String,
        /// The names it has.
        known: String,
    },
    /// An optimizer whose update has no device kernel yet.
    #[error("{0} has no device update yet (on a GPU, choose one of: {list}); or train on the CPU", list = crate::device::DEVICE_OPTIMIZERS)]
    NoDeviceUpdate(&'static str),
    /// Clipping met a NaN or infinite gradient norm.
    #[error("the gradient norm is {0}: the gradients hold NaN or infinity (lower the learning rate, or clip without the non-finite check)")]
    NonFiniteGradNorm(f32),
}
