//! The trainer: a model, its values, an optimizer and the buffers to train them; a run is
//! epochs of batches until a stopping rule fires. The batch and epoch steps and the stopping
//! rules live in `epoch.rs`, checkpoints in `resume.rs`.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use descent_data::{BatchLoader, Dataset};
use descent_nn::{LossStats, Model, Targets, Workspace};
use descent_optim::schedule::ReduceOnPlateau;
use descent_optim::{Optimizer, Parallel, ParamSpec};
use descent_tensor::{Pool, Rng};

use crate::config::setting_error;
use crate::{TrainConfig, TrainError};

mod device;
mod diverge;
mod epoch;
mod resume;

/// Loss and accuracy on one data set.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Mean loss per example.
    pub loss: f64,
    /// Accuracy in percent.
    pub acc: f64,
}

impl From<LossStats> for Metrics {
    fn from(s: LossStats) -> Self {
        Self {
            loss: s.mean_loss(),
            acc: s.accuracy(),
        }
    }
}

/// Results of one epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Optimizer steps taken so far.
    pub steps: u64,
    /// The learning rate at the end of the epoch.
    pub lr: f32,
    /// Mean training loss over the epoch's examples (as the weights were when each batch ran).
    pub train_loss: f64,
    /// Training accuracy over the epoch, in percent, on the same terms.
    pub train_acc: f64,
    /// Loss and accuracy on the validation set after the epoch, when there is one.
    pub val: Option<Metrics>,
    /// Mean loss on the test set after the epoch (`None` when only validating).
    pub test_loss: Option<f64>,
    /// Accuracy on the test set after the epoch, in percent (`None` when only validating).
    pub test_acc: Option<f64>,
    /// Seconds spent training (evaluation excluded).
    pub seconds: f64,
    /// Of those, seconds the engine waited for the background loader's next batch.
    #[serde(default)]
    pub data_wait: f64,
}

/// Why a run stopped.
#[derive(Clone, Debug, PartialEq)]
pub enum StopReason {
    /// All `epochs` ran.
    MaxEpochs,
    /// `max_steps` optimizer steps were taken.
    MaxSteps(u64),
    /// The epoch's training loss reached `target_loss`.
    TargetLoss {
        /// The loss reached.
        loss: f64,
    },
    /// The monitored metric stopped improving.
    EarlyStopping {
        /// The metric.
        monitor: crate::Monitor,
        /// The epoch whose weights were kept.
        best_epoch: usize,
        /// Its value there.
        best: f64,
    },
    /// The interrupt flag was raised; the loop state is kept for a checkpoint.
    Interrupted {
        /// The epoch in progress.
        epoch: usize,
        /// Batches done in it.
        batch: usize,
    },
    /// Full-batch descent: the gradient norm fell below `grad_tol`.
    Converged {
        /// The full-set gradient's norm.
        grad_norm: f32,
    },
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MaxEpochs => write!(f, "ran every epoch"),
            Self::MaxSteps(n) => write!(f, "reached the step limit of {n} steps"),
            Self::TargetLoss { loss } => {
                write!(f, "training loss {loss:.4} reached the target loss")
            }
            Self::EarlyStopping {
                monitor,
                best_epoch,
                best,
            } => write!(
                f,
                "early stopping: {} stopped improving; kept epoch {best_epoch} ({} {best:.4})",
                monitor.name(),
                monitor.name()
            ),
            Self::Converged { grad_norm } => {
                write!(
                    f,
                    "converged: gradient norm {grad_norm:.3e} below the tolerance"
                )
            }
            Self::Interrupted { epoch, batch } => {
                write!(f, "interrupted in epoch {epoch} after batch {batch}")
            }
        }
    }
}

/// What a run did.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSummary {
    /// Every epoch's report.
    pub epochs: Vec<EpochReport>,
    /// Why it stopped.
    pub stop: StopReason,
    /// The epoch whose weights the trainer holds now (the last, or the best with early
    /// stopping).
    pub kept_epoch: usize,
    /// The test set on the weights kept.
    pub test: Metrics,
}

/// What the loop tells its caller as it goes.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// The mean batch loss of the last `log_every` batches (the seed's log line).
    Log {
        /// Epoch, from 1.
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// Mean of the last `log_every` batch losses.
        loss: f64,
    },
    /// A batch finished.
    Progress {
        /// Epoch, from 1.
        epoch: usize,
        /// Batches done in this epoch.
        batch: usize,
        /// Batches in the epoch.
        batches: usize,
    },
    /// An epoch finished and was evaluated.
    EpochEnd(EpochReport),
    /// The training loss rose far above its start and stays there, and the configuration
    /// says to go on ([`crate::Divergence::Warn`]); sent once.
    Diverging {
        /// What stopping would have said ([`TrainError::LossRose`]).
        diagnosis: String,
    },
    /// An optimizer step was taken (sent after each step of mini-batch training; full-batch
    /// descent's one step per epoch is in its epoch's report).
    Step {
        /// Optimizer steps taken, this one included.
        step: u64,
        /// Epoch, from 1.
        epoch: usize,
        /// Mean loss of the step's batches (one, or `grad_accum`).
        loss: f64,
        /// The learning rate the step used (tensors in no parameter group).
        lr: f32,
        /// The rates of the parameter groups, in their order (empty without groups).
        group_lrs: Vec<f32>,
        /// The gradient's L2 norm before clipping, when measured
        /// ([`Trainer::measure_grad_norm`]) and the gradient exists as a whole: plain SGD
        /// with nothing between gradient and update is fused into the backward pass, which
        /// never holds it.
        grad_norm: Option<f32>,
        /// Seconds since the previous step ended: batches read, forward, backward, update.
        seconds: f64,
    },
    /// After an epoch's report, when asked for ([`Trainer::snapshot_tensors`]): a copy of
    /// every trainable tensor and of the last step's gradient (after clipping), for
    /// histograms.
    Tensors {
        /// Optimizer steps taken.
        step: u64,
        /// Epoch, from 1.
        epoch: usize,
        /// The tensors in layout order.
        tensors: Vec<TensorSnapshot>,
    },
    /// `eval_every` optimizer steps went by: the validation set (else the test set) on the
    /// current weights.
    StepEval {
        /// Optimizer steps taken.
        step: u64,
        /// Mean training loss of the batches since the last of these.
        train_loss: f64,
        /// The evaluation.
        eval: Metrics,
    },
}

/// One tensor's values at the end of an epoch ([`Event::Tensors`]).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorSnapshot {
    /// PyTorch's name (`fc1.weight`).
    pub name: String,
    /// The values.
    pub weights: Vec<f32>,
    /// The last step's gradient, where it is held: not under plain SGD fused into the
    /// backward pass, nor under full-batch descent.
    pub grad: Option<Vec<f32>>,
}

/// Where a run stands, between any two batches: everything besides the weights, the
/// optimizer and the schedule that the rest of the run depends on. Saved in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LoopState {
    /// The epoch in progress, from 1 (0 before the run starts).
    pub epoch: usize,
    /// Batches done in it.
    pub batch: usize,
    /// The epoch's loss sum, correct answers and examples so far.
    pub loss_sum: f64,
    /// See `loss_sum`.
    pub correct: usize,
    /// See `loss_sum`.
    pub count: usize,
    /// Sum of batch losses since the last log line.
    pub running: f64,
    /// Training seconds spent in the epoch so far.
    pub seconds: f64,
    /// Sum of batch losses, and batches, since the last step evaluation (`eval_every`).
    #[serde(default)]
    pub since_eval: (f64, usize),
    /// Reports of the finished epochs.
    pub epochs: Vec<EpochReport>,
    /// Early stopping: the best epoch and its value.
    pub best: Option<(usize, f64)>,
    /// Early stopping: epochs since the best.
    pub bad_epochs: usize,
    /// The divergence rule's view of the losses so far.
    #[serde(default)]
    pub loss_watch: diverge::LossWatch,
}

/// How an epoch's batches ended.
enum Batches {
    /// The interrupt flag was raised before batch `batch` (from 0).
    Interrupted {
        /// The batch that did not run.
        batch: usize,
    },
    /// Batches ran up to `ran` (counting those of a resumed run); `step_limit` is the limit
    /// when it stopped them early.
    Ran {
        /// Batches done in the epoch.
        ran: usize,
        /// The step limit that was reached, if any.
        step_limit: Option<u64>,
    },
}

/// What a trainer holds, in bytes: the numbers a run prints before it starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// Trainable parameters (f32), and buffers such as BatchNorm's running statistics.
    pub params: usize,
    /// The batch gradient (none for plain SGD, fused into the backward pass), and the sum
    /// that gradient accumulation or full-batch descent keeps beside it.
    pub grads: usize,
    /// The optimizer's buffers (Adam's two moments).
    pub optimizer: usize,
    /// A training batch's activations, their gradients and the layers' workspace.
    pub activations: usize,
    /// An evaluation batch's activations.
    pub eval: usize,
}

impl Memory {
    /// Everything together.
    pub fn total(&self) -> usize {
        self.params
            .saturating_add(self.grads)
            .saturating_add(self.optimizer)
            .saturating_add(self.activations)
            .saturating_add(self.eval)
    }

    /// Each part, as `parameters 1.2 GB, gradients ...`.
    pub fn parts(&self) -> String {
        format!(
            "parameters {}, gradients {}, optimizer state {}, activations {}, evaluation {}",
            crate::gib(self.params),
            crate::gib(self.grads),
            crate::gib(self.optimizer),
            crate::gib(self.activations),
            crate::gib(self.eval)
        )
    }

    /// What a [`Trainer`] for `net` and `cfg` would hold, computed before allocating any of it.
    pub fn estimate(net: &Model, cfg: &TrainConfig) -> Self {
        let f = std::mem::size_of::<f32>();
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let trainable = net.param_count();
        // Parameter groups may give SGD settings that keep the gradient: counted as if.
        let fused =
            !cfg.grads_between() && cfg.groups.is_empty() && cfg.optimizer.plain_sgd_lr().is_some();
        let rows = chunk_rows(net, cfg, threads, fused);
        let sums = usize::from(cfg.grad_accum > 1 || cfg.full_batch())
            + usize::from(rows < cfg.batch_size);
        let slots = cfg
            .optimizer
            .buffer_names()
            .iter()
            .filter(|n| !n.is_empty())
            .count();
        let eval_cap = Workspace::capacity_within(net, cfg.eval_batch, threads, EVAL_BYTES);
        let bytes = |values: usize| values.saturating_mul(f);
        Self {
            params: bytes(net.layout().len()),
            grads: bytes(trainable.saturating_mul(usize::from(!fused) + sums)),
            optimizer: bytes(trainable.saturating_mul(slots)),
            activations: bytes(Workspace::values_for(net, rows, threads)),
            eval: bytes(Workspace::values_for(net, eval_cap, threads)),
        }
    }
}

/// The memory the system could give this process now, in bytes: Linux's `MemAvailable`;
/// `None` where it is not known.
pub fn available_memory() -> Option<usize> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kb = info
        .lines()
        .find(|l| l.starts_with("MemAvailable:"))?
        .split_whitespace()
        .nth(1)?
        .parse::<usize>()
        .ok()?;
    Some(kb.saturating_mul(1024))
}

/// A model, its parameters, an optimizer and the buffers to train them.
pub struct Trainer {
    pos: LoopState,
    /// Early stopping: the best epoch's weights.
    best_weights: Option<Vec<f32>>,
    interrupt: Option<Arc<AtomicBool>>,
    /// Write a checkpoint to this file every this many epochs.
    checkpoints: Option<(std::path::PathBuf, usize)>,
    cfg: TrainConfig,
    net: Model,
    /// Parameters, then buffers (layout: `net.layout()`).
    params: Vec<f32>,
    /// The batch gradient of the trainable parameters; allocated on the first step that
    /// needs it (plain SGD is fused into the backward pass and never does).
    grads: Vec<f32>,
    /// Full-batch descent: the gradient summed over the epoch; gradient accumulation: the
    /// row-weighted sum over the step's batches so far.
    full_grad: Vec<f32>,
    /// Gradient accumulation: rows summed into `full_grad` so far.
    accum_rows: usize,
    optimizer: Optimizer,
    plateau: Option<ReduceOnPlateau>,
    pool: Pool,
    ws: Workspace,
    eval_ws: Workspace,
    /// Seconds the current epoch waited for batches.
    data_wait: f64,
    /// Whether each step measures the gradient's norm, and the last one measured.
    grad_norm: (bool, Option<f32>),
    /// Whether each epoch ends with [`Event::Tensors`].
    snapshots: bool,
    /// The device the steps run on, when not the CPU engine.
    device: Option<device::OnDevice>,
}

/// The memory evaluation batches may take for activations (their capacity is cut to fit).
pub const EVAL_BYTES: usize = 64 << 20;

/// The workspace a training pass may take before its batch runs in chunks of rows, when
/// [`TrainConfig::micro_batch`] leaves it to the trainer. A pass over fewer rows touches
/// less memory, so more of what the backward pass reads back is still in the caches; but
/// each pass has its fixed costs (every product converts its weights, every layer forks
/// and joins its threads). Measured on the GPT preset (24 MB of workspace per window):
/// chunks of 4 windows were the fastest (docs/transformer.md, "Chunks of rows").
pub const CHUNK_BYTES: usize = 100 << 20;

/// Rows per forward and backward pass for `net` under `cfg` on `threads` threads (see
/// [`TrainConfig::micro_batch`]); `fused`: plain SGD runs inside the backward pass, which
/// cannot be split.
pub fn chunk_rows(net: &Model, cfg: &TrainConfig, threads: usize, fused: bool) -> usize {
    let batch = cfg.batch_size.max(1);
    if cfg.micro_batch > 0 {
        return cfg.micro_batch.min(batch);
    }
    if fused || !net.chunks_batches(&cfg.loss) {
        return batch;
    }
    // Some of a workspace is per thread or per pass, the rest per row.
    let bytes = |rows| Workspace::values_for(net, rows, threads) * std::mem::size_of::<f32>();
    let per_row = (bytes(2) - bytes(1)).max(1);
    let fixed = bytes(1).saturating_sub(per_row);
    let fit = (CHUNK_BYTES.saturating_sub(fixed) / per_row).max(1);
    if fit >= batch {
        return batch;
    }
    // As many chunks as the budget needs, of sizes as even as they can be.
    batch.div_ceil(batch.div_ceil(fit))
}

/// Runs an optimizer's pieces on the engine's pool, whose workers are already awake between
/// the kernels of a training step (a second pool would fight them for the cores).
pub struct OnPool<'a>(pub &'a Pool);

impl Parallel for OnPool<'_> {
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        self.0.run(parts, f)
    }
}

impl Trainer {
    /// Checks `cfg` and prepares to train `net` from freshly initialized weights (seeded by
    /// `cfg.seed`); the optimizer sees the trainable parameters only.
    pub fn new(mut net: Model, cfg: &TrainConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        cfg.loss.validate(net.output_features())?;
        // The configuration decides, whatever the model was set to: count the blocks that
        // can recompute, then set them as configured.
        net.set_recompute(false);
        let blocks = net.set_recompute(true);
        net.set_recompute(cfg.recompute);
        if blocks == 0 && cfg.recompute {
            return Err(TrainError::Setting {
                name: "recompute".into(),
                value: "true".into(),
                why: "the model has no residual blocks whose bodies could be recomputed".into(),
            });
        }
        let precision = match cfg.bf16 {
            true => descent_tensor::Precision::Bf16,
            false => descent_tensor::Precision::F32,
        };
        if net.set_precision(precision) == 0 && cfg.bf16 {
            return Err(TrainError::Setting {
                name: "bf16".into(),
                value: "true".into(),
                why: "the model has no layer whose matrix products run in bf16 (Linear)".into(),
            });
        }
        // Refused before anything is allocated: a run larger than the memory would otherwise
        // abort in the allocator or be killed by the system.
        let needed = Memory::estimate(&net, cfg);
        if let Some(available) = available_memory() {
            if needed.total() > available {
                return Err(TrainError::OutOfMemory { needed, available });
            }
        }
        let params = net.init_params(&mut Rng::new(cfg.seed));
        let specs: Vec<ParamSpec> = net
            .layout()
            .params()
            .map(|v| ParamSpec::new(v.name.clone(), &v.shape))
            .collect();
        let optimizer =
            Optimizer::with_groups(cfg.optimizer, &specs, &cfg.groups).map_err(setting_error)?;
        let plateau = match cfg.plateau {
            Some(p) => Some(ReduceOnPlateau::new(p, cfg.lr() as f64).map_err(setting_error)?),
            None => None,
        };
        let pool = Pool::new(cfg.threads)?;
        if cfg.splits_batches() && !net.chunks_batches(&cfg.loss) {
            return Err(TrainError::Setting {
                name: "micro_batch".into(),
                value: cfg.micro_batch.to_string(),
                why: "chunks of a batch would change its result: the model has BatchNorm \
                      (statistics of the whole batch) or the loss has class weights (a mean \
                      over the whole batch's weights); leave it at 0"
                    .into(),
            });
        }
        let fused = !cfg.grads_between() && optimizer.plain_sgd_lr().is_some();
        Ok(Self {
            pos: LoopState::default(),
            best_weights: None,
            interrupt: None,
            checkpoints: None,
            grads: Vec::new(),
            full_grad: Vec::new(),
            accum_rows: 0,
            optimizer,
            plateau,
            ws: Workspace::new(
                &net,
                chunk_rows(&net, cfg, pool.threads(), fused),
                pool.threads(),
            ),
            // Evaluation batches are cut to keep their activations within 64 MB.
            eval_ws: Workspace::new(
                &net,
                Workspace::capacity_within(&net, cfg.eval_batch, pool.threads(), EVAL_BYTES),
                pool.threads(),
            ),
            pool,
            data_wait: 0.0,
            grad_norm: (false, None),
            snapshots: false,
            device: None,
            cfg: cfg.clone(),
            net,
            params,
        })
    }

    /// Rows per forward and backward pass: the batch size, or the chunks a batch runs in
    /// (see [`TrainConfig::micro_batch`]).
    pub fn rows_per_pass(&self) -> usize {
        self.ws.capacity()
    }

    /// The model.
    pub fn net(&self) -> &Model {
        &self.net
    }

    /// The flat parameters and buffers (layout: `self.net().layout()`).
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// Replaces the weights (e.g. with ones loaded by [`crate::checkpoint::load_weights`]).
    pub fn set_params(&mut self, params: &[f32]) -> Result<(), TrainError> {
        if params.len() != self.params.len() {
            return Err(TrainError::Data(format!(
                "{} weights given for a model of {}",
                params.len(),
                self.params.len()
            )));
        }
        self.params.copy_from_slice(params);
        Ok(())
    }

    /// The memory training takes (see [`Memory`]); the gradient and the optimizer's state
    /// as they will be once the first step is taken.
    pub fn memory(&self) -> Memory {
        let f = std::mem::size_of::<f32>();
        let trainable = self.net.param_count();
        let fused = self.fused_sgd();
        let sums = usize::from(self.cfg.grad_accum > 1 || self.cfg.full_batch())
            + usize::from(self.ws.capacity() < self.cfg.batch_size);
        Memory {
            params: self.params.len() * f,
            grads: (usize::from(!fused) + sums) * trainable * f,
            optimizer: self.optimizer.state_len() * f,
            activations: self.ws.len() * f,
            eval: self.eval_ws.len() * f,
        }
    }

    /// Threads the engine runs on.
    pub fn threads(&self) -> usize {
        self.pool.threads()
    }

    /// Optimizer steps taken.
    pub fn steps(&self) -> u64 {
        self.optimizer.steps()
    }

    /// The optimizer (its settings, current learning rate and state).
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Loss and accuracy of the current weights on `data`.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<LossStats, TrainError> {
        self.sync_from_device()?;
        if !data.images().is_empty() || data.is_empty() {
            let targets = match data.is_regression() {
                true => Targets::Values(data.values()),
                false => Targets::Classes(data.labels()),
            };
            return Ok(self.net.evaluate(
                &self.params,
                data.images(),
                targets,
                &self.cfg.loss,
                &mut self.eval_ws,
                &self.pool,
            )?);
        }
        // Windows of a text and streamed sets have no contiguous rows: copy them in, a batch
        // at a time.
        let (f, p) = (data.features(), data.targets_per_example());
        let cap = self.eval_ws.capacity().max(1);
        let mut batch = epoch::Batch::new(cap, f, p);
        let mut total = LossStats::default();
        let order: Vec<u32> = (0..data.len() as u32).collect();
        for idx in order.chunks(cap) {
            batch.fill(data, idx);
            total.merge(self.net.evaluate(
                &self.params,
                batch.x(),
                batch.targets(data),
                &self.cfg.loss,
                &mut self.eval_ws,
                &self.pool,
            )?);
        }
        Ok(total)
    }

    fn check_data(&self, data: &Dataset, what: &str) -> Result<(), TrainError> {
        let net = &self.net;
        let per = data.targets_per_example();
        if data.has_missing() {
            return Err(TrainError::Data(format!(
                "the {what} set still has missing values (NaN): fill them first (MeanImpute)"
            )));
        }
        let fits = match (data.is_regression(), per) {
            (true, _) => per == net.output_features(),
            (false, 1) => data.classes() == net.output_features(),
            (false, p) => p == net.targets_per_example() && data.classes() == net.classes(),
        };
        if data.features() != net.input_features() || !fits {
            let has = match data.is_regression() {
                true => format!("{per} target values"),
                false => format!("{per} targets of {} classes", data.classes()),
            };
            return Err(TrainError::Data(format!(
                "the {what} set has {} features and {has} per example; the model takes {} and \
                 predicts {}",
                data.features(),
                net.input_features(),
                match per {
                    p if p == 1 || data.is_regression() => {
                        format!("{} outputs", net.output_features())
                    }
                    _ => format!(
                        "{} positions of {} classes",
                        net.targets_per_example(),
                        net.classes()
                    ),
                }
            )));
        }
        if data.is_empty() {
            return Err(TrainError::Data(format!("the {what} set is empty")));
        }
        Ok(())
    }

    /// Trains `cfg.epochs` epochs on `train`, evaluating on `eval` after each, and returns
    /// the epoch reports. `on_event` sees every log line, batch and epoch as it happens.
    pub fn run(
        &mut self,
        train: &Dataset,
        eval: &Dataset,
        on_event: impl FnMut(Event),
    ) -> Result<Vec<EpochReport>, TrainError> {
        Ok(self.run_split(train, None, eval, on_event)?.epochs)
    }

    /// Trains on `train` until a stopping rule fires, evaluating on `val` (when given) and on
    /// `test` after each epoch (only at the end with `val_only`), and says why it stopped.
    /// With early stopping, the best epoch's weights are restored at the end.
    pub fn run_split(
        &mut self,
        train: &Dataset,
        val: Option<&Dataset>,
        test: &Dataset,
        mut on_event: impl FnMut(Event),
    ) -> Result<RunSummary, TrainError> {
        self.check_data(train, "training")?;
        self.check_data(test, "test")?;
        if let Some(a) = &self.cfg.augment {
            a.check(train.shape()).map_err(|e| TrainError::Setting {
                name: "augment".into(),
                value: String::new(),
                why: e.to_string(),
            })?;
        }
        if let Some(v) = val {
            self.check_data(v, "validation")?;
        }
        if let Some(e) = self.cfg.early_stop {
            if e.monitor.needs_validation() && val.is_none() {
                return Err(TrainError::Setting {
                    name: "early_stop".into(),
                    value: e.monitor.name().into(),
                    why:
                        "it watches the validation set: give one (`val_split`), or watch train_loss"
                            .into(),
                });
            }
        }
        if self.cfg.val_only && val.is_none() {
            return Err(TrainError::Setting {
                name: "val_only".into(),
                value: String::new(),
                why: "there is no validation set: give one (`val_split`)".into(),
            });
        }
        let full_batch = self.cfg.full_batch();
        let mut loader = BatchLoader::new(
            train.len(),
            self.cfg.batch_size,
            self.cfg.shuffle && !full_batch,
            self.cfg.drop_last && !full_batch,
            self.cfg.seed,
        )?;
        if self.pos.epoch == 0 {
            self.pos = LoopState {
                epoch: 1,
                ..LoopState::default()
            };
        }
        // A resumed position must lie in an epoch of this data: one past the end was written
        // for other data (or damaged), and would end the epoch without training it.
        if self.pos.batch > loader.num_batches() || self.pos.epochs.len() >= self.pos.epoch {
            return Err(TrainError::Data(format!(
                "the run's checkpoint stands at epoch {}, batch {} after {} finished epochs, but \
                 an epoch of this data has {} batches: it was written for other data or is \
                 damaged",
                self.pos.epoch,
                self.pos.batch,
                self.pos.epochs.len(),
                loader.num_batches()
            )));
        }
        let stop = loop {
            if self.pos.epoch > self.cfg.epochs {
                break StopReason::MaxEpochs;
            }
            let epoch = self.pos.epoch;
            let start = Instant::now();
            let (ran, step_limit) =
                match self.run_batches(train, val.unwrap_or(test), &mut loader, &mut on_event)? {
                    Batches::Interrupted { batch } => {
                        self.pos.seconds += start.elapsed().as_secs_f64();
                        return self.finish(StopReason::Interrupted { epoch, batch }, test);
                    }
                    Batches::Ran { ran, step_limit } => (ran, step_limit),
                };
            let converged = self.full_batch_step(epoch, loader.num_batches())?;
            let seconds = self.pos.seconds + start.elapsed().as_secs_f64();
            if ran == 0 {
                // The step limit was reached exactly at the end of the last epoch.
                break step_limit.map_or(StopReason::MaxEpochs, StopReason::MaxSteps);
            }
            let report = self.end_epoch(epoch, seconds, val, test, &mut on_event)?;
            if let Some(stop) = self.early_stopping(&report) {
                break stop;
            }
            let last_epoch = epoch == self.cfg.epochs;
            let due = self
                .checkpoints
                .as_ref()
                .filter(|(_, every)| epoch.is_multiple_of(*every) || last_epoch)
                .map(|(path, _)| path.clone());
            if let Some(path) = due {
                self.save_checkpoint(&path)?;
            }
            if let Some(stop) = self.stopping_rule(&report, converged) {
                break stop;
            }
        };
        // With early stopping, the best epoch's weights are the ones to keep.
        let last = self.pos.epochs.last().map_or(0, |r| r.epoch);
        if let (Some((best_epoch, _)), Some(w)) = (self.pos.best, &self.best_weights) {
            if best_epoch != last {
                self.params.copy_from_slice(w);
                self.sync_to_device()?;
            }
        }
        self.sync_from_device()?;
        self.finish(stop, test)
    }

    /// The summary of a run that stopped for `stop`, with the test set on the weights held.
    fn finish(&mut self, stop: StopReason, test: &Dataset) -> Result<RunSummary, TrainError> {
        let last = self.pos.epochs.last().map_or(0, |r| r.epoch);
        let kept_epoch = match (&stop, self.pos.best) {
            (StopReason::Interrupted { .. }, _) => last,
            (_, Some((best_epoch, _))) if self.best_weights.is_some() => best_epoch,
            _ => last,
        };
        let test = match self.pos.epochs.last() {
            Some(r)
                if kept_epoch == last
                    && r.test_loss.is_some()
                    && !matches!(stop, StopReason::Interrupted { .. }) =>
            {
                Metrics {
                    loss: r.test_loss.expect("checked"),
                    acc: r.test_acc.expect("set with the loss"),
                }
            }
            _ => Metrics::from(self.evaluate(test)?),
        };
        Ok(RunSummary {
            epochs: self.pos.epochs.clone(),
            stop,
            kept_epoch,
            test,
        })
    }

    /// Raises an interrupt when `flag` becomes true: the run stops before its next batch with
    /// [`StopReason::Interrupted`], ready for [`Trainer::save_checkpoint`].
    pub fn set_interrupt(&mut self, flag: Arc<AtomicBool>) {
        self.interrupt = Some(flag);
    }

    /// Writes a checkpoint to `path` after every `every` epochs (and after the last).
    pub fn checkpoint_every(&mut self, path: &Path, every: usize) {
        self.checkpoints = Some((path.to_path_buf(), every.max(1)));
    }

    /// Measure the gradient's L2 norm at every step, for [`Event::Step`] (one more pass over
    /// the gradient; off by default).
    pub fn measure_grad_norm(&mut self, on: bool) {
        self.grad_norm = (on, None);
    }

    /// End every epoch with [`Event::Tensors`] (a copy of the weights; off by default).
    pub fn snapshot_tensors(&mut self, on: bool) {
        self.snapshots = on;
    }

    /// The trainable tensors and the last step's gradient, by name.
    fn tensor_snapshots(&self) -> Vec<TensorSnapshot> {
        let grad = match (self.cfg.full_batch(), self.cfg.grad_accum > 1) {
            (true, _) => &[][..],
            (false, true) => &self.full_grad[..],
            (false, false) => &self.grads[..],
        };
        self.net
            .layout()
            .params()
            .map(|v| {
                let range = v.offset..v.offset + v.len();
                TensorSnapshot {
                    name: v.name.clone(),
                    weights: self.params[range.clone()].to_vec(),
                    grad: grad.get(range).map(<[f32]>::to_vec),
                }
            })
            .collect()
    }

    /// Where the run stands.
    pub fn loop_state(&self) -> &LoopState {
        &self.pos
    }
}

#[cfg(test)]
mod tests;
