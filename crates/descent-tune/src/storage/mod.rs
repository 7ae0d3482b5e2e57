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

pub use memory::InMemoryStorage;
pub use rdb::postgres::{redact_url, PostgresOptions};
pub use rdb::SqlStorage;

use crate::distribution::ParamValue;
use crate::error::Result;
use crate::trial::{Direction, FrozenTrial, Param, TrialState};

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
    fn enqueue_trial(&self, study: u64, params: &BTreeMap<String, ParamValue>) -> Result<u64>;

    /// Starts a trial for `owner` (`host:pid`): claims the oldest waiting one or numbers a new
    /// one, in one transaction. With `limit`, returns `None` instead when the study already
    /// has `limit` trials that are not waiting.
    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
    ) -> Result<Option<FrozenTrial>>;

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

    /// Every trial of a study, by number.
    fn trials(&self, study: u64) -> Result<Vec<Arc<FrozenTrial>>>;
}
