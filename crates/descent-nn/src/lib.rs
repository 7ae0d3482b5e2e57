//! Layers, losses and parameter stores of descent.
//!
//! Every layer's forward and backward pass sit side by side in one file. Parameters and
//! gradients live in flat `Vec<f32>` buffers described by a [`ParamLayout`] that names each
//! tensor as PyTorch does (`fc1.weight` is `out x in` row-major, then `fc1.bias`, `fc2.weight`,
//! ...), so an optimizer step is one pass over one array and checkpoints map one-to-one onto
//! a PyTorch `state_dict`.
//!
//! ```
//! use descent_nn::{Activation, Sequential, Workspace};
//! use descent_tensor::{Pool, Rng};
//!
//! let net = Sequential::mlp(4, &[8], 3, Activation::Relu).unwrap();
//! let params = net.init_params(&mut Rng::new(0));
//! let mut grads = vec![0.0; params.len()];
//! let mut ws = Workspace::new(&net, 2);
//! let pool = Pool::new(1).unwrap();
//! let x = [0.1, 0.2, 0.3, 0.4, -0.1, -0.2, -0.3, -0.4];
//! let loss = net.train_step_grads(&params, &x, &[0, 2], &mut grads, &mut ws, &pool).unwrap();
//! assert!(loss.mean_loss().is_finite() && grads.iter().any(|g| *g != 0.0));
//! ```
//!
//! References: PyTorch's `nn.Linear` initialization (`reset_parameters`), and the fused
//! softmax + cross-entropy backward of karpathy/llm.c.

mod activation;
mod error;
mod layout;
mod linear;
mod loss;
mod sequential;

pub use activation::Activation;
pub use error::NnError;
pub use layout::{ParamLayout, ParamView};
pub use linear::Linear;
pub use loss::{softmax_cross_entropy, LossStats};
pub use sequential::{Layer, LayerSpec, Sequential, Workspace};
