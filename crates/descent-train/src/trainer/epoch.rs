//! One epoch: its batches (the optimizer step of each), full-batch descent's step, the
//! epoch's report, and the stopping rules checked after it.

use std::sync::atomic::Ordering;

use descent_data::{Augment, BatchLoader, Dataset};
use descent_nn::{LossStats, Targets};
use descent_optim::{clip_grad_norm_on, clip_grad_value, grad_norm_on, schedule::Schedule};
use std::time::Instant;

use descent_tensor::{MatMut, Pool};

use super::{Batches, EpochReport, Event, LoopState, Metrics, OnPool, StopReason, Trainer};
use crate::TrainError;

/// How many batches the background loader prepares ahead of the engine.
const PREFETCH: usize = 2;

/// The augmentation of an epoch's training batches.
struct Augmenting {
    augment: Augment,
    seed: u64,
    epoch: u64,
}

/// One batch's inputs and targets (class indices, or values for a regression).
pub(super) struct Batch {
    /// Which batch of the epoch.
    b: usize,
    /// Examples in it.
    pub(super) rows: usize,
    features: usize,
    per: usize,
    x: Vec<f32>,
    y: Vec<u32>,
    yv: Vec<f32>,
}

impl Batch {
    /// Room for `cap` examples of `features` values and `per` targets.
    pub(super) fn new(cap: usize, features: usize, per: usize) -> Self {
        Self {
            b: 0,
            rows: 0,
            features,
            per,
            x: vec![0.0; cap * features],
            y: vec![0; cap * per],
            yv: vec![0.0; cap * per],
        }
    }

    /// Copies the examples `idx` of `data` in.
    pub(super) fn fill(&mut self, data: &Dataset, idx: &[u32]) {
        self.rows = idx.len();
        data.fill_rows(idx, &mut self.x);
        self.fill_targets(data, idx);
    }

    /// Augments the pictures filled: example `idx[k]`'s draw depends on the seed, the epoch
    /// and its index only.
    fn augment(&mut self, aug: &Augmenting, shape: &[usize], idx: &[u32]) {
        let mut scratch = Vec::new();
        for (row, &i) in self.x.chunks_exact_mut(self.features).zip(idx) {
            let mut rng = Augment::rng(aug.seed, aug.epoch, i as u64);
            aug.augment.apply(row, shape, &mut rng, &mut scratch);
        }
    }

    fn fill_targets(&mut self, data: &Dataset, idx: &[u32]) {
        let p = self.per;
        if data.is_regression() {
            for (dst, &i) in self.yv.chunks_exact_mut(p).zip(idx) {
                dst.copy_from_slice(data.target_values(i as usize));
            }
        } else {
            for (dst, &i) in self.y.chunks_exact_mut(p).zip(idx) {
                dst.copy_from_slice(data.targets(i as usize));
            }
        }
    }

    /// [`Batch::fill`] with the rows copied by `pool`'s threads when they are many (a set in
    /// memory).
    fn fill_on(&mut self, data: &Dataset, idx: &[u32], pool: &Pool) {
        if data.is_streamed() || idx.len() * self.features < 16 << 10 {
            return self.fill(data, idx);
        }
        let f = self.features;
        let xs = MatMut::new(&mut self.x[..idx.len() * f], idx.len(), f).expect("batch fits");
        pool.split_rows(xs, 8, 16, |r0, mut band| {
            for r in 0..band.rows() {
                band.row_mut(r)
                    .copy_from_slice(data.example(idx[r0 + r] as usize));
            }
        });
        self.fill_targets(data, idx);
        self.rows = idx.len();
    }

    /// The inputs of the rows filled.
    pub(super) fn x(&self) -> &[f32] {
        &self.x[..self.rows * self.features]
    }

    /// The targets of the rows filled.
    pub(super) fn targets(&self, data: &Dataset) -> Targets<'_> {
        let n = self.rows * self.per;
        match data.is_regression() {
            true => Targets::Values(&self.yv[..n]),
            false => Targets::Classes(&self.y[..n]),
        }
    }
}

/// A learning rate to try after `optimizer` diverged at `lr`: a tenth of it, as a person
/// would write it (0.001 for 0.01, not 0.0009999999), or the optimizer's default when `lr` is
/// more than a hundred times that.
fn suggestion(optimizer: &str, lr: f32) -> f32 {
    let default = descent_optim::OptimizerConfig::default_for(optimizer).map(|c| c.lr());
    match default {
        Some(d) if lr > 100.0 * d => d,
        _ => {
            let decimal: f64 = lr.to_string().parse().unwrap_or(lr as f64);
            (decimal / 10.0) as f32
        }
    }
}

impl Trainer {
    /// Feeds batch `batch`'s loss to the divergence rule: stops with its diagnosis, or sends
    /// it once as an event, as the configuration says.
    fn watch_loss(
        &mut self,
        loss: f64,
        epoch: usize,
        batch: usize,
        on_event: &mut impl FnMut(Event),
    ) -> Result<(), TrainError> {
        if self.cfg.divergence == crate::Divergence::Off {
            return Ok(());
        }
        let Some(rise) = self.pos.loss_watch.push(loss) else {
            return Ok(());
        };
        let lr = self.optimizer.lr();
        let e = TrainError::LossRose {
            start: rise.start,
            now: rise.now,
            times: rise.now / rise.start,
            epoch,
            batch,
            step: self.optimizer.steps(),
            optimizer: self.optimizer.name().to_string(),
            lr,
            suggest: suggestion(self.optimizer.name(), lr),
        };
        match self.cfg.divergence {
            crate::Divergence::Stop => Err(e),
            _ if self.pos.loss_watch.warned => Ok(()),
            _ => {
                self.pos.loss_watch.warned = true;
                on_event(Event::Diverging {
                    diagnosis: e.to_string(),
                });
                Ok(())
            }
        }
    }

    /// Sets the learning rate (and momentum) the schedule gives for the next step.
    pub(super) fn schedule_step(&mut self) -> Result<(), TrainError> {
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
    pub(super) fn add_l1(&self, grads: &mut [f32]) {
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

    /// Whether plain SGD runs inside the backward pass (no gradient buffer): nothing between
    /// the gradient and the update (no clipping, L1, accumulation or full-batch sum).
    pub(super) fn fused_sgd(&self) -> bool {
        !self.cfg.grads_between() && self.optimizer.plain_sgd_lr().is_some()
    }

    /// Clips `grads` as configured, and keeps their norm before clipping for [`Event::Step`]
    /// when asked to (the norm clipping computes, else one pass of its own); the error names
    /// where training stands.
    pub(super) fn clip(
        &mut self,
        grads: &mut [f32],
        epoch: usize,
        batch: usize,
    ) -> Result<(), TrainError> {
        let mut norm = None;
        if let Some(max) = self.cfg.clip_norm {
            let error = self.cfg.clip_error_nonfinite;
            match clip_grad_norm_on(&OnPool(&self.pool), grads, max, error) {
                Ok(n) => norm = Some(n),
                Err(descent_optim::OptimError::NonFiniteGradNorm(norm)) => {
                    return Err(TrainError::NonFiniteGradient {
                        norm,
                        epoch,
                        batch,
                        step: self.optimizer.steps(),
                        lr: self.optimizer.lr(),
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        if self.grad_norm.0 {
            self.grad_norm.1 =
                Some(norm.unwrap_or_else(|| grad_norm_on(&OnPool(&self.pool), grads)));
        }
        if let Some(v) = self.cfg.clip_value {
            clip_grad_value(grads, v)?;
        }
        Ok(())
    }

    /// The rest of the current epoch's batches: one optimizer step each (full-batch descent
    /// sums their gradients instead), the log lines and progress events. Stops early at the
    /// interrupt flag or the step limit.
    pub(super) fn run_batches(
        &mut self,
        train: &Dataset,
        eval: &Dataset,
        loader: &mut BatchLoader,
        on_event: &mut impl FnMut(Event),
    ) -> Result<Batches, TrainError> {
        let epoch = self.pos.epoch;
        let batches = loader.num_batches();
        loader.start_epoch(epoch as u64);
        if self.cfg.full_batch() && self.pos.batch == 0 {
            self.full_grad.clear();
            self.full_grad.resize(self.net.param_count(), 0.0);
        }
        let mut ran = self.pos.batch;
        let accum = self.cfg.grad_accum;
        let first = self.pos.batch;
        let (cap, features, per) = (
            loader.batch_size(),
            train.features(),
            train.targets_per_example(),
        );
        let loader = &*loader;
        // A background thread reads the next batches while the engine computes (buffers go
        // back to it once used: at most PREFETCH + 1 batches exist at a time) when the set is
        // streamed from a file, or when a core is left over for it. Otherwise the engine's
        // threads copy each batch in place: on a machine whose every core runs the engine, a
        // loader thread takes more from it than the copy costs (measured in docs/data.md).
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let background = match self.cfg.loader {
            crate::Loader::Auto => train.is_streamed() || self.pool.threads() < cores,
            crate::Loader::Background => true,
            crate::Loader::Inline => false,
        };
        let aug = self.cfg.augment.clone().map(|augment| Augmenting {
            augment,
            seed: self.cfg.seed,
            epoch: epoch as u64,
        });
        let (aug, shape) = (aug.as_ref(), train.shape());
        std::thread::scope(|s| -> Result<Batches, TrainError> {
            let (ready_tx, ready) = std::sync::mpsc::sync_channel::<Batch>(PREFETCH);
            let (used, used_rx) = std::sync::mpsc::channel::<Batch>();
            let mut spare = (!background).then(|| Batch::new(cap, features, per));
            if background {
                for _ in 0..=PREFETCH {
                    let _ = used.send(Batch::new(cap, features, per));
                }
                s.spawn(move || {
                    for b in first..batches {
                        let Ok(mut batch) = used_rx.recv() else {
                            return;
                        };
                        batch.b = b;
                        batch.fill(train, loader.indices(b));
                        if ready_tx.send(batch).is_err() {
                            return;
                        }
                    }
                });
            }
            // The batches of the step in progress: their loss sum and count, and when it began.
            let mut step_loss = (0.0f64, 0usize);
            let mut step_began = Instant::now();
            for b in first..batches {
                // With gradient accumulation only between steps: a step's batches run together.
                if b % accum == 0
                    && self
                        .interrupt
                        .as_ref()
                        .is_some_and(|f| f.load(Ordering::SeqCst))
                {
                    return Ok(Batches::Interrupted { batch: b });
                }
                if let Some(max) = self.cfg.max_steps {
                    if !self.cfg.full_batch() && self.optimizer.steps() >= max {
                        return Ok(Batches::Ran {
                            ran,
                            step_limit: Some(max),
                        });
                    }
                }
                ran = b + 1;
                let steps_before = self.optimizer.steps();
                let waited = Instant::now();
                let batch = match spare.take() {
                    Some(mut batch) => {
                        batch.b = b;
                        batch.fill_on(train, loader.indices(b), &self.pool);
                        if let Some(a) = aug {
                            batch.augment(a, shape, loader.indices(b));
                        }
                        batch
                    }
                    None => ready.recv().expect("the loader thread fills every batch"),
                };
                self.data_wait += waited.elapsed().as_secs_f64();
                debug_assert_eq!(batch.b, b);
                let stats = self.train_batch(train, &batch, batches)?;
                match background {
                    true => {
                        let _ = used.send(batch);
                    }
                    false => spare = Some(batch),
                }
                let loss = stats.mean_loss();
                self.watch_loss(loss, epoch, b + 1, on_event)?;
                self.pos.loss_sum += stats.loss_sum;
                self.pos.correct += stats.correct;
                self.pos.count += stats.count;
                self.pos.running += loss;
                self.pos.since_eval.0 += loss;
                self.pos.since_eval.1 += 1;
                self.pos.batch = b + 1;
                let done = b + 1;
                let step = self.optimizer.steps();
                step_loss = (step_loss.0 + loss, step_loss.1 + 1);
                if step > steps_before {
                    let (sum, n) = std::mem::take(&mut step_loss);
                    let now = Instant::now();
                    on_event(Event::Step {
                        step,
                        epoch,
                        loss: sum / n as f64,
                        lr: self.optimizer.lr(),
                        group_lrs: self.optimizer.group_lrs(),
                        grad_norm: self.grad_norm.1.take(),
                        seconds: (now - step_began).as_secs_f64(),
                    });
                    step_began = now;
                }
                if let Some(every) = self.cfg.eval_every {
                    if step > steps_before && step.is_multiple_of(every) {
                        let eval = Metrics::from(self.evaluate(eval)?);
                        let (sum, n) = std::mem::take(&mut self.pos.since_eval);
                        on_event(Event::StepEval {
                            step,
                            train_loss: sum / n.max(1) as f64,
                            eval,
                        });
                    }
                }
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
            Ok(Batches::Ran {
                ran,
                step_limit: None,
            })
        })
    }

    /// Batch `b` of the current epoch: forward, loss, backward, and the optimizer step (plain
    /// SGD fused into the backward pass; full-batch descent adds the gradient to the epoch's
    /// sum). A non-finite loss stops training with where it happened.
    pub(super) fn train_batch(
        &mut self,
        train: &Dataset,
        batch: &Batch,
        batches: usize,
    ) -> Result<LossStats, TrainError> {
        let (b, rows) = (batch.b, batch.rows);
        let full_batch = self.cfg.full_batch();
        let epoch = self.pos.epoch;
        if !full_batch {
            self.schedule_step()?;
        }
        let (x, y) = (batch.x(), batch.targets(train));
        // Dropout masks are a function of the seed and the step: a resumed run draws the
        // same ones.
        let accum = self.cfg.grad_accum as u64;
        let step = match full_batch {
            true => self.optimizer.steps() * batches as u64 + b as u64,
            false => self.optimizer.steps() * accum + b as u64 % accum,
        };
        self.ws
            .set_dropout_seed(self.cfg.seed ^ step.wrapping_mul(0xD1B5_4A32_D192_ED03));
        let fused_lr = match self.fused_sgd() {
            true => self.optimizer.plain_sgd_lr(),
            false => None,
        };
        let trainable = self.net.param_count();
        if fused_lr.is_none() && self.grads.len() != trainable {
            self.grads = vec![0.0; trainable];
        }
        let stats = match fused_lr {
            _ if self.device.is_some() => self.device_batch(train, batch)?,
            // Plain SGD is applied inside the backward pass: no gradient buffer.
            Some(lr) => self.net.train_step_sgd(
                &mut self.params,
                lr,
                x,
                y,
                &self.cfg.loss,
                &mut self.ws,
                &self.pool,
            )?,
            None => self.net.train_step_grads(
                &mut self.params,
                x,
                y,
                &self.cfg.loss,
                &mut self.grads,
                &mut self.ws,
                &self.pool,
            )?,
        };
        let loss = stats.mean_loss();
        if !loss.is_finite() && self.optimizer.steps() == 0 && self.pos.epochs.is_empty() {
            // No update has been made yet (gradient accumulation's first batches included).
            return Err(TrainError::BadStart {
                value: if loss.is_nan() { "NaN" } else { "infinite" }.into(),
            });
        }
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
                suggest: suggestion(self.optimizer.name(), lr),
            });
        }
        if self.device.is_some() {
            // The device ran the optimizer's update after the backward pass.
            self.optimizer.fused_step_done();
        } else if full_batch {
            // The batch gradient is a mean over its rows: weight it by its share.
            let w = rows as f32 / train.len() as f32;
            let (acc, g) = (&mut self.full_grad, &self.grads);
            acc.iter_mut().zip(g).for_each(|(a, g)| *a += w * g);
        } else if fused_lr.is_some() {
            self.optimizer.fused_step_done();
        } else if self.cfg.grad_accum > 1 {
            // The step's gradient is the mean over all its batches' rows: sum each batch's
            // mean weighted by its rows, then divide once the step's batches are in.
            if self.accum_rows == 0 {
                self.full_grad.clear();
                self.full_grad.resize(trainable, 0.0);
            }
            let w = rows as f32;
            let (acc, g) = (&mut self.full_grad, &self.grads);
            acc.iter_mut().zip(g).for_each(|(a, g)| *a += w * g);
            self.accum_rows += rows;
            let last = b + 1 == batches;
            if (b + 1).is_multiple_of(self.cfg.grad_accum) || last {
                let mut g = std::mem::take(&mut self.full_grad);
                let inv = 1.0 / self.accum_rows as f32;
                g.iter_mut().for_each(|v| *v *= inv);
                self.accum_rows = 0;
                self.add_l1(&mut g);
                self.clip(&mut g, epoch, b + 1)?;
                let stepped =
                    self.optimizer
                        .step_on(&OnPool(&self.pool), &mut self.params[..trainable], &g);
                self.full_grad = g;
                stepped?;
            }
        } else {
            let mut grads = std::mem::take(&mut self.grads);
            self.add_l1(&mut grads);
            self.clip(&mut grads, epoch, b + 1)?;
            let stepped =
                self.optimizer
                    .step_on(&OnPool(&self.pool), &mut self.params[..trainable], &grads);
            self.grads = grads;
            stepped?;
        }
        Ok(stats)
    }

    /// Full-batch descent's one step per epoch, on the summed gradient; returns the norm when
    /// it fell below `grad_tol` (then no step is taken).
    pub(super) fn full_batch_step(
        &mut self,
        epoch: usize,
        batches: usize,
    ) -> Result<Option<f32>, TrainError> {
        if !self.cfg.full_batch() {
            return Ok(None);
        }
        let mut g = std::mem::take(&mut self.full_grad);
        let norm = grad_norm_on(&OnPool(&self.pool), &g);
        let converged = match self.cfg.grad_tol {
            Some(tol) if norm < tol => Some(norm),
            _ => {
                self.add_l1(&mut g);
                self.clip(&mut g, epoch, batches)?;
                self.schedule_step()?;
                let trainable = self.net.param_count();
                self.optimizer
                    .step_on(&OnPool(&self.pool), &mut self.params[..trainable], &g)?;
                None
            }
        };
        self.full_grad = g;
        Ok(converged)
    }

    /// Evaluates the finished epoch, lets reduce-on-plateau see it, reports it, and starts
    /// the next epoch's loop state.
    pub(super) fn end_epoch(
        &mut self,
        epoch: usize,
        seconds: f64,
        val: Option<&Dataset>,
        test: &Dataset,
        on_event: &mut impl FnMut(Event),
    ) -> Result<EpochReport, TrainError> {
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
            data_wait: std::mem::take(&mut self.data_wait),
        };
        if let Some(p) = &mut self.plateau {
            let watched = report.val.map_or(report.train_loss, |v| v.loss);
            let lr = p.observe(watched);
            self.optimizer.set_lr(lr as f32);
        }
        on_event(Event::EpochEnd(report.clone()));
        if self.snapshots {
            on_event(Event::Tensors {
                step: self.optimizer.steps(),
                epoch: report.epoch,
                tensors: self.tensor_snapshots(),
            });
        }
        // The next epoch starts from a clean slate.
        self.pos = LoopState {
            epoch: epoch + 1,
            epochs: std::mem::take(&mut self.pos.epochs),
            best: self.pos.best,
            bad_epochs: self.pos.bad_epochs,
            loss_watch: std::mem::take(&mut self.pos.loss_watch),
            ..LoopState::default()
        };
        self.pos.epochs.push(report.clone());
        Ok(report)
    }

    /// Early stopping: keeps the best epoch's weights, and stops once the monitored metric
    /// has not improved by more than `min_delta` for more than `patience` epochs.
    pub(super) fn early_stopping(&mut self, report: &EpochReport) -> Option<StopReason> {
        let e = self.cfg.early_stop?;
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
            self.pos.best = Some((report.epoch, value));
            match &mut self.best_weights {
                Some(w) => w.copy_from_slice(&self.params),
                None => self.best_weights = Some(self.params.clone()),
            }
            self.pos.bad_epochs = 0;
            return None;
        }
        self.pos.bad_epochs += 1;
        if self.pos.bad_epochs <= e.patience {
            return None;
        }
        let (best_epoch, best) = self.pos.best.expect("set on epoch 1");
        Some(StopReason::EarlyStopping {
            monitor: e.monitor,
            best_epoch,
            best,
        })
    }

    /// The rules checked after each epoch, in order: full-batch convergence, the target
    /// loss, the step limit.
    pub(super) fn stopping_rule(
        &self,
        report: &EpochReport,
        converged: Option<f32>,
    ) -> Option<StopReason> {
        if let Some(grad_norm) = converged {
            return Some(StopReason::Converged { grad_norm });
        }
        if let Some(target) = self.cfg.target_loss {
            if report.train_loss <= target {
                return Some(StopReason::TargetLoss {
                    loss: report.train_loss,
                });
            }
        }
        match self.cfg.max_steps {
            Some(max) if self.optimizer.steps() >= max => Some(StopReason::MaxSteps(max)),
            _ => None,
        }
    }
}
