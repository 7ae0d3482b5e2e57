//! The optimizers' updates in the form a device backend runs them
//! ([`descent_tensor::backend::Update`]): the element-wise rule, and per step the scalars
//! (learning rate, bias corrections) the host works out, as the CPU optimizer does.

use std::ops::Range;

use descent_tensor::backend::Update;

use crate::rules::{DecayMode, OptimizerConfig};
use crate::OptimError;

/// One parameter group's update on a device: the rule, the ranges of the flat buffer it
/// covers, and the scalars of the next step ([`Update::HYPER`] of them).
#[derive(Clone, Debug, PartialEq)]
pub struct DeviceGroup {
    /// The element-wise rule.
    pub update: Update,
    /// Ranges of the flat parameters (and of each state buffer) it updates.
    pub ranges: Vec<Range<usize>>,
    /// The next step's scalars.
    pub hyper: [f32; Update::HYPER],
}

/// The optimizers that have a device update.
pub const DEVICE_OPTIMIZERS: &str =
    "sgd, momentum, adagrad, rmsprop, adadelta, adam, adamw, adamax, lion";

impl OptimizerConfig {
    /// The element-wise device rule of this optimizer, when it has one.
    pub fn device_update(&self) -> Result<Update, OptimError> {
        Ok(match *self {
            OptimizerConfig::Sgd(c) => Update::Sgd {
                momentum: c.momentum,
                dampening: c.dampening,
                weight_decay: c.weight_decay,
                nesterov: c.nesterov,
                maximize: c.maximize,
            },
            OptimizerConfig::Adam(c) | OptimizerConfig::AdamW(c) => Update::Adam {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                decoupled: matches!(self, OptimizerConfig::AdamW(_))
                    || c.decay == DecayMode::Decoupled,
                amsgrad: c.amsgrad,
                maximize: c.maximize,
            },
            OptimizerConfig::Momentum(c) => Update::Momentum {
                beta: c.beta,
                weight_decay: c.weight_decay,
            },
            OptimizerConfig::Adagrad(c) => Update::Adagrad {
                lr_decay: c.lr_decay,
                eps: c.eps,
                weight_decay: c.weight_decay,
                initial_accumulator_value: c.initial_accumulator_value,
                maximize: c.maximize,
            },
            OptimizerConfig::RmsProp(c) => Update::RmsProp {
                alpha: c.alpha,
                eps: c.eps,
                weight_decay: c.weight_decay,
                momentum: c.momentum,
                centered: c.centered,
                eps_inside_sqrt: c.eps_inside_sqrt,
                maximize: c.maximize,
            },
            OptimizerConfig::Adadelta(c) => Update::Adadelta {
                rho: c.rho,
                eps: c.eps,
                weight_decay: c.weight_decay,
                maximize: c.maximize,
            },
            OptimizerConfig::Adamax(c) => Update::Adamax {
                beta1: c.beta1,
                beta2: c.beta2,
                eps: c.eps,
                weight_decay: c.weight_decay,
                maximize: c.maximize,
            },
            OptimizerConfig::Lion(c) => Update::Lion {
                beta1: c.beta1,
                beta2: c.beta2,
                weight_decay: c.weight_decay,
                maximize: c.maximize,
            },
            other => return Err(OptimError::NoDeviceUpdate(other.name())),
        })
    }
}
