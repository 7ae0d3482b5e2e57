//! Trials as stored: state, parameters, intermediate values, attributes.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};

use crate::distribution::{Distribution, ParamValue};

/// The system attribute naming the failed trial that a retry repeats (Optuna's key).
pub const FAILED_TRIAL: &str = "failed_trial";
/// The system attribute listing the failed trials a retry descends from (Optuna's key).
pub const RETRY_HISTORY: &str = "retry_history";

/// Whether the objective is minimized or maximized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smaller is better.
    Minimize,
    /// Larger is better.
    Maximize,
}

impl Direction {
    /// Whether `a` is better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }

    /// `value` as a loss: itself when minimizing, negated when maximizing.
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Minimize => "minimize",
            Direction::Maximize => "maximize",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "minimize" => Some(Direction::Minimize),
            "maximize" => Some(Direction::Maximize),
            _ => None,
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a trial is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Enqueued with fixed parameters, not started.
    Waiting,
    /// Being evaluated.
    Running,
    /// Finished with a value.
    Complete,
    /// Stopped early by a pruner.
    Pruned,
    /// The objective failed, panicked, returned NaN or was interrupted.
    Fail,
}

impl TrialState {
    /// Complete, pruned or failed.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialState::Complete | TrialState::Pruned | TrialState::Fail
        )
    }

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TrialState::Waiting => "waiting",
            TrialState::Running => "running",
            TrialState::Complete => "complete",
            TrialState::Pruned => "pruned",
            TrialState::Fail => "fail",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "waiting" => TrialState::Waiting,
            "running" => TrialState::Running,
            "complete" => TrialState::Complete,
            "pruned" => TrialState::Pruned,
            "fail" => TrialState::Fail,
            _ => return None,
        })
    }
}

impl fmt::Display for TrialState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One parameter of a trial: its distribution and internal value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Param {
    /// Where it was drawn from.
    pub distribution: Distribution,
    /// The internal value (the index for categoricals).
    pub internal: f64,
}

impl Param {
    /// The value the objective saw.
    pub fn value(&self) -> ParamValue {
        self.distribution.to_external(self.internal)
    }
}

/// A trial as stored: a snapshot that does not change once the trial has finished.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct FrozenTrial {
    /// The storage's id.
    pub id: u64,
    /// The trial's number in its study, from 0, unique.
    pub number: u64,
    /// Its state.
    pub state: TrialState,
    /// The objective's value (complete trials; pruned trials carry their last reported value).
    pub value: Option<f64>,
    /// Parameters by name.
    pub params: BTreeMap<String, Param>,
    /// Values reported with [`crate::Trial::report`], by step.
    pub intermediate: BTreeMap<u64, f64>,
    /// Attributes set by the objective.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Parameters fixed by [`crate::Study::enqueue`].
    pub fixed: BTreeMap<String, ParamValue>,
    /// Why it failed, for failed trials.
    pub message: Option<String>,
    /// Unix time it started (seconds).
    pub started: Option<f64>,
    /// Unix time it finished (seconds).
    pub finished: Option<f64>,
    /// Who runs it: `host:pid` of the process that started it.
    #[serde(default)]
    pub owner: Option<String>,
    /// Attributes of the study's machinery rather than the user's: `failed_trial` (the number
    /// of the failed trial a retry repeats) and `retry_history` (the numbers it descends
    /// from), as Optuna's `RetryFailedTrialCallback` writes them, and any other an Optuna
    /// worker sets.
    #[serde(default)]
    pub system_attrs: BTreeMap<String, serde_json::Value>,
}

impl FrozenTrial {
    /// A new trial in `state` with nothing recorded yet.
    pub fn new(id: u64, number: u64, state: TrialState) -> Self {
        FrozenTrial {
            id,
            number,
            state,
            value: None,
            params: BTreeMap::new(),
            intermediate: BTreeMap::new(),
            user_attrs: BTreeMap::new(),
            fixed: BTreeMap::new(),
            message: None,
            started: None,
            finished: None,
            owner: None,
            system_attrs: BTreeMap::new(),
        }
    }

    /// The value of parameter `name`, as the objective saw it.
    pub fn param(&self, name: &str) -> Option<ParamValue> {
        self.params.get(name).map(Param::value)
    }

    /// The last reported step and its value.
    pub fn last_step(&self) -> Option<(u64, f64)> {
        self.intermediate.iter().next_back().map(|(s, v)| (*s, *v))
    }

    /// The number of the failed trial this one retries, if it is a retry.
    pub fn retried_trial(&self) -> Option<u64> {
        self.system_attrs.get(FAILED_TRIAL)?.as_u64()
    }

    /// The numbers of the failed trials this retry descends from, oldest first.
    pub fn retry_history(&self) -> Vec<u64> {
        self.system_attrs
            .get(RETRY_HISTORY)
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_u64()).collect())
            .unwrap_or_default()
    }

    /// Seconds from start to finish.
    pub fn duration(&self) -> Option<f64> {
        Some(self.finished? - self.started?)
    }
}

/// A snapshot of a study's trials, by number. Shared, so that handing it to a sampler costs
/// nothing however long the study; a storage updates its copy in place when no one else holds
/// it (`Arc::make_mut`), so keeping it current costs what changed, not the study's length.
pub type Trials = Arc<Vec<Arc<FrozenTrial>>>;

/// The trials of a study as one sampler call or pruner call sees them.
#[derive(Debug)]
pub struct History {
    /// Every trial, by number.
    pub trials: Trials,
    /// The study's direction.
    pub direction: Direction,
    ranked: OnceLock<Vec<usize>>,
}

impl History {
    /// A snapshot of `trials` (ordered by number).
    pub fn new(trials: impl Into<Trials>, direction: Direction) -> Self {
        History {
            trials: trials.into(),
            direction,
            ranked: OnceLock::new(),
        }
    }

    /// Indices into [`History::trials`] of the complete and pruned trials, best first:
    /// complete trials by value, then pruned trials by how far they got (the last reported
    /// step, later first) and their last value there, as Optuna's TPE ranks them. Computed
    /// once per snapshot.
    pub fn ranked(&self) -> &[usize] {
        self.ranked.get_or_init(|| {
            let d = self.direction;
            let mut complete: Vec<(f64, usize)> = Vec::new();
            let mut pruned: Vec<(u64, f64, usize)> = Vec::new();
            for (i, t) in self.trials.iter().enumerate() {
                match t.state {
                    TrialState::Complete => {
                        if let Some(v) = t.value.filter(|v| !v.is_nan()) {
                            complete.push((d.loss(v), i));
                        }
                    }
                    TrialState::Pruned => {
                        let (step, v) = t.last_step().unwrap_or((0, f64::NAN));
                        let loss = if v.is_nan() { f64::INFINITY } else { d.loss(v) };
                        pruned.push((step, loss, i));
                    }
                    _ => {}
                }
            }
            complete.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            pruned.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.total_cmp(&b.1)).then(a.2.cmp(&b.2)));
            complete
                .into_iter()
                .map(|c| c.1)
                .chain(pruned.into_iter().map(|p| p.2))
                .collect()
        })
    }

    /// Trials in `state`.
    pub fn with_state(&self, state: TrialState) -> impl Iterator<Item = &Arc<FrozenTrial>> {
        self.trials.iter().filter(move |t| t.state == state)
    }

    /// The best complete trial (the first of equals).
    pub fn best(&self) -> Option<&Arc<FrozenTrial>> {
        let mut best: Option<&Arc<FrozenTrial>> = None;
        for t in self.with_state(TrialState::Complete) {
            let v = t.value.unwrap_or(f64::NAN);
            if v.is_nan() {
                continue;
            }
            if best.is_none_or(|b| self.direction.better(v, b.value.unwrap_or(f64::NAN))) {
                best = Some(t);
            }
        }
        best
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
