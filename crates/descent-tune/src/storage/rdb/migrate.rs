//! Studies stored by descent before it took Optuna's schema (its schema version 1, SQLite
//! only) are moved into Optuna's tables the first time they are opened, in the transaction
//! that opens them: the old tables are renamed, every row is copied, the old tables dropped.
//! Nothing is lost: ids, numbers, states, times, values, parameters with their
//! distributions, intermediate values, attributes, enqueued parameters, messages and owners.

use super::db::{from_secs, Tx, Value};
use super::optuna::{self, FAIL_REASON, FIXED_PARAMS, MESSAGE, OWNER};
use crate::distribution::Distribution;
use crate::error::{Result, TuneError};
use crate::trial::{Direction, TrialState};

const OLD: [&str; 5] = ["studies", "trials", "params", "intermediate", "user_attrs"];

pub(crate) fn from_v1(tx: &mut dyn Tx, describe: &str) -> Result<()> {
    let damaged = |what: String| TuneError::Storage {
        storage: describe.to_string(),
        what: format!("holds a damaged record in descent's first schema: {what}"),
    };
    let version = tx.query_opt(
        "SELECT value FROM descent_tune WHERE key = 'schema_version'",
        &[],
    )?;
    let version = version.map(|r| r.text(0).map(str::to_string)).transpose()?;
    if version.as_deref() != Some("1") {
        return Err(TuneError::Storage {
            storage: describe.to_string(),
            what: format!(
                "holds studies in descent's schema version {}; this descent reads version 1 \
                 and Optuna's schema: use the descent that wrote it",
                version.as_deref().unwrap_or("(none)")
            ),
        });
    }
    for t in OLD {
        tx.exec(&format!("ALTER TABLE {t} RENAME TO v1_{t}"), &[])?;
    }
    // The old index keeps its name on the renamed table; drop it now so the name is free.
    tx.exec("DROP INDEX IF EXISTS trials_by_state", &[])?;
    super::schema::ensure_empty(tx)?;

    for r in tx.query(
        "SELECT study_id, name, direction FROM v1_studies ORDER BY study_id",
        &[],
    )? {
        let (id, name, dir) = (r.int(0)?, r.text(1)?.to_string(), r.text(2)?);
        let dir = Direction::parse(dir)
            .ok_or_else(|| damaged(format!("study `{name}` has direction `{dir}`")))?;
        tx.exec(
            "INSERT INTO studies (study_id, study_name) VALUES (?1, ?2)",
            &[id.into(), name.into()],
        )?;
        tx.exec(
            "INSERT INTO study_directions (direction, study_id, objective) VALUES (?1, ?2, 0)",
            &[optuna::direction_label(dir).into(), id.into()],
        )?;
    }
    let trials = tx.query(
        "SELECT trial_id, study_id, number, state, value, fixed, message, started, finished, \
         owner FROM v1_trials ORDER BY trial_id",
        &[],
    )?;
    for r in trials {
        let (id, number) = (r.int(0)?, r.int(2)?);
        let label = r.text(3)?;
        let state = TrialState::parse(label)
            .ok_or_else(|| damaged(format!("trial {number} has state `{label}`")))?;
        let time = |i: usize| -> Result<Value> { Ok(r.opt_real(i)?.map(from_secs).into()) };
        tx.exec(
            "INSERT INTO trials (trial_id, number, study_id, state, datetime_start, \
             datetime_complete) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            &[
                id.into(),
                number.into(),
                r.int(1)?.into(),
                optuna::state_label(state).into(),
                time(7)?,
                time(8)?,
            ],
        )?;
        if let Some(v) = r.opt_real(4)?.filter(|_| state != TrialState::Fail) {
            let (v, kind) = optuna::value_repr(v);
            tx.exec(
                "INSERT INTO trial_values (trial_id, objective, value, value_type) \
                 VALUES (?1, 0, ?2, ?3)",
                &[id.into(), v.into(), kind.into()],
            )?;
        }
        let fixed = r.text(5)?;
        let mut attrs = Vec::new();
        if fixed != "{}" {
            attrs.push((FIXED_PARAMS, fixed.to_string()));
        }
        if let Some(m) = r.opt_text(6)? {
            let key = if state == TrialState::Fail {
                FAIL_REASON
            } else {
                MESSAGE
            };
            attrs.push((key, serde_json::Value::from(m).to_string()));
        }
        if let Some(o) = r.opt_text(9)? {
            attrs.push((OWNER, serde_json::Value::from(o).to_string()));
        }
        for (key, json) in attrs {
            tx.exec(
                "INSERT INTO trial_system_attributes (trial_id, key, value_json) \
                 VALUES (?1, ?2, ?3)",
                &[id.into(), key.into(), json.into()],
            )?;
        }
    }
    for r in tx.query(
        "SELECT trial_id, name, distribution, internal FROM v1_params",
        &[],
    )? {
        let name = r.text(1)?;
        let d: Distribution = serde_json::from_str(r.text(2)?)
            .map_err(|e| damaged(format!("distribution of `{name}`: {e}")))?;
        tx.exec(
            "INSERT INTO trial_params (trial_id, param_name, param_value, distribution_json) \
             VALUES (?1, ?2, ?3, ?4)",
            &[
                r.int(0)?.into(),
                name.into(),
                r.opt_real(3)?.into(),
                optuna::distribution_json(&d).into(),
            ],
        )?;
    }
    for r in tx.query("SELECT trial_id, step, value FROM v1_intermediate", &[])? {
        let (v, kind) = optuna::value_repr(r.opt_real(2)?.unwrap_or(f64::NAN));
        tx.exec(
            "INSERT INTO trial_intermediate_values (trial_id, step, intermediate_value, \
             intermediate_value_type) VALUES (?1, ?2, ?3, ?4)",
            &[r.int(0)?.into(), r.int(1)?.into(), v.into(), kind.into()],
        )?;
    }
    tx.exec(
        "INSERT INTO trial_user_attributes (trial_id, key, value_json) \
         SELECT trial_id, key, value FROM v1_user_attrs",
        &[],
    )?;
    for t in OLD.iter().rev() {
        tx.exec(&format!("DROP TABLE v1_{t}"), &[])?;
    }
    tx.exec("DROP TABLE descent_tune", &[])?;
    Ok(())
}
