//! `--tensorboard DIR`: a run's events as TensorBoard scalars and histograms. The training
//! loop only sends them; descent-board's thread encodes and writes them.
//!
//! | tag | when | what |
//! |---|---|---|
//! | `train/loss` | every step | the step's mean batch loss |
//! | `train/lr`, `train/lr_group1`, ... | every step | the rate it used (per parameter group) |
//! | `train/grad_norm` | every step | the gradient's L2 norm before clipping (not under fused plain SGD) |
//! | `train/step_time` | every step | seconds, batches read to update |
//! | `epoch/train_loss`, `epoch/train_acc`, `epoch/seconds` | every epoch | the epoch's report |
//! | `val/loss`, `val/acc`, `test/loss`, `test/acc` | every epoch (and `val/*` every `--eval-every` steps) | evaluations |
//! | `weights/NAME`, `grads/NAME` | every epoch | histograms of each tensor and its last gradient |
//!
//! The x axis is the optimizer step throughout, so epoch values sit at their epoch's last step.
//!
//! `descent tune --tensorboard DIR` writes each trial as a run `DIR/trial-NNNN` with the tags
//! above, its hyperparameters as an HParams session, and `trial/objective` (the value the study
//! ranks it by); `DIR` itself holds the HParams experiment: the searched space and the metrics
//! the plugin's table shows.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result};
use descent_board::{Domain, ExperimentInfo, HParam, Status, SummaryWriter};
use descent_train::Event;
use descent_tune::{Distribution, ParamValue};

/// The tag of a trial's objective.
pub const OBJECTIVE: &str = "trial/objective";

/// A run's TensorBoard log.
pub struct Board {
    tb: SummaryWriter,
    /// Accuracy means nothing for a regression: left out.
    regression: bool,
    /// The last step a step evaluation logged: an epoch ending there repeats it, left out.
    val_step: AtomicU64,
}

impl Board {
    /// Starts a log in `dir` (created if missing; a resumed run adds a file beside the first).
    pub fn create(dir: &Path, regression: bool) -> Result<Self> {
        let tb = SummaryWriter::create(dir)
            .with_context(|| format!("cannot write TensorBoard logs to {}", dir.display()))?;
        Ok(Board {
            tb,
            regression,
            val_step: AtomicU64::new(0),
        })
    }

    /// A resumed run starts again after `steps` steps: TensorBoard drops what the log holds
    /// past them (written after the checkpoint, run again now).
    pub fn resume_after(&self, steps: u64) {
        self.tb.restart_at(steps + 1);
    }

    /// Sends what `e` says to the log.
    pub fn record(&self, e: &Event) {
        let tb = &self.tb;
        match e {
            Event::Step {
                step,
                loss,
                lr,
                group_lrs,
                grad_norm,
                seconds,
                ..
            } => {
                tb.scalar("train/loss", *step, *loss);
                tb.scalar("train/lr", *step, f64::from(*lr));
                for (i, lr) in group_lrs.iter().enumerate() {
                    tb.scalar(&format!("train/lr_group{}", i + 1), *step, f64::from(*lr));
                }
                if let Some(n) = grad_norm {
                    tb.scalar("train/grad_norm", *step, f64::from(*n));
                }
                tb.scalar("train/step_time", *step, *seconds);
            }
            Event::EpochEnd(r) => {
                let s = r.steps;
                tb.scalar("epoch/train_loss", s, r.train_loss);
                tb.scalar("epoch/seconds", s, r.seconds);
                if !self.regression {
                    tb.scalar("epoch/train_acc", s, r.train_acc);
                }
                if let Some(v) = r.val.filter(|_| self.val_step.load(Ordering::Relaxed) != s) {
                    self.eval("val", s, v.loss, v.acc);
                }
                if let (Some(loss), Some(acc)) = (r.test_loss, r.test_acc) {
                    self.eval("test", s, loss, acc);
                }
            }
            Event::StepEval { step, eval, .. } => {
                self.val_step.store(*step, Ordering::Relaxed);
                self.eval("val", *step, eval.loss, eval.acc);
            }
            Event::Tensors { step, tensors, .. } => {
                for t in tensors {
                    tb.histogram(&format!("weights/{}", t.name), *step, t.weights.clone());
                    if let Some(g) = &t.grad {
                        tb.histogram(&format!("grads/{}", t.name), *step, g.clone());
                    }
                }
            }
            Event::Log { .. } | Event::Progress { .. } | Event::Diverging { .. } => {}
        }
    }

    fn eval(&self, set: &str, step: u64, loss: f64, acc: f64) {
        self.tb.scalar(&format!("{set}/loss"), step, loss);
        if !self.regression {
            self.tb.scalar(&format!("{set}/acc"), step, acc);
        }
    }

    /// Marks the log as an HParams session: a trial with these hyperparameters.
    pub fn start_session(&self, params: &BTreeMap<String, ParamValue>) {
        let hparams = params.iter().map(|(k, v)| (k.clone(), hparam(v))).collect();
        self.tb.session_start(&hparams, "");
    }

    /// Ends the session at `step`: its objective (when it has one) and how it ended (a pruned
    /// trial counts as failed: TensorBoard has no word for it).
    pub fn end_session(&self, step: u64, objective: Option<f64>, finished: bool) {
        if let Some(v) = objective.filter(|v| v.is_finite()) {
            self.tb.scalar(OBJECTIVE, step, v);
        }
        let status = if finished {
            Status::Success
        } else {
            Status::Failure
        };
        self.tb.session_end(status, step);
    }

    /// Waits for everything to be written; an I/O error on the way is reported here.
    pub fn close(self) -> Result<()> {
        let path = self.tb.path().to_path_buf();
        self.tb
            .close()
            .with_context(|| format!("the TensorBoard log {} is incomplete", path.display()))
    }
}

/// A study's TensorBoard directory: the HParams experiment, and one run per trial.
pub struct StudyBoard {
    dir: PathBuf,
}

impl StudyBoard {
    /// Writes the experiment (each searched flag's domain; the objective and validation
    /// metrics) into `dir`. A study continued later writes it again beside the first.
    pub fn create(dir: &Path, study: &str, space: &[(String, Distribution)]) -> Result<Self> {
        let info = ExperimentInfo {
            name: study.to_string(),
            description: format!("descent tune study `{study}`"),
            hparams: space
                .iter()
                .map(|(name, d)| (name.clone(), domain(d)))
                .collect(),
            metrics: [OBJECTIVE, "val/loss", "val/acc"]
                .map(String::from)
                .to_vec(),
        };
        descent_board::write_experiment(dir, &info)
            .with_context(|| format!("cannot write TensorBoard logs to {}", dir.display()))?;
        Ok(StudyBoard {
            dir: dir.to_path_buf(),
        })
    }

    /// The log of trial `number` (`trial-0007`), its session started with `params`.
    pub fn trial(&self, number: u64, params: &BTreeMap<String, ParamValue>) -> Result<Board> {
        let b = Board::create(&self.dir.join(format!("trial-{number:04}")), false)?;
        b.start_session(params);
        Ok(b)
    }
}

fn hparam(v: &ParamValue) -> HParam {
    match v {
        ParamValue::Bool(b) => HParam::Bool(*b),
        ParamValue::Int(i) => HParam::Number(*i as f64),
        ParamValue::Float(x) => HParam::Number(*x),
        ParamValue::Str(s) => HParam::Text(s.clone()),
    }
}

fn domain(d: &Distribution) -> Domain {
    match d {
        Distribution::Float { low, high, .. } => Domain::Interval(*low, *high),
        Distribution::Int { low, high, .. } => Domain::Interval(*low as f64, *high as f64),
        Distribution::Categorical { choices } => {
            Domain::Choices(choices.iter().map(hparam).collect())
        }
    }
}
