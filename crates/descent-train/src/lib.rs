//! The training loop of descent: trains a [`descent_nn::Model`] the caller built, with the
//! optimizer, schedule and batches a [`TrainConfig`] describes; runs epochs, reports
//! [`Event`]s (the seed's log lines, per-epoch results) and stops with a clear error when the
//! loss diverges.
//!
//! ```
//! use descent_data::{parse_idx, Dataset, Normalize};
//! use descent_nn::{Activation, Model};
//! use descent_optim::{OptimizerConfig, SgdConfig};
//! use descent_train::{Event, TrainConfig, Trainer};
//!
//! // Four 2-pixel "images" whose class is which pixel is lit.
//! let img = parse_idx(&[0, 0, 8, 2, 0, 0, 0, 4, 0, 0, 0, 2, 255, 0, 0, 255, 255, 0, 0, 255], "x").unwrap();
//! let lab = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 4, 0, 1, 0, 1], "y").unwrap();
//! let data = Dataset::new(&img, &lab, Normalize::default(), 2).unwrap();
//! let cfg = TrainConfig { optimizer: OptimizerConfig::Sgd(SgdConfig { lr: 0.5, ..SgdConfig::default() }), batch_size: 2, epochs: 20, log_every: 0, threads: 1, ..TrainConfig::default() };
//! let model = Model::mlp(2, &[8], 2, Activation::Relu, 0.0).unwrap();
//! let mut trainer = Trainer::new(model, &cfg).unwrap();
//! let mut last = 0.0;
//! trainer.run(&data, &data, |e| if let Event::EpochEnd(r) = e { last = r.test_acc.unwrap() }).unwrap();
//! assert_eq!(last, 100.0);
//! ```

pub mod checkpoint;
mod config;
pub mod run_dir;
mod trainer;

pub use config::{Divergence, EarlyStop, Loader, Monitor, TrainConfig};
pub use run_dir::{MetricsLog, RunDir};
pub use trainer::{
    available_memory, chunk_rows, EpochReport, Event, Memory, Metrics, OnPool, RunSummary,
    StopReason, TensorSnapshot, Trainer, CHUNK_BYTES, EVAL_BYTES,
};

/// `bytes` as a person reads it: `318.0 GB`, `59 MB`.
pub fn gib(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GB", b as f64 / (1u64 << 30) as f64),
        b => format!("{} MB", b.div_ceil(1 << 20)),
    }
}

/// Why training could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A setting outside its valid range, named as in [`TrainConfig`] (`batch_size`,
    /// `clip_norm`, an optimizer's `momentum`, `early_stop.min_delta`). Other settings the
    /// message refers to are in backticks, so that a front end can name them its own way.
    #[error("invalid {name} {value}: {why}")]
    Setting {
        /// The setting, e.g. `lr`.
        name: String,
        /// The value given.
        value: String,
        /// What is accepted.
        why: String,
    },
    /// The gradient norm became NaN or infinite (with `clip_error_nonfinite`).
    #[error("the gradient norm became {norm} at epoch {epoch}, batch {batch} (step {step}): lower the learning rate ({lr} now)")]
    NonFiniteGradient {
        /// The norm.
        norm: f32,
        /// Epoch, from 1.
        epoch: usize,
        /// Batch within the epoch, from 1.
        batch: usize,
        /// Optimizer steps so far.
        step: u64,
        /// The learning rate in use.
        lr: f32,
    },
    /// The loss of the very first batch, before any update, was NaN or infinite.
    #[error("the loss is {value} at the first batch, before any update: the start is bad, not the learning rate (the weights it started from, or the data, hold values that are not finite, or the model overflows on this input)")]
    BadStart {
        /// `NaN` or `infinite`.
        value: String,
    },
    /// The training loss rose far above its start and stayed there.
    #[error("the training loss rose from {start:.4} at the first batch to {now:.3e} (the median of the last 10 batches, {times:.2e} times the start) by epoch {epoch}, batch {batch} (step {step}): training diverged; {optimizer}'s learning rate {lr} is too large, try {suggest}")]
    LossRose {
        /// The first batch's loss.
        start: f64,
        /// The median loss of the last batches.
        now: f64,
        /// `now / start`.
        times: f64,
        /// Epoch, from 1.
        epoch: usize,
        /// Batch within the epoch, from 1.
        batch: usize,
        /// Optimizer steps so far.
        step: u64,
        /// The optimizer's name.
        optimizer: String,
        /// The learning rate in use.
        lr: f32,
        /// A learning rate to try: a tenth, or the optimizer's default when far below.
        suggest: f32,
    },
    /// The loss became NaN or infinite.
    #[error("the loss became {value} at epoch {epoch}, batch {batch} (step {step}): training diverged; lower the learning rate ({lr} now, try {suggest})")]
    Diverged {
        /// `NaN` or `inf`.
        value: String,
        /// Epoch, from 1.
        epoch: usize,
        /// Batch within the epoch, from 1.
        batch: usize,
        /// Optimizer steps so far, from 1.
        step: u64,
        /// The learning rate in use.
        lr: f32,
        /// A tenth of it.
        suggest: f32,
    },
    /// The data does not fit the model.
    #[error("data: {0}")]
    Data(String),
    /// From the model.
    #[error(transparent)]
    Nn(#[from] descent_nn::NnError),
    /// From the optimizer.
    #[error(transparent)]
    Optim(#[from] descent_optim::OptimError),
    /// From the data loader.
    #[error(transparent)]
    Loader(#[from] descent_data::DataError),
    /// From a checkpoint or weights file.
    #[error(transparent)]
    Checkpoint(#[from] checkpoint::CheckpointError),
    /// From the thread pool.
    #[error(transparent)]
    Tensor(#[from] descent_tensor::TensorError),
    /// The run would need more memory than the machine has available.
    #[error("the run needs about {} ({}) but only {} of memory is available: train a smaller model or on smaller batches", gib(needed.total()), needed.parts(), gib(*available))]
    OutOfMemory {
        /// What it would take.
        needed: Memory,
        /// Bytes available (Linux's MemAvailable).
        available: usize,
    },
    /// A run directory that cannot be created, written or resumed.
    #[error("run directory {path}: {why}")]
    RunDir {
        /// The directory.
        path: std::path::PathBuf,
        /// What is wrong.
        why: String,
    },
}
