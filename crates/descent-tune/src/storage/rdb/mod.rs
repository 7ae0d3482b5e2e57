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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use self::db::{to_secs, Db, Row, Tx, TxKind, Value};
use self::optuna::{FAIL_REASON, FIXED_PARAMS, MESSAGE, OWNER};
use super::{Storage, StudyRecord};
use crate::distribution::ParamValue;
use crate::error::{Result, TuneError};
use crate::trial::{Direction, FrozenTrial, Param, TrialState};

/// A storage in a SQL database in Optuna's schema.
pub struct SqlStorage {
    describe: String,
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
}

impl SqlStorage {
    /// Wraps a connection; [`SqlStorage::setup`] readies its schema.
    pub(crate) fn new(db: Box<dyn Db>) -> Self {
        SqlStorage {
            describe: db.describe(),
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

    /// The number and state of a trial, its row locked until the transaction ends.
    fn trial_state(&self, tx: &mut dyn Tx, trial: u64) -> Result<(u64, TrialState)> {
        let sql = format!(
            "SELECT number, state FROM trials WHERE trial_id = ?1{}",
            tx.for_update()
        );
        let row = tx
            .query_opt(&sql, &[trial.into()])?
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))?;
        Ok((row.id(0)?, self.state(row.text(1)?)?))
    }

    /// Runs `f` on a running trial's rows, in a write transaction that first checks the trial
    /// is still running.
    fn update_running(
        &self,
        doing: &str,
        trial: u64,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        self.tx(TxKind::Write, doing, &mut |tx| {
            let (number, state) = self.trial_state(tx, trial)?;
            if state != TrialState::Running {
                return Err(TuneError::TrialFinished { number, state });
            }
            f(tx)
        })
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
        // The ids are integers of our own reading: safe to write into the statement.
        let ids = trials
            .keys()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let of = |sql: &str| {
            let join = if sql.contains(" WHERE ") {
                "AND"
            } else {
                "WHERE"
            };
            format!("{sql} {join} trial_id IN ({ids})")
        };
        let mut each = |tx: &mut dyn Tx,
                        sql: &str,
                        f: &mut dyn FnMut(&mut FrozenTrial, &Row) -> Result<()>|
         -> Result<()> {
            for r in tx.query(&of(sql), &[])? {
                let id = r.id(0)?;
                if let Some(t) = trials.get_mut(&id) {
                    f(t, &r)?;
                }
            }
            Ok(())
        };
        each(
            tx,
            "SELECT trial_id, param_name, param_value, distribution_json FROM trial_params",
            &mut |t, r| {
                let name = r.text(1)?.to_string();
                let distribution = optuna::parse_distribution(r.text(3)?).map_err(|e| {
                    self.damaged(format!(
                        "distribution of `{name}` in trial {}: {e}",
                        t.number
                    ))
                })?;
                let internal = r
                    .opt_real(2)?
                    .ok_or_else(|| self.damaged(format!("parameter `{name}` has no value")))?;
                t.params.insert(
                    name,
                    Param {
                        distribution,
                        internal,
                    },
                );
                Ok(())
            },
        )?;
        each(
            tx,
            "SELECT trial_id, value, value_type FROM trial_values WHERE objective = 0",
            &mut |t, r| {
                t.value = optuna::value_from(r.opt_real(1)?, r.text(2)?);
                Ok(())
            },
        )?;
        each(
            tx,
            "SELECT trial_id, step, intermediate_value, intermediate_value_type FROM \
             trial_intermediate_values",
            &mut |t, r| {
                let v = optuna::value_from(r.opt_real(2)?, r.text(3)?).unwrap_or(f64::NAN);
                t.intermediate.insert(r.id(1)?, v);
                Ok(())
            },
        )?;
        each(
            tx,
            "SELECT trial_id, key, value_json FROM trial_user_attributes",
            &mut |t, r| {
                let key = r.text(1)?.to_string();
                let v = serde_json::from_str(r.text(2)?)
                    .map_err(|e| self.damaged(format!("user attribute `{key}`: {e}")))?;
                t.user_attrs.insert(key, v);
                Ok(())
            },
        )?;
        each(
            tx,
            "SELECT trial_id, key, value_json FROM trial_system_attributes",
            &mut |t, r| {
                let (key, json) = (r.text(1)?, r.text(2)?);
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
                Ok(())
            },
        )?;
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
        self.tx(TxKind::Write, "starting a trial", &mut |tx| {
            self.lock_study(tx, study)?;
            let next = Self::next_number(tx, study)?;
            // Waiting trials, each with whether it retries a failed one.
            let waiting = tx.query(
                "SELECT t.trial_id, EXISTS (SELECT 1 FROM trial_system_attributes a WHERE \
                 a.trial_id = t.trial_id AND a.key = 'failed_trial') FROM trials t WHERE \
                 t.study_id = ?1 AND t.state = 'WAITING' ORDER BY t.trial_id",
                &[study.into()],
            )?;
            let mut retry = None;
            for r in &waiting {
                if r.int(1)? != 0 {
                    retry = Some(r.id(0)?);
                    break;
                }
            }
            let claim = match (retry, waiting.first()) {
                (Some(id), _) => Some(id),
                (None, first) => {
                    if let Some(limit) = limit {
                        // Started retries stand in for failed trials already counted.
                        let retries = tx
                            .query_one(
                                "SELECT COUNT(*) FROM trial_system_attributes a JOIN trials t \
                                 ON t.trial_id = a.trial_id WHERE a.key = 'failed_trial' AND \
                                 t.study_id = ?1 AND t.state != 'WAITING'",
                                &[study.into()],
                            )?
                            .id(0)?;
                        if next - waiting.len() as u64 - retries >= limit {
                            return Ok(None);
                        }
                    }
                    first.map(|r| r.id(0)).transpose()?
                }
            };
            let now = Value::Time(SystemTime::now());
            let id = match claim {
                Some(id) => {
                    tx.exec(
                        "UPDATE trials SET state = 'RUNNING', datetime_start = ?2 \
                         WHERE trial_id = ?1",
                        &[id.into(), now],
                    )?;
                    id
                }
                None => tx
                    .query_one(
                        "INSERT INTO trials (number, study_id, state, datetime_start) \
                         VALUES (?1, ?2, 'RUNNING', ?3) RETURNING trial_id",
                        &[next.into(), study.into(), now],
                    )?
                    .id(0)?,
            };
            Self::set_system_attr(tx, id, OWNER, owner_json.clone())?;
            if heartbeat {
                Self::beat(tx, id)?;
            }
            let mut t = self.load(tx, "trial_id = ?1", &[id.into()])?;
            Ok(t.pop())
        })
    }

    fn heartbeat(&self, trial: u64) -> Result<()> {
        self.update_running("recording a heartbeat", trial, &mut |tx| {
            Self::beat(tx, trial)
        })
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
        self.update_running("recording a parameter", trial, &mut |tx| {
            tx.exec(
                "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT (trial_id, param_name) DO UPDATE SET \
                 param_value = excluded.param_value, distribution_json = excluded.distribution_json",
                &[
                    trial.into(),
                    name.into(),
                    param.internal.into(),
                    dist.as_str().into(),
                ],
            )?;
            Ok(())
        })
    }

    fn report(&self, trial: u64, step: u64, value: f64) -> Result<()> {
        let (v, kind) = optuna::value_repr(value);
        self.update_running("recording an intermediate value", trial, &mut |tx| {
            tx.exec(
                "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, \
                 intermediate_value_type) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (trial_id, step) \
                 DO UPDATE SET intermediate_value = excluded.intermediate_value, \
                 intermediate_value_type = excluded.intermediate_value_type",
                &[trial.into(), step.into(), v.into(), kind.into()],
            )?;
            Ok(())
        })
    }

    fn set_user_attr(&self, trial: u64, key: &str, value: &serde_json::Value) -> Result<()> {
        let json = value.to_string();
        self.update_running("recording a user attribute", trial, &mut |tx| {
            tx.exec(
                "INSERT INTO trial_user_attributes (trial_id, key, value_json) VALUES (?1, ?2, \
                 ?3) ON CONFLICT (trial_id, key) DO UPDATE SET value_json = excluded.value_json",
                &[trial.into(), key.into(), json.as_str().into()],
            )?;
            Ok(())
        })
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
        // A transaction run again after a lost connection may find its own commit done.
        let mut attempt = 0;
        self.tx(TxKind::Write, "finishing a trial", &mut |tx| {
            attempt += 1;
            let (number, now) = self.trial_state(tx, trial)?;
            if now != TrialState::Running {
                if attempt > 1 && now == state {
                    return Ok(());
                }
                return Err(TuneError::TrialFinished { number, state: now });
            }
            tx.exec(
                "UPDATE trials SET state = ?2, datetime_complete = ?3 WHERE trial_id = ?1",
                &[
                    trial.into(),
                    optuna::state_label(state).into(),
                    Value::Time(SystemTime::now()),
                ],
            )?;
            if let Some(v) = value {
                let (v, kind) = optuna::value_repr(v);
                tx.exec(
                    "INSERT INTO trial_values (trial_id, objective, value, value_type) VALUES \
                     (?1, 0, ?2, ?3) ON CONFLICT (trial_id, objective) DO UPDATE SET value = \
                     excluded.value, value_type = excluded.value_type",
                    &[trial.into(), v.into(), kind.into()],
                )?;
            }
            if let Some(m) = &message {
                let key = if state == TrialState::Fail {
                    FAIL_REASON
                } else {
                    MESSAGE
                };
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
        let mut t = self.tx(TxKind::Read, "reading a trial", &mut |tx| {
            self.load(tx, "trial_id = ?1", &[trial.into()])
        })?;
        t.pop()
            .map(Arc::new)
            .ok_or_else(|| TuneError::InvalidValue(format!("no trial with id {trial}")))
    }

    fn trials(&self, study: u64) -> Result<Vec<Arc<FrozenTrial>>> {
        let (max_id, unfinished) = {
            let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            match seen.get(&study) {
                Some(s) => (
                    s.max_id,
                    s.trials
                        .iter()
                        .filter(|(_, t)| !t.state.is_finished())
                        .map(|(id, _)| *id)
                        .collect::<BTreeSet<u64>>(),
                ),
                None => (0, BTreeSet::new()),
            }
        };
        let mut where_ = "study_id = ?1 AND (trial_id > ?2".to_string();
        if !unfinished.is_empty() {
            let ids: Vec<String> = unfinished.iter().map(u64::to_string).collect();
            where_ += &format!(" OR trial_id IN ({})", ids.join(","));
        }
        where_ += ")";
        let fresh = self.tx(TxKind::Read, "reading the trials", &mut |tx| {
            self.load(tx, &where_, &[study.into(), max_id.into()])
        })?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let s = seen.entry(study).or_default();
        for t in fresh {
            s.max_id = s.max_id.max(t.id);
            s.trials.insert(t.id, Arc::new(t));
        }
        let mut out: Vec<Arc<FrozenTrial>> = s.trials.values().cloned().collect();
        out.sort_by_key(|t| t.number);
        Ok(out)
    }
}
