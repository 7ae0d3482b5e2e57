//! Hyperparameter optimization for any objective: studies of define-by-run trials, samplers
//! (random, grid, TPE), pruners (median/percentile, successive halving, Hyperband) and
//! storages (in memory; SQLite and PostgreSQL in Optuna's schema), shaped after Optuna.
//!
//! ```
//! use descent_tune::{OptimizeOptions, Study, TpeSampler};
//!
//! let study = Study::builder("quadratic").sampler(TpeSampler::new(7)).build().unwrap();
//! let opts = OptimizeOptions { n_trials: Some(40), ..Default::default() };
//! study
//!     .optimize(
//!         |trial| {
//!             let x = trial.suggest_float("x", -10.0, 10.0)?;
//!             let kind = trial.suggest_categorical("kind", &["plain", "shifted"])?;
//!             let shift = if kind == "shifted" { 1.0 } else { 0.0 };
//!             Ok((x - 2.0).powi(2) + shift)
//!         },
//!         &opts,
//!     )
//!     .unwrap();
//! let best = study.best_trial().unwrap().unwrap();
//! assert!(best.value.unwrap() < 1.0);
//! ```
//!
//! References: TPE after Bergstra et al. (2011) and Watanabe (2023) with Optuna's defaults
//! and bandwidths; asynchronous successive halving after Li et al. (2020); Hyperband after
//! Li et al. (2018); the median rule after Golovin et al. (2017, Google Vizier). Storage
//! semantics (trial numbers, enqueued trials, states) follow Optuna's.

pub mod benchmarks;
mod distribution;
mod error;
pub mod importance;
mod math;
pub mod pruner;
mod rng;
pub mod sampler;
pub mod storage;
mod study;
mod trial;

pub use distribution::{Distribution, ParamValue};
pub use error::{Result, TrialError, TuneError};
pub use pruner::{HyperbandPruner, NopPruner, PercentilePruner, Pruner, SuccessiveHalvingPruner};
pub use sampler::{GridSampler, RandomSampler, Sampler, TpeConfig, TpeSampler};
pub use storage::{redact_url, InMemoryStorage, PostgresOptions, SqlStorage, Storage, StudyRecord};
pub use study::{
    trials_rows, trials_table, OptimizeOptions, OptimizeSummary, Outcome, Study, StudyBuilder,
    Trial,
};
pub use trial::{Direction, FrozenTrial, History, Param, TrialState, Trials};
