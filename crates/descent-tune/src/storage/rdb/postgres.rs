//! PostgreSQL under [`SqlStorage`]: studies shared by workers on many machines, in Optuna's
//! schema (the database Optuna opens as `postgresql+psycopg2://...`).
//!
//! One connection per storage (one per process in `descent tune`). When the server goes away
//! (restart, network), a transaction reconnects with backoff and runs again from its start,
//! for up to [`PostgresOptions::retry_for`]; serialization failures and deadlocks are retried
//! the same way. The password (from the URL, `PGPASSWORD` or `~/.pgpass`) never appears in a
//! message: storages describe themselves by user, host, port and database only.

use std::error::Error as StdError;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use postgres::error::SqlState;
use postgres::{Client, Config, GenericClient, IsolationLevel, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::tls;
use postgres_types::{to_sql_checked, FromSql, IsNull, Kind, ToSql, Type};

use super::db::{Db, Dialect, Row, Tx, TxKind, Value};
use super::SqlStorage;
use crate::error::{Result, TuneError};

type BoxError = Box<dyn StdError + Sync + Send>;

impl ToSql for Value {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT8 => v.to_sql(ty, out),
                Type::FLOAT8 => (*v as f64).to_sql(ty, out),
                _ => Err(format!("an integer cannot go into a column of type {ty}").into()),
            },
            Value::Real(v) => match *ty {
                Type::FLOAT8 => v.to_sql(ty, out),
                Type::FLOAT4 => (*v as f32).to_sql(ty, out),
                _ => Err(format!("a number cannot go into a column of type {ty}").into()),
            },
            // Text, names and enum labels all travel as their UTF-8 bytes.
            Value::Text(s) => match ty.kind() {
                Kind::Simple | Kind::Enum(_) | Kind::Domain(_) => {
                    out.extend_from_slice(s.as_bytes());
                    Ok(IsNull::No)
                }
                _ => Err(format!("text cannot go into a column of type {ty}").into()),
            },
            Value::Time(t) => t.to_sql(ty, out),
            Value::Ids(ids) => match *ty {
                Type::INT4_ARRAY => ids
                    .iter()
                    .map(|&i| i32::try_from(i))
                    .collect::<std::result::Result<Vec<i32>, _>>()?
                    .to_sql(ty, out),
                Type::INT8_ARRAY => ids
                    .iter()
                    .map(|&i| i64::try_from(i))
                    .collect::<std::result::Result<Vec<i64>, _>>()?
                    .to_sql(ty, out),
                _ => Err(format!("a set of ids cannot go into a value of type {ty}").into()),
            },
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

impl<'a> FromSql<'a> for Value {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, BoxError> {
        Ok(match *ty {
            Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
            Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
            Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
            Type::BOOL => Value::Int(bool::from_sql(ty, raw)?.into()),
            Type::FLOAT4 => Value::Real(f32::from_sql(ty, raw)?.into()),
            Type::FLOAT8 => Value::Real(f64::from_sql(ty, raw)?),
            Type::TIMESTAMP | Type::TIMESTAMPTZ => Value::Time(SystemTime::from_sql(ty, raw)?),
            _ => Value::Text(String::from_utf8(raw.to_vec())?),
        })
    }

    fn from_sql_null(_: &Type) -> std::result::Result<Self, BoxError> {
        Ok(Value::Null)
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// How a PostgreSQL storage connects and how long it keeps trying.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// How long a transaction keeps reconnecting and retrying before it fails (60 s).
    pub retry_for: Duration,
    /// The longest wait between two attempts (5 s); the first is 50 ms, doubling.
    pub max_backoff: Duration,
    /// The timeout of one connection attempt (10 s).
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            retry_for: Duration::from_secs(60),
            max_backoff: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(10),
        }
    }
}

struct PgDb {
    describe: String,
    config: Config,
    /// TLS as the URL's `sslmode` asks (see `tls`).
    tls: MakeRustlsConnect,
    options: PostgresOptions,
    client: Option<Client>,
    /// Prepared statements of the current connection, by their text.
    statements: std::collections::HashMap<String, Statement>,
    reconnects: u64,
}

/// What an error means for the transaction that met it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// The connection is gone: reconnect, then run the transaction again.
    Lost,
    /// The server asks for the transaction again (serialization failure, deadlock).
    Retry,
    /// Anything else: report it.
    Final,
}

fn classify(e: &postgres::Error) -> Fault {
    if e.is_closed() {
        return Fault::Lost;
    }
    match e.code() {
        // No SQL state: the socket failed under us.
        None => Fault::Lost,
        Some(c)
            if *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED =>
        {
            Fault::Retry
        }
        Some(c)
            if *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
                || c.code().starts_with("08") =>
        {
            Fault::Lost
        }
        Some(_) => Fault::Final,
    }
}

/// The text of an error: the server's message and detail, not the client's wrapping.
fn message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_string(),
        },
        None => {
            let mut s = e.to_string();
            let mut src = e.source();
            while let Some(inner) = src {
                s = format!("{s}: {inner}");
                src = inner.source();
            }
            s
        }
    }
}

/// Statements in a transaction, or on the connection itself (`TxKind::Statements`).
struct PgTx<'a, C> {
    tx: &'a mut C,
    statements: &'a mut std::collections::HashMap<String, Statement>,
    describe: &'a str,
    doing: &'a str,
    /// The fault of the last failed statement, for the retry loop.
    fault: &'a mut Option<Fault>,
}

/// `?1` placeholders as PostgreSQL's `$1`.
fn dollar(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

impl<C: GenericClient> PgTx<'_, C> {
    fn fail(&mut self, e: postgres::Error) -> TuneError {
        *self.fault = Some(classify(&e));
        TuneError::Storage {
            storage: self.describe.to_string(),
            what: format!("{}: {}", self.doing, message(&e)),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(st) = self.statements.get(sql) {
            return Ok(st.clone());
        }
        // Statements' texts are fixed (sets of ids are one array parameter), so this holds a
        // few dozen; the bound only keeps a caller's mistake from filling the server's memory
        // (dropping a statement closes it there).
        if self.statements.len() >= 256 {
            self.statements.clear();
        }
        let st = match self.tx.prepare(&dollar(sql)) {
            Ok(st) => st,
            Err(e) => return Err(self.fail(e)),
        };
        self.statements.insert(sql.to_string(), st.clone());
        Ok(st)
    }

    fn params(args: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
        args.iter().map(|a| a as &(dyn ToSql + Sync)).collect()
    }
}

impl<C: GenericClient> Tx for PgTx<'_, C> {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64> {
        let st = self.statement(sql)?;
        match self.tx.execute(&st, &Self::params(args)) {
            Ok(n) => Ok(n),
            Err(e) => Err(self.fail(e)),
        }
    }

    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>> {
        let st = self.statement(sql)?;
        let rows = match self.tx.query(&st, &Self::params(args)) {
            Ok(rows) => rows,
            Err(e) => return Err(self.fail(e)),
        };
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let mut row = Vec::with_capacity(r.len());
            for i in 0..r.len() {
                match r.try_get::<_, Value>(i) {
                    Ok(v) => row.push(v),
                    Err(e) => return Err(self.fail(e)),
                }
            }
            out.push(Row(row));
        }
        Ok(out)
    }
}

impl PgDb {
    fn connect(&mut self) -> std::result::Result<(), postgres::Error> {
        self.statements.clear();
        let mut client = self.config.connect(self.tls.clone())?;
        // Optuna's heartbeats are CURRENT_TIMESTAMP in `timestamp` columns: naive UTC only
        // when the session's time zone is UTC.
        client.batch_execute("SET TIME ZONE 'UTC'")?;
        self.client = Some(client);
        Ok(())
    }

    fn lost(&self, doing: &str, waited: Duration, last: &str) -> TuneError {
        TuneError::Storage {
            storage: self.describe.clone(),
            what: format!(
                "{doing}: the server could not be reached for {:.0} s ({last}); nothing was \
                 written by this attempt: check that PostgreSQL runs and accepts connections \
                 from this machine",
                waited.as_secs_f64()
            ),
        }
    }
}

impl Db for PgDb {
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
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
        let start = Instant::now();
        let mut backoff = Duration::from_millis(50);
        loop {
            let mut fault = None;
            let result = match self.client.as_mut().filter(|c| !c.is_closed()) {
                None => match self.connect() {
                    Ok(()) => {
                        self.reconnects += 1;
                        continue;
                    }
                    Err(e) => {
                        fault = Some(match classify(&e) {
                            Fault::Final if e.as_db_error().is_some() => Fault::Final,
                            _ => Fault::Lost,
                        });
                        Err(TuneError::Storage {
                            storage: self.describe.clone(),
                            what: format!("connecting: {}", message(&e)),
                        })
                    }
                },
                Some(client) if kind == TxKind::Statements => f(&mut PgTx {
                    tx: client,
                    statements: &mut self.statements,
                    describe: &self.describe,
                    doing,
                    fault: &mut fault,
                }),
                Some(client) => {
                    let (level, read_only) = match kind {
                        // One snapshot for all of a read's statements.
                        TxKind::Read => (IsolationLevel::RepeatableRead, true),
                        _ => (IsolationLevel::ReadCommitted, false),
                    };
                    match client
                        .build_transaction()
                        .isolation_level(level)
                        .read_only(read_only)
                        .start()
                    {
                        Err(e) => {
                            fault = Some(classify(&e));
                            Err(TuneError::Storage {
                                storage: self.describe.clone(),
                                what: format!("{doing}: {}", message(&e)),
                            })
                        }
                        Ok(mut t) => {
                            let ran = f(&mut PgTx {
                                tx: &mut t,
                                statements: &mut self.statements,
                                describe: &self.describe,
                                doing,
                                fault: &mut fault,
                            });
                            match ran {
                                Ok(()) => t.commit().map_err(|e| {
                                    fault = Some(classify(&e));
                                    TuneError::Storage {
                                        storage: self.describe.clone(),
                                        what: format!("{doing}: committing: {}", message(&e)),
                                    }
                                }),
                                Err(e) => Err(e),
                            }
                        }
                    }
                }
            };
            let err = match result {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            match fault {
                Some(Fault::Lost) | Some(Fault::Retry) => {
                    if fault == Some(Fault::Lost) {
                        self.client = None;
                    }
                    let waited = start.elapsed();
                    if waited >= self.options.retry_for {
                        let last = match &err {
                            TuneError::Storage { what, .. } => what.clone(),
                            other => other.to_string(),
                        };
                        return Err(self.lost(doing, waited, &last));
                    }
                    std::thread::sleep(backoff.min(self.options.retry_for - waited));
                    backoff = (backoff * 2).min(self.options.max_backoff);
                }
                _ => return Err(err),
            }
        }
    }
}

/// A PostgreSQL URL taken apart: the driver's configuration and a description without the
/// password.
fn parse_url(url: &str) -> Result<(Config, String, tls::Settings)> {
    let bad = |what: String| TuneError::InvalidValue(format!("invalid PostgreSQL URL: {what}"));
    // Optuna's SQLAlchemy URLs name a driver: postgresql+psycopg2://...
    let rest = ["postgresql", "postgres"]
        .iter()
        .find_map(|s| url.strip_prefix(s))
        .ok_or_else(|| bad("it must start with postgresql:// or postgres://".into()))?;
    let rest = match rest.strip_prefix('+') {
        Some(r) => &r[r.find("://").unwrap_or(0)..],
        None => rest,
    };
    let (tls, normalized) = tls::take(&format!("postgresql{rest}")).map_err(bad)?;
    let mut config = Config::from_str(&normalized).map_err(|e| {
        // The driver's message never quotes the URL; say which part to look at.
        bad(format!(
            "{e} (the form is postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=...])"
        ))
    })?;
    use postgres::config::Host;
    config.ssl_mode(tls.mode.driver());
    if config.get_user().is_none() {
        let user = std::env::var("PGUSER")
            .or_else(|_| std::env::var("USER"))
            .map_err(|_| bad("it names no user: postgresql://USER@HOST/DATABASE".into()))?;
        config.user(&user);
    }
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    let user = config.get_user().unwrap_or_default().to_string();
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    if config.get_password().is_none() {
        if let Ok(p) = std::env::var("PGPASSWORD") {
            config.password(p);
        } else if let Some(p) = pgpass(&host, port, &dbname, &user) {
            config.password(p);
        }
    }
    config.application_name("descent");
    Ok((
        config,
        format!("postgresql://{user}@{host}:{port}/{dbname}"),
        tls,
    ))
}

/// The password `~/.pgpass` (or `PGPASSFILE`) gives for a connection, as libpq reads it:
/// `host:port:database:user:password` lines, `*` matching anything, `\` escaping.
fn pgpass(host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".pgpass")))?;
    pgpass_lookup(&std::fs::read_to_string(path).ok()?, host, port, db, user)
}

fn pgpass_lookup(text: &str, host: &str, port: u16, db: &str, user: &str) -> Option<String> {
    let port = port.to_string();
    for line in text.lines() {
        if line.starts_with('#') {
            continue;
        }
        let mut fields = Vec::new();
        let mut cur = String::new();
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => cur.extend(chars.next()),
                ':' if fields.len() < 4 => fields.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        fields.push(cur);
        if fields.len() != 5 {
            continue;
        }
        let host_ok = fields[0] == "*"
            || fields[0] == host
            || (fields[0] == "localhost" && (host == "127.0.0.1" || host.starts_with('/')));
        let ok = |f: &str, v: &str| f == "*" || f == v;
        if host_ok && ok(&fields[1], &port) && ok(&fields[2], db) && ok(&fields[3], user) {
            return Some(fields.pop().unwrap_or_default());
        }
    }
    None
}

/// A URL with its password (if any) replaced by `***`, for messages that quote what a user
/// typed.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    match authority.rfind('@') {
        Some(at) => match authority[..at].find(':') {
            Some(colon) => format!(
                "{}{}:***{}",
                &url[..scheme_end + 3],
                &authority[..colon],
                &rest[at..]
            ),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

impl SqlStorage {
    /// Connects to the PostgreSQL database of `url` (`postgresql://USER[:PASSWORD]@HOST
    /// [:PORT]/DATABASE`, also `postgres://` and Optuna's `postgresql+psycopg2://`) and readies
    /// Optuna's schema there.
    pub fn connect_postgres(url: &str) -> Result<Self> {
        Self::connect_postgres_with(url, PostgresOptions::default())
    }

    /// [`SqlStorage::connect_postgres`] with its timeouts.
    pub fn connect_postgres_with(url: &str, options: PostgresOptions) -> Result<Self> {
        let (mut config, describe, tls) = parse_url(url)?;
        config.connect_timeout(options.connect_timeout);
        let tls = tls.connector().map_err(|what| TuneError::Storage {
            storage: describe.clone(),
            what,
        })?;
        let mut db = PgDb {
            describe,
            config,
            tls,
            options,
            client: None,
            statements: Default::default(),
            reconnects: 0,
        };
        // The first connection fails at once: a wrong host or password is not worth a minute.
        if let Err(e) = db.connect() {
            return Err(TuneError::Storage {
                storage: db.describe.clone(),
                what: format!("cannot connect: {}", message(&e)),
            });
        }
        let storage = SqlStorage::new(Box::new(db));
        storage.setup()?;
        Ok(storage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            dollar("SELECT a FROM t WHERE x = ?1 AND y = ?12"),
            "SELECT a FROM t WHERE x = $1 AND y = $12"
        );
    }

    #[test]
    fn urls_are_parsed_and_described_without_passwords() {
        let (c, d, _) = parse_url("postgresql://ann:s3cret@db.example:6543/studies").unwrap();
        assert_eq!(d, "postgresql://ann@db.example:6543/studies");
        assert_eq!(c.get_password(), Some(&b"s3cret"[..]));
        let (_, d, _) = parse_url("postgresql+psycopg2://ann:s3cret@db/s").unwrap();
        assert_eq!(d, "postgresql://ann@db:5432/s");
        let (_, d, _) = parse_url("postgres://ann@db/s?sslmode=disable").unwrap();
        assert_eq!(d, "postgresql://ann@db:5432/s");
        let (c, _, t) =
            parse_url("postgresql://ann@db/s?sslmode=verify-full&sslrootcert=ca.pem").unwrap();
        assert_eq!(c.get_ssl_mode(), postgres::config::SslMode::Require);
        assert_eq!(t.mode, tls::Mode::VerifyFull);
        let e = parse_url("postgresql://ann:pw@db/s?sslmode=always").unwrap_err();
        assert!(
            e.to_string().contains("sslmode=always is not one of"),
            "{e}"
        );
        assert!(!e.to_string().contains("pw"), "{e}");
        let e = parse_url("mysql://ann@db/s").unwrap_err();
        assert!(e.to_string().contains("postgresql://"), "{e}");
        let e = parse_url("postgresql://ann:pw@db:notaport/s").unwrap_err();
        assert!(!e.to_string().contains("pw@"), "{e}");
    }

    #[test]
    fn redaction_hides_only_the_password() {
        assert_eq!(
            redact_url("postgresql://ann:s3:cr@t@db:5432/x?sslmode=disable"),
            "postgresql://ann:***@db:5432/x?sslmode=disable"
        );
        assert_eq!(redact_url("postgresql://ann@db/x"), "postgresql://ann@db/x");
        assert_eq!(redact_url("sqlite:tune.db"), "sqlite:tune.db");
    }

    #[test]
    fn pgpass_lines_match_as_libpq_reads_them() {
        let text =
            "# comment\nother:5432:*:ann:no\nlocalhost:5432:studies:ann:pa\\:ss\n*:*:*:bob:b\n";
        assert_eq!(
            pgpass_lookup(text, "127.0.0.1", 5432, "studies", "ann").as_deref(),
            Some("pa:ss")
        );
        assert_eq!(
            pgpass_lookup(text, "db", 1, "x", "bob").as_deref(),
            Some("b")
        );
        assert_eq!(pgpass_lookup(text, "db", 5432, "studies", "ann"), None);
    }
}
