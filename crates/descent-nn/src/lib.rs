//! Layers, models, losses and parameter stores of descent.
//!
//! A model is described by a [`ModelSpec`] (an input shape and a list of [`LayerSpec`]s,
//! read from TOML or JSON, or a preset) and built into a [`Model`]: [`Layer`]s run in order,
//! each with its forward and backward pass side by side in one file. Parameters and buffers
//! live in one flat `Vec<f32>` described by a [`ParamLayout`] that names each tensor as
//! PyTorch does (`conv1.weight` is `[out, in, kh, kw]`, `bn1.running_mean`, ...), trainable
//! parameters first, so an optimizer step is one pass over one array and weights map
//! one-to-one onto a PyTorch `state_dict`.
//!
//! ```
//! use descent_nn::{Activation, Loss, Model, Targets, Workspace};
//! use descent_tensor::{Pool, Rng};
//!
//! let net = Model::mlp(4, &[8], 3, Activation::Relu, 0.0).unwrap();
//! let mut params = net.init_params(&mut Rng::new(0));
//! let mut grads = vec![0.0; net.param_count()];
//! let pool = Pool::new(1).unwrap();
//! let mut ws = Workspace::new(&net, 2, pool.threads());
//! let x = [0.1, 0.2, 0.3, 0.4, -0.1, -0.2, -0.3, -0.4];
//! let y = Targets::Classes(&[0, 2]);
//! let loss = net
//!     .train_step_grads(&mut params, &x, y, &Loss::default(), &mut grads, &mut ws, &pool)
//!     .unwrap();
//! assert!(loss.mean_loss().is_finite() && grads.iter().any(|g| *g != 0.0));
//! ```
//!
//! References: PyTorch's `torch.nn` (semantics, defaults, initialization and parameter
//! names of every layer), karpathy/llm.c (forward/backward pairs over one flat buffer, the
//! fused softmax + cross-entropy backward), im2col lowering of convolutions (Chellapilla et
//! al. 2006), direct convolution with register blocking (Georganas et al., "Anatomy of
//! High-Performance Deep Learning Convolutions on SIMD Architectures", 2018).

mod activation;
mod attention;
mod chain;
mod conv;
mod conv_direct;
mod conv_sparse;
mod decode;
mod device;
mod dropout;
mod embedding;
mod error;
mod layer;
mod layout;
mod linear;
mod loss;
mod model;
mod norm;
mod par;
mod pool2d;
mod presets;
mod residual;
mod sparse;
mod spec;

pub use activation::{Activation, ActivationLayer, LogSoftmax};
pub use attention::CausalSelfAttention;
pub use chain::Chain;
pub use conv::{conv2d_backward_naive, conv2d_naive, Conv2d, Window};
pub use decode::{Cache, Decoder, Sampling};
pub use device::DeviceProgram;
pub use dropout::{Dropout, Flatten};
pub use embedding::{Embedding, PositionEmbedding};
pub use error::NnError;
pub use layer::{mix_seed, numel, Backward, DeviceIo, Forward, Layer, Sink};
pub use layout::{LayoutBuilder, ParamLayout, ParamView};
pub use linear::Linear;
pub use loss::{softmax_cross_entropy, Loss, LossStats, Targets, LOSS_NAMES};
pub use model::{Model, Workspace};
pub use norm::{BatchNorm, LayerNorm};
pub use pool2d::{Pool2d, PoolKind};
pub use presets::{GptSize, PRESETS};
pub use residual::Residual;
pub use spec::{GeluApprox, LayerSpec, ModelSpec, Pair, LAYER_TYPES};
