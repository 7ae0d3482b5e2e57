//! Epochs of shuffled batches, the optimizer step, evaluation and events.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use descent_data::{BatchLoader, Dataset};
use descent_nn::{LossStats, Model, Targets, Workspace};
use descent_optim::schedule::{ReduceOnPlateau, Schedule};
use descent_optim::{
    clip_grad_norm_on, clip_grad_value, grad_norm_on, Optimizer, Parallel, ParamSpec,
};
use descent_tensor::{MatMut, Pool, Rng};

use crate::config::setting_error;
use crate::{TrainConfig, TrainError};

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
    /// Reports of the finished epochs.
    pub epochs: Vec<EpochReport>,
    /// Early stopping: the best epoch and its value.
    pub best: Option<(usize, f64)>,
    /// Early stopping: epochs since the best.
    pub bad_epochs: usize,
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
    /// Full-batch descent: the gradient summed over the epoch.
    full_grad: Vec<f32>,
    optimizer: Optimizer,
    plateau: Option<ReduceOnPlateau>,
    pool: Pool,
    ws: Workspace,
    eval_ws: Workspace,
    x: Vec<f32>,
    y: Vec<u32>,
}

/// The memory evaluation batches may take for activations.
const EVAL_BYTES: usize = 64 << 20;

/// Runs an optimizer's pieces on the engine's pool, whose workers are already awake between
/// the kernels of a training step (a second pool would fight them for the cores).
pub struct OnPool<'a>(pub &'a Pool);

impl Parallel for OnPool<'_> {
    fn run(&self, parts: usize, f: &(dyn Fn(usize) + Sync)) {
        self.0.run(parts, f)
    }
}

/// Copies batch `b` into `x` and `y` with the pool's threads (a batch of the seed is 200 KB);
/// returns its rows.
fn fill_batch(
    loader: &BatchLoader,
    data: &Dataset,
    b: usize,
    x: &mut [f32],
    y: &mut [u32],
    pool: &Pool,
) -> usize {
    let idx = loader.indices(b);
    let f = data.features();
    let rows = idx.len();
    let xs = MatMut::new(&mut x[..rows * f], rows, f).expect("batch buffer fits");
    pool.split_rows(xs, 8, 16, |r0, mut band| {
        for r in 0..band.rows() {
            band.row_mut(r)
                .copy_from_slice(data.image(idx[r0 + r] as usize));
        }
    });
    for (dst, &i) in y.iter_mut().zip(idx) {
        *dst = data.labels()[i as usize];
    }
    rows
}

impl Trainer {
    /// Checks `cfg` and prepares to train `net` from freshly initialized weights (seeded by
    /// `cfg.seed`); the optimizer sees the trainable parameters only.
    pub fn new(net: Model, cfg: &TrainConfig) -> Result<Self, TrainError> {
        cfg.validate()?;
        cfg.loss.validate(net.output_features())?;
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
        let inputs = net.input_features();
        Ok(Self {
            pos: LoopState::default(),
            best_weights: None,
            interrupt: None,
            checkpoints: None,
            grads: Vec::new(),
            full_grad: Vec::new(),
            optimizer,
            plateau,
            ws: Workspace::new(&net, cfg.batch_size, pool.threads()),
            // Evaluation batches are cut to keep their activations within 64 MB.
            eval_ws: Workspace::new(
                &net,
                Workspace::capacity_within(&net, cfg.eval_batch, pool.threads(), EVAL_BYTES),
                pool.threads(),
            ),
            pool,
            x: vec![0.0; cfg.batch_size * inputs],
            y: vec![0; cfg.batch_size],
            cfg: cfg.clone(),
            net,
            params,
        })
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

    /// Sets the learning rate (and momentum) the schedule gives for the next step.
    fn schedule_step(&mut self) -> Result<(), TrainError> {
        let t = self.optimizer.steps();
        let schedule = &self.cfg.schedule;
        if *schedule != Schedule::Constant {
            self.optimizer
                .set_lr_with(|base| schedule.lr(t, base as f64) as f32);
        }
        if let Some(m) = schedule.momentum(t) {
            self.optimizer.set_momentum(m as f32)?;
        }
        Ok(())
    }

    /// Adds the L1 penalty's gradient, `l1 * sign(w)`, for every weight matrix.
    fn add_l1(&self, grads: &mut [f32]) {
        if self.cfg.l1 == 0.0 {
            return;
        }
        for v in self.net.layout().params() {
            if v.name.ends_with(".weight") {
                let (g, p) = (&mut grads[v.range()], &self.params[v.range()]);
                for (g, &p) in g.iter_mut().zip(p) {
                    if p != 0.0 {
                        *g += self.cfg.l1 * p.signum();
                    }
                }
            }
        }
    }

    /// Clips `grads` as configured; the error names where training stands.
    fn clip(&self, grads: &mut [f32], epoch: usize, batch: usize) -> Result<(), TrainError> {
        if let Some(max) = self.cfg.clip_norm {
            let error = self.cfg.clip_error_nonfinite;
            if let Err(descent_optim::OptimError::NonFiniteGradNorm(norm)) =
                clip_grad_norm_on(&OnPool(&self.pool), grads, max, error)
            {
                return Err(TrainError::NonFiniteGradient {
                    norm,
                    epoch,
                    batch,
                    step: self.optimizer.steps(),
                    lr: self.optimizer.lr(),
                });
            }
        }
        if let Some(v) = self.cfg.clip_value {
            clip_grad_value(grads, v)?;
        }
        Ok(())
    }

    /// Loss and accuracy of the current weights on `data`.
    pub fn evaluate(&mut self, data: &Dataset) -> Result<LossStats, TrainError> {
        Ok(self.net.evaluate(
            &self.params,
            data.images(),
            Targets::Classes(data.labels()),
            &self.cfg.loss,
            &mut self.eval_ws,
            &self.pool,
        )?)
    }

    fn check_data(&self, data: &Dataset, what: &str) -> Result<(), TrainError> {
        if data.features() != self.net.input_features()
            || data.classes() != self.net.output_features()
        {
            return Err(TrainError::Data(format!(
                "the {what} set has {} features and {} classes; the model takes {} and predicts {}",
                data.features(),
                data.classes(),
                self.net.input_features(),
                self.net.output_features()
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
        let mut stop = StopReason::MaxEpochs;
        let full_batch = self.cfg.full_batch();
        let mut loader = BatchLoader::new(
            train.len(),
            self.cfg.batch_size,
            self.cfg.shuffle && !full_batch,
            self.cfg.drop_last && !full_batch,
            self.cfg.seed,
        )?;
        let batches = loader.num_batches();
        let clipping = self.cfg.clip_norm.is_some() || self.cfg.clip_value.is_some();
        if self.pos.epoch == 0 {
            self.pos = LoopState {
                epoch: 1,
                ..LoopState::default()
            };
        }
        'epochs: while self.pos.epoch <= self.cfg.epochs {
            let epoch = self.pos.epoch;
            let start = Instant::now();
            loader.start_epoch(epoch as u64);
            if full_batch && self.pos.batch == 0 {
                self.full_grad.clear();
                self.full_grad.resize(self.net.param_count(), 0.0);
            }
            let mut ran = self.pos.batch;
            for b in self.pos.batch..batches {
                if self
                    .interrupt
                    .as_ref()
                    .is_some_and(|f| f.load(Ordering::SeqCst))
                {
                    self.pos.seconds += start.elapsed().as_secs_f64();
                    return self.finish(StopReason::Interrupted { epoch, batch: b }, test);
                }
                if let Some(max) = self.cfg.max_steps {
                    if !full_batch && self.optimizer.steps() >= max {
                        stop = StopReason::MaxSteps(max);
                        break;
                    }
                }
                ran = b + 1;
                if !full_batch {
                    self.schedule_step()?;
                }
                let rows = fill_batch(&loader, train, b, &mut self.x, &mut self.y, &self.pool);
                let features = self.net.input_features();
                let (x, y) = (&self.x[..rows * features], &self.y[..rows]);
                // Dropout masks are a function of the seed and the step: a resumed run draws
                // the same ones.
                let step = match full_batch {
                    true => self.optimizer.steps() * batches as u64 + b as u64,
                    false => self.optimizer.steps(),
                };
                self.ws
                    .set_dropout_seed(self.cfg.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
                let fused_lr = match full_batch || clipping || self.cfg.l1 > 0.0 {
                    true => None,
                    false => self.optimizer.plain_sgd_lr(),
                };
                let trainable = self.net.param_count();
                if fused_lr.is_none() && self.grads.len() != trainable {
                    self.grads = vec![0.0; trainable];
                }
                let stats = match fused_lr {
                    // Plain SGD is applied inside the backward pass: no gradient buffer.
                    Some(lr) => self.net.train_step_sgd(
                        &mut self.params,
                        lr,
                        x,
                        Targets::Classes(y),
                        &self.cfg.loss,
                        &mut self.ws,
                        &self.pool,
                    )?,
                    None => self.net.train_step_grads(
                        &mut self.params,
                        x,
                        Targets::Classes(y),
                        &self.cfg.loss,
                        &mut self.grads,
                        &mut self.ws,
                        &self.pool,
                    )?,
                };
                let loss = stats.mean_loss();
                if !loss.is_finite() {
                    let lr = self.optimizer.lr();
                    return Err(TrainError::Diverged {
                        value: if loss.is_nan() {
                            "NaN".into()
                        } else {
                            "infinite".into()
                        },
                        epoch,
                        batch: b + 1,
                        step: self.optimizer.steps() + 1,
                        lr,
                        suggest: lr / 10.0,
                    });
                }
                if full_batch {
                    // The batch gradient is a mean over its rows: weight it by its share.
                    let w = rows as f32 / train.len() as f32;
                    let (acc, g) = (&mut self.full_grad, &self.grads);
                    acc.iter_mut().zip(g).for_each(|(a, g)| *a += w * g);
                } else if fused_lr.is_some() {
                    self.optimizer.fused_step_done();
                } else {
                    let mut grads = std::mem::take(&mut self.grads);
                    self.add_l1(&mut grads);
                    self.clip(&mut grads, epoch, b + 1)?;
                    let stepped = self.optimizer.step_on(
                        &OnPool(&self.pool),
                        &mut self.params[..trainable],
                        &grads,
                    );
                    self.grads = grads;
                    stepped?;
                }
                self.pos.loss_sum += stats.loss_sum;
                self.pos.correct += stats.correct;
                self.pos.count += stats.count;
                self.pos.running += loss;
                self.pos.batch = b + 1;
                let done = b + 1;
                if self.cfg.log_every > 0 && done % self.cfg.log_every == 0 {
                    on_event(Event::Log {
                        epoch,
                        batch: done,
                        loss: self.pos.running / self.cfg.log_every as f64,
                    });
                    self.pos.running = 0.0;
                }
                on_event(Event::Progress {
                    epoch,
                    batch: done,
                    batches,
                });
            }
            let mut converged = None;
            if full_batch {
                let mut g = std::mem::take(&mut self.full_grad);
                let norm = grad_norm_on(&OnPool(&self.pool), &g);
                match self.cfg.grad_tol {
                    Some(tol) if norm < tol => converged = Some(norm),
                    _ => {
                        self.add_l1(&mut g);
                        self.clip(&mut g, epoch, batches)?;
                        self.schedule_step()?;
                        let trainable = self.net.param_count();
                        self.optimizer.step_on(
                            &OnPool(&self.pool),
                            &mut self.params[..trainable],
                            &g,
                        )?;
                    }
                }
                self.full_grad = g;
            }
            let seconds = self.pos.seconds + start.elapsed().as_secs_f64();
            if ran == 0 {
                break; // --max-steps was reached exactly at the end of the last epoch
            }
            let val_metrics = match val {
                Some(v) => Some(Metrics::from(self.evaluate(v)?)),
                None => None,
            };
            let test_metrics = match self.cfg.val_only {
                true => None,
                false => Some(Metrics::from(self.evaluate(test)?)),
            };
            let epoch_stats = LossStats {
                loss_sum: self.pos.loss_sum,
                correct: self.pos.correct,
                count: self.pos.count,
            };
            let report = EpochReport {
                epoch,
                steps: self.optimizer.steps(),
                lr: self.optimizer.lr(),
                train_loss: epoch_stats.mean_loss(),
                train_acc: epoch_stats.accuracy(),
                val: val_metrics,
                test_loss: test_metrics.map(|m| m.loss),
                test_acc: test_metrics.map(|m| m.acc),
                seconds,
            };
            if let Some(p) = &mut self.plateau {
                let watched = report.val.map_or(report.train_loss, |v| v.loss);
                let lr = p.observe(watched);
                self.optimizer.set_lr(lr as f32);
            }
            on_event(Event::EpochEnd(report.clone()));
            // The next epoch starts from a clean slate.
            self.pos = LoopState {
                epoch: epoch + 1,
                epochs: std::mem::take(&mut self.pos.epochs),
                best: self.pos.best,
                bad_epochs: self.pos.bad_epochs,
                ..LoopState::default()
            };
            self.pos.epochs.push(report.clone());
            let last_epoch = epoch == self.cfg.epochs;
            let due = self
                .checkpoints
                .as_ref()
                .filter(|(_, every)| epoch.is_multiple_of(*every) || last_epoch)
                .map(|(path, _)| path.clone());
            if let Some(e) = self.cfg.early_stop {
                let value = match e.monitor {
                    crate::Monitor::ValLoss => report.val.map_or(f64::NAN, |v| v.loss),
                    crate::Monitor::ValAcc => report.val.map_or(f64::NAN, |v| v.acc),
                    crate::Monitor::TrainLoss => report.train_loss,
                };
                let better = match self.pos.best {
                    None => true,
                    Some((_, b)) if e.monitor.higher_is_better() => value > b + e.min_delta,
                    Some((_, b)) => value < b - e.min_delta,
                };
                if better {
                    self.pos.best = Some((epoch, value));
                    match &mut self.best_weights {
                        Some(w) => w.copy_from_slice(&self.params),
                        None => self.best_weights = Some(self.params.clone()),
                    }
                    self.pos.bad_epochs = 0;
                } else {
                    self.pos.bad_epochs += 1;
                    if self.pos.bad_epochs > e.patience {
                        let (best_epoch, best) = self.pos.best.expect("set on epoch 1");
                        stop = StopReason::EarlyStopping {
                            monitor: e.monitor,
                            best_epoch,
                            best,
                        };
                        break 'epochs;
                    }
                }
            }
            if let Some(path) = due {
                self.save_checkpoint(&path)?;
            }
            if let Some(grad_norm) = converged {
                stop = StopReason::Converged { grad_norm };
                break;
            }
            if let Some(target) = self.cfg.target_loss {
                if report.train_loss <= target {
                    stop = StopReason::TargetLoss {
                        loss: report.train_loss,
                    };
                    break;
                }
            }
            if let Some(max) = self.cfg.max_steps {
                if self.optimizer.steps() >= max {
                    stop = StopReason::MaxSteps(max);
                    break;
                }
            }
        }
        // With early stopping, the best epoch's weights are the ones to keep.
        let last = self.pos.epochs.last().map_or(0, |r| r.epoch);
        if let (Some((best_epoch, _)), Some(w)) = (self.pos.best, &self.best_weights) {
            if best_epoch != last {
                self.params.copy_from_slice(w);
            }
        }
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

    /// Where the run stands.
    pub fn loop_state(&self) -> &LoopState {
        &self.pos
    }

    /// Writes everything the rest of the run depends on to one safetensors file, atomically:
    /// the weights (`model.*`, PyTorch's names), the optimizer's buffers
    /// (`optimizer.<buffer>.<tensor>`), early stopping's best weights (`best.*`), full-batch
    /// descent's partial gradient (`full_grad.*`), and the loop, optimizer and plateau state as
    /// JSON in the metadata.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        use crate::checkpoint::Tensor;
        let layout = self.net.layout();
        let mut tensors: Vec<Tensor<'_>> = Vec::new();
        let views = layout.views();
        for v in views {
            tensors.push((
                format!("model.{}", v.name),
                v.shape.clone(),
                &self.params[v.range()],
            ));
        }
        let opt = self.optimizer.state();
        for (name, ps) in &opt.params {
            for (buf, values) in &ps.buffers {
                tensors.push((format!("optimizer.{buf}.{name}"), ps.shape.clone(), values));
            }
        }
        if let Some(w) = &self.best_weights {
            for v in views {
                tensors.push((format!("best.{}", v.name), v.shape.clone(), &w[v.range()]));
            }
        }
        if self.cfg.full_batch() && self.pos.batch > 0 {
            for v in layout.params() {
                tensors.push((
                    format!("full_grad.{}", v.name),
                    v.shape.clone(),
                    &self.full_grad[v.range()],
                ));
            }
        }
        let json = |v: serde_json::Result<String>| v.expect("plain data serializes");
        let head = serde_json::json!({
            "optimizer": opt.optimizer,
            "step": opt.step,
            "scalars": opt.scalars,
        });
        let mut meta = std::collections::BTreeMap::new();
        meta.insert("format".into(), "descent-checkpoint-1".into());
        meta.insert("descent.model".into(), self.net.spec().to_json());
        meta.insert(
            "descent.loop".into(),
            json(serde_json::to_string(&self.pos)),
        );
        meta.insert("descent.optimizer".into(), head.to_string());
        meta.insert(
            "descent.plateau".into(),
            json(serde_json::to_string(&self.plateau)),
        );
        meta.insert(
            "descent.rng".into(),
            json(serde_json::to_string(&self.cfg.seed)),
        );
        crate::checkpoint::save_tensors(path, &tensors, &meta)?;
        Ok(())
    }

    /// Restores a checkpoint written by [`Trainer::save_checkpoint`] for the same model and
    /// optimizer; the next [`Trainer::run_split`] continues where it stopped, bit for bit.
    /// On error nothing changes.
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        use crate::checkpoint::{load_tensors, CheckpointError};
        use descent_optim::{OptimizerState, ParamState};
        let (mut tensors, meta) = load_tensors(path)?;
        let bad = |why: String| {
            TrainError::Checkpoint(CheckpointError::Mismatch {
                path: path.to_path_buf(),
                why,
            })
        };
        if meta.get("format").map(String::as_str) != Some("descent-checkpoint-1") {
            return Err(bad(
                "it is not a descent checkpoint (a weights file: load it with `load_weights`)"
                    .into(),
            ));
        }
        let field = |key: &str| {
            meta.get(key)
                .ok_or_else(|| bad(format!("its metadata has no `{key}`")))
        };
        let pos: LoopState = serde_json::from_str(field("descent.loop")?)
            .map_err(|e| bad(format!("descent.loop: {e}")))?;
        let head: serde_json::Value = serde_json::from_str(field("descent.optimizer")?)
            .map_err(|e| bad(format!("descent.optimizer: {e}")))?;
        let plateau: Option<ReduceOnPlateau> = serde_json::from_str(field("descent.plateau")?)
            .map_err(|e| bad(format!("descent.plateau: {e}")))?;
        let layout = self.net.layout();
        // Weights are parameters and buffers; a gradient covers the parameters only.
        let mut take = |prefix: &str, required: bool, all: bool| {
            let n = if all {
                layout.len()
            } else {
                layout.trainable_len()
            };
            let mut out = vec![0.0f32; n];
            let views = layout.views().iter().filter(|v| all || v.trainable);
            for (i, v) in views.enumerate() {
                match tensors.remove(&format!("{prefix}.{}", v.name)) {
                    Some((shape, values)) if shape == v.shape => {
                        out[v.range()].copy_from_slice(&values)
                    }
                    Some((shape, _)) => {
                        return Err(bad(format!(
                            "`{prefix}.{}` has shape {shape:?} but the model's is {:?}",
                            v.name, v.shape
                        )))
                    }
                    None if !required && i == 0 => return Ok(None),
                    None => return Err(bad(format!("it has no `{prefix}.{}`", v.name))),
                }
            }
            Ok::<_, TrainError>(Some(out))
        };
        let params = take("model", true, true)?.expect("required");
        let best = take("best", false, true)?;
        let full_grad = take("full_grad", false, false)?;
        let mut state = OptimizerState {
            optimizer: head["optimizer"].as_str().unwrap_or_default().to_string(),
            step: head["step"].as_u64().unwrap_or(0),
            scalars: serde_json::from_value(head["scalars"].clone()).unwrap_or_default(),
            params: layout
                .params()
                .map(|v| {
                    (
                        v.name.clone(),
                        ParamState {
                            shape: v.shape.clone(),
                            buffers: Default::default(),
                        },
                    )
                })
                .collect(),
        };
        for (name, (shape, values)) in tensors {
            let Some(rest) = name.strip_prefix("optimizer.") else {
                return Err(bad(format!("unexpected tensor `{name}`")));
            };
            let Some((buf, tensor)) = rest.split_once('.') else {
                return Err(bad(format!("unexpected tensor `{name}`")));
            };
            match state.params.get_mut(tensor) {
                Some(ps) if ps.shape == shape => {
                    ps.buffers.insert(buf.to_string(), values);
                }
                _ => return Err(bad(format!("`{name}` does not fit the model's `{tensor}`"))),
            }
        }
        let mut optimizer = self.optimizer.clone();
        optimizer
            .load_state(&state)
            .map_err(|e| bad(e.to_string()))?;
        if plateau.is_some() != self.plateau.is_some() {
            return Err(bad(
                "it was saved with another schedule (reduce-on-plateau differs)".into(),
            ));
        }
        // Everything checked: commit.
        self.optimizer = optimizer;
        self.params = params;
        self.best_weights = best;
        if let Some(g) = full_grad {
            self.full_grad = g;
        }
        self.plateau = plateau;
        if let Some(p) = &self.plateau {
            self.optimizer.set_lr(p.lr as f32);
        }
        self.pos = pos;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_data::{parse_idx, Normalize};
    use descent_optim::{HyperValue, OptimizerConfig, SgdConfig};

    /// A small learnable problem: class = which quarter of the 16 pixels is brightest.
    fn toy(n: usize, seed: u64) -> Dataset {
        let mut rng = Rng::new(seed);
        let mut img = vec![0, 0, 8, 2];
        img.extend((n as u32).to_be_bytes());
        img.extend(16u32.to_be_bytes());
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        for _ in 0..n {
            let c = rng.below(4) as usize;
            for p in 0..16 {
                let base = if p / 4 == c { 150 } else { 0 };
                img.push((base + rng.below(100)) as u8);
            }
            lab.push(c as u8);
        }
        Dataset::new(
            &parse_idx(&img, "x").unwrap(),
            &parse_idx(&lab, "y").unwrap(),
            Normalize::default(),
            4,
        )
        .unwrap()
    }

    fn sgd(lr: f32, momentum: f32) -> OptimizerConfig {
        OptimizerConfig::Sgd(SgdConfig {
            lr,
            momentum,
            ..SgdConfig::default()
        })
    }

    /// An MLP from `inputs` features through `hidden` units to the toy problem's 4 classes.
    fn mlp(inputs: usize, hidden: usize, dropout: f32) -> Model {
        Model::mlp(inputs, &[hidden], 4, descent_nn::Activation::Relu, dropout).unwrap()
    }

    fn cfg() -> TrainConfig {
        TrainConfig {
            optimizer: sgd(0.1, 0.0),
            batch_size: 16,
            epochs: 3,
            log_every: 10,
            threads: 2,
            eval_batch: 64,
            ..TrainConfig::default()
        }
    }

    #[test]
    fn learns_and_logs_like_the_seed() {
        let (train, test) = (toy(1000, 1), toy(200, 2));
        let mut t = Trainer::new(mlp(16, 32, 0.0), &cfg()).unwrap();
        let mut logs = Vec::new();
        let reports = t
            .run(&train, &test, |e| {
                if let Event::Log { epoch, batch, .. } = e {
                    logs.push((epoch, batch))
                }
            })
            .unwrap();
        // 1000 / 16 = 63 batches (the last of 8 kept): logs at 10, 20, ..., 60 each epoch.
        assert_eq!(logs.len(), 18);
        assert_eq!(logs[..2], [(1, 10), (1, 20)]);
        assert_eq!(t.steps(), 189);
        assert!(reports[2].test_acc.unwrap() > 95.0, "{reports:?}");
        assert!(reports[2].train_loss < reports[0].train_loss);
    }

    /// Momentum takes the gradient-buffer path (plain SGD is fused): it learns as well.
    #[test]
    fn the_unfused_optimizer_path_learns() {
        let (train, test) = (toy(1000, 1), toy(200, 2));
        let mut t = Trainer::new(
            mlp(16, 32, 0.0),
            &TrainConfig {
                optimizer: sgd(0.01, 0.9),
                ..cfg()
            },
        )
        .unwrap();
        let reports = t.run(&train, &test, |_| {}).unwrap();
        assert!(reports[2].test_acc.unwrap() > 95.0, "{reports:?}");
    }

    #[test]
    fn same_seed_and_threads_repeat_exactly() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let run = |seed| {
            let mut t = Trainer::new(mlp(16, 32, 0.0), &TrainConfig { seed, ..cfg() }).unwrap();
            let mut events = Vec::new();
            t.run(&train, &test, |e| events.push(format!("{e:?}")))
                .unwrap();
            (
                t.params().to_vec(),
                events
                    .into_iter()
                    .filter(|e| e.starts_with("Log"))
                    .collect::<Vec<_>>(),
            )
        };
        let (a, la) = run(5);
        let (b, lb) = run(5);
        assert_eq!(a, b);
        assert_eq!(la, lb);
        assert_ne!(run(6).0, a);
    }

    #[test]
    fn divergence_stops_with_the_step_and_a_hint() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let mut t = Trainer::new(
            mlp(16, 32, 0.0),
            &TrainConfig {
                optimizer: sgd(1e30, 0.0),
                ..cfg()
            },
        )
        .unwrap();
        let e = t.run(&train, &test, |_| {}).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, TrainError::Diverged { .. }), "{msg}");
        assert!(
            msg.contains("lower the learning rate") && msg.contains("epoch 1"),
            "{msg}"
        );
    }

    #[test]
    fn every_optimizer_trains_the_toy_problem() {
        let (train, test) = (toy(1000, 1), toy(200, 2));
        for name in descent_optim::OPTIMIZER_NAMES {
            let mut optimizer = OptimizerConfig::default_for(name).unwrap();
            let lr = match name {
                "gd" => 0.5,
                "sgd" | "momentum" | "adadelta" => optimizer.lr() as f64 * 10.0,
                "lion" => 0.003,
                _ => optimizer.lr() as f64 * 3.0,
            };
            optimizer.set("lr", HyperValue::Num(lr)).unwrap();
            let c = TrainConfig {
                optimizer,
                epochs: if name == "gd" { 30 } else { 3 },
                ..cfg()
            };
            let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
            let reports = t.run(&train, &test, |_| {}).unwrap();
            let last = reports.last().unwrap();
            assert!(last.test_acc.unwrap() > 90.0, "{name}: {last:?}");
            let steps = if name == "gd" { 30 } else { 3 * 63 };
            assert_eq!(t.steps(), steps, "{name}");
        }
    }

    #[test]
    fn full_batch_descent_stops_at_the_gradient_tolerance() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let c = TrainConfig {
            optimizer: OptimizerConfig::Gd(SgdConfig {
                lr: 0.5,
                ..SgdConfig::default()
            }),
            grad_tol: Some(0.05),
            epochs: 500,
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let summary = t.run_split(&train, None, &test, |_| {}).unwrap();
        let StopReason::Converged { grad_norm } = summary.stop else {
            panic!("converged before 500 epochs: {:?}", summary.stop);
        };
        let epoch = summary.epochs.len();
        assert!(grad_norm < 0.05 && epoch < 500);
        assert_eq!(t.steps() as usize, epoch - 1, "no step after converging");
    }

    #[test]
    fn max_steps_stops_mid_epoch_and_target_loss_after_the_epoch() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let c = TrainConfig {
            max_steps: Some(40),
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let s = t.run_split(&train, None, &test, |_| {}).unwrap();
        // 32 batches per epoch: the second epoch stops after 8 steps.
        assert_eq!((t.steps(), s.epochs.len()), (40, 2));
        assert_eq!(s.stop, StopReason::MaxSteps(40));
        let c = TrainConfig {
            target_loss: Some(0.5),
            epochs: 50,
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let s = t.run_split(&train, None, &test, |_| {}).unwrap();
        let last = s.epochs.last().unwrap();
        assert!(matches!(s.stop, StopReason::TargetLoss { .. }) && last.train_loss <= 0.5);
        assert!(s.epochs[..s.epochs.len() - 1]
            .iter()
            .all(|r| r.train_loss > 0.5));
    }

    #[test]
    fn early_stopping_restores_the_best_validation_weights() {
        let (mut train, test) = (toy(600, 3), toy(100, 4));
        let val = train.split_off_random(100, 9).unwrap();
        // A rate that makes validation loss wander, so that it stops improving.
        let c = TrainConfig {
            optimizer: sgd(0.8, 0.9),
            early_stop: Some(crate::EarlyStop {
                monitor: crate::Monitor::ValLoss,
                patience: 2,
                min_delta: 0.0,
            }),
            val_only: true,
            epochs: 40,
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let s = t.run_split(&train, Some(&val), &test, |_| {}).unwrap();
        let StopReason::EarlyStopping {
            best_epoch, best, ..
        } = s.stop
        else {
            panic!("should stop early: {:?}", s.stop);
        };
        let best_seen = s
            .epochs
            .iter()
            .map(|r| r.val.unwrap().loss)
            .fold(f64::INFINITY, f64::min);
        assert_eq!(best, best_seen);
        assert_eq!(s.kept_epoch, best_epoch);
        assert_eq!(
            s.epochs.len(),
            best_epoch + 3,
            "patience 2: three epochs without improvement"
        );
        // The weights held now are the best epoch's: their validation loss is the best one.
        let now = Metrics::from(t.evaluate(&val).unwrap());
        assert_eq!(now.loss, best);
        assert!(s.epochs.iter().all(|r| r.test_acc.is_none()), "val_only");
        assert!(s.test.acc > 0.0);
    }

    #[test]
    fn an_interrupted_run_resumes_bit_identically_from_its_checkpoint() {
        let (mut train, test) = (toy(600, 3), toy(100, 4));
        let val = train.split_off_random(100, 9).unwrap();
        let c = TrainConfig {
            optimizer: OptimizerConfig::default_for("adam").unwrap(),
            schedule: Schedule::warmup_then(
                10,
                Schedule::Cosine {
                    t_max: 90,
                    eta_min: 0.0,
                },
            ),
            early_stop: Some(crate::EarlyStop {
                monitor: crate::Monitor::ValAcc,
                patience: 10,
                min_delta: 0.0,
            }),
            epochs: 3,
            ..cfg()
        };
        let mut whole = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        let want = whole.run_split(&train, Some(&val), &test, |_| {}).unwrap();

        // Interrupt in epoch 2 after batch 10, save, and finish in a fresh trainer.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let flag = Arc::new(AtomicBool::new(false));
        let mut first = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        first.set_interrupt(flag.clone());
        let f2 = flag.clone();
        let stopped = first
            .run_split(&train, Some(&val), &test, |e| {
                if let Event::Progress {
                    epoch: 2,
                    batch: 10,
                    ..
                } = e
                {
                    f2.store(true, Ordering::SeqCst);
                }
            })
            .unwrap();
        assert_eq!(
            stopped.stop,
            StopReason::Interrupted {
                epoch: 2,
                batch: 10
            }
        );
        first.save_checkpoint(&path).unwrap();
        let mut second = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        second.load_checkpoint(&path).unwrap();
        let got = second.run_split(&train, Some(&val), &test, |_| {}).unwrap();
        assert!(
            whole
                .params()
                .iter()
                .zip(second.params())
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "the resumed run's weights differ"
        );
        assert_eq!(want.stop, got.stop);
        let strip = |r: &EpochReport| EpochReport {
            seconds: 0.0,
            ..r.clone()
        };
        assert_eq!(
            want.epochs.iter().map(strip).collect::<Vec<_>>(),
            got.epochs.iter().map(strip).collect::<Vec<_>>()
        );
        assert_eq!(whole.optimizer().state(), second.optimizer().state());

        // Checkpoints of another model, or damaged ones, are refused and change nothing.
        let mut wrong = Trainer::new(mlp(16, 16, 0.0), &c).unwrap();
        let before = wrong.params().to_vec();
        let e = wrong.load_checkpoint(&path).unwrap_err().to_string();
        assert!(
            e.contains("model.fc1.weight") && e.contains("[32, 16]"),
            "{e}"
        );
        assert_eq!(wrong.params(), &before[..]);
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = Trainer::new(mlp(16, 32, 0.0), &c)
            .unwrap()
            .load_checkpoint(&path)
            .unwrap_err();
        assert!(
            e.to_string().contains("not a readable safetensors file"),
            "{e}"
        );
        let sgd_cfg = TrainConfig {
            optimizer: sgd(0.1, 0.9),
            ..c.clone()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &sgd_cfg).unwrap();
        first.save_checkpoint(&path).unwrap();
        let e = t.load_checkpoint(&path).unwrap_err().to_string();
        assert!(e.contains("saved by `adam`"), "{e}");
    }

    #[test]
    fn dropout_and_l1_train_and_resume_identically() {
        let (train, test) = (toy(600, 3), toy(100, 4));
        let c = TrainConfig {
            l1: 1e-4,
            optimizer: sgd(0.1, 0.9),
            epochs: 2,
            ..cfg()
        };
        let mut whole = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
        let s = whole.run_split(&train, None, &test, |_| {}).unwrap();
        assert!(s.test.acc > 90.0, "{s:?}");
        let plain = TrainConfig {
            l1: 0.0,
            ..c.clone()
        };
        let mut other = Trainer::new(mlp(16, 32, 0.0), &plain).unwrap();
        other.run_split(&train, None, &test, |_| {}).unwrap();
        assert_ne!(
            whole.params(),
            other.params(),
            "dropout and L1 change the run"
        );
        // Interrupted in epoch 2 and resumed: the same masks, the same weights.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.safetensors");
        let flag = Arc::new(AtomicBool::new(false));
        let mut first = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
        first.set_interrupt(flag.clone());
        first
            .run_split(&train, None, &test, |e| {
                if let Event::Progress {
                    epoch: 2, batch: 5, ..
                } = e
                {
                    flag.store(true, Ordering::SeqCst);
                }
            })
            .unwrap();
        first.save_checkpoint(&path).unwrap();
        let mut second = Trainer::new(mlp(16, 32, 0.3), &c).unwrap();
        second.load_checkpoint(&path).unwrap();
        second.run_split(&train, None, &test, |_| {}).unwrap();
        assert_eq!(whole.params(), second.params());
    }

    #[test]
    fn validation_rules_need_a_validation_set() {
        let (train, test) = (toy(100, 3), toy(50, 4));
        let c = TrainConfig {
            val_only: true,
            ..cfg()
        };
        let e = Trainer::new(mlp(16, 32, 0.0), &c)
            .unwrap()
            .run_split(&train, None, &test, |_| {})
            .unwrap_err();
        assert!(e.to_string().contains("`val_split`"), "{e}");
    }

    #[test]
    fn the_schedule_sets_the_rate_of_every_step() {
        let (train, test) = (toy(320, 3), toy(100, 4));
        let schedule = Schedule::warmup_then(
            5,
            Schedule::Cosine {
                t_max: 15,
                eta_min: 0.0,
            },
        );
        let c = TrainConfig {
            schedule: schedule.clone(),
            epochs: 1,
            ..cfg()
        };
        // 320 / 16 = 20 steps: the last (step 19) used the schedule's rate of step 19.
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        t.run(&train, &test, |_| {}).unwrap();
        assert_eq!(t.steps(), 20);
        assert_eq!(t.optimizer().lr(), schedule.lr(19, 0.1) as f32);
    }

    #[test]
    fn one_cycle_cycles_adams_beta1() {
        let (train, test) = (toy(320, 3), toy(100, 4));
        let schedule = Schedule::one_cycle(20);
        let c = TrainConfig {
            optimizer: OptimizerConfig::default_for("adam").unwrap(),
            schedule: schedule.clone(),
            epochs: 1,
            ..cfg()
        };
        let mut t = Trainer::new(mlp(16, 32, 0.0), &c).unwrap();
        t.run(&train, &test, |_| {}).unwrap();
        // The last of 20 steps ran with the schedule's momentum and rate of step 19.
        let beta1 = t.optimizer().config().momentum().unwrap();
        assert_eq!(beta1, schedule.momentum(19).unwrap() as f32);
        assert_eq!(t.optimizer().lr(), schedule.lr(19, 1e-3f32 as f64) as f32);
        assert!(
            beta1 > 0.9,
            "momentum rises again as the rate falls: {beta1}"
        );
    }

    #[test]
    fn clipping_keeps_training_and_a_nonfinite_norm_can_stop_it() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let c = TrainConfig {
            clip_norm: Some(0.5),
            clip_value: Some(0.1),
            ..cfg()
        };
        let reports = Trainer::new(mlp(16, 32, 0.0), &c)
            .unwrap()
            .run(&train, &test, |_| {})
            .unwrap();
        assert!(reports[2].test_acc.unwrap() > 90.0, "{reports:?}");
        let c = TrainConfig {
            optimizer: sgd(1e30, 0.0),
            clip_norm: Some(1.0),
            clip_error_nonfinite: true,
            ..cfg()
        };
        let e = Trainer::new(mlp(16, 32, 0.0), &c)
            .unwrap()
            .run(&train, &test, |_| {})
            .unwrap_err();
        assert!(
            matches!(
                e,
                TrainError::NonFiniteGradient { .. } | TrainError::Diverged { .. }
            ),
            "{e}"
        );
    }

    #[test]
    fn data_that_does_not_fit_the_model_is_refused() {
        let mut t = Trainer::new(mlp(8, 32, 0.0), &cfg()).unwrap();
        let d = toy(10, 1);
        assert!(matches!(t.run(&d, &d, |_| {}), Err(TrainError::Data(_))));
    }
}
