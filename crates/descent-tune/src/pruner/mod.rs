//! Pruners stop unpromising trials early from the values they report.
//!
//! A pruner answers one question, as Optuna's do: should this running trial stop now, given
//! every trial's reported values? [`crate::Trial::should_prune`] asks it after a report.

mod percentile;
mod successive_halving;

pub use percentile::PercentilePruner;
pub use successive_halving::{HyperbandPruner, SuccessiveHalvingPruner};

use crate::trial::{FrozenTrial, History};

/// Decides whether a running trial stops.
pub trait Pruner: Send + Sync {
    /// Whether `trial` (running, with its reports so far) should stop.
    fn prune(&self, history: &History, trial: &FrozenTrial) -> bool;
}

/// Never prunes.
#[derive(Clone, Copy, Debug, Default)]
pub struct NopPruner;

impl Pruner for NopPruner {
    fn prune(&self, _history: &History, _trial: &FrozenTrial) -> bool {
        false
    }
}

/// A boxed pruner is a pruner (choose one at run time).
impl<P: Pruner + ?Sized> Pruner for Box<P> {
    fn prune(&self, history: &History, trial: &FrozenTrial) -> bool {
        (**self).prune(history, trial)
    }
}
