//! Median and percentile pruning (Optuna's `MedianPruner`, `PercentilePruner`).

use super::Pruner;
use crate::error::{Result, TuneError};
use crate::trial::{Direction, FrozenTrial, History, TrialState};

/// Prunes a trial whose best value so far is worse than the given percentile of the
/// complete trials' values at the same step.
#[derive(Clone, Debug, PartialEq)]
pub struct PercentilePruner {
    percentile: f64,
    /// No pruning until this many trials are complete (5).
    pub n_startup_trials: usize,
    /// No pruning before this step (0).
    pub n_warmup_steps: u64,
    /// Check every this many steps after the warm-up (1).
    pub interval_steps: u64,
    /// No pruning at a step that fewer complete trials reported (1).
    pub n_min_trials: usize,
}

impl PercentilePruner {
    /// Prunes below the `percentile` (0-100, of the better side: 25 keeps the top quarter).
    pub fn new(percentile: f64) -> Result<Self> {
        if !(0.0..=100.0).contains(&percentile) {
            return Err(TuneError::InvalidValue(format!(
                "invalid percentile {percentile}: give a value in [0, 100]"
            )));
        }
        Ok(PercentilePruner {
            percentile,
            n_startup_trials: 5,
            n_warmup_steps: 0,
            interval_steps: 1,
            n_min_trials: 1,
        })
    }

    /// The median pruner (percentile 50).
    pub fn median() -> Self {
        Self::new(50.0).expect("50 is a percentile")
    }

    /// Sets the warm-up steps.
    pub fn warmup_steps(mut self, steps: u64) -> Self {
        self.n_warmup_steps = steps;
        self
    }

    /// Sets the startup trials.
    pub fn startup_trials(mut self, n: usize) -> Self {
        self.n_startup_trials = n;
        self
    }
}

/// numpy's `percentile` with linear interpolation, of sorted values.
pub(crate) fn percentile_of_sorted(v: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (v.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos.fract());
    if i + 1 < v.len() {
        v[i] + (v[i + 1] - v[i]) * f
    } else {
        v[i]
    }
}

impl Pruner for PercentilePruner {
    fn prune(&self, history: &History, trial: &FrozenTrial) -> bool {
        let Some((step, _)) = trial.last_step() else {
            return false;
        };
        let complete: Vec<&FrozenTrial> = history
            .with_state(TrialState::Complete)
            .map(|t| t.as_ref())
            .collect();
        if complete.is_empty() || complete.len() < self.n_startup_trials {
            return false;
        }
        if step < self.n_warmup_steps {
            return false;
        }
        // Only the first report in each interval after the warm-up is checked.
        let interval = self.interval_steps.max(1);
        if interval > 1 {
            let slot = |s: u64| (s - self.n_warmup_steps) / interval;
            let earlier_in_slot = trial
                .intermediate
                .keys()
                .any(|&s| s < step && s >= self.n_warmup_steps && slot(s) == slot(step));
            if earlier_in_slot {
                return false;
            }
        }
        let d = history.direction;
        let values = trial.intermediate.values().copied().filter(|v| !v.is_nan());
        let best = match d {
            Direction::Minimize => values.fold(f64::NAN, f64::min),
            Direction::Maximize => values.fold(f64::NAN, f64::max),
        };
        if best.is_nan() {
            return true;
        }
        let mut others: Vec<f64> = complete
            .iter()
            .filter_map(|t| t.intermediate.get(&step).copied())
            .filter(|v| !v.is_nan())
            .collect();
        if others.len() < self.n_min_trials.max(1) {
            return false;
        }
        others.sort_by(f64::total_cmp);
        match d {
            Direction::Minimize => best > percentile_of_sorted(&others, self.percentile),
            Direction::Maximize => best < percentile_of_sorted(&others, 100.0 - self.percentile),
        }
    }
}
