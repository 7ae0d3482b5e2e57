//! The PostgreSQL server of the tests: `DESCENT_TEST_POSTGRES` names it (a URL such as
//! `tools/pg_local.sh start DIR` prints; `.ci/run` starts one). Each call makes a fresh
//! schema there, so tests never see each other's studies.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

pub const POSTGRES_ENV: &str = "DESCENT_TEST_POSTGRES";

/// The URL of a new, empty schema on the test server; `None` (said once per test) where no
/// server is given.
pub fn postgres_url(test: &str) -> Option<String> {
    let Ok(url) = std::env::var(POSTGRES_ENV) else {
        eprintln!(
            "{test}: PostgreSQL skipped: set {POSTGRES_ENV}=postgresql://USER:PASSWORD@HOST:PORT/DB \
             (tools/pg_local.sh start DIR prints one)"
        );
        return None;
    };
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed),
        nanos
    );
    let mut client = postgres::Client::connect(&url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("{POSTGRES_ENV} names a server that refuses: {e}"));
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-csearch_path%3D{schema}"))
}
