//! The layer abstraction: a forward and a backward pass over shaped activations, parameters
//! in the model's flat buffer, and the workspace a layer asks for.
//!
//! A layer is built once, from its input shape, by a [`crate::LayerSpec`]; building declares
//! its parameters and buffers into a [`crate::LayoutBuilder`] (which gives their offsets) and
//! fixes its output shape. Activations are `batch x numel(shape)` row-major f32 (NCHW for
//! images, `N x L x D` for sequences, `N x F` for features). To add a layer: implement
//! [`Layer`] in its own file (forward and backward side by side, shapes first), add a
//! [`crate::LayerSpec`] variant that builds it, and a PyTorch fixture (`tools/nn_reference.py`).

use descent_tensor::backend::{Backend, BackendError, Span};
use descent_tensor::{Pool, Rng};

/// Everything a layer's forward pass reads besides its input.
pub struct Forward<'a> {
    /// The engine's threads.
    pub pool: &'a Pool,
    /// Rows (examples) in this batch.
    pub batch: usize,
    /// Rows the workspace was made for (`batch <= cap`).
    pub cap: usize,
    /// Threads the workspace was made for: split work into at most this many parts.
    pub threads: usize,
    /// Training mode (dropout drops, BatchNorm uses and updates batch statistics).
    pub train: bool,
    /// The random stream of this layer in this step (dropout masks).
    pub seed: u64,
    /// The trainable parameters (the whole model's, indexed by the layer's offsets).
    pub params: &'a [f32],
    buffers: Buffers<'a>,
    /// When set, the model's top-level layers add their seconds here (`descent bench
    /// layers`).
    pub times: Option<&'a mut [f64]>,
    /// Scratch shared by the model's layers, kept by none between calls
    /// ([`Layer::scratch_len`] values or more): a residual block that recomputes its body
    /// takes it for the body's activations and hands it back.
    pub scratch: Vec<f32>,
}

enum Buffers<'a> {
    Read(&'a [f32]),
    Write(&'a mut [f32]),
}

impl<'a> Forward<'a> {
    /// A forward pass in evaluation mode: buffers are read only.
    pub fn eval(pool: &'a Pool, params: &'a [f32], buffers: &'a [f32]) -> Self {
        Self {
            pool,
            batch: 0,
            cap: 0,
            threads: 1,
            train: false,
            seed: 0,
            params,
            buffers: Buffers::Read(buffers),
            times: None,
            scratch: Vec::new(),
        }
    }

    /// A forward pass in training mode that leaves the buffers as they are: a body run again
    /// in the backward pass (its batch statistics, not a second update of the running ones).
    pub(crate) fn recompute(pool: &'a Pool, params: &'a [f32], buffers: &'a [f32]) -> Self {
        Self {
            train: true,
            ..Self::eval(pool, params, buffers)
        }
    }

    /// A forward pass in training mode: layers may update their buffers.
    pub fn train(pool: &'a Pool, params: &'a [f32], buffers: &'a mut [f32], seed: u64) -> Self {
        Self {
            pool,
            batch: 0,
            cap: 0,
            threads: 1,
            train: true,
            seed,
            params,
            buffers: Buffers::Write(buffers),
            times: None,
            scratch: Vec::new(),
        }
    }

    /// The model's buffers (running statistics), indexed by the offsets
    /// [`crate::LayoutBuilder::buffer`] gave.
    pub fn buffers(&self) -> &[f32] {
        match &self.buffers {
            Buffers::Read(b) => b,
            Buffers::Write(b) => b,
        }
    }

    /// The buffers, writable in training mode only.
    pub fn buffers_mut(&mut self) -> Option<&mut [f32]> {
        match &mut self.buffers {
            Buffers::Read(_) => None,
            Buffers::Write(b) => Some(b),
        }
    }
}

/// Where a backward pass puts parameter gradients.
pub enum Sink<'a> {
    /// Into a buffer laid out like the parameters (overwritten, not accumulated).
    Grads(&'a mut [f32]),
    /// Straight into the parameters as a plain SGD step `p -= lr * g`.
    Sgd(f32),
}

/// Everything a layer's backward pass reads or writes besides its activations.
pub struct Backward<'a> {
    /// The engine's threads.
    pub pool: &'a Pool,
    /// Rows in this batch.
    pub batch: usize,
    /// Rows the workspace was made for.
    pub cap: usize,
    /// Threads the workspace was made for.
    pub threads: usize,
    /// The trainable parameters; written only through the SGD sink, after the layer's input
    /// gradient has used them.
    pub params: &'a mut [f32],
    /// Gradients or SGD.
    pub sink: Sink<'a>,
    /// The buffers, read only (BatchNorm's backward needs none, but a layer may look).
    pub buffers: &'a [f32],
    /// When set, the model's top-level layers add their seconds here.
    pub times: Option<&'a mut [f64]>,
    /// The random stream the layer's forward pass had ([`Forward::seed`]), to run it again.
    pub seed: u64,
    /// Scratch shared by the model's layers, as [`Forward::scratch`].
    pub scratch: Vec<f32>,
}

impl Backward<'_> {
    /// Adds `grad` to the gradient of `params[offset..offset + grad.len()]` that another layer
    /// put there earlier in this backward pass (a weight two layers share, as a language
    /// model's head shares its token embedding): added in the gradient buffer, or applied as
    /// `p -= lr * g` with the SGD sink (two steps of SGD are one step of the sum).
    pub fn add(&mut self, offset: usize, grad: &[f32]) {
        let r = offset..offset + grad.len();
        match &mut self.sink {
            Sink::Grads(g) => g[r].iter_mut().zip(grad).for_each(|(g, v)| *g += v),
            Sink::Sgd(lr) => {
                let lr = *lr;
                self.params[r]
                    .iter_mut()
                    .zip(grad)
                    .for_each(|(p, g)| *p -= lr * g);
            }
        }
    }

    /// Hands over the finished gradient of `params[offset..offset + grad.len()]`: copied into
    /// the gradient buffer, or applied as `p -= lr * g` with the SGD sink. Call it after the
    /// layer's input gradient is computed (that needs the parameters as they were).
    pub fn put(&mut self, offset: usize, grad: &[f32]) {
        let r = offset..offset + grad.len();
        match &mut self.sink {
            Sink::Grads(g) => g[r].copy_from_slice(grad),
            Sink::Sgd(lr) => {
                let lr = *lr;
                self.params[r]
                    .iter_mut()
                    .zip(grad)
                    .for_each(|(p, g)| *p -= lr * g);
            }
        }
    }
}

/// A layer of a model. Built for one input shape; works on batches of any size up to the
/// workspace's capacity.
pub trait Layer: Send + Sync + std::fmt::Debug {
    /// PyTorch's class name (`Conv2d`, `ReLU`), for messages and summaries.
    fn kind(&self) -> &'static str;

    /// Shape of one example's output.
    fn output_shape(&self) -> &[usize];

    /// The layer and its settings in PyTorch's terms (`Conv2d(1, 32, 3x3) + ReLU`), for
    /// summaries.
    fn summary(&self) -> String {
        self.kind().to_string()
    }

    /// Whether the output is the input's values, unchanged in memory (`Flatten`): a chain then
    /// hands the next layer the input itself and the gradient slot before it, and runs no
    /// copy (unless the layer is its first or last, where the copy is kept).
    fn is_view(&self) -> bool {
        false
    }

    /// Another layer, later in the model, reads this layer's parameter at `offset` as its own
    /// (weight tying) and puts its gradient first in the backward pass: from now on this
    /// layer adds its gradient to that one ([`Backward::add`]). Returns whether the layer
    /// owns a parameter at `offset` and can share it.
    fn share(&mut self, offset: usize) -> bool {
        let _ = offset;
        false
    }

    /// Checks a model input for this layer when it is the model's first (token ids must be
    /// whole numbers below the vocabulary, say): the reason it is refused, if it is.
    fn check_input(&self, x: &[f32]) -> Result<(), String> {
        let _ = x;
        Ok(())
    }

    /// f32 values of workspace this layer needs for batches of up to `cap` rows on `threads`
    /// threads (values saved by the forward pass for the backward pass, scratch space).
    fn workspace_len(&self, cap: usize, threads: usize) -> usize {
        let _ = (cap, threads);
        0
    }

    /// f32 values of scratch this layer uses during one call of its forward or backward pass
    /// and keeps nothing in ([`Forward::scratch`]; it is taken whole, so a layer that uses it
    /// runs no other layer that does); the model holds the largest any layer asks for, once.
    fn scratch_len(&self, cap: usize, threads: usize) -> usize {
        let _ = (cap, threads);
        0
    }

    /// Activation recomputation: keep fewer activations and run part of the forward pass
    /// again in the backward pass (a residual block keeps its input and output, and runs its
    /// body again from the input). Called on a model's top-level layers; returns how many
    /// changed (a block that is one, a nested layer none). The
    /// gradients are the same, bit for bit; workspaces made before no longer fit the model.
    fn set_recompute(&mut self, on: bool) -> usize {
        let _ = on;
        0
    }

    /// The precision of the layer's matrix products' inputs (mixed precision: bf16 inputs,
    /// f32 sums, f32 parameters, gradients and activations); layers without products, or
    /// whose products stay f32, ignore it. Returns how many layers took it.
    fn set_precision(&mut self, precision: descent_tensor::Precision) -> usize {
        let _ = precision;
        0
    }

    /// Whether a row's output depends on the other rows of its batch in training mode
    /// (BatchNorm's batch statistics): then a batch cannot run in chunks of rows with the
    /// same result (see [`crate::Model::train_step_grads`]).
    fn couples_rows(&self) -> bool {
        false
    }

    /// Number of trainable values the layer owns (for summaries).
    fn param_count(&self) -> usize {
        0
    }

    /// Floating-point operations of the forward pass per example (2 per multiply-add of
    /// the matrix products; element-wise work is not counted). The backward pass costs about
    /// twice as much.
    fn flops(&self) -> u64 {
        0
    }

    /// PyTorch's default initialization of the layer's parameters and buffers.
    fn init(&self, params: &mut [f32], buffers: &mut [f32], rng: &mut Rng) {
        let _ = (params, buffers, rng);
    }

    /// Whether the layer has a device program ([`Layer::device_forward`] and
    /// [`Layer::device_backward`]), so that a model of such layers runs on any
    /// [`descent_tensor::Backend`]; when not, the reason, for the message that refuses the
    /// model on a device.
    fn on_device(&self) -> Result<(), String> {
        Err(format!("{} has no device program yet", self.kind()))
    }

    /// `y = layer(x)` on `batch` rows on a backend: the layer's parameters are at its own
    /// offsets in [`descent_tensor::backend::Region::Params`]. Only called when
    /// [`Layer::on_device`] says yes.
    fn device_forward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        x: Span,
        y: Span,
    ) -> Result<(), BackendError> {
        let _ = (be, batch, x, y);
        Err(BackendError::Unsupported(
            self.on_device().err().unwrap_or_default(),
        ))
    }

    /// The backward pass on a backend: from `dy` (which it may overwrite) the parameter
    /// gradients, put at the layer's offsets in
    /// [`descent_tensor::backend::Region::Grads`], and `dx` when given.
    fn device_backward(
        &self,
        be: &mut dyn Backend,
        batch: usize,
        io: DeviceIo,
    ) -> Result<(), BackendError> {
        let _ = (be, batch, io);
        Err(BackendError::Unsupported(
            self.on_device().err().unwrap_or_default(),
        ))
    }

    /// `y = layer(x)` on `f.batch` rows; `ws` is the layer's workspace.
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], ws: &mut [f32]);

    /// From `dy` (the loss gradient w.r.t. `y`; the layer may overwrite it) computes the
    /// parameter gradients into `b.sink` and, when `dx` is given, the gradient w.r.t. `x`
    /// (overwritten, not accumulated). `x`, `y` and `ws` are as the forward pass left them.
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    );
}

/// The spans a layer's device backward pass reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct DeviceIo {
    /// The input, as the forward pass read it.
    pub x: Span,
    /// The output, as the forward pass left it.
    pub y: Span,
    /// The gradient w.r.t. the output; the layer may overwrite it.
    pub dy: Span,
    /// Where the gradient w.r.t. the input goes (overwritten), when it is wanted.
    pub dx: Option<Span>,
}

/// Number of values in one example of this shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// A random stream for node `index` under `seed` (dropout masks of nested layers differ).
pub fn mix_seed(seed: u64, index: usize) -> u64 {
    seed ^ (index as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
