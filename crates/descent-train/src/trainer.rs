//! Epochs of shuffled batches, the optimizer step, evaluation and events.

use std::time::Instant;

use descent_data::{BatchLoader, Dataset};
use descent_nn::{LossStats, Sequential, Workspace};
use descent_optim::schedule::{ReduceOnPlateau, Schedule};
use descent_optim::{
    clip_grad_norm_on, clip_grad_value, grad_norm_on, Optimizer, Parallel, ParamSpec,
};
use descent_tensor::{MatMut, Pool, Rng};

use crate::config::flag_error;
use crate::{TrainConfig, TrainError};

/// Results of one epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    /// Epoch, from 1.
    pub epoch: usize,
    /// Mean training loss over the epoch's examples (as the weights were when each batch ran).
    pub train_loss: f64,
    /// Training accuracy over the epoch, in percent, on the same terms.
    pub train_acc: f64,
    /// Mean loss on the evaluation set after the epoch.
    pub test_loss: f64,
    /// Accuracy on the evaluation set after the epoch, in percent.
    pub test_acc: f64,
    /// Seconds spent training (evaluation excluded).
    pub seconds: f64,
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
    /// Full-batch descent stopped because the gradient norm fell below `--grad-tol`.
    Converged {
        /// Epoch, from 1.
        epoch: usize,
        /// The full-set gradient's norm.
        grad_norm: f32,
    },
}

/// A model, its parameters, an optimizer and the buffers to train them.
pub struct Trainer {
    cfg: TrainConfig,
    net: Sequential,
    params: Vec<f32>,
    /// The batch gradient; allocated on the first step that needs it (plain SGD is fused
    /// into the backward pass and never does).
    grads: Vec<f32>,
    /// Full-batch descent: the gradient summed over the epoch.
    full_grad: Vec<f32>,
    optimizer: Optimizer,
    plateau: Option<ReduceOnPlateau>,
    pool: Pool,
    ws: Workspace,
    eval_ws: Workspace,
    x: Vec<f32>,
    y: Vec<u8>,
}

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
    y: &mut [u8],
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
    /// Checks `cfg` and builds an MLP from `inputs` features to `classes` outputs with
    /// freshly initialized weights (seeded by `cfg.seed`).
    pub fn new(cfg: &TrainConfig, inputs: usize, classes: usize) -> Result<Self, TrainError> {
        cfg.validate()?;
        let net = Sequential::mlp(inputs, &cfg.hidden, classes, cfg.activation)?;
        let params = net.init_params(&mut Rng::new(cfg.seed));
        let specs: Vec<ParamSpec> = net
            .layout()
            .views()
            .iter()
            .map(|v| ParamSpec::new(v.name.clone(), &v.shape))
            .collect();
        let optimizer =
            Optimizer::with_groups(cfg.optimizer, &specs, &cfg.groups).map_err(flag_error)?;
        let plateau = match cfg.plateau {
            Some(p) => Some(ReduceOnPlateau::new(p, cfg.lr() as f64).map_err(flag_error)?),
            None => None,
        };
        Ok(Self {
            grads: Vec::new(),
            full_grad: Vec::new(),
            optimizer,
            plateau,
            pool: Pool::new(cfg.threads)?,
            ws: Workspace::new(&net, cfg.batch_size),
            eval_ws: Workspace::new(&net, cfg.eval_batch),
            x: vec![0.0; cfg.batch_size * inputs],
            y: vec![0; cfg.batch_size],
            cfg: cfg.clone(),
            net,
            params,
        })
    }

    /// The model.
    pub fn net(&self) -> &Sequential {
        &self.net
    }

    /// The flat parameters (layout: `self.net().layout()`).
    pub fn params(&self) -> &[f32] {
        &self.params
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
            data.labels(),
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
        mut on_event: impl FnMut(Event),
    ) -> Result<Vec<EpochReport>, TrainError> {
        self.check_data(train, "training")?;
        self.check_data(eval, "evaluation")?;
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
        let mut reports = Vec::with_capacity(self.cfg.epochs);
        for epoch in 1..=self.cfg.epochs {
            let start = Instant::now();
            loader.start_epoch(epoch as u64);
            let mut epoch_stats = LossStats::default();
            let mut running = 0.0f64;
            if full_batch {
                self.full_grad.clear();
                self.full_grad.resize(self.params.len(), 0.0);
            }
            for b in 0..batches {
                if !full_batch {
                    self.schedule_step()?;
                }
                let rows = fill_batch(&loader, train, b, &mut self.x, &mut self.y, &self.pool);
                let features = self.net.input_features();
                let (x, y) = (&self.x[..rows * features], &self.y[..rows]);
                let fused_lr = match full_batch || clipping {
                    true => None,
                    false => self.optimizer.plain_sgd_lr(),
                };
                if fused_lr.is_none() && self.grads.len() != self.params.len() {
                    self.grads = vec![0.0; self.params.len()];
                }
                let stats = match fused_lr {
                    // Plain SGD is applied inside the backward pass: no gradient buffer.
                    Some(lr) => self.net.train_step_sgd(
                        &mut self.params,
                        lr,
                        x,
                        y,
                        &mut self.ws,
                        &self.pool,
                    )?,
                    None => self.net.train_step_grads(
                        &self.params,
                        x,
                        y,
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
                    self.clip(&mut grads, epoch, b + 1)?;
                    let stepped =
                        self.optimizer
                            .step_on(&OnPool(&self.pool), &mut self.params, &grads);
                    self.grads = grads;
                    stepped?;
                }
                epoch_stats.merge(stats);
                running += loss;
                let done = b + 1;
                if self.cfg.log_every > 0 && done % self.cfg.log_every == 0 {
                    on_event(Event::Log {
                        epoch,
                        batch: done,
                        loss: running / self.cfg.log_every as f64,
                    });
                    running = 0.0;
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
                        self.clip(&mut g, epoch, batches)?;
                        self.schedule_step()?;
                        self.optimizer
                            .step_on(&OnPool(&self.pool), &mut self.params, &g)?;
                    }
                }
                self.full_grad = g;
            }
            let seconds = start.elapsed().as_secs_f64();
            let test = self.evaluate(eval)?;
            let report = EpochReport {
                epoch,
                train_loss: epoch_stats.mean_loss(),
                train_acc: epoch_stats.accuracy(),
                test_loss: test.mean_loss(),
                test_acc: test.accuracy(),
                seconds,
            };
            if let Some(p) = &mut self.plateau {
                let lr = p.observe(report.train_loss);
                self.optimizer.set_lr(lr as f32);
            }
            on_event(Event::EpochEnd(report.clone()));
            reports.push(report);
            if let Some(grad_norm) = converged {
                on_event(Event::Converged { epoch, grad_norm });
                break;
            }
        }
        Ok(reports)
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

    fn cfg() -> TrainConfig {
        TrainConfig {
            hidden: vec![32],
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
        let mut t = Trainer::new(&cfg(), 16, 4).unwrap();
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
        assert!(reports[2].test_acc > 95.0, "{reports:?}");
        assert!(reports[2].train_loss < reports[0].train_loss);
    }

    /// Momentum takes the gradient-buffer path (plain SGD is fused): it learns as well.
    #[test]
    fn the_unfused_optimizer_path_learns() {
        let (train, test) = (toy(1000, 1), toy(200, 2));
        let mut t = Trainer::new(
            &TrainConfig {
                optimizer: sgd(0.01, 0.9),
                ..cfg()
            },
            16,
            4,
        )
        .unwrap();
        let reports = t.run(&train, &test, |_| {}).unwrap();
        assert!(reports[2].test_acc > 95.0, "{reports:?}");
    }

    #[test]
    fn same_seed_and_threads_repeat_exactly() {
        let (train, test) = (toy(500, 3), toy(100, 4));
        let run = |seed| {
            let mut t = Trainer::new(&TrainConfig { seed, ..cfg() }, 16, 4).unwrap();
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
            &TrainConfig {
                optimizer: sgd(1e30, 0.0),
                ..cfg()
            },
            16,
            4,
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
            let mut t = Trainer::new(&c, 16, 4).unwrap();
            let reports = t.run(&train, &test, |_| {}).unwrap();
            let last = reports.last().unwrap();
            assert!(last.test_acc > 90.0, "{name}: {last:?}");
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
        let mut t = Trainer::new(&c, 16, 4).unwrap();
        let mut stop = None;
        let reports = t
            .run(&train, &test, |e| {
                if let Event::Converged { epoch, grad_norm } = e {
                    stop = Some((epoch, grad_norm));
                }
            })
            .unwrap();
        let (epoch, norm) = stop.expect("converged before 500 epochs");
        assert!(norm < 0.05 && epoch < 500 && reports.len() == epoch);
        assert_eq!(t.steps() as usize, epoch - 1, "no step after converging");
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
        let mut t = Trainer::new(&c, 16, 4).unwrap();
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
        let mut t = Trainer::new(&c, 16, 4).unwrap();
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
        let reports = Trainer::new(&c, 16, 4)
            .unwrap()
            .run(&train, &test, |_| {})
            .unwrap();
        assert!(reports[2].test_acc > 90.0, "{reports:?}");
        let c = TrainConfig {
            optimizer: sgd(1e30, 0.0),
            clip_norm: Some(1.0),
            clip_error_nonfinite: true,
            ..cfg()
        };
        let e = Trainer::new(&c, 16, 4)
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
        let mut t = Trainer::new(&cfg(), 8, 4).unwrap();
        let d = toy(10, 1);
        assert!(matches!(t.run(&d, &d, |_| {}), Err(TrainError::Data(_))));
    }
}
