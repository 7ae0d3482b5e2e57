//! Training settings, with the seed's defaults, checked before any work.

use descent_data::Normalize;
use descent_nn::Loss;
use descent_optim::schedule::{PlateauConfig, ReduceOnPlateau, Schedule};
use descent_optim::{OptimError, OptimizerConfig, ParamGroup, SgdConfig};

use crate::TrainError;

/// How a model is trained (the model itself is built by the caller). `TrainConfig::default()`
/// is the seed's program: SGD lr 0.01, batch 64, shuffled, 10 epochs, seed 0. It serializes
/// (run directories record it as JSON); settings left out of a file keep their defaults.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// The loss (cross-entropy by default).
    pub loss: Loss,
    /// L1 penalty: `l1 * sign(w)` is added to the gradient of every weight matrix (not the
    /// biases); the reported loss is the data loss.
    pub l1: f32,
    /// The optimizer and its hyperparameters (`Gd` takes one step per pass over the data).
    pub optimizer: OptimizerConfig,
    /// Tensors with their own learning rate or weight decay (e.g. biases without decay).
    pub groups: Vec<ParamGroup>,
    /// Learning-rate schedule, a function of the optimizer step.
    pub schedule: Schedule,
    /// Lower the rate when the epoch's training loss stops improving (in place of
    /// `schedule`, which must then be constant).
    pub plateau: Option<PlateauConfig>,
    /// Clip the gradients' global L2 norm to this before each step.
    pub clip_norm: Option<f32>,
    /// Clamp every gradient to [-v, v] before each step.
    pub clip_value: Option<f32>,
    /// Stop with an error when the gradient norm is NaN or infinite (needs `clip_norm`).
    pub clip_error_nonfinite: bool,
    /// Full-batch GD only: stop once the gradient's norm falls below this.
    pub grad_tol: Option<f32>,
    /// Stop after this many optimizer steps (mid-epoch if need be).
    pub max_steps: Option<u64>,
    /// Stop after the first epoch whose mean training loss is at or below this.
    pub target_loss: Option<f64>,
    /// Stop when a metric stops improving, and keep the best epoch's weights.
    pub early_stop: Option<EarlyStop>,
    /// With a validation set: evaluate the test set once, at the end, not after every epoch.
    pub val_only: bool,
    /// Examples per batch (for GD, per chunk of the full-set gradient).
    pub batch_size: usize,
    /// Passes over the training set.
    pub epochs: usize,
    /// Seed of the initial weights and of the shuffles.
    pub seed: u64,
    /// Threads for the engine (0 = all cores).
    pub threads: usize,
    /// Print the mean loss every this many batches (0 = never).
    pub log_every: usize,
    /// Shuffle every epoch (else file order).
    pub shuffle: bool,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    /// Input normalization.
    pub normalize: Normalize,
    /// Rows per evaluation batch.
    pub eval_batch: usize,
    /// Batches whose gradients are summed into one optimizer step: the update of one batch
    /// `grad_accum` times as large (1: a step per batch).
    pub grad_accum: usize,
    /// Rows per forward and backward pass: a batch of more rows runs in chunks of this
    /// many, their gradients summed into the batch's (the same update up to the order of the
    /// sums; see `descent_nn::Model::train_step_grads`). 0 (the default) chooses: chunks
    /// whose activations fit in [`crate::CHUNK_BYTES`] where the batch's would not and the
    /// model and loss allow it (no BatchNorm, no class weights), and the gradient is kept
    /// anyway (not plain SGD fused into the backward pass); else the whole batch.
    pub micro_batch: usize,
    /// Evaluate the validation set (else the test set) every this many optimizer steps, as
    /// well as after each epoch (`None`: after each epoch only).
    pub eval_every: Option<u64>,
    /// Activation recomputation: each residual block keeps its output only and runs its body
    /// again in the backward pass (less memory, about one more forward pass of compute; the
    /// same gradients).
    pub recompute: bool,
    /// Mixed precision: matrix products take bf16 inputs and sum in f32 (see
    /// `descent_nn::Model::set_precision`); weights, gradients and optimizer state stay f32.
    pub bf16: bool,
    /// Augmentation of the training pictures (none by default); evaluation sees them as they
    /// are.
    pub augment: Option<descent_data::Augment>,
    /// Who prepares the training batches.
    pub loader: Loader,
    /// What a loss far above its start does (the rule of `trainer::diverge`).
    pub divergence: Divergence,
}

/// What happens when the training loss rises far above its start and stays there (the median
/// of the last 10 batches above 1000 times the first batch's).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Divergence {
    /// Stop with [`TrainError::LossRose`].
    #[default]
    Stop,
    /// Report it once ([`crate::Event::Diverging`]) and go on.
    Warn,
    /// Do not watch (a NaN or infinite loss still stops the run).
    Off,
}

/// Who prepares the training batches: a background thread while the engine computes, or the
/// engine's own threads between steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Loader {
    /// A background thread for a streamed set or when a core is left over for it; the
    /// engine's threads otherwise (on a machine whose every core runs the engine, a loader
    /// thread takes more from it than copying a batch costs: docs/data.md).
    #[default]
    Auto,
    /// Always a background thread (at most 3 batches ahead).
    Background,
    /// Always the engine's threads.
    Inline,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            divergence: Divergence::Stop,
            loss: Loss::default(),
            l1: 0.0,
            optimizer: OptimizerConfig::Sgd(SgdConfig::default()),
            groups: Vec::new(),
            schedule: Schedule::Constant,
            plateau: None,
            clip_norm: None,
            clip_value: None,
            clip_error_nonfinite: false,
            grad_tol: None,
            max_steps: None,
            target_loss: None,
            early_stop: None,
            val_only: false,
            batch_size: 64,
            epochs: 10,
            seed: 0,
            threads: 0,
            log_every: 100,
            shuffle: true,
            drop_last: false,
            normalize: Normalize::default(),
            eval_batch: 1000,
            grad_accum: 1,
            micro_batch: 0,
            eval_every: None,
            recompute: false,
            bf16: false,
            augment: None,
            loader: Loader::Auto,
        }
    }
}

/// A metric the loop can watch (early stopping, reduce-on-plateau).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Monitor {
    /// Mean loss on the validation set (lower is better).
    ValLoss,
    /// Accuracy on the validation set (higher is better).
    ValAcc,
    /// Mean training loss of the epoch (lower is better).
    TrainLoss,
}

impl Monitor {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::ValLoss => "val_loss",
            Self::ValAcc => "val_acc",
            Self::TrainLoss => "train_loss",
        }
    }

    /// Whether larger values are better.
    pub fn higher_is_better(self) -> bool {
        matches!(self, Self::ValAcc)
    }

    /// Whether it needs a validation set.
    pub fn needs_validation(self) -> bool {
        !matches!(self, Self::TrainLoss)
    }
}

/// Early stopping: stop when `monitor` has not improved by more than `min_delta` for
/// `patience` epochs, and restore the weights of the best epoch.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct EarlyStop {
    /// The metric watched.
    pub monitor: Monitor,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
}

fn bad(name: impl Into<String>, value: impl ToString, why: impl Into<String>) -> TrainError {
    TrainError::Setting {
        name: name.into(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// An optimizer or schedule error, as a setting error naming the hyperparameter.
pub(crate) fn setting_error(e: OptimError) -> TrainError {
    match e {
        OptimError::InvalidHyperparameter { name, value, why } => bad(name, value, why),
        other => TrainError::Optim(other),
    }
}

impl TrainConfig {
    /// Whether something must see the whole gradient between the backward pass and the
    /// update (clipping, L1, accumulation, the full-batch sum): then plain SGD cannot be
    /// applied inside the backward pass.
    pub fn grads_between(&self) -> bool {
        self.full_batch()
            || self.clip_norm.is_some()
            || self.clip_value.is_some()
            || self.l1 > 0.0
            || self.grad_accum > 1
            || self.splits_batches()
    }

    /// Whether `micro_batch` asks for batches in chunks of fewer rows than `batch_size`.
    pub fn splits_batches(&self) -> bool {
        self.micro_batch > 0 && self.micro_batch < self.batch_size
    }

    /// The learning rate the optimizer starts from.
    pub fn lr(&self) -> f32 {
        self.optimizer.lr()
    }

    /// True for full-batch gradient descent.
    pub fn full_batch(&self) -> bool {
        matches!(self.optimizer, OptimizerConfig::Gd(_))
    }

    /// Refuses settings that cannot train, naming the setting to fix.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.optimizer.validate().map_err(setting_error)?;
        self.schedule.validate().map_err(setting_error)?;
        if let Some(p) = self.plateau {
            if self.schedule != Schedule::Constant {
                return Err(bad(
                    "schedule",
                    "plateau",
                    "reduce-on-plateau sets the rate itself: it does not combine with another schedule",
                ));
            }
            ReduceOnPlateau::new(p, self.lr() as f64).map_err(setting_error)?;
        }
        if self.schedule.cycles_momentum() && self.optimizer.momentum().is_none() {
            return Err(bad(
                "schedule",
                "onecycle",
                format!(
                    "{} has no momentum or beta1 to cycle; turn the cycling off (`no_cycle_momentum`)",
                    self.optimizer.name()
                ),
            ));
        }
        for (name, v) in [
            ("clip_norm", self.clip_norm),
            ("clip_value", self.clip_value),
        ] {
            if let Some(v) = v {
                if !(v.is_finite() && v > 0.0) {
                    return Err(bad(name, v, "clip to a finite number > 0"));
                }
            }
        }
        if self.grad_accum == 0 {
            return Err(bad(
                "grad_accum",
                0,
                "sum the gradients of 1 or more batches per step",
            ));
        }
        if self.grad_accum > 1 && self.full_batch() {
            return Err(bad(
                "grad_accum",
                self.grad_accum,
                "full-batch descent already sums every batch into its one step",
            ));
        }
        if self.eval_every == Some(0) {
            return Err(bad("eval_every", 0, "evaluate every 1 or more steps"));
        }
        if self.clip_error_nonfinite && self.clip_norm.is_none() {
            return Err(bad(
                "clip_error_nonfinite",
                "",
                "it checks the norm that `clip_norm` measures: set `clip_norm`",
            ));
        }
        if let Some(t) = self.grad_tol {
            if !self.full_batch() {
                return Err(bad(
                    "grad_tol",
                    t,
                    "the gradient-norm stop is for full-batch descent (`optimizer` gd)",
                ));
            }
            if !(t.is_finite() && t > 0.0) {
                return Err(bad("grad_tol", t, "it must be a finite number > 0"));
            }
        }
        if !(self.l1.is_finite() && self.l1 >= 0.0) {
            return Err(bad("l1", self.l1, "it must be a finite number >= 0"));
        }
        if self.max_steps == Some(0) {
            return Err(bad("max_steps", 0, "take at least 1 step"));
        }
        if let Some(t) = self.target_loss {
            if !(t.is_finite() && t >= 0.0) {
                return Err(bad("target_loss", t, "it must be a finite number >= 0"));
            }
        }
        if let Some(e) = self.early_stop {
            if !(e.min_delta.is_finite() && e.min_delta >= 0.0) {
                return Err(bad(
                    "early_stop.min_delta",
                    e.min_delta,
                    "it must be a finite number >= 0",
                ));
            }
        }
        if self.batch_size == 0 {
            return Err(bad("batch_size", 0, "a batch needs at least 1 example"));
        }
        if self.epochs == 0 {
            return Err(bad("epochs", 0, "train for at least 1 epoch"));
        }
        if !(self.normalize.std.is_finite()
            && self.normalize.std > 0.0
            && self.normalize.mean.is_finite())
        {
            return Err(bad(
                "normalize.std",
                self.normalize.std,
                "the normalization std must be a finite number > 0",
            ));
        }
        if self.eval_batch == 0 {
            return Err(bad(
                "eval_batch",
                0,
                "evaluate at least 1 example at a time",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use descent_optim::{AdamConfig, HyperValue};

    #[test]
    fn the_default_is_the_seed_and_valid() {
        let c = TrainConfig::default();
        assert_eq!((c.lr(), c.batch_size, c.epochs, c.seed), (0.01, 64, 10, 0));
        assert_eq!(c.optimizer.name(), "sgd");
        c.validate().unwrap();
    }

    fn with(name: &str, key: &str, v: HyperValue) -> TrainConfig {
        let mut optimizer = OptimizerConfig::default_for(name).unwrap();
        optimizer.set(key, v).unwrap();
        TrainConfig {
            optimizer,
            ..TrainConfig::default()
        }
    }

    /// The seed's configuration and a busy one go to JSON and back unchanged.
    #[test]
    fn configs_round_trip_through_json() {
        let busy = TrainConfig {
            optimizer: OptimizerConfig::default_for("adamw").unwrap(),
            schedule: Schedule::warmup_then(100, Schedule::one_cycle(1000)),
            early_stop: Some(EarlyStop {
                monitor: Monitor::ValAcc,
                patience: 3,
                min_delta: 0.01,
            }),
            loss: descent_nn::Loss::CrossEntropy {
                label_smoothing: 0.1,
                weights: None,
            },
            clip_norm: Some(1.0),
            groups: vec![ParamGroup {
                params: vec!["fc1.bias".into()],
                lr: None,
                weight_decay: Some(0.0),
            }],
            ..TrainConfig::default()
        };
        for c in [TrainConfig::default(), busy] {
            let text = serde_json::to_string(&c).unwrap();
            let back: TrainConfig = serde_json::from_str(&text).unwrap();
            assert_eq!(back, c, "{text}");
        }
        let partial: TrainConfig = serde_json::from_str(r#"{"epochs": 3}"#).unwrap();
        assert_eq!(partial.epochs, 3);
        assert_eq!(partial.batch_size, 64);
        assert!(serde_json::from_str::<TrainConfig>(r#"{"epoch": 3}"#).is_err());
    }

    #[test]
    fn each_bad_setting_names_its_setting() {
        use HyperValue::Num;
        let cases: Vec<(TrainConfig, &str)> = vec![
            (with("sgd", "lr", Num(0.0)), "lr"),
            (with("sgd", "lr", Num(-1.0)), "lr"),
            (with("sgd", "lr", Num(f64::NAN)), "lr"),
            (with("sgd", "lr", Num(f64::INFINITY)), "lr"),
            (with("sgd", "momentum", Num(-0.5)), "momentum"),
            (with("adam", "beta1", Num(1.0)), "beta1"),
            (with("adamw", "weight_decay", Num(-1.0)), "weight_decay"),
            (
                TrainConfig {
                    schedule: Schedule::Step {
                        step_size: 0,
                        gamma: 0.1,
                    },
                    ..TrainConfig::default()
                },
                "step_size",
            ),
            (
                TrainConfig {
                    grad_tol: Some(1e-3),
                    ..TrainConfig::default()
                },
                "grad_tol",
            ),
            (
                TrainConfig {
                    clip_norm: Some(0.0),
                    ..TrainConfig::default()
                },
                "clip_norm",
            ),
            (
                TrainConfig {
                    schedule: Schedule::one_cycle(100),
                    optimizer: OptimizerConfig::default_for("adagrad").unwrap(),
                    ..TrainConfig::default()
                },
                "schedule",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..TrainConfig::default()
                },
                "batch_size",
            ),
            (
                TrainConfig {
                    epochs: 0,
                    ..TrainConfig::default()
                },
                "epochs",
            ),
        ];
        for (c, flag) in cases {
            let e = c.validate().unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("invalid {flag} ")),
                "{flag}: {e}"
            );
        }
        let nesterov = TrainConfig {
            optimizer: OptimizerConfig::Sgd(SgdConfig {
                nesterov: true,
                ..SgdConfig::default()
            }),
            ..TrainConfig::default()
        };
        let e = nesterov.validate().unwrap_err().to_string();
        assert!(e.contains("nesterov needs momentum > 0"), "{e}");
        let adam = TrainConfig {
            optimizer: OptimizerConfig::Adam(AdamConfig::default()),
            ..TrainConfig::default()
        };
        assert_eq!(adam.lr(), 1e-3);
    }
}
