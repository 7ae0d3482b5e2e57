//! Where studies live: the [`Storage`] trait, an in-memory storage, and SQL databases
//! (SQLite, PostgreSQL) in Optuna's schema ([`SqlStorage`]).
//!
//! The trait is small and row-shaped: numbering a new trial and claiming an enqueued one
//! happen in one write transaction ([`Storage::start_trial`]); everything else writes one
//! trial's rows. Finished trials never change, so a storage may cache them.

mod memory;
mod rdb;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

pub use memory::InMemoryStorage;
pub use rdb::postgres::{redact_url, PostgresOptions};
pub use rdb::SqlStorage;

use crate::distribution::ParamValue;
use crate::error::Result;
use crate::trial::{Direction, FrozenTrial, Param, TrialState, Trials};

/// Opens the storage a URL names: `sqlite:PATH` (or Optuna's `sqlite:///PATH`),
/// `postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgres://`, or Optuna's
/// `postgresql+psycopg2://`), or `memory:` (this process only). Messages never quote a
/// password.
pub fn open(url: &str) -> Result<Arc<dyn Storage>> {
    if url == "memory:" {
        return Ok(Arc::new(InMemoryStorage::new()));
    }
    if url.starts_with("postgres") {
        return Ok(Arc::new(SqlStorage::connect_postgres(url)?));
    }
    if let Some(path) = url.strip_prefix("sqlite:") {
        // sqlite:///relative/path is Optuna's (SQLAlchemy's) spelling of a relative path,
        // sqlite:////abs/path of an absolute one.
        let path = path.strip_prefix("///").unwrap_or(path);
        if !path.is_empty() {
            return Ok(Arc::new(SqlStorage::open_sqlite(path)?));
        }
    }
    Err(crate::TuneError::InvalidValue(format!(
        "unknown storage `{}`: give sqlite:PATH (e.g. sqlite:tune.db), \
         postgresql://USER@HOST:PORT/DATABASE or memory:",
        redact_url(url)
    )))
}

/// A study as the storage lists it.
#[derive(Clone, Debug, PartialEq)]
pub struct StudyRecord {
    /// The storage's id.
    pub id: u64,
    /// Its unique name.
    pub name: String,
    /// Minimize or maximize.
    pub direction: Direction,
}

/// Keeps studies and trials; shared by threads (and, for databases, by processes).
pub trait Storage: Send + Sync {
    /// A short description for messages (`sqlite:tune.db`).
    fn describe(&self) -> String;

    /// Creates a study; fails with [`crate::TuneError::StudyExists`] if the name is taken.
    fn create_study(&self, name: &str, direction: Direction) -> Result<StudyRecord>;

    /// The study of that name, if any.
    fn find_study(&self, name: &str) -> Result<Option<StudyRecord>>;

    /// All studies.
    fn studies(&self) -> Result<Vec<StudyRecord>>;

    /// Adds a waiting trial whose parameters are fixed to `params`; returns its number.
    fn enqueue_trial(&self, study: u64, params: &BTreeMap<String, ParamValue>) -> Result<u64> {
        self.enqueue_trial_with(study, params, &BTreeMap::new())
    }

    /// [`Storage::enqueue_trial`] with system attributes (a retry's `failed_trial`).
    fn enqueue_trial_with(
        &self,
        study: u64,
        params: &BTreeMap<String, ParamValue>,
        system_attrs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<u64>;

    /// Starts a trial for `owner` (`host:pid`): claims the oldest waiting one or numbers a new
    /// one, in one transaction, recording its first heartbeat there if `heartbeat`. With
    /// `limit`, returns `None` instead when the study already has `limit` started trials,
    /// not counting retries of failed trials (a waiting retry is claimed whatever the limit:
    /// it stands in for a trial already counted).
    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
        heartbeat: bool,
    ) -> Result<Option<FrozenTrial>>;

    /// Records that a running trial is alive, by the storage's clock.
    fn heartbeat(&self, trial: u64) -> Result<()>;

    /// The ids of the study's running trials whose last heartbeat is older than `grace`, by
    /// the storage's clock (trials that never recorded one are not stale).
    fn stale_trials(&self, study: u64, grace: Duration) -> Result<Vec<u64>>;

    /// Records a parameter of a running trial.
    fn set_param(&self, trial: u64, name: &str, param: &Param) -> Result<()>;

    /// Records an intermediate value of a running trial (a later report of a step replaces it).
    fn report(&self, trial: u64, step: u64, value: f64) -> Result<()>;

    /// Sets a user attribute of a running trial.
    fn set_user_attr(&self, trial: u64, key: &str, value: &serde_json::Value) -> Result<()>;

    /// Finishes a running trial.
    fn finish_trial(
        &self,
        trial: u64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<()>;

    /// One trial.
    fn trial(&self, trial: u64) -> Result<Arc<FrozenTrial>>;

    /// Every trial of a study, by number, as one shared snapshot: a storage keeps it current
    /// at the cost of what changed since the last call, not of the study's length.
    fn trials(&self, study: u64) -> Result<Trials>;
}
