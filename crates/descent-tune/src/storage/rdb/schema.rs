//! Optuna's RDB schema (schema version 12, alembic revision `v3.2.0.a`, Optuna 3.2 to 5.x), as
//! SQLAlchemy creates it on SQLite and on PostgreSQL, plus two indices of descent's own for
//! the queries on its hot path. A database that Optuna created opens as it is; one that
//! descent creates opens in `optuna.load_study` and `optuna-dashboard`.

use super::db::{Dialect, Row, Tx};
use super::optuna::{ALEMBIC_REVISION, SCHEMA_VERSION};
use crate::error::{Result, TuneError};

/// The tables, in the order their foreign keys need, with each dialect's id column.
fn tables(d: Dialect) -> String {
    let (id, float, time) = match d {
        Dialect::Sqlite => ("INTEGER NOT NULL PRIMARY KEY", "FLOAT", "DATETIME"),
        Dialect::Postgres => ("SERIAL PRIMARY KEY", "DOUBLE PRECISION", "TIMESTAMP"),
    };
    let (direction, state, value_type, intermediate_type) = match d {
        Dialect::Sqlite => ("VARCHAR(8)", "VARCHAR(8)", "VARCHAR(7)", "VARCHAR(7)"),
        Dialect::Postgres => (
            "studydirection",
            "trialstate",
            "trialvaluetype",
            "trialintermediatevaluetype",
        ),
    };
    let attrs = |table: &str, owner: &str, of: &str, parent: &str| {
        format!(
            "CREATE TABLE {table} ({owner_id} {id}, {of}_id INTEGER REFERENCES {parent} ({of}_id), \
             key VARCHAR(512), value_json TEXT, UNIQUE ({of}_id, key));",
            owner_id = format_args!("{owner}_id"),
        )
    };
    [
        format!(
            "CREATE TABLE studies (study_id {id}, study_name VARCHAR(512) NOT NULL);\n\
             CREATE UNIQUE INDEX ix_studies_study_name ON studies (study_name);"
        ),
        "CREATE TABLE version_info (version_info_id INTEGER NOT NULL PRIMARY KEY, \
         schema_version INTEGER, library_version VARCHAR(256), CHECK (version_info_id=1));"
            .to_string(),
        format!(
            "CREATE TABLE study_directions (study_direction_id {id}, direction {direction} NOT \
             NULL, study_id INTEGER NOT NULL REFERENCES studies (study_id), objective INTEGER \
             NOT NULL, UNIQUE (study_id, objective));"
        ),
        attrs(
            "study_user_attributes",
            "study_user_attribute",
            "study",
            "studies",
        ),
        attrs(
            "study_system_attributes",
            "study_system_attribute",
            "study",
            "studies",
        ),
        format!(
            "CREATE TABLE trials (trial_id {id}, number INTEGER, study_id INTEGER REFERENCES \
             studies (study_id), state {state} NOT NULL, datetime_start {time}, \
             datetime_complete {time});\n\
             CREATE INDEX ix_trials_study_id ON trials (study_id);"
        ),
        attrs(
            "trial_user_attributes",
            "trial_user_attribute",
            "trial",
            "trials",
        ),
        attrs(
            "trial_system_attributes",
            "trial_system_attribute",
            "trial",
            "trials",
        ),
        format!(
            "CREATE TABLE trial_params (param_id {id}, trial_id INTEGER REFERENCES trials \
             (trial_id), param_name VARCHAR(512), param_value {float}, distribution_json TEXT, \
             UNIQUE (trial_id, param_name));"
        ),
        format!(
            "CREATE TABLE trial_values (trial_value_id {id}, trial_id INTEGER NOT NULL \
             REFERENCES trials (trial_id), objective INTEGER NOT NULL, value {float}, \
             value_type {value_type} NOT NULL, UNIQUE (trial_id, objective));"
        ),
        format!(
            "CREATE TABLE trial_intermediate_values (trial_intermediate_value_id {id}, trial_id \
             INTEGER NOT NULL REFERENCES trials (trial_id), step INTEGER NOT NULL, \
             intermediate_value {float}, intermediate_value_type {intermediate_type} NOT NULL, \
             UNIQUE (trial_id, step));"
        ),
        format!(
            "CREATE TABLE trial_heartbeats (trial_heartbeat_id {id}, trial_id INTEGER NOT NULL \
             REFERENCES trials (trial_id), heartbeat {time} NOT NULL, UNIQUE (trial_id));"
        ),
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL, \
         CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num));"
            .to_string(),
    ]
    .join("\n")
}

/// PostgreSQL's enum types, as SQLAlchemy names them.
const PG_TYPES: &str = "
CREATE TYPE studydirection AS ENUM ('NOT_SET', 'MINIMIZE', 'MAXIMIZE');
CREATE TYPE trialstate AS ENUM ('RUNNING', 'COMPLETE', 'PRUNED', 'FAIL', 'WAITING');
CREATE TYPE trialvaluetype AS ENUM ('FINITE', 'INF_POS', 'INF_NEG');
CREATE TYPE trialintermediatevaluetype AS ENUM ('FINITE', 'INF_POS', 'INF_NEG', 'NAN');
";

/// descent's indices: waiting trials, the next number and the trials changed since a
/// worker's last read are found without a scan of the study's trials, and retries (by their
/// `failed_trial` attribute) without a scan of every trial's attributes.
const INDICES: &str = "
CREATE INDEX IF NOT EXISTS ix_trials_descent_state ON trials (study_id, state, trial_id);
CREATE INDEX IF NOT EXISTS ix_trials_descent_number ON trials (study_id, number);
CREATE INDEX IF NOT EXISTS ix_trial_system_attributes_descent_key ON trial_system_attributes (key, trial_id);
";

/// What a database holds before [`ensure`] sets it up.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing of descent's or Optuna's.
    Empty,
    /// Optuna's schema.
    Optuna,
    /// descent's own schema before it took Optuna's (`descent_tune` table).
    DescentV1,
}

fn table_exists(tx: &mut dyn Tx, name: &str) -> Result<bool> {
    let sql = match tx.dialect() {
        Dialect::Sqlite => "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        Dialect::Postgres => {
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() \
             AND table_name = ?1"
        }
    };
    Ok(tx.query_opt(sql, &[name.into()])?.is_some())
}

pub(crate) fn found(tx: &mut dyn Tx) -> Result<Found> {
    if table_exists(tx, "descent_tune")? {
        Ok(Found::DescentV1)
    } else if table_exists(tx, "version_info")? {
        Ok(Found::Optuna)
    } else {
        Ok(Found::Empty)
    }
}

/// Creates the schema in an empty database, checks the version of an existing one and adds
/// descent's indices. Runs inside a write transaction (PostgreSQL: under an advisory lock, so
/// that processes starting together create it once).
pub(crate) fn ensure(tx: &mut dyn Tx, describe: &str) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        // Any constant shared by descent's processes: "descent" in ASCII.
        tx.query("SELECT pg_advisory_xact_lock(111546225358196)", &[])?;
    }
    match found(tx)? {
        Found::Empty => ensure_empty(tx)?,
        Found::Optuna => check_version(tx, describe)?,
        Found::DescentV1 => super::migrate::from_v1(tx, describe)?,
    }
    exec_all(tx, INDICES)
}

/// Creates Optuna's tables (and PostgreSQL's enum types) and records their version.
pub(crate) fn ensure_empty(tx: &mut dyn Tx) -> Result<()> {
    if tx.dialect() == Dialect::Postgres {
        exec_all(tx, PG_TYPES)?;
    }
    let sql = tables(tx.dialect());
    exec_all(tx, &sql)?;
    tx.exec(
        "INSERT INTO version_info (version_info_id, schema_version, library_version) \
         VALUES (1, ?1, ?2)",
        &[
            SCHEMA_VERSION.into(),
            format!("descent {}", env!("CARGO_PKG_VERSION")).into(),
        ],
    )?;
    tx.exec(
        "INSERT INTO alembic_version (version_num) VALUES (?1)",
        &[ALEMBIC_REVISION.into()],
    )?;
    Ok(())
}

fn exec_all(tx: &mut dyn Tx, sql: &str) -> Result<()> {
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        tx.exec(stmt, &[])?;
    }
    Ok(())
}

fn check_version(tx: &mut dyn Tx, describe: &str) -> Result<()> {
    let version = tx
        .query_opt(
            "SELECT schema_version, library_version FROM version_info",
            &[],
        )?
        .map(|r: Row| Ok::<_, TuneError>((r.opt_int(0)?, r.opt_text(1)?.map(str::to_string))))
        .transpose()?;
    let revision = if table_exists(tx, "alembic_version")? {
        tx.query_opt("SELECT version_num FROM alembic_version", &[])?
            .map(|r| r.text(0).map(str::to_string))
            .transpose()?
    } else {
        None
    };
    let (schema, library) = version.unwrap_or((None, None));
    if schema == Some(SCHEMA_VERSION) && revision.as_deref() == Some(ALEMBIC_REVISION) {
        return Ok(());
    }
    let by = library.map_or(String::new(), |l| format!(" (set up by {l})"));
    let schema = schema.map_or("none".to_string(), |s| s.to_string());
    let revision = revision.unwrap_or_else(|| "none".into());
    let advice = if schema.parse::<i64>().is_ok_and(|s| s < SCHEMA_VERSION) {
        "upgrade it with Optuna first: `optuna storage upgrade --storage URL`"
    } else {
        "it is newer than this descent reads: use a descent that reads it"
    };
    Err(TuneError::Storage {
        storage: describe.to_string(),
        what: format!(
            "holds Optuna's schema version {schema}, revision {revision}{by}; this descent reads \
             version {SCHEMA_VERSION}, revision {ALEMBIC_REVISION}: {advice}"
        ),
    })
}
