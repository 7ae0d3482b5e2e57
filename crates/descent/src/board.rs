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

use std::path::Path;

use anyhow::{Context, Result};
use descent_board::SummaryWriter;
use descent_train::Event;

/// A run's TensorBoard log.
pub struct Board {
    tb: SummaryWriter,
    /// Accuracy means nothing for a regression: left out.
    regression: bool,
}

impl Board {
    /// Starts a log in `dir` (created if missing; a resumed run adds a file beside the first).
    pub fn create(dir: &Path, regression: bool) -> Result<Self> {
        let tb = SummaryWriter::create(dir)
            .with_context(|| format!("cannot write TensorBoard logs to {}", dir.display()))?;
        Ok(Board { tb, regression })
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
                if let Some(v) = &r.val {
                    self.eval("val", s, v.loss, v.acc);
                }
                if let (Some(loss), Some(acc)) = (r.test_loss, r.test_acc) {
                    self.eval("test", s, loss, acc);
                }
            }
            Event::StepEval { step, eval, .. } => self.eval("val", *step, eval.loss, eval.acc),
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

    /// Waits for everything to be written; an I/O error on the way is reported here.
    pub fn close(self) -> Result<()> {
        let path = self.tb.path().to_path_buf();
        self.tb
            .close()
            .with_context(|| format!("the TensorBoard log {} is incomplete", path.display()))
    }
}
