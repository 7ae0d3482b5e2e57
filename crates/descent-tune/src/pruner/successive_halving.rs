//! Asynchronous successive halving (Li et al. 2020, "A System for Massively Parallel
//! Hyperparameter Tuning") and Hyperband (Li et al. 2018), as Optuna runs them.
//!
//! Rung `r` sits at step `min_resource * factor^(min_early_stopping_rate + r)`. When a
//! trial first reports at or past a rung, it competes with every trial that reached that
//! rung (in any state): it goes on only if its value there is in the best `1/factor` of
//! them (the first trial at a rung always goes on). A trial's value at a rung is the value
//! it reported at the first step at or past the rung.

use super::Pruner;
use crate::error::{Result, TuneError};
use crate::rng::mix;
use crate::trial::{Direction, FrozenTrial, History};

/// Successive halving.
#[derive(Clone, Debug, PartialEq)]
pub struct SuccessiveHalvingPruner {
    min_resource: u64,
    reduction_factor: u64,
    min_early_stopping_rate: u32,
}

impl SuccessiveHalvingPruner {
    /// Rungs at `min_resource * reduction_factor^(min_early_stopping_rate + r)`; Optuna's
    /// defaults are 1 (it can also guess), 4 and 0.
    pub fn new(
        min_resource: u64,
        reduction_factor: u64,
        min_early_stopping_rate: u32,
    ) -> Result<Self> {
        if min_resource < 1 {
            return Err(TuneError::InvalidValue(
                "successive halving: min_resource must be >= 1".into(),
            ));
        }
        if reduction_factor < 2 {
            return Err(TuneError::InvalidValue(
                "successive halving: reduction_factor must be >= 2".into(),
            ));
        }
        Ok(SuccessiveHalvingPruner {
            min_resource,
            reduction_factor,
            min_early_stopping_rate,
        })
    }

    fn rung_step(&self, rung: u32) -> u64 {
        self.min_resource.saturating_mul(
            self.reduction_factor
                .saturating_pow(self.min_early_stopping_rate + rung),
        )
    }

    /// The decision, among the trials `competes` accepts.
    fn prune_among(
        &self,
        history: &History,
        trial: &FrozenTrial,
        competes: impl Fn(&FrozenTrial) -> bool,
    ) -> bool {
        let Some((step, value)) = trial.last_step() else {
            return false;
        };
        let d = history.direction;
        for rung in 0.. {
            let at = self.rung_step(rung);
            if step < at {
                return false;
            }
            // Only the report that first reaches the rung is judged at it.
            let first_at_rung = trial.intermediate.range(at..).next().map(|(s, _)| *s);
            if first_at_rung != Some(step) {
                continue;
            }
            if value.is_nan() {
                return true;
            }
            let mut competing: Vec<f64> = history
                .trials
                .iter()
                .filter(|t| t.id != trial.id && competes(t))
                .filter_map(|t| t.intermediate.range(at..).next().map(|(_, v)| *v))
                .filter(|v| !v.is_nan())
                .collect();
            competing.push(value);
            competing.sort_by(f64::total_cmp);
            let k = (competing.len() / self.reduction_factor as usize).max(1) - 1;
            let keep = match d {
                Direction::Minimize => value <= competing[k],
                Direction::Maximize => value >= competing[competing.len() - 1 - k],
            };
            if !keep {
                return true;
            }
            if at == u64::MAX {
                return false;
            }
        }
        false
    }
}

impl Pruner for SuccessiveHalvingPruner {
    fn prune(&self, history: &History, trial: &FrozenTrial) -> bool {
        self.prune_among(history, trial, |_| true)
    }
}

/// Hyperband: several successive-halving brackets with different early-stopping rates;
/// each trial joins one bracket (by its number, brackets sized by their budgets, as Optuna)
/// and competes only within it.
#[derive(Clone, Debug, PartialEq)]
pub struct HyperbandPruner {
    brackets: Vec<SuccessiveHalvingPruner>,
    budgets: Vec<u64>,
}

impl HyperbandPruner {
    /// Brackets for steps from `min_resource` to `max_resource` (Optuna: 1, the number of
    /// steps, 3).
    pub fn new(min_resource: u64, max_resource: u64, reduction_factor: u64) -> Result<Self> {
        if max_resource < min_resource.max(1) {
            return Err(TuneError::InvalidValue(format!(
                "hyperband: max_resource {max_resource} must be >= min_resource {min_resource}"
            )));
        }
        if reduction_factor < 2 {
            return Err(TuneError::InvalidValue(
                "hyperband: reduction_factor must be >= 2".into(),
            ));
        }
        let ratio = max_resource as f64 / min_resource.max(1) as f64;
        let n = (ratio.ln() / (reduction_factor as f64).ln() + 1e-9).floor() as u32 + 1;
        let mut brackets = Vec::new();
        let mut budgets = Vec::new();
        for i in 0..n {
            brackets.push(SuccessiveHalvingPruner::new(
                min_resource.max(1),
                reduction_factor,
                i,
            )?);
            let s = n - 1 - i;
            budgets.push(
                ((n as f64) * (reduction_factor as f64).powi(s as i32) / (s as f64 + 1.0)).ceil()
                    as u64,
            );
        }
        Ok(HyperbandPruner { brackets, budgets })
    }

    /// The number of brackets.
    pub fn n_brackets(&self) -> usize {
        self.brackets.len()
    }

    /// The bracket of trial `number`.
    pub fn bracket(&self, number: u64) -> usize {
        let total: u64 = self.budgets.iter().sum();
        let mut h = mix(number) % total;
        for (i, b) in self.budgets.iter().enumerate() {
            if h < *b {
                return i;
            }
            h -= b;
        }
        self.budgets.len() - 1
    }
}

impl Pruner for HyperbandPruner {
    fn prune(&self, history: &History, trial: &FrozenTrial) -> bool {
        let b = self.bracket(trial.number);
        self.brackets[b].prune_among(history, trial, |t| self.bracket(t.number) == b)
    }
}
