//! TLS to PostgreSQL as `sslmode` asks: on the test server of `tools/pg_local.sh`, which
//! serves a certificate for `localhost` (not for 127.0.0.1) signed by its own CA, whose
//! certificate `DESCENT_TEST_POSTGRES_CA` names.

mod common;

use descent_tune::{SqlStorage, Storage, TrialState, TuneError};

const CA_ENV: &str = "DESCENT_TEST_POSTGRES_CA";

/// The test server's URL on a fresh schema, and its CA file; `None` where either is not set.
fn server(test: &str) -> Option<(String, String)> {
    let url = common::postgres_url(test)?;
    let Ok(ca) = std::env::var(CA_ENV) else {
        eprintln!("{test}: TLS skipped: set {CA_ENV} to the server's CA (tools/pg_local.sh writes DIR/ca.crt)");
        return None;
    };
    Some((url, ca))
}

fn with(url: &str, query: &str) -> String {
    format!("{url}&{query}")
}

fn refused(url: &str) -> String {
    match SqlStorage::connect_postgres(url) {
        Ok(_) => panic!("connected to {}", descent_tune::redact_url(url)),
        Err(e @ TuneError::Storage { .. }) => e.to_string(),
        Err(e) => panic!("not a storage error: {e}"),
    }
}

#[test]
fn verify_full_checks_the_chain_and_the_name() {
    let Some((url, ca)) = server("verify_full_checks_the_chain_and_the_name") else {
        return;
    };
    let password = url
        .split_once("://")
        .and_then(|(_, r)| r.split_once('@'))
        .and_then(|(u, _)| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .unwrap();
    let localhost = url.replacen("@127.0.0.1:", "@localhost:", 1);
    assert_ne!(localhost, url, "the test server listens on 127.0.0.1");

    // The right CA and the certificate's name: a working storage over TLS.
    let s = SqlStorage::connect_postgres(&with(
        &localhost,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ))
    .unwrap();
    let study = s
        .create_study("tls", descent_tune::Direction::Minimize)
        .unwrap();
    let t = s.start_trial(study.id, None, "me", false).unwrap().unwrap();
    s.finish_trial(t.id, TrialState::Complete, Some(1.5), None)
        .unwrap();
    assert_eq!(s.trials(study.id).unwrap()[0].value, Some(1.5));

    // The right CA, another name: verify-ca takes it, verify-full does not.
    SqlStorage::connect_postgres(&with(&url, &format!("sslmode=verify-ca&sslrootcert={ca}")))
        .unwrap();
    let e = refused(&with(
        &url,
        &format!("sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(e.contains("not valid for name"), "{e}");

    // A CA that did not sign it: refused by both checks; require (no check) connects.
    let other = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/unrelated_ca.pem"
    );
    for mode in ["verify-ca", "verify-full"] {
        let e = refused(&with(
            &localhost,
            &format!("sslmode={mode}&sslrootcert={other}"),
        ));
        assert!(
            e.contains("UnknownIssuer") || e.contains("unknown issuer"),
            "{e}"
        );
        assert!(!e.contains(&password), "{e}");
    }
    SqlStorage::connect_postgres(&with(&url, "sslmode=require")).unwrap();

    // A missing root file is named before any connection.
    let e = refused(&with(
        &url,
        "sslmode=verify-full&sslrootcert=/no/such/root.crt",
    ));
    assert!(e.contains("/no/such/root.crt"), "{e}");
}
