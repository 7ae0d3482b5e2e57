//! The backend seam: where a training step runs.
//!
//! A [`Backend`] owns a few flat f32 buffers, the [`Region`]s (the parameters, their
//! gradients, the activations, the batch, the optimizer state, the step's scalars), and runs
//! the operations a layer, a loss and an optimizer are made of on spans of them: a matrix
//! product with transposes and alpha/beta, a bias add fused with an activation, column sums,
//! softmax with cross-entropy, the optimizer updates. A layer writes its device program once
//! against this trait (descent-nn's `Layer::device_forward`); each backend implements the
//! operations: [`HostBackend`] on the CPU (the reference every other backend is tested
//! against), descent-cuda's on an NVIDIA GPU.
//!
//! Operations are enqueued, not waited for: a GPU backend launches them on one stream and may
//! record a whole step once and replay it. Values that change from step to step (the learning
//! rate, bias corrections) therefore live in the [`Region::Hyper`] buffer, written before the
//! step, and never in an operation's arguments.
//!
//! The CPU engine of descent keeps its own layers' passes (threads, packed and AMX kernels);
//! this seam adds a second path beside it, it does not route the CPU engine through it.

use std::fmt;
use std::str::FromStr;

mod host;
mod update;

pub use host::HostBackend;
pub use update::{lerp, Update};

/// Where a training step runs: `cpu`, or `cuda` / `cuda:N` (the N-th NVIDIA GPU).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Device {
    /// The CPU engine.
    #[default]
    Cpu,
    /// The CUDA device of this ordinal.
    Cuda(usize),
}

impl Device {
    /// Whether this is the CPU.
    pub fn is_cpu(self) -> bool {
        self == Device::Cpu
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// A device name that is not `cpu`, `cuda` or `cuda:N`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown device `{0}`: write `cpu`, `cuda` (the first GPU) or `cuda:N` (the N-th, from 0)")]
pub struct DeviceParseError(pub String);

impl FromStr for Device {
    type Err = DeviceParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "cpu" => return Ok(Device::Cpu),
            "cuda" | "gpu" => return Ok(Device::Cuda(0)),
            _ => {}
        }
        t.strip_prefix("cuda:")
            .and_then(|n| n.parse::<usize>().ok())
            .map(Device::Cuda)
            .ok_or_else(|| DeviceParseError(s.to_string()))
    }
}

/// The flat buffers a backend holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Region {
    /// The trainable parameters, laid out as the model's flat buffer.
    Params,
    /// Their gradients, laid out the same way.
    Grads,
    /// Activations and their gradients.
    Acts,
    /// The batch: inputs, then targets (class ids held as f32).
    Batch,
    /// The optimizer's state (momentum, moments), one block per buffer of the parameters'
    /// length.
    State,
    /// The step's scalars (learning rate, bias corrections) and accumulated statistics.
    Hyper,
}

impl Region {
    /// Every region, in the order [`Region::index`] numbers them.
    pub const ALL: [Region; 6] = [
        Region::Params,
        Region::Grads,
        Region::Acts,
        Region::Batch,
        Region::State,
        Region::Hyper,
    ];

    /// Position in [`Region::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// `len` values from `offset` of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The buffer.
    pub region: Region,
    /// First value.
    pub offset: usize,
    /// Number of values.
    pub len: usize,
}

impl Span {
    /// `len` values from `offset` of `region`.
    pub fn new(region: Region, offset: usize, len: usize) -> Self {
        Self {
            region,
            offset,
            len,
        }
    }

    /// The part of this span from `start`, `len` values long.
    ///
    /// # Panics
    /// When it reaches past this span's end: offsets are computed by the program that owns the
    /// spans, so this is a bug there, not bad input.
    pub fn sub(self, start: usize, len: usize) -> Self {
        assert!(
            start + len <= self.len,
            "{len} values from {start} of a span of {}",
            self.len
        );
        Self {
            offset: self.offset + start,
            len,
            ..self
        }
    }

    /// One past the last value.
    pub fn end(self) -> usize {
        self.offset + self.len
    }

    /// An error unless the span holds `n` values (`what` goes into it: `3 values written`).
    pub fn holds(self, n: usize, what: &str) -> Result<(), BackendError> {
        if n != self.len {
            return Err(BackendError::Unsupported(format!(
                "{n} values {what} a span of {}",
                self.len
            )));
        }
        Ok(())
    }
}

/// A `rows x cols` matrix in a span: row-major with row stride `ld`, or, when `trans`, the
/// transpose of the `cols x rows` row-major matrix stored there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DMat {
    /// Where the values are.
    pub span: Span,
    /// Rows of the matrix as used.
    pub rows: usize,
    /// Columns of the matrix as used.
    pub cols: usize,
    /// Distance between rows of the stored matrix.
    pub ld: usize,
    /// Whether the matrix is the transpose of what is stored.
    pub trans: bool,
}

impl DMat {
    /// A row-major `rows x cols` matrix at the start of `span`.
    ///
    /// # Panics
    /// When the span is shorter than `rows * cols` (a bug in the program that made it).
    pub fn new(span: Span, rows: usize, cols: usize) -> Self {
        assert!(
            rows * cols <= span.len,
            "a {rows}x{cols} matrix in a span of {}",
            span.len
        );
        Self {
            span,
            rows,
            cols,
            ld: cols,
            trans: false,
        }
    }

    /// The transpose, as a view.
    pub fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            trans: !self.trans,
            ..self
        }
    }
}

/// An activation whose derivative is a function of its output, so that it runs fused onto
/// the bias add and its backward pass needs only the output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// None.
    Identity,
    /// `max(x, 0)`, derivative 0 at 0.
    Relu,
    /// `x` above 0, `slope * x` below (slope > 0).
    LeakyRelu(f32),
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + exp(-x))`.
    Sigmoid,
}

impl Act {
    /// `f(x)`.
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Act::Identity => x,
            Act::Relu => x.max(0.0),
            Act::LeakyRelu(s) => {
                if x > 0.0 {
                    x
                } else {
                    s * x
                }
            }
            Act::Tanh => x.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }

    /// `f'(x)` written with `y = f(x)`.
    pub fn derivative(self, y: f32) -> f32 {
        match self {
            Act::Identity => 1.0,
            Act::Relu => {
                if y > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
            Act::LeakyRelu(s) => {
                if y > 0.0 {
                    1.0
                } else {
                    s
                }
            }
            Act::Tanh => 1.0 - y * y,
            Act::Sigmoid => y * (1.0 - y),
        }
    }
}

/// What went wrong on a backend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The device failed an operation (a launch, a copy, a library call).
    #[error("{device}: {what} failed: {reason}")]
    Device {
        /// The device.
        device: String,
        /// The operation.
        what: String,
        /// What its driver or library said.
        reason: String,
    },
    /// A program asked for an operation this backend does not have.
    #[error("{0}")]
    Unsupported(String),
}

/// The operations a training step is made of, on spans of the backend's regions. Every
/// operation's values are f32; class ids are whole numbers held as f32.
pub trait Backend {
    /// The device, for messages.
    fn device(&self) -> Device;

    /// Makes `region` `len` values long, all zero (what it held is gone).
    fn resize(&mut self, region: Region, len: usize) -> Result<(), BackendError>;

    /// Length of `region`.
    fn len(&self, region: Region) -> usize;

    /// Copies host values into `span` (as long as `values`).
    fn write(&mut self, span: Span, values: &[f32]) -> Result<(), BackendError>;

    /// Copies `span` back to the host, after every operation enqueued before it.
    fn read(&mut self, span: Span) -> Result<Vec<f32>, BackendError>;

    /// Copies `src` into the same-sized `dst` (spans that do not overlap).
    fn copy(&mut self, dst: Span, src: Span) -> Result<(), BackendError>;

    /// Sets every value of `span` to `value`.
    fn fill(&mut self, span: Span, value: f32) -> Result<(), BackendError>;

    /// `C = alpha·A·B + beta·C` (`beta` 0 ignores what C held, NaNs included).
    fn gemm(
        &mut self,
        c: DMat,
        a: DMat,
        b: DMat,
        alpha: f32,
        beta: f32,
    ) -> Result<(), BackendError>;

    /// `y[r][j] = act(y[r][j] + bias[j])` over the rows of `cols` values in `y`.
    fn bias_act(
        &mut self,
        y: Span,
        bias: Option<Span>,
        cols: usize,
        act: Act,
    ) -> Result<(), BackendError>;

    /// `dy *= act'(y)`, the derivative written with the output `y`.
    fn act_grad(&mut self, dy: Span, y: Span, act: Act) -> Result<(), BackendError>;

    /// `out[j] = beta·out[j] + Σ_r x[r][j]` over the rows of `cols` values in `x` (a bias
    /// gradient), summed in row order.
    fn col_sum(&mut self, out: Span, x: Span, cols: usize, beta: f32) -> Result<(), BackendError>;

    /// Softmax cross-entropy on `logits` (rows of `classes`) against `labels` (one class id
    /// per row): writes `dlogits = (softmax − onehot)·scale`, and adds the rows' summed loss
    /// to `stats[0]` and the rows whose largest logit (the first, on ties) is the label to
    /// `stats[1]`.
    fn softmax_xent(
        &mut self,
        logits: Span,
        labels: Span,
        dlogits: Span,
        classes: usize,
        scale: f32,
        stats: Span,
    ) -> Result<(), BackendError>;

    /// The optimizer update over `params` with the same-sized `grads`. The state's
    /// [`Update::state_buffers`] buffers start at `state` (the first's values for these
    /// parameters), one every `stride` values (the optimizer keeps each buffer as long as the
    /// whole flat buffer, so a range's values sit at the same place in each); `hyper` holds
    /// [`Update::HYPER`] scalars.
    fn update(
        &mut self,
        rule: &Update,
        params: Span,
        grads: Span,
        state: Span,
        stride: usize,
        hyper: Span,
    ) -> Result<(), BackendError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_parse_and_print() {
        assert_eq!("cpu".parse::<Device>(), Ok(Device::Cpu));
        assert_eq!("cuda".parse::<Device>(), Ok(Device::Cuda(0)));
        assert_eq!("CUDA:3".parse::<Device>(), Ok(Device::Cuda(3)));
        assert_eq!(Device::Cuda(2).to_string(), "cuda:2");
        let e = "cuda:x".parse::<Device>().unwrap_err();
        assert!(e.to_string().contains("`cuda:x`"), "{e}");
        assert!("tpu".parse::<Device>().is_err());
    }
}
