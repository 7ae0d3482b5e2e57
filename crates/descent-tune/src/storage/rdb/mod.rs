//! Studies in a SQL database, in Optuna's RDB schema: one implementation of [`Storage`] over
//! any [`Db`] (SQLite, PostgreSQL): [`SqlStorage`].
//!
//! Trials are created and claimed under a lock on the study's row (PostgreSQL: `SELECT ...
//! FOR UPDATE`, the lock Optuna's own `RDBStorage` takes; SQLite: the write lock of `BEGIN
//! IMMEDIATE`), so two workers, descent's or Optuna's, never get one number, and trials of a
//! study are inserted in the order of their ids. That order is what makes reads incremental:
//! finished trials never change and are cached, so a read fetches only the trials with an id
//! above the last one seen and those it saw unfinished.

pub(crate) mod db;
mod migrate;
pub(crate) mod optuna;
pub(crate) mod postgres;
mod schema;
mod sqlite;
mod tls;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use self::db::{to_secs, Db, Dialect, Tx, TxKind, Value};
use self::optuna::{FAIL_REASON, FIXED_PARAMS, MESSAGE, OWNER};
use super::{Storage, StudyRecord};
use crate::distribution::ParamValue;
use crate::error::{Result, TuneError};
use crate::trial::{Direction, FrozenTrial, Param, TrialState, Trials};

/// `trial_id` in a set. PostgreSQL takes the set as one array parameter, so that the
/// statement's text, and the one statement the server prepares for it, stays the same however
/// many trials are read. SQLite gets the ids written into the statement (integers of our own
/// reading: nothing can be injected); binding them through rusqlite's `rarray` table was
/// measured slower (0.90 against 0.54 ms per trial in `storage_bench`, 3000 trials).
fn id_in(dialect: Dialect, ids: &[u64]) -> (String, Vec<Value>) {
    match dialect {
        Dialect::Postgres => ("trial_id = ANY(?1)".into(), vec![Value::Ids(ids.to_vec())]),
        Dialect::Sqlite => {
            let list: Vec<String> = ids.iter().map(u64::to_string).collect();
            (format!("trial_id IN ({})", list.join(",")), Vec::new())
        }
    }
}

/// A storage in a SQL database in Optuna's schema.
pub struct SqlStorage {
    describe: String,
    dialect: Dialect,
    db: Mutex<Box<dyn Db>>,
    /// What this process has read of each study.
    seen: Mutex<HashMap<u64, Seen>>,
}

/// The trials of one study read so far.
#[derive(Default)]
struct Seen {
    trials: BTreeMap<u64, Arc<FrozenTrial>>,
    /// The highest trial id read.
    max_id: u64,
    /// The trials read while they were waiting or running: read again until they finish.
    unfinished: BTreeSet<u64>,
    /// Every trial read, by number: the snapshot [`Storage::trials`] hands out.
    snapshot: Trials,
}

impl Seen {
    /// Takes in trials just read.
    fn update(&mut self, fresh: Vec<FrozenTrial>) {
        if fresh.is_empty() {
            return;
        }
        let snapshot = Arc::make_mut(&mut self.snapshot);
        for t in fresh {
            self.max_id = self.max_id.max(t.id);
            if t.state.is_finished() {
                self.unfinished.remove(&t.id);
            } else {
                self.unfinished.insert(t.id);
            }
            let t = Arc::new(t);
            // Trials are numbered in the order of their ids, so a new one almost always
            // comes last; the search places one that does not.
            match snapshot.last() {
                Some(last) if last.number >= t.number => {
                    match snapshot.binary_search_by_key(&t.number, |x| x.number) {
                        Ok(i) => snapshot[i] = Arc::clone(&t),
                        Err(i) => snapshot.insert(i, Arc::clone(&t)),
                    }
                }
                _ => snapshot.push(Arc::clone(&t)),
            }
            self.trials.insert(t.id, t);
        }
    }
}

impl SqlStorage {
    /// Wraps a connection; [`SqlStorage::setup`] readies its schema.
    pub(crate) fn new(db: Box<dyn Db>) -> Self {
        SqlStorage {
            describe: db.describe(),
            dialect: db.dialect(),
            db: Mutex::new(db),
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Creates, checks or migrates the schema, in one write transaction.
    pub(crate) fn setup(&self) -> Result<()> {
        let describe = self.describe.clone();
        self.tx(TxKind::Write, "setting up the schema", &mut |tx| {
            schema::ensure(tx, &describe)
        })
    }

    fn db(&self) -> MutexGuard<'_, Box<dyn Db>> {
        self.db.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn tx<T>(
        &self,
        kind: TxKind,
        doing: &str,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<T>,
    ) -> Result<T> {
        let mut out = None;
        self.db().transaction(kind, doing, &mut |tx| {
            out = Some(f(tx)?);
            Ok(())
        })?;
        out.ok_or_else(|| {
            TuneError::InvalidValue(format!("{doing}: the transaction gave no result"))
        })
    }

    fn damaged(&self, what: String) -> TuneError {
        TuneError::Storage {
            storage: self.describe.clone(),
            what: format!("holds a damaged record: {what}"),
        }
    }

    fn state(&self, s: &str) -> Result<TrialState> {
        optuna::parse_state(s).ok_or_else(|| self.damaged(format!("a trial in state `{s}`")))
    }

    fn record(&self, tx: &mut dyn Tx, id: u64, name: String) -> Result<StudyRecord> {
        let dirs = tx.query(
            "SELECT direction FROM study_directions WHERE study_id = ?1 ORDER BY objective",
            &[id.into()],
        )?;
        let direction = match dirs.as_slice() {
            [one] => {
                let d = one.text(0)?;
                optuna::parse_direction(d)
                    .ok_or_else(|| self.damaged(format!("study `{name}` has direction `{d}`")))?
            }
            [] => return Err(self.damaged(format!("study `{name}` has no direction"))),
            more => {
                return Err(TuneError::Storage {
                    storage: self.describe.clone(),
                    what: format!(
                        "study `{name}` has {} objectives; descent's studies have one",
                        more.len()
                    ),
                })
            }
        };
        Ok(StudyRecord {
            id,
            name,
            direction,
        })
    }

    /// The number the next trial of a study gets (numbers are dense: 0, 1, 2, ...).
    fn next_number(tx: &mut dyn Tx, study: u64) -> Result<u64> {
        tx.query_one(
            "SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1",
            &[study.into()],
        )?
        .id(0)
    }

    /// Locks the study's row until the transaction ends; fails if there is no such study.
    fn lock_study(&self, tx: &mut dyn Tx, study: u64) -> Result<()> {
        let sql = format!(
            "SELECT study_id FROM studies WHERE study_id = ?1{}",
            tx.for_update()
        );
        match tx.query_opt(&sql, &[study.into()])? {
            Some(_) => Ok(()),
            None => Err(TuneError::InvalidValue(format!("no study with id {study}"))),
        }
    }

    fn set_system_attr(tx: &mut dyn Tx, trial: u64, key: &str, json: String) -> Result<()> {
        tx.exec(
            "INSERT INTO trial_system_attributes (trial_id, key, value_json) VALUES (?1, ?2, ?3) \
             ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json",
            &[trial.into(), key.into(), json.into()],
        )?;
        Ok(())
    }

    /// Records a heartbeat now, by the database's clock (as Optuna does).
    fn beat(tx: &mut dyn Tx, trial: u64) -> Result<()> {
        tx.exec(
            "INSERT INTO trial_heartbeats (trial_id, heartbeat) VALUES (?1, CURRENT_TIMESTAMP) \
             ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
            &[trial.into()],
        )?;
        Ok(())
    }

    /// The number and state of a trial.
    fn trial_state(&self, tx: &mut dyn Tx, trial: u64) -> Result<(u64, TrialState)> {
        let row = tx
            .query_opt(
                "SELECT number, state FROM trials WHERE trial_id = ?1",
                &[trial.into()],
            )?
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))?;
        Ok((row.id(0)?, self.state(row.text(1)?)?))
    }

    /// One write to a running trial's rows, in one statement that checks that it still runs:
    /// `sql` inserts `SELECT trial_id, ... FROM trials WHERE trial_id = ?1 AND state =
    /// 'RUNNING'` (PostgreSQL takes the parameters' types from the columns). Nothing written
    /// means the trial has finished (a trial failed as stale at that very moment may keep
    /// the write, which is harmless: it stays failed).
    fn write_running(&self, doing: &str, trial: u64, sql: &str, args: &[Value]) -> Result<()> {
        self.tx(TxKind::Statements, doing, &mut |tx| {
            // The trial's row locked first (PostgreSQL): a worker failing it as stale waits
            // for this write and then reads it, or fails it first and this write is refused.
            // Without the lock the write's check could see it running just before the fail
            // commits, and the retry would be enqueued without what was written.
            if tx.dialect() == Dialect::Postgres {
                let sql = format!(
                    "SELECT trial_id FROM trials WHERE trial_id = ?1{}",
                    tx.for_update()
                );
                tx.query(&sql, &[trial.into()])?;
            }
            if tx.exec(sql, args)? > 0 {
                return Ok(());
            }
            let (number, state) = self.trial_state(tx, trial)?;
            Err(TuneError::TrialFinished { number, state })
        })
    }

    /// Reads the whole trials of these ids.
    fn load_ids(&self, tx: &mut dyn Tx, ids: &[u64]) -> Result<Vec<FrozenTrial>> {
        let (cond, args) = id_in(tx.dialect(), ids);
        self.load(tx, &cond, &args)
    }

    /// Reads whole trials: the rows of `where_` (a condition on `trials`), then their
    /// parameters, values and attributes, one query per table.
    fn load(&self, tx: &mut dyn Tx, where_: &str, args: &[Value]) -> Result<Vec<FrozenTrial>> {
        let rows = tx.query(
            &format!(
                "SELECT trial_id, number, state, datetime_start, datetime_complete FROM trials \
                 WHERE {where_} ORDER BY trial_id"
            ),
            args,
        )?;
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let mut trials = BTreeMap::new();
        for r in &rows {
            let id = r.id(0)?;
            let mut t = FrozenTrial::new(id, r.id(1)?, self.state(r.text(2)?)?);
            t.started = r.opt_time(3)?.map(to_secs);
            t.finished = r.opt_time(4)?.map(to_secs);
            trials.insert(id, t);
        }
        let ids: Vec<u64> = trials.keys().copied().collect();
        let (cond, id_args) = id_in(tx.dialect(), &ids);
        // Everything else about them in one statement (one round trip, one snapshot): rows of
        // (table, trial_id, name, number, text, step).
        let sql = format!(
            "SELECT 0, trial_id, param_name, param_value, distribution_json, \
             CAST(NULL AS BIGINT) FROM trial_params WHERE {cond} \
             UNION ALL SELECT 1, trial_id, NULL, value, CAST(value_type AS TEXT), NULL \
             FROM trial_values WHERE objective = 0 AND {cond} \
             UNION ALL SELECT 2, trial_id, NULL, intermediate_value, \
             CAST(intermediate_value_type AS TEXT), step FROM trial_intermediate_values \
             WHERE {cond} \
             UNION ALL SELECT 3, trial_id, key, NULL, value_json, NULL \
             FROM trial_user_attributes WHERE {cond} \
             UNION ALL SELECT 4, trial_id, key, NULL, value_json, NULL \
             FROM trial_system_attributes WHERE {cond}"
        );
        for r in tx.query(&sql, &id_args)? {
            let Some(t) = trials.get_mut(&r.id(1)?) else {
                continue;
            };
            match r.int(0)? {
                0 => {
                    let name = r.text(2)?.to_string();
                    let distribution = optuna::parse_distribution(r.text(4)?).map_err(|e| {
                        self.damaged(format!(
                            "distribution of `{name}` in trial {}: {e}",
                            t.number
                        ))
                    })?;
                    let internal = r
                        .opt_real(3)?
                        .ok_or_else(|| self.damaged(format!("parameter `{name}` has no value")))?;
                    t.params.insert(
                        name,
                        Param {
                            distribution,
                            internal,
                        },
                    );
                }
                1 => t.value = optuna::value_from(r.opt_real(3)?, r.text(4)?),
                2 => {
                    let v = optuna::value_from(r.opt_real(3)?, r.text(4)?).unwrap_or(f64::NAN);
                    t.intermediate.insert(r.id(5)?, v);
                }
                3 => {
                    let key = r.text(2)?.to_string();
                    let v = serde_json::from_str(r.text(4)?)
                        .map_err(|e| self.damaged(format!("user attribute `{key}`: {e}")))?;
                    t.user_attrs.insert(key, v);
                }
                _ => {
                    let (key, json) = (r.text(2)?, r.text(4)?);
                    let bad = |e: serde_json::Error| {
                        self.damaged(format!(
                            "system attribute `{key}` of trial {}: {e}",
                            t.number
                        ))
                    };
                    match key {
                        FIXED_PARAMS => t.fixed = serde_json::from_str(json).map_err(bad)?,
                        FAIL_REASON | MESSAGE => {
                            t.message = Some(serde_json::from_str(json).map_err(bad)?)
                        }
                        OWNER => t.owner = Some(serde_json::from_str(json).map_err(bad)?),
                        _ => {
                            let v = serde_json::from_str(json).map_err(bad)?;
                            t.system_attrs.insert(key.to_string(), v);
                        }
                    }
                }
            }
        }
        Ok(trials.into_values().collect())
    }
}

impl Storage for SqlStorage {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn create_study(&self, name: &str, direction: Direction) -> Result<StudyRecord> {
        let id = self.tx(TxKind::Write, "creating a study", &mut |tx| {
            let row = tx.query_opt(
                "INSERT INTO studies (study_name) VALUES (?1) ON CONFLICT (study_name) DO \
                 NOTHING RETURNING study_id",
                &[name.into()],
            )?;
            let Some(row) = row else {
                return Ok(None);
            };
            let id = row.id(0)?;
            tx.exec(
                "INSERT INTO study_directions (direction, study_id, objective) \
                 VALUES (?1, ?2, 0)",
                &[optuna::direction_label(direction).into(), id.into()],
            )?;
            Ok(Some(id))
        })?;
        match id {
            Some(id) => Ok(StudyRecord {
                id,
                name: name.into(),
                direction,
            }),
            None => Err(TuneError::StudyExists {
                name: name.into(),
                storage: self.describe.clone(),
            }),
        }
    }

    fn find_study(&self, name: &str) -> Result<Option<StudyRecord>> {
        self.tx(TxKind::Read, "reading the studies", &mut |tx| {
            let row = tx.query_opt(
                "SELECT study_id FROM studies WHERE study_name = ?1",
                &[name.into()],
            )?;
            row.map(|r| self.record(tx, r.id(0)?, name.to_string()))
                .transpose()
        })
    }

    fn studies(&self) -> Result<Vec<StudyRecord>> {
        self.tx(TxKind::Read, "reading the studies", &mut |tx| {
            let rows = tx.query(
                "SELECT study_id, study_name FROM studies ORDER BY study_id",
                &[],
            )?;
            rows.iter()
                .map(|r| self.record(tx, r.id(0)?, r.text(1)?.to_string()))
                .collect()
        })
    }

    fn enqueue_trial_with(
        &self,
        study: u64,
        params: &BTreeMap<String, ParamValue>,
        system_attrs: &BTreeMap<String, serde_json::Value>,
    ) -> Result<u64> {
        let fixed = serde_json::to_string(params)
            .map_err(|e| TuneError::InvalidValue(format!("enqueued parameters: {e}")))?;
        self.tx(TxKind::Write, "enqueuing a trial", &mut |tx| {
            self.lock_study(tx, study)?;
            let number = Self::next_number(tx, study)?;
            let id = tx
                .query_one(
                    "INSERT INTO trials (number, study_id, state) VALUES (?1, ?2, 'WAITING') \
                     RETURNING trial_id",
                    &[number.into(), study.into()],
                )?
                .id(0)?;
            Self::set_system_attr(tx, id, FIXED_PARAMS, fixed.clone())?;
            for (key, value) in system_attrs {
                Self::set_system_attr(tx, id, key, value.to_string())?;
            }
            Ok(number)
        })
    }

    fn start_trial(
        &self,
        study: u64,
        limit: Option<u64>,
        owner: &str,
        heartbeat: bool,
    ) -> Result<Option<FrozenTrial>> {
        let owner_json = serde_json::Value::from(owner).to_string();
        // The study's lock is held until the commit, so as little as can be happens under it:
        // one statement for what the choice needs, the insert or claim, the owner and the
        // first heartbeat. A claimed trial is read afterwards. Every part is an index search
        // whose cost does not grow with the study (the retries are counted from the
        // `failed_trial` attributes, which SQLite's CROSS JOIN makes it read first).
        let started = self.tx(TxKind::Write, "starting a trial", &mut |tx| {
            self.lock_study(tx, study)?;
            let r = tx.query_one(
                "SELECT (SELECT COALESCE(MAX(number) + 1, 0) FROM trials WHERE study_id = ?1), \
                 (SELECT MIN(trial_id) FROM trials WHERE study_id = ?1 AND state = 'WAITING'), \
                 (SELECT MIN(t.trial_id) FROM trials t JOIN trial_system_attributes a ON \
                 a.trial_id = t.trial_id WHERE t.study_id = ?1 AND t.state = 'WAITING' AND \
                 a.key = 'failed_trial'), \
                 (SELECT COUNT(*) FROM trials WHERE study_id = ?1 AND state = 'WAITING'), \
                 (SELECT COUNT(*) FROM trial_system_attributes a CROSS JOIN trials t WHERE \
                 a.key = 'failed_trial' AND t.trial_id = a.trial_id AND t.study_id = ?1 AND \
                 t.state != 'WAITING')",
                &[study.into()],
            )?;
            let (next, first_waiting, retry) = (r.id(0)?, r.opt_int(1)?, r.opt_int(2)?);
            let (waiting, retries) = (r.id(3)?, r.id(4)?);
            let claim = match retry {
                // A retry runs whatever the limit: it stands in for a trial already counted.
                Some(id) => Some(id as u64),
                None => {
                    // Started retries stand in for failed trials already counted.
                    if limit.is_some_and(|l| next - waiting - retries >= l) {
                        return Ok(None);
                    }
                    first_waiting.map(|id| id as u64)
                }
            };
            let now = db::now_micros();
            let insert = "INSERT INTO trials (number, study_id, state, datetime_start) VALUES \
                          (?1, ?2, 'RUNNING', ?3) RETURNING trial_id";
            let id = match claim {
                Some(id) => {
                    tx.exec(
                        "UPDATE trials SET state = 'RUNNING', datetime_start = ?2 \
                         WHERE trial_id = ?1",
                        &[id.into(), Value::Time(now)],
                    )?;
                    id
                }
                // PostgreSQL: the trial, its owner and its first heartbeat in one statement,
                // one round trip less under the lock.
                None if tx.dialect() == Dialect::Postgres => {
                    let beat = if heartbeat {
                        ", h AS (INSERT INTO trial_heartbeats (trial_id, heartbeat) SELECT \
                         trial_id, CURRENT_TIMESTAMP FROM t)"
                    } else {
                        ""
                    };
                    let sql = format!(
                        "WITH t AS ({insert}), o AS (INSERT INTO trial_system_attributes \
                         (trial_id, key, value_json) SELECT trial_id, '{OWNER}', ?4 FROM t)\
                         {beat} SELECT trial_id FROM t"
                    );
                    let args = [
                        next.into(),
                        study.into(),
                        Value::Time(now),
                        owner_json.as_str().into(),
                    ];
                    let id = tx.query_one(&sql, &args)?.id(0)?;
                    return Ok(Some((id, Some((next, now)))));
                }
                None => tx
                    .query_one(insert, &[next.into(), study.into(), Value::Time(now)])?
                    .id(0)?,
            };
            Self::set_system_attr(tx, id, OWNER, owner_json.clone())?;
            if heartbeat {
                Self::beat(tx, id)?;
            }
            Ok(Some((id, claim.is_none().then_some((next, now)))))
        })?;
        match started {
            None => Ok(None),
            // A new trial holds nothing but what was just written.
            Some((id, Some((number, now)))) => {
                let mut t = FrozenTrial::new(id, number, TrialState::Running);
                t.started = Some(to_secs(now));
                t.owner = Some(owner.to_string());
                Ok(Some(t))
            }
            // A claimed one may hold values and attributes (an enqueued trial, a retry).
            Some((id, None)) => {
                let mut t =
                    self.tx(TxKind::Statements, "reading the trial started", &mut |tx| {
                        self.load(tx, "trial_id = ?1", &[id.into()])
                    })?;
                Ok(t.pop())
            }
        }
    }

    fn heartbeat(&self, trial: u64) -> Result<()> {
        self.write_running(
            "recording a heartbeat",
            trial,
            "INSERT INTO trial_heartbeats (trial_id, heartbeat) SELECT trial_id, \
             CURRENT_TIMESTAMP FROM trials WHERE trial_id = ?1 AND state = 'RUNNING' \
             ON CONFLICT (trial_id) DO UPDATE SET heartbeat = excluded.heartbeat",
            &[trial.into()],
        )
    }

    fn stale_trials(&self, study: u64, grace: Duration) -> Result<Vec<u64>> {
        self.tx(TxKind::Read, "looking for stale trials", &mut |tx| {
            // The database's clock, as the heartbeats' (workers' clocks may disagree).
            let now = tx
                .query_one("SELECT CURRENT_TIMESTAMP", &[])?
                .opt_time(0)?
                .ok_or_else(|| self.damaged("the database gave no time".into()))?;
            let before = now.checked_sub(grace).unwrap_or(std::time::UNIX_EPOCH);
            let rows = tx.query(
                "SELECT t.trial_id FROM trials t JOIN trial_heartbeats h ON h.trial_id = \
                 t.trial_id WHERE t.study_id = ?1 AND t.state = 'RUNNING' AND h.heartbeat < ?2 \
                 ORDER BY t.trial_id",
                &[study.into(), Value::Time(before)],
            )?;
            rows.iter().map(|r| r.id(0)).collect()
        })
    }

    fn set_param(&self, trial: u64, name: &str, param: &Param) -> Result<()> {
        let dist = optuna::distribution_json(&param.distribution);
        self.write_running(
            "recording a parameter",
            trial,
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
             SELECT trial_id, ?2, ?3, ?4 FROM trials WHERE trial_id = ?1 AND state = 'RUNNING' \
             ON CONFLICT (trial_id, param_name) DO UPDATE SET param_value = \
             excluded.param_value, distribution_json = excluded.distribution_json",
            &[
                trial.into(),
                name.into(),
                param.internal.into(),
                dist.as_str().into(),
            ],
        )
    }

    fn report(&self, trial: u64, step: u64, value: f64) -> Result<()> {
        let (v, kind) = optuna::value_repr(value);
        self.write_running(
            "recording an intermediate value",
            trial,
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, \
             intermediate_value_type) SELECT trial_id, ?2, ?3, ?4 FROM trials WHERE trial_id = \
             ?1 AND state = 'RUNNING' ON CONFLICT (trial_id, step) DO UPDATE SET \
             intermediate_value = excluded.intermediate_value, intermediate_value_type = \
             excluded.intermediate_value_type",
            &[trial.into(), step.into(), v.into(), kind.into()],
        )
    }

    fn set_user_attr(&self, trial: u64, key: &str, value: &serde_json::Value) -> Result<()> {
        let json = value.to_string();
        self.write_running(
            "recording a user attribute",
            trial,
            "INSERT INTO trial_user_attributes (trial_id, key, value_json) SELECT trial_id, ?2, \
             ?3 FROM trials WHERE trial_id = ?1 AND state = 'RUNNING' ON CONFLICT (trial_id, \
             key) DO UPDATE SET value_json = excluded.value_json",
            &[trial.into(), key.into(), json.as_str().into()],
        )
    }

    fn finish_trial(
        &self,
        trial: u64,
        state: TrialState,
        value: Option<f64>,
        message: Option<&str>,
    ) -> Result<()> {
        // Optuna keeps no value for a failed trial, and none that is NaN.
        let value = value.filter(|v| state != TrialState::Fail && !v.is_nan());
        let message = message.map(|m| serde_json::Value::from(m).to_string());
        let message = message.map(|m| {
            let key = if state == TrialState::Fail {
                FAIL_REASON
            } else {
                MESSAGE
            };
            (key, m)
        });
        // The state changes only from running: whoever changes it first, wins. A finish run
        // again after a lost connection may find its own commit done.
        let mut attempt = 0;
        let finished_before = |tx: &mut dyn Tx, attempt: u32| -> Result<()> {
            let (number, now) = self.trial_state(tx, trial)?;
            if attempt > 1 && now == state {
                return Ok(());
            }
            Err(TuneError::TrialFinished { number, state: now })
        };
        let update = "UPDATE trials SET state = ?2, datetime_complete = ?3 WHERE trial_id = ?1 \
                      AND state = 'RUNNING'";
        let mut args = vec![
            trial.into(),
            optuna::state_label(state).into(),
            Value::Time(SystemTime::now()),
        ];
        if self.dialect == Dialect::Postgres {
            // One statement (one round trip, atomic without a transaction): the update, and
            // the value and message written for the row it updated.
            let mut sql = format!("WITH u AS ({update} RETURNING trial_id)");
            if let Some(v) = value {
                let (v, kind) = optuna::value_repr(v);
                let n = args.len();
                sql += &format!(
                    ", v AS (INSERT INTO trial_values (trial_id, objective, value, value_type) \
                     SELECT trial_id, 0, ?{}, ?{} FROM u ON CONFLICT (trial_id, objective) DO \
                     UPDATE SET value = excluded.value, value_type = excluded.value_type)",
                    n + 1,
                    n + 2
                );
                args.extend([v.into(), kind.into()]);
            }
            if let Some((key, m)) = &message {
                let n = args.len();
                sql += &format!(
                    ", m AS (INSERT INTO trial_system_attributes (trial_id, key, value_json) \
                     SELECT trial_id, ?{}, ?{} FROM u ON CONFLICT (trial_id, key) DO UPDATE SET \
                     value_json = excluded.value_json)",
                    n + 1,
                    n + 2
                );
                args.extend([(*key).into(), m.as_str().into()]);
            }
            sql += " SELECT COUNT(*) FROM u";
            return self.tx(TxKind::Statements, "finishing a trial", &mut |tx| {
                attempt += 1;
                match tx.query_one(&sql, &args)?.id(0)? {
                    0 => finished_before(tx, attempt),
                    _ => Ok(()),
                }
            });
        }
        self.tx(TxKind::Write, "finishing a trial", &mut |tx| {
            attempt += 1;
            if tx.exec(update, &args)? == 0 {
                return finished_before(tx, attempt);
            }
            if let Some(v) = value {
                let (v, kind) = optuna::value_repr(v);
                tx.exec(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES \
                     (?1, 0, ?2, ?3) ON CONFLICT (trial_id, objective) DO UPDATE SET value = \
                     excluded.value, value_type = excluded.value_type",
                    &[trial.into(), v.into(), kind.into()],
                )?;
            }
            if let Some((key, m)) = &message {
                Self::set_system_attr(tx, trial, key, m.clone())?;
            }
            Ok(())
        })
    }

    fn trial(&self, trial: u64) -> Result<Arc<FrozenTrial>> {
        for seen in self.seen.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if let Some(t) = seen.trials.get(&trial).filter(|t| t.state.is_finished()) {
                return Ok(t.clone());
            }
        }
        let t = self
            .tx(TxKind::Statements, "reading a trial", &mut |tx| {
                self.load(tx, "trial_id = ?1", &[trial.into()])
            })?
            .pop()
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))?;
        if t.state.is_finished() {
            // A trial read unfinished (say the one this worker just told) need not be read
            // again by the next `trials`.
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = seen.values_mut().find(|s| s.trials.contains_key(&trial)) {
                s.update(vec![t.clone()]);
            }
        }
        Ok(Arc::new(t))
    }

    fn trials(&self, study: u64) -> Result<Trials> {
        let (max_id, unfinished) = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get(&study) {
                Some(s) => (s.max_id, s.unfinished.iter().copied().collect::<Vec<u64>>()),
                None => (0, Vec::new()),
            }
        };
        // No one snapshot is needed: a finished trial's rows never change, and one read
        // unfinished is read again.
        let fresh = self.tx(TxKind::Statements, "reading the trials", &mut |tx| {
            let mut fresh = self.load(
                tx,
                "study_id = ?1 AND trial_id > ?2",
                &[study.into(), max_id.into()],
            )?;
            if !unfinished.is_empty() {
                fresh.extend(self.load_ids(tx, &unfinished)?);
            }
            Ok(fresh)
        })?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry(study).or_default();
        s.update(fresh);
        Ok(Arc::clone(&s.snapshot))
    }
}
