//! Typed errors of studies, search spaces and storages, and how an objective reports failure.

use std::fmt;

/// What went wrong in a study. Messages name the parameter, study or file, and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// A search-space definition that cannot be sampled (`low > high`, log with `low <= 0`, ...).
    #[error("invalid search space for `{name}`: {reason}")]
    InvalidDistribution {
        /// The parameter.
        name: String,
        /// What is wrong and how to fix it.
        reason: String,
    },
    /// A parameter suggested with another distribution than earlier in the same study.
    #[error(
        "parameter `{name}` was defined as {before} earlier in this study and is now asked \
         for as {now}; a parameter keeps its kind, scale, step and choices for the whole study \
         (its bounds may change): use a new name or a new study"
    )]
    IncompatibleDistribution {
        /// The parameter.
        name: String,
        /// The earlier definition.
        before: String,
        /// The new definition.
        now: String,
    },
    /// A value given for a parameter (enqueued or from a grid) that its distribution excludes.
    #[error("value {value} for `{name}` is not in its search space {distribution}")]
    ValueOutsideDistribution {
        /// The parameter.
        name: String,
        /// The value.
        value: String,
        /// The distribution, described.
        distribution: String,
    },
    /// No study of that name in the storage.
    #[error("no study named `{name}` in {storage}{}", known_list(.known))]
    StudyNotFound {
        /// The name asked for.
        name: String,
        /// The storage, described.
        storage: String,
        /// The studies it holds.
        known: Vec<String>,
    },
    /// A study of that name exists and the caller asked for a new one.
    #[error(
        "a study named `{name}` already exists in {storage}: load it (resume) or pick another name"
    )]
    StudyExists {
        /// The name.
        name: String,
        /// The storage, described.
        storage: String,
    },
    /// An existing study was opened with the other direction.
    #[error("study `{name}` was created to {stored} its objective, not to {asked}")]
    DirectionMismatch {
        /// The study.
        name: String,
        /// The stored direction.
        stored: crate::Direction,
        /// The direction asked for.
        asked: crate::Direction,
    },
    /// A write to a trial that already finished (told twice, reported after the end).
    #[error("trial {number} has already finished ({state}); it cannot be changed")]
    TrialFinished {
        /// The trial's number.
        number: u64,
        /// Its state.
        state: crate::TrialState,
    },
    /// The storage is held by another process beyond the busy timeout.
    #[error(
        "{storage} is locked by another process (waited {waited_ms} ms): another study or tool \
         holds a write lock; wait for it, or raise the busy timeout"
    )]
    Locked {
        /// The storage, described.
        storage: String,
        /// How long we waited.
        waited_ms: u64,
    },
    /// The storage could not be opened or read, or a write failed.
    #[error("{storage}: {what}")]
    Storage {
        /// The storage, described.
        storage: String,
        /// What failed, with the cause.
        what: String,
    },
    /// A value reported or returned is not usable (e.g. an infinite step).
    #[error("{0}")]
    InvalidValue(String),
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        " (it holds no studies)".to_string()
    } else {
        format!("; it holds: {}", known.join(", "))
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = TuneError> = std::result::Result<T, E>;

/// How an objective ends a trial without a value: pruned, failed, or stopped. Any error type
/// converts into it with `?`: a [`TuneError`] (a broken search space, a storage that fails)
/// stops the whole optimization; other errors fail just this trial.
pub enum TrialError {
    /// The trial was pruned ([`crate::Trial::should_prune`] said so).
    Pruned,
    /// The objective failed; the trial is recorded as failed and the study goes on.
    Fail(String),
    /// The search space or the storage is broken; the trial is recorded as failed (where the
    /// storage still works) and optimization stops with this error.
    Stop(TuneError),
}

impl TrialError {
    /// A failure with this message.
    pub fn msg(message: impl fmt::Display) -> Self {
        TrialError::Fail(message.to_string())
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for TrialError {
    fn from(e: E) -> Self {
        let boxed: Box<dyn std::error::Error + Send + Sync> = Box::new(e);
        match boxed.downcast::<TuneError>() {
            Ok(t) => TrialError::Stop(*t),
            Err(other) => TrialError::Fail(other.to_string()),
        }
    }
}

impl fmt::Debug for TrialError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrialError::Pruned => write!(f, "pruned"),
            TrialError::Fail(m) => write!(f, "failed: {m}"),
            TrialError::Stop(e) => write!(f, "stopped: {e}"),
        }
    }
}
