//! Training settings, with the seed's defaults, checked before any work.

use descent_data::Normalize;
use descent_nn::Activation;

use crate::TrainError;

/// Optimizers the training loop can build.
pub const OPTIMIZERS: &[&str] = &["sgd"];

/// Everything a training run depends on. `TrainConfig::default()` is the seed's program:
/// MLP 784-512-10 with ReLU, SGD lr 0.01, batch 64, shuffled, 10 epochs, seed 0.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Hidden layer sizes (`[512]`; `[256, 128]` for a deeper MLP).
    pub hidden: Vec<usize>,
    /// Activation after each hidden layer.
    pub activation: Activation,
    /// Optimizer name (see [`OPTIMIZERS`]).
    pub optimizer: String,
    /// Learning rate.
    pub lr: f32,
    /// SGD momentum.
    pub momentum: f32,
    /// Examples per batch.
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
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            hidden: vec![512],
            activation: Activation::Relu,
            optimizer: "sgd".into(),
            lr: 0.01,
            momentum: 0.0,
            batch_size: 64,
            epochs: 10,
            seed: 0,
            threads: 0,
            log_every: 100,
            shuffle: true,
            drop_last: false,
            normalize: Normalize::default(),
            eval_batch: 1000,
        }
    }
}

fn bad(flag: &'static str, value: impl ToString, why: impl Into<String>) -> TrainError {
    TrainError::Config {
        flag,
        value: value.to_string(),
        why: why.into(),
    }
}

impl TrainConfig {
    /// Refuses settings that cannot train, naming the flag to fix.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad(
                "--lr",
                self.lr,
                "the learning rate must be a finite number > 0, e.g. 0.01",
            ));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(bad(
                "--momentum",
                self.momentum,
                "momentum must be in [0, 1)",
            ));
        }
        if self.batch_size == 0 {
            return Err(bad("--batch-size", 0, "a batch needs at least 1 example"));
        }
        if self.epochs == 0 {
            return Err(bad("--epochs", 0, "train for at least 1 epoch"));
        }
        if self.hidden.contains(&0) {
            let list = self
                .hidden
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(",");
            return Err(bad(
                "--hidden",
                list,
                "every hidden layer needs at least 1 unit (e.g. 512 or 256,128)",
            ));
        }
        if !OPTIMIZERS.contains(&self.optimizer.as_str()) {
            return Err(bad(
                "--optimizer",
                &self.optimizer,
                format!("known optimizers: {}", OPTIMIZERS.join(", ")),
            ));
        }
        if !(self.normalize.std.is_finite()
            && self.normalize.std > 0.0
            && self.normalize.mean.is_finite())
        {
            return Err(bad(
                "--std",
                self.normalize.std,
                "the normalization std must be a finite number > 0",
            ));
        }
        if self.eval_batch == 0 {
            return Err(bad(
                "--eval-batch",
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

    #[test]
    fn the_default_is_the_seed_and_valid() {
        let c = TrainConfig::default();
        assert_eq!(
            (c.hidden.as_slice(), c.lr, c.batch_size, c.epochs, c.seed),
            (&[512][..], 0.01, 64, 10, 0)
        );
        c.validate().unwrap();
    }

    #[test]
    fn each_bad_setting_names_its_flag() {
        let cases: Vec<(TrainConfig, &str)> = vec![
            (
                TrainConfig {
                    lr: 0.0,
                    ..TrainConfig::default()
                },
                "--lr",
            ),
            (
                TrainConfig {
                    lr: -1.0,
                    ..TrainConfig::default()
                },
                "--lr",
            ),
            (
                TrainConfig {
                    lr: f32::NAN,
                    ..TrainConfig::default()
                },
                "--lr",
            ),
            (
                TrainConfig {
                    lr: f32::INFINITY,
                    ..TrainConfig::default()
                },
                "--lr",
            ),
            (
                TrainConfig {
                    batch_size: 0,
                    ..TrainConfig::default()
                },
                "--batch-size",
            ),
            (
                TrainConfig {
                    epochs: 0,
                    ..TrainConfig::default()
                },
                "--epochs",
            ),
            (
                TrainConfig {
                    hidden: vec![256, 0],
                    ..TrainConfig::default()
                },
                "--hidden",
            ),
            (
                TrainConfig {
                    optimizer: "adamw2".into(),
                    ..TrainConfig::default()
                },
                "--optimizer",
            ),
            (
                TrainConfig {
                    momentum: 1.0,
                    ..TrainConfig::default()
                },
                "--momentum",
            ),
        ];
        for (c, flag) in cases {
            let e = c.validate().unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("invalid {flag} ")),
                "{e}"
            );
        }
    }
}
