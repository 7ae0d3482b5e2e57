//! Samplers choose parameter values from the trials so far.
//!
//! A sampler answers two questions, as Optuna's do: before the objective runs, which values
//! to draw jointly for the parameters every finished trial shares ([`Sampler::sample_relative`],
//! used by multivariate TPE), and, when the objective asks for a parameter, which value to
//! give it ([`Sampler::sample_independent`]). Randomness comes from the seed, the trial's
//! number and the parameter's name, so a study replays identically whichever thread or
//! process runs each trial.

mod grid;
mod random;
mod tpe;

use std::collections::BTreeMap;

pub use grid::GridSampler;
pub use random::RandomSampler;
pub use tpe::{TpeConfig, TpeSampler};

use crate::distribution::Distribution;
use crate::error::Result;
use crate::trial::{History, Param};

/// Chooses parameter values.
pub trait Sampler: Send + Sync {
    /// Values for several parameters drawn jointly, before the objective runs (by default
    /// none: every parameter is sampled independently).
    fn sample_relative(&self, _history: &History, _number: u64) -> BTreeMap<String, Param> {
        BTreeMap::new()
    }

    /// The internal value of parameter `name` of trial `number`.
    fn sample_independent(
        &self,
        history: &History,
        number: u64,
        name: &str,
        distribution: &Distribution,
    ) -> Result<f64>;

    /// How many trials the sampler can give before repeating itself (a grid's size).
    fn max_trials(&self) -> Option<u64> {
        None
    }
}

/// A boxed sampler is a sampler (choose one at run time).
impl<S: Sampler + ?Sized> Sampler for Box<S> {
    fn sample_relative(&self, history: &History, number: u64) -> BTreeMap<String, Param> {
        (**self).sample_relative(history, number)
    }

    fn sample_independent(
        &self,
        history: &History,
        number: u64,
        name: &str,
        distribution: &Distribution,
    ) -> Result<f64> {
        (**self).sample_independent(history, number, name, distribution)
    }

    fn max_trials(&self) -> Option<u64> {
        (**self).max_trials()
    }
}
