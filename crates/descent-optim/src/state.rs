//! The serializable state of an optimizer, keyed by parameter name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Everything an optimizer's next steps depend on besides its hyperparameters: the steps
/// taken, run-wide scalars (NAdam's `mu_product`) and, for each parameter tensor by name, its
/// shape and buffers (PyTorch's state names: `momentum_buffer`, `exp_avg`, `exp_avg_sq`, ...).
///
/// Keys are names, not positions: loading into a model whose tensors are named or shaped
/// differently fails and says which (PyTorch matches by order, pytorch/pytorch#1489).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Which optimizer wrote it (`adam`, ...).
    pub optimizer: String,
    /// Steps taken so far.
    pub step: u64,
    /// Scalars shared by all parameters.
    #[serde(default)]
    pub scalars: BTreeMap<String, f64>,
    /// Per parameter tensor: shape and buffers.
    pub params: BTreeMap<String, ParamState>,
}

/// One parameter tensor's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ParamState {
    /// The tensor's shape, checked on load.
    pub shape: Vec<usize>,
    /// Named buffers, each as long as the tensor.
    pub buffers: BTreeMap<String, Vec<f32>>,
}
