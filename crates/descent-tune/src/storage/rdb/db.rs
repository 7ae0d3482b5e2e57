//! The little a storage asks of a SQL database: transactions, statements with positional
//! arguments, rows of dynamically typed values. SQLite and PostgreSQL implement it; the
//! study logic in [`super::SqlStorage`] is written once against it.
//!
//! Statements are written with `?1`, `?2`, ... placeholders (SQLite's); PostgreSQL's
//! implementation rewrites them to `$1`, `$2`, .... Everything else used is the SQL both
//! speak: `INSERT ... RETURNING`, `ON CONFLICT ... DO UPDATE`, `CURRENT_TIMESTAMP`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Result, TuneError};

/// A value going into or coming out of a statement.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    /// A naive UTC timestamp (Optuna's `DateTime` columns).
    Time(SystemTime),
    /// A set of row ids, bound as one array (PostgreSQL only: see `id_in`).
    Ids(Vec<u64>),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(v)
    }
}
impl From<u64> for Value {
    fn from(v: u64) -> Self {
        Value::Int(v as i64)
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Real(v)
    }
}
impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Value::Text(v.to_string())
    }
}
impl From<String> for Value {
    fn from(v: String) -> Self {
        Value::Text(v)
    }
}
impl From<SystemTime> for Value {
    fn from(v: SystemTime) -> Self {
        Value::Time(v)
    }
}
impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Value::Null, Into::into)
    }
}

/// Which SQL the database speaks, where the two differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// What a transaction will do: read only, or write (SQLite takes its write lock up front);
/// or no transaction at all: each statement commits on its own, for reads that need no single
/// snapshot and writes of one statement (it saves PostgreSQL the round trips of BEGIN and
/// COMMIT).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TxKind {
    Read,
    Write,
    Statements,
}

/// A connection to one database.
pub(crate) trait Db: Send {
    /// The database, for messages, without any password.
    fn describe(&self) -> String;

    /// The SQL dialect.
    fn dialect(&self) -> Dialect;

    /// Runs `f` in one transaction and commits it if `f` succeeds. A database that can lose
    /// its connection reconnects and runs `f` again from the start, so `f` must keep no
    /// effect outside the transaction but its result.
    fn transaction(
        &mut self,
        kind: TxKind,
        doing: &str,
        f: &mut dyn FnMut(&mut dyn Tx) -> Result<()>,
    ) -> Result<()>;
}

/// Statements inside a transaction.
pub(crate) trait Tx {
    /// The SQL dialect.
    fn dialect(&self) -> Dialect;

    /// Runs a statement; returns how many rows it changed.
    fn exec(&mut self, sql: &str, args: &[Value]) -> Result<u64>;

    /// Runs a query; returns its rows.
    fn query(&mut self, sql: &str, args: &[Value]) -> Result<Vec<Row>>;
}

impl dyn Tx + '_ {
    /// The first row, if any.
    pub(crate) fn query_opt(&mut self, sql: &str, args: &[Value]) -> Result<Option<Row>> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    /// Exactly one row.
    pub(crate) fn query_one(&mut self, sql: &str, args: &[Value]) -> Result<Row> {
        self.query_opt(sql, args)?
            .ok_or_else(|| TuneError::InvalidValue(format!("no row from `{sql}`")))
    }

    /// `FOR UPDATE` where the database locks rows that way (SQLite's write transactions
    /// already hold the whole file).
    pub(crate) fn for_update(&self) -> &'static str {
        match self.dialect() {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }
}

/// One row of a query.
#[derive(Clone, Debug)]
pub(crate) struct Row(pub Vec<Value>);

impl Row {
    fn get(&self, i: usize) -> Result<&Value> {
        self.0
            .get(i)
            .ok_or_else(|| TuneError::InvalidValue(format!("a row has no column {i}")))
    }

    fn wrong(&self, i: usize, want: &str) -> TuneError {
        TuneError::InvalidValue(format!(
            "column {i} holds {:?} where {want} was expected",
            self.0.get(i)
        ))
    }

    pub(crate) fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Int(v) => Ok(Some(*v)),
            _ => Err(self.wrong(i, "an integer")),
        }
    }

    pub(crate) fn int(&self, i: usize) -> Result<i64> {
        self.opt_int(i)?.ok_or_else(|| self.wrong(i, "an integer"))
    }

    pub(crate) fn id(&self, i: usize) -> Result<u64> {
        let v = self.int(i)?;
        u64::try_from(v).map_err(|_| self.wrong(i, "a non-negative integer"))
    }

    pub(crate) fn opt_real(&self, i: usize) -> Result<Option<f64>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Real(v) => Ok(Some(*v)),
            Value::Int(v) => Ok(Some(*v as f64)),
            _ => Err(self.wrong(i, "a number")),
        }
    }

    pub(crate) fn opt_text(&self, i: usize) -> Result<Option<&str>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Text(v) => Ok(Some(v)),
            _ => Err(self.wrong(i, "text")),
        }
    }

    pub(crate) fn text(&self, i: usize) -> Result<&str> {
        self.opt_text(i)?.ok_or_else(|| self.wrong(i, "text"))
    }

    /// A timestamp, from a timestamp column or SQLite's text.
    pub(crate) fn opt_time(&self, i: usize) -> Result<Option<SystemTime>> {
        match self.get(i)? {
            Value::Null => Ok(None),
            Value::Time(t) => Ok(Some(*t)),
            Value::Text(s) => parse_time(s)
                .map(Some)
                .ok_or_else(|| self.wrong(i, "a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff])")),
            _ => Err(self.wrong(i, "a timestamp")),
        }
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// `YYYY-MM-DD HH:MM:SS.ffffff` in UTC, as SQLAlchemy writes SQLite's `DATETIME`.
pub(crate) fn format_time(t: SystemTime) -> String {
    let micros = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_micros() as i64,
        Err(e) => -(e.duration().as_micros() as i64),
    };
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{frac:06}",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// Reads `YYYY-MM-DD HH:MM:SS[.f...]` (or `T` between) as UTC.
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let s = s.trim();
    let (date, time) = s.split_once([' ', 'T']).unwrap_or((s, "00:00:00"));
    let mut dp = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, mo, d) = (dp.next()??, dp.next()??, dp.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut tp = hms.splitn(3, ':').map(|p| p.parse::<i64>().ok());
    let (h, mi, sec) = (tp.next()??, tp.next()??, tp.next()??);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut micros = 0i64;
    for (k, c) in frac.chars().take(6).enumerate() {
        micros += c.to_digit(10)? as i64 * 10i64.pow(5 - k as u32);
    }
    let total =
        (days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec) * 1_000_000 + micros;
    Some(if total >= 0 {
        UNIX_EPOCH + Duration::from_micros(total as u64)
    } else {
        UNIX_EPOCH - Duration::from_micros(total.unsigned_abs())
    })
}

/// Seconds since the epoch (the `f64` times of [`crate::FrozenTrial`]).
/// Now, to the microsecond that both databases keep.
pub(crate) fn now_micros() -> SystemTime {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    UNIX_EPOCH + Duration::from_micros(d.as_micros() as u64)
}

pub(crate) fn to_secs(t: SystemTime) -> f64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(e) => -e.duration().as_secs_f64(),
    }
}

/// The time of seconds since the epoch.
pub(crate) fn from_secs(s: f64) -> SystemTime {
    if s >= 0.0 {
        UNIX_EPOCH + Duration::from_secs_f64(s)
    } else {
        UNIX_EPOCH - Duration::from_secs_f64(-s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_sqlalchemy_text() {
        for secs in [0.0, 1.5, 951_782_400.25, 1_764_700_000.123_456, -86_400.5] {
            let text = format_time(from_secs(secs));
            let back = to_secs(parse_time(&text).unwrap());
            assert!((back - secs).abs() < 1e-6, "{text}: {back} against {secs}");
        }
        assert_eq!(format_time(from_secs(0.0)), "1970-01-01 00:00:00.000000");
        // 2000-02-29 (a leap day of a century divisible by 400) at 12:34:56.789.
        assert_eq!(
            format_time(from_secs(951_827_696.789)),
            "2000-02-29 12:34:56.789000"
        );
        // SQLite's CURRENT_TIMESTAMP has no fraction.
        assert_eq!(
            parse_time("2026-12-02 18:20:13"),
            Some(from_secs(1_796_235_613.0))
        );
        assert_eq!(parse_time("2026-13-02 18:20:13"), None);
        assert_eq!(parse_time("yesterday"), None);
    }
}
