//! Studies in one SQLite file, shared safely by threads and by processes on one machine.
//!
//! The file runs in WAL mode (readers never block the writer) with a busy timeout (a writer
//! waits for another instead of failing). Every change is one transaction; starting a trial
//! (counting, claiming an enqueued trial or numbering a new one) takes the write lock first
//! (`BEGIN IMMEDIATE`), so two processes can never get the same number. Finished trials never
//! change, so they are read once and cached.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, ErrorCode, OptionalExtension, TransactionBehavior};

use super::{Storage, StudyRecord};
use crate::distribution::{Distribution, ParamValue};
use crate::error::{Result, TuneError};
use crate::trial::{now, Direction, FrozenTrial, Param, TrialState};

/// The schema this build reads and writes.
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS descent_tune (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS studies (
    study_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    direction TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    trial_id INTEGER PRIMARY KEY,
    study_id INTEGER NOT NULL REFERENCES studies(study_id),
    number INTEGER NOT NULL,
    state TEXT NOT NULL,
    value REAL,
    fixed TEXT NOT NULL DEFAULT '{}',
    message TEXT,
    started REAL,
    finished REAL,
    owner TEXT,
    UNIQUE (study_id, number)
);
CREATE INDEX IF NOT EXISTS trials_by_state ON trials (study_id, state);
CREATE TABLE IF NOT EXISTS params (
    trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    name TEXT NOT NULL,
    distribution TEXT NOT NULL,
    internal REAL NOT NULL,
    PRIMARY KEY (trial_id, name)
);
CREATE TABLE IF NOT EXISTS intermediate (
    trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    step INTEGER NOT NULL,
    value REAL,
    PRIMARY KEY (trial_id, step)
);
CREATE TABLE IF NOT EXISTS user_attrs (
    trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (trial_id, key)
);
";

/// A storage in a SQLite file.
pub struct SqliteStorage {
    path: PathBuf,
    busy: Duration,
    conn: Mutex<Connection>,
    /// Finished trials by id: they never change.
    cache: Mutex<HashMap<u64, Arc<FrozenTrial>>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the study file at `path`, waiting up to 30 s for locks.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_with_timeout(path, Duration::from_secs(30))
    }

    /// Opens the study file, waiting up to `busy` for another process's lock.
    pub fn open_with_timeout(path: impl AsRef<Path>, busy: Duration) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let describe = format!("sqlite:{}", path.display());
        let fail = |what: String| TuneError::Storage {
            storage: describe.clone(),
            what,
        };
        if path.is_dir() {
            return Err(fail(
                "is a directory: give a file path such as study.db".into(),
            ));
        }
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            if !parent.is_dir() {
                return Err(fail(format!(
                    "its directory {} does not exist: create it first",
                    parent.display()
                )));
            }
        }
        let conn = Connection::open(&path).map_err(|e| fail(format!("cannot open it: {e}")))?;
        let storage = SqliteStorage {
            path,
            busy,
            conn: Mutex::new(conn),
            cache: Mutex::new(HashMap::new()),
        };
        // Processes opening a new file together race to switch it to WAL and create the
        // schema; SQLite answers the loser "busy" at once (without waiting, to avoid a
        // deadlock), so the whole set-up is retried until the busy timeout.
        let start = std::time::Instant::now();
        loop {
            match storage.init() {
                Err(TuneError::Locked { .. }) if start.elapsed() < busy => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        }
        Ok(storage)
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn init(&self) -> Result<()> {
        let mut conn = self.conn();
        conn.busy_timeout(self.busy)
            .map_err(|e| self.error("setting the busy timeout", e))?;
        // Reading the header first turns "not a database" into a clear error.
        let mode: String = conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| self.error("switching to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(TuneError::Storage {
                storage: self.describe(),
                what: format!("cannot use WAL mode (the file system gave `{mode}`)"),
            });
        }
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.error("setting synchronous", e))?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error("creating the schema", e))?;
        tx.execute_batch(SCHEMA)
            .map_err(|e| self.error("creating the schema", e))?;
        let version: Option<String> = tx
            .query_row(
                "SELECT value FROM descent_tune WHERE key = 'schema_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(|e| self.error("reading the schema version", e))?;
        match version {
            None => {
                tx.execute(
                    "INSERT INTO descent_tune (key, value) VALUES ('schema_version', ?1)",
                    [SCHEMA_VERSION.to_string()],
                )
                .map_err(|e| self.error("writing the schema version", e))?;
            }
            Some(v) if v == SCHEMA_VERSION.to_string() => {}
            Some(v) => {
                return Err(TuneError::Storage {
                    storage: self.describe(),
                    what: format!(
                        "holds studies in schema version {v}; this descent reads version \
                         {SCHEMA_VERSION}: use the descent that wrote it"
                    ),
                })
            }
        }
        tx.commit()
            .map_err(|e| self.error("creating the schema", e))
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Maps a SQLite error to a typed one: locks become [`TuneError::Locked`].
    fn error(&self, doing: &str, e: rusqlite::Error) -> TuneError {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    return TuneError::Locked {
                        storage: self.describe(),
                        waited_ms: self.busy.as_millis() as u64,
                    }
                }
                ErrorCode::NotADatabase => {
                    return TuneError::Storage {
                        storage: self.describe(),
                        what: "is not a SQLite database: give another path, or move the file \
                               away"
                            .into(),
                    }
                }
                _ => {}
            }
        }
        TuneError::Storage {
            storage: self.describe(),
            what: format!("{doing}: {e}"),
        }
    }

    /// Runs `f` in a write transaction taken up front, committing on success.
    fn write<T>(
        &self,
        doing: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.error(doing, e))?;
        let out = f(&tx)?;
        tx.commit().map_err(|e| self.error(doing, e))?;
        Ok(out)
    }

    /// One statement on a running trial's rows, in a write transaction that first checks the
    /// trial is still running.
    fn update_running(
        &self,
        doing: &str,
        trial: u64,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<()> {
        self.write(doing, |tx| {
            self.check_running(tx, trial)?;
            tx.execute(sql, params).map_err(|e| self.error(doing, e))?;
            Ok(())
        })
    }

    /// Checks that a trial is running, inside a write transaction.
    fn check_running(&self, tx: &rusqlite::Transaction<'_>, trial: u64) -> Result<()> {
        let row: Option<(u64, String)> = tx
            .query_row(
                "SELECT number, state FROM trials WHERE trial_id = ?1",
                [trial],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.error("reading a trial", e))?;
        let (number, state) =
            row.ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))?;
        let state = self.state(&state)?;
        if state != TrialState::Running {
            return Err(TuneError::TrialFinished { number, state });
        }
        Ok(())
    }

    fn state(&self, s: &str) -> Result<TrialState> {
        TrialState::parse(s).ok_or_else(|| TuneError::Storage {
            storage: self.describe(),
            what: format!("holds a trial in an unknown state `{s}`"),
        })
    }

    fn damaged(&self, what: String) -> TuneError {
        TuneError::Storage {
            storage: self.describe(),
            what: format!("holds a damaged record: {what}"),
        }
    }

    /// Reads one trial's rows.
    fn load(&self, conn: &Connection, trial: u64) -> Result<FrozenTrial> {
        let e = |err| self.error("reading a trial", err);
        let (mut t, state, fixed) = conn
            .prepare_cached(
                "SELECT number, state, value, fixed, message, started, finished, owner \
                 FROM trials WHERE trial_id = ?1",
            )
            .map_err(e)?
            .query_row([trial], |r| {
                let mut t = FrozenTrial::new(trial, r.get(0)?, TrialState::Waiting);
                t.value = r.get(2)?;
                t.message = r.get(4)?;
                t.started = r.get(5)?;
                t.finished = r.get(6)?;
                t.owner = r.get(7)?;
                Ok((t, r.get::<_, String>(1)?, r.get::<_, String>(3)?))
            })
            .map_err(e)?;
        t.state = self.state(&state)?;
        t.fixed = serde_json::from_str(&fixed).map_err(|err| {
            self.damaged(format!("fixed parameters of trial {}: {err}", t.number))
        })?;
        let mut st = conn
            .prepare_cached("SELECT name, distribution, internal FROM params WHERE trial_id = ?1")
            .map_err(e)?;
        let rows = st
            .query_map([trial], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, f64>(2)?,
                ))
            })
            .map_err(e)?;
        for row in rows {
            let (name, dist, internal) = row.map_err(e)?;
            let distribution: Distribution = serde_json::from_str(&dist)
                .map_err(|err| self.damaged(format!("distribution of `{name}`: {err}")))?;
            t.params.insert(
                name,
                Param {
                    distribution,
                    internal,
                },
            );
        }
        let mut st = conn
            .prepare_cached("SELECT step, value FROM intermediate WHERE trial_id = ?1")
            .map_err(e)?;
        let rows = st
            .query_map([trial], |r| {
                Ok((r.get::<_, u64>(0)?, r.get::<_, Option<f64>>(1)?))
            })
            .map_err(e)?;
        for row in rows {
            let (step, value) = row.map_err(e)?;
            t.intermediate.insert(step, value.unwrap_or(f64::NAN));
        }
        let mut st = conn
            .prepare_cached("SELECT key, value FROM user_attrs WHERE trial_id = ?1")
            .map_err(e)?;
        let rows = st
            .query_map([trial], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })
            .map_err(e)?;
        for row in rows {
            let (key, value) = row.map_err(e)?;
            let value = serde_json::from_str(&value)
                .map_err(|err| self.damaged(format!("user attribute `{key}`: {err}")))?;
            t.user_attrs.insert(key, value);
        }
        Ok(t)
    }

    fn study_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(u64, String, String)> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
    }

    fn record(&self, (id, name, direction): (u64, String, String)) -> Result<StudyRecord> {
        let direction = Direction::parse(&direction)
            .ok_or_else(|| self.damaged(format!("study `{name}` has direction `{direction}`")))?;
        Ok(StudyRecord {
            id,
            name,
            direction,
        })
    }
}

impl Storage for SqliteStorage {
    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }

    fn create_study(&self, name: &str, direction: Direction) -> Result<StudyRecord> {
        self.write("creating a study", |tx| {
            let exists: Option<u64> = tx
                .query_row(
                    "SELECT study_id FROM studies WHERE name = ?1",
                    [name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(|e| self.error("creating a study", e))?;
            if exists.is_some() {
                return Err(TuneError::StudyExists {
                    name: name.into(),
                    storage: self.describe(),
                });
            }
            tx.execute(
                "INSERT INTO studies (name, direction, created) VALUES (?1, ?2, ?3)",
                params![name, direction.as_str(), now()],
            )
            .map_err(|e| self.error("creating a study", e))?;
            Ok(StudyRecord {
                id: tx.last_insert_rowid() as u64,
                name: name.into(),
                direction,
            })
        })
    }

    fn find_study(&self, name: &str) -> Result<Option<StudyRecord>> {
        let conn = self.conn();
        let row = conn
            .query_row(
                "SELECT study_id, name, direction FROM studies WHERE name = ?1",
                [name],
                Self::study_row,
            )
            .optional()
            .map_err(|e| self.error("reading the studies", e))?;
        row.map(|r| self.record(r)).transpose()
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        let conn = self.conn();
        let e = |err| self.error("reading the studies", err);
        let mut st = conn
            .prepare("SELECT study_id, name, direction FROM studies ORDER BY study_id")
            .map_err(e)?;
        let rows = st.query_map([], Self::study_row).map_err(e)?;
        let mut out = Vec::new();
        for r in rows {
            out.push(self.record(r.map_err(e)?)?);
        }
        Ok(out)
    }

    fn enqueue_trial(&self, study: u64, params: &BTreeMap<String, ParamValue>) -> Result<u64> {
        let fixed = serde_json::to_string(params)
            .map_err(|e| TuneError::InvalidValue(format!("enqueued parameters: {e}")))?;
        self.write("enqueuing a trial", |tx| {
            let e = |err| self.error("enqueuing a trial", err);
            let number: u64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1",
                    [study],
                    |r| r.get(0),
                )
                .map_err(e)?;
            tx.execute(
                "INSERT INTO trials (study_id, number, state, fixed) VALUES (?1, ?2, 'waiting', ?3)",
                params![study, number, fixed],
            )
            .map_err(e)?;
            Ok(number)
        })
    }

    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
    ) -> Result<Option<FrozenTrial>> {
        let id = self.write("starting a trial", |tx| {
            let e = |err| self.error("starting a trial", err);
            if let Some(limit) = limit {
                let started: u64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM trials WHERE study_id = ?1 AND state != 'waiting'",
                        [study],
                        |r| r.get(0),
                    )
                    .map_err(e)?;
                if started >= limit {
                    return Ok(None);
                }
            }
            let waiting: Option<u64> = tx
                .query_row(
                    "SELECT trial_id FROM trials WHERE study_id = ?1 AND state = 'waiting' \
                     ORDER BY number LIMIT 1",
                    [study],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            let id = match waiting {
                Some(id) => {
                    tx.execute(
                        "UPDATE trials SET state = 'running', started = ?2, owner = ?3 \
                         WHERE trial_id = ?1",
                        params![id, now(), owner],
                    )
                    .map_err(e)?;
                    id
                }
                None => {
                    tx.execute(
                        "INSERT INTO trials (study_id, number, state, started, owner) VALUES \
                         (?1, (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = \
                         ?1), 'running', ?2, ?3)",
                        params![study, now(), owner],
                    )
                    .map_err(e)?;
                    tx.last_insert_rowid() as u64
                }
            };
            Ok(Some(id))
        })?;
        match id {
            None => Ok(None),
            Some(id) => Ok(Some(self.load(&self.conn(), id)?)),
        }
    }

    fn set_param(&self, trial: u64, name: &str, param: &Param) -> Result<()> {
        let dist = serde_json::to_string(&param.distribution)
            .map_err(|e| TuneError::InvalidValue(format!("distribution of `{name}`: {e}")))?;
        self.update_running(
            "recording a parameter",
            trial,
            "INSERT OR REPLACE INTO params (trial_id, name, distribution, internal) \
             VALUES (?1, ?2, ?3, ?4)",
            params![trial, name, dist, param.internal],
        )
    }

    fn report(&self, trial: u64, step: u64, value: f64) -> Result<()> {
        self.update_running(
            "recording an intermediate value",
            trial,
            "INSERT OR REPLACE INTO intermediate (trial_id, step, value) VALUES (?1, ?2, ?3)",
            params![trial, step, (!value.is_nan()).then_some(value)],
        )
    }

    fn set_user_attr(&self, trial: u64, key: &str, value: &serde_json::Value) -> Result<()> {
        self.update_running(
            "recording a user attribute",
            trial,
            "INSERT OR REPLACE INTO user_attrs (trial_id, key, value) VALUES (?1, ?2, ?3)",
            params![trial, key, value.to_string()],
        )
    }

    fn finish_trial(
        &self,
        trial: u64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<()> {
        self.update_running(
            "finishing a trial",
            trial,
            "UPDATE trials SET state = ?2, value = ?3, message = ?4, finished = ?5 \
             WHERE trial_id = ?1",
            params![
                trial,
                state.as_str(),
                value.filter(|v| !v.is_nan()),
                message,
                now()
            ],
        )
    }

    fn trial(&self, trial: u64) -> Result<Arc<FrozenTrial>> {
        if let Some(t) = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&trial)
        {
            return Ok(t.clone());
        }
        let t = Arc::new(self.load(&self.conn(), trial)?);
        if t.state.is_finished() {
            self.cache
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(trial, t.clone());
        }
        Ok(t)
    }

    fn trials(&self, study: u64) -> Result<Vec<Arc<FrozenTrial>>> {
        let mut conn = self.conn();
        let e = |err| self.error("reading the trials", err);
        // One read transaction: a consistent snapshot even while other processes write.
        let tx = conn.transaction().map_err(e)?;
        let ids: Vec<u64> = {
            let mut st = tx
                .prepare_cached("SELECT trial_id FROM trials WHERE study_id = ?1 ORDER BY number")
                .map_err(e)?;
            let rows = st.query_map([study], |r| r.get(0)).map_err(e)?;
            rows.collect::<rusqlite::Result<_>>().map_err(e)?
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            match cache.get(&id) {
                Some(t) => out.push(t.clone()),
                None => {
                    let t = Arc::new(self.load(&tx, id)?);
                    if t.state.is_finished() {
                        cache.insert(id, t.clone());
                    }
                    out.push(t);
                }
            }
        }
        drop(cache);
        tx.commit().map_err(e)?;
        Ok(out)
    }
}
