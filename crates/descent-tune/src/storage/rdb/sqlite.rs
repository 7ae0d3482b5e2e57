//! SQLite under [`SqlStorage`]: one file shared safely by threads and by processes on one
//! machine, in Optuna's schema (a file Optuna opens as `sqlite:///PATH`).
//!
//! The file runs in WAL mode (readers never block the writer) with a busy timeout (a writer
//! waits for another instead of failing). Every write takes the write lock first (`BEGIN
//! IMMEDIATE`), so two processes can never number two trials alike.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};

use super::db::{format_time, Db, Dialect, Row, Tx, TxKind, Value};
use super::SqlStorage;
use crate::error::{Result, TuneError};

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Owned(rusqlite::types::Value::Null),
            Value::Int(v) => ToSqlOutput::Owned((*v).into()),
            Value::Real(v) => ToSqlOutput::Owned((*v).into()),
            Value::Text(s) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Value::Time(t) => ToSqlOutput::Owned(format_time(*t).into()),
            // The storage writes id sets into SQLite's statements (`id_in`).
            Value::Ids(_) => {
                return Err(rusqlite::Error::ToSqlConversionFailure(
                    "SQLite binds no arrays".into(),
                ))
            }
        })
    }
}

struct SqliteDb {
    describe: String,
    busy: Duration,
    conn: Connection,
}

struct SqliteTx<'a> {
    db: &'a SqliteDb,
    /// A transaction, or the connection itself (`TxKind::Statements`).
    tx: &'a rusqlite::Connection,
    doing: &'a str,
}

impl SqliteDb {
    /// Maps a SQLite error to a typed one: locks become [`TuneError::Locked`].
    fn error(&self, doing: &str, e: rusqlite::Error) -> TuneError {
        if let rusqlite::Error::SqliteFailure(f, _) = &e {
            match f.code {
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    return TuneError::Locked {
                        storage: self.describe.clone(),
                        waited_ms: self.busy.as_millis() as u64,
                    }
                }
                ErrorCode::NotADatabase => {
                    return TuneError::Storage {
                        storage: self.describe.clone(),
                        what: "is not a SQLite database: give another path, or move the file \
                               away"
                            .into(),
                    }
                }
                _ => {}
            }
        }
        TuneError::Storage {
            storage: self.describe.clone(),
            what: format!("{doing}: {e}"),
        }
    }

    fn pragmas(&mut self) -> Result<()> {
        self.conn
            .busy_timeout(self.busy)
            .map_err(|e| self.error("setting the busy timeout", e))?;
        // Reading the header first turns "not a database" into a clear error.
        let mode: String = self
            .conn
            .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
            .map_err(|e| self.error("switching to WAL mode", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(TuneError::Storage {
                storage: self.describe.clone(),
                what: format!("cannot use WAL mode (the file system gave `{mode}`)"),
            });
        }
        self.conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| self.error("setting synchronous", e))?;
        self.conn
            .pragma_update(None, "foreign_keys", "ON")
            .map_err(|e| self.error("enabling foreign keys", e))
    }
}

impl Db for SqliteDb {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn transaction(
        &mut self,
        kind: TxKind,
        doing: &str,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()> {
        let behavior = match kind {
            TxKind::Read => TransactionBehavior::Deferred,
            TxKind::Write => TransactionBehavior::Immediate,
            TxKind::Statements => {
                return f(&mut SqliteTx {
                    db: self,
                    tx: &self.conn,
                    doing,
                })
            }
        };
        // `Connection::transaction_with_behavior` wants `&mut`; the statements only `&`.
        let this: &SqliteDb = self;
        let tx = rusqlite::Transaction::new_unchecked(&this.conn, behavior)
            .map_err(|e| this.error(doing, e))?;
        f(&mut SqliteTx {
            db: this,
            tx: &tx,
            doing,
        })?;
        tx.commit().map_err(|e| this.error(doing, e))
    }
}

impl Tx for SqliteTx<'_> {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let mut st = self
            .tx
            .prepare_cached(sql)
            .map_err(|e| self.db.error(self.doing, e))?;
        let n = st
            .execute(rusqlite::params_from_iter(args))
            .map_err(|e| self.db.error(self.doing, e))?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let e = |err| self.db.error(self.doing, err);
        let mut st = self.tx.prepare_cached(sql).map_err(e)?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(args)).map_err(e)?;
        let mut out = Vec::new();
        while let Some(r) = rows.next().map_err(e)? {
            let mut row = Vec::with_capacity(n);
            for i in 0..n {
                row.push(match r.get_ref(i).map_err(e)? {
                    ValueRef::Null => Value::Null,
                    ValueRef::Integer(v) => Value::Int(v),
                    ValueRef::Real(v) => Value::Real(v),
                    ValueRef::Text(t) | ValueRef::Blob(t) => {
                        Value::Text(String::from_utf8_lossy(t).into_owned())
                    }
                });
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

impl SqlStorage {
    /// Opens (creating if needed) the study file at `path`, waiting up to 30 s for locks.
    /// A file of descent's first schema is moved into Optuna's schema on the way.
    pub fn open_sqlite(path: impl AsRef<Path>) -> Result<Self> {
        Self::open_sqlite_with_timeout(path, Duration::from_secs(30))
    }

    /// Opens the study file, waiting up to `busy` for another process's lock.
    pub fn open_sqlite_with_timeout(path: impl AsRef<Path>, busy: Duration) -> Result<Self> {
        let path = path.as_ref();
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
        let conn = Connection::open(path).map_err(|e| fail(format!("cannot open it: {e}")))?;
        // Room for every statement of the hot path beside the few with written-out ids.
        conn.set_prepared_statement_cache_capacity(64);
        let mut db = SqliteDb {
            describe: describe.clone(),
            busy,
            conn,
        };
        // Processes opening a new file together race to switch it to WAL and create the
        // schema; SQLite answers the loser "busy" at once (without waiting, to avoid a
        // deadlock), so the whole set-up is retried until the busy timeout.
        let start = Instant::now();
        loop {
            match db.pragmas() {
                Err(TuneError::Locked { .. }) if start.elapsed() < busy => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        }
        let storage = SqlStorage::new(Box::new(db));
        loop {
            match storage.setup() {
                Err(TuneError::Locked { .. }) if start.elapsed() < busy => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                other => break other?,
            }
        }
        Ok(storage)
    }
}
