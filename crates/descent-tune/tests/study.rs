//! Studies through every sampler and every storage: the same suite for each (contract tests),
//! then errors, pruners, enqueued trials and failures.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use descent_tune::benchmarks::{run, BRANIN};
use descent_tune::{
    Direction, GridSampler, HyperbandPruner, InMemoryStorage, OptimizeOptions, Outcome, ParamValue,
    PercentilePruner, RandomSampler, Sampler, SqlStorage, Storage, Study, SuccessiveHalvingPruner,
    TpeConfig, TpeSampler, TrialError, TrialState, TuneError,
};

type MakeSampler = Box<dyn Fn() -> Box<dyn Sampler>>;

fn samplers(seed: u64) -> Vec<(&'static str, MakeSampler)> {
    vec![
        (
            "random",
            Box::new(move || Box::new(RandomSampler::new(seed))),
        ),
        ("tpe", Box::new(move || Box::new(TpeSampler::new(seed)))),
        (
            "tpe-univariate",
            Box::new(move || {
                Box::new(TpeSampler::with_config(TpeConfig {
                    seed,
                    multivariate: false,
                    ..TpeConfig::default()
                }))
            }),
        ),
    ]
}

fn storages(dir: &std::path::Path) -> Vec<(&'static str, Arc<dyn Storage>)> {
    let mut all: Vec<(&'static str, Arc<dyn Storage>)> = vec![
        ("memory", Arc::new(InMemoryStorage::new())),
        (
            "sqlite",
            Arc::new(SqlStorage::open_sqlite(dir.join("contract.db")).unwrap()),
        ),
    ];
    if let Some(url) = common::postgres_url("contract tests") {
        all.push((
            "postgresql",
            Arc::new(SqlStorage::connect_postgres(&url).unwrap()),
        ));
    }
    all
}

/// A mixed space: log float, stepped int, categorical, conditional parameter.
fn mixed(trial: &mut descent_tune::Trial) -> Result<f64, TrialError> {
    let lr = trial.suggest_float_log("lr", 1e-4, 1.0)?;
    let width = trial.suggest_int_step("width", 16, 256, 16)?;
    let opt = trial.suggest_categorical("opt", &["sgd", "adam"])?;
    let momentum = if opt == "sgd" {
        trial.suggest_float("momentum", 0.0, 0.99)?
    } else {
        0.0
    };
    trial.set_user_attr("note", format!("{opt}/{width}"))?;
    Ok(
        (lr.ln() - 0.01f64.ln()).powi(2) + ((width - 128) as f64 / 64.0).powi(2) + momentum
            - if opt == "adam" { 0.5 } else { 0.0 },
    )
}

#[test]
fn every_sampler_on_every_storage_stays_in_the_space_and_replays_by_seed() {
    let dir = tempfile::tempdir().unwrap();
    for (sname, storage) in storages(dir.path()) {
        for (name, make) in samplers(3) {
            let mut runs = Vec::new();
            for rep in 0..2 {
                let study = Study::builder(format!("{name}-{rep}"))
                    .storage(storage.clone())
                    .sampler(make())
                    .build()
                    .unwrap();
                let opts = OptimizeOptions {
                    n_trials: Some(30),
                    ..Default::default()
                };
                let s = study.optimize(mixed, &opts).unwrap();
                assert_eq!(s.complete, 30, "{sname}/{name}");
                let trials = study.trials().unwrap();
                assert_eq!(trials.len(), 30);
                for (i, t) in trials.iter().enumerate() {
                    assert_eq!(t.number, i as u64);
                    assert_eq!(t.state, TrialState::Complete);
                    for p in t.params.values() {
                        assert!(p.distribution.contains(p.internal), "{sname}/{name}: {p:?}");
                    }
                    assert_eq!(
                        t.params.contains_key("momentum"),
                        t.param("opt") == Some("sgd".into())
                    );
                    assert!(t.user_attrs.contains_key("note"));
                }
                let values: Vec<f64> = trials.iter().map(|t| t.value.unwrap()).collect();
                runs.push(values);
            }
            assert_eq!(runs[0], runs[1], "{sname}/{name}: same seed, same study");
        }
    }
}

#[test]
fn tpe_beats_random_search_on_branin() {
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let tpe: Vec<f64> = (0..7)
        .map(|s| run(&BRANIN, TpeSampler::new(s), 80).unwrap().0)
        .collect();
    let random: Vec<f64> = (0..7)
        .map(|s| run(&BRANIN, RandomSampler::new(s), 80).unwrap().0)
        .collect();
    let (t, r) = (median(tpe), median(random));
    assert!(t < r / 3.0, "tpe {t} vs random {r}");
}

#[test]
fn grid_visits_every_point_once_then_stops() {
    let mut space = BTreeMap::new();
    space.insert(
        "a".to_string(),
        vec![ParamValue::Int(1), ParamValue::Int(2), ParamValue::Int(3)],
    );
    space.insert("b".to_string(), vec!["x".into(), "y".into()]);
    let study = Study::builder("grid")
        .sampler(GridSampler::new(space, 1).unwrap())
        .build()
        .unwrap();
    let opts = OptimizeOptions {
        n_trials: Some(50),
        n_jobs: 2,
        ..Default::default()
    };
    study
        .optimize(
            |t| {
                let a = t.suggest_int("a", 1, 3)?;
                let b = t.suggest_categorical("b", &["x", "y"])?;
                Ok(a as f64 + if b == "y" { 0.5 } else { 0.0 })
            },
            &opts,
        )
        .unwrap();
    let mut seen: Vec<f64> = study
        .trials()
        .unwrap()
        .iter()
        .map(|t| t.value.unwrap())
        .collect();
    seen.sort_by(f64::total_cmp);
    assert_eq!(seen, vec![1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
}

#[test]
fn invalid_search_spaces_stop_the_study_with_a_clear_error() {
    type Objective = fn(&mut descent_tune::Trial) -> Result<f64, TrialError>;
    let cases: Vec<(Objective, &str)> = vec![
        (|t| Ok(t.suggest_float("x", 2.0, 1.0)?), "low 2 > high 1"),
        (
            |t| Ok(t.suggest_float_log("lr", 0.0, 1.0)?),
            "log scale needs low > 0",
        ),
        (
            |t| Ok(t.suggest_int_log("n", -1, 8)? as f64),
            "log scale needs low >= 1",
        ),
        (
            |t| {
                let c: &[&str] = &[];
                t.suggest_categorical("c", c)?;
                Ok(0.0)
            },
            "no choices",
        ),
        (
            |t| {
                t.suggest_float("x", 0.0, 1.0)?;
                Ok(t.suggest_int("x", 0, 1)? as f64)
            },
            "parameter `x` was defined as float [0, 1]",
        ),
    ];
    for (objective, want) in cases {
        let study = Study::builder("bad").build().unwrap();
        let opts = OptimizeOptions {
            n_trials: Some(5),
            ..Default::default()
        };
        let e = study.optimize(objective, &opts).unwrap_err().to_string();
        assert!(e.contains(want), "{e}");
        // The trial that hit it is recorded as failed, with the reason.
        let trials = study.trials().unwrap();
        assert_eq!(trials.len(), 1);
        assert_eq!(trials[0].state, TrialState::Fail);
        assert!(trials[0].message.as_deref().unwrap().contains(want));
    }
}

#[test]
fn a_parameter_redefined_across_trials_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&path).unwrap());
    let study = Study::builder("s").storage(storage).build().unwrap();
    let mut t = study.ask().unwrap();
    t.suggest_categorical("opt", &["sgd", "adam"]).unwrap();
    study.tell(t, Outcome::Complete(1.0)).unwrap();
    // Another process (a fresh storage handle) redefines it.
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&path).unwrap());
    let study = Study::load("s", storage).unwrap();
    let mut t = study.ask().unwrap();
    let e = t
        .suggest_categorical("opt", &["sgd", "lion"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`opt`") && e.contains("one of {sgd, adam}"),
        "{e}"
    );
    // Bounds may change (as in Optuna).
    t.suggest_float("x", 0.0, 1.0).unwrap();
    let mut t2 = study.ask().unwrap();
    t2.suggest_float("x", 0.0, 2.0).unwrap();
}

#[test]
fn failures_panics_and_nan_are_recorded_and_the_study_goes_on() {
    let study = Study::builder("f")
        .sampler(RandomSampler::new(0))
        .build()
        .unwrap();
    let opts = OptimizeOptions {
        n_trials: Some(8),
        ..Default::default()
    };
    let s = study
        .optimize(
            |t| {
                let x = t.suggest_float("x", 0.0, 1.0)?;
                match t.number() % 4 {
                    0 => Err(TrialError::msg("diverged")),
                    1 => panic!("boom {}", t.number()),
                    2 => Ok(f64::NAN),
                    _ => Ok(x),
                }
            },
            &opts,
        )
        .unwrap();
    assert_eq!((s.complete, s.failed), (2, 6));
    let trials = study.trials().unwrap();
    let msgs: Vec<String> = trials.iter().filter_map(|t| t.message.clone()).collect();
    assert!(msgs[0].contains("diverged"));
    assert!(msgs[1].contains("panicked: boom 1"));
    assert!(msgs[2].contains("NaN"));
    assert_eq!(study.best_trial().unwrap().unwrap().number, 3);
}

#[test]
fn enqueued_trials_run_first_with_their_values() {
    let study = Study::builder("q").maximize().build().unwrap();
    let mut fixed = BTreeMap::new();
    fixed.insert("lr".to_string(), ParamValue::Float(0.01));
    fixed.insert("opt".to_string(), ParamValue::from("adam"));
    assert_eq!(study.enqueue(fixed).unwrap(), 0);
    let mut t = study.ask().unwrap();
    assert_eq!(t.number(), 0);
    assert_eq!(t.suggest_float_log("lr", 1e-4, 1.0).unwrap(), 0.01);
    assert_eq!(
        t.suggest_categorical("opt", &["sgd", "adam"]).unwrap(),
        "adam"
    );
    study.tell(t, Outcome::Complete(0.9)).unwrap();
    // A value outside the space is refused with the parameter named.
    let mut fixed = BTreeMap::new();
    fixed.insert("lr".to_string(), ParamValue::Float(5.0));
    study.enqueue(fixed).unwrap();
    let mut t = study.ask().unwrap();
    let e = t
        .suggest_float_log("lr", 1e-4, 1.0)
        .unwrap_err()
        .to_string();
    assert!(e.contains("value 5 for `lr`"), "{e}");
    // Telling twice is refused.
    study.tell(t, Outcome::Fail("x".into())).unwrap();
    let t = study.ask().unwrap();
    let number = t.number();
    study.tell(t, Outcome::Complete(1.0)).unwrap();
    let trials = study.trials().unwrap();
    let e = study
        .storage()
        .finish_trial(
            trials[number as usize].id,
            TrialState::Complete,
            Some(2.0),
            None,
        )
        .unwrap_err();
    assert!(matches!(e, TuneError::TrialFinished { .. }), "{e}");
}

/// An enqueued trial (and so a retried one) gets back the very bits of its values on every
/// storage: the CI once saw -3.9169756202422787 come back one unit in the last place away,
/// from JSON parsed without correct rounding.
#[test]
fn enqueued_floats_come_back_bit_for_bit_on_every_storage() {
    let dir = tempfile::tempdir().unwrap();
    let mut values = vec![-3.9169756202422787, 0.1, 1.0 / 3.0, 5e-324, f64::MAX, -0.0];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..200 {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let x = f64::from_bits(state >> 1);
        if x.is_finite() {
            values.push(if state & 1 == 1 { -x } else { x });
        }
    }
    for (sname, storage) in storages(dir.path()) {
        let study = Study::builder(format!("bits-{sname}"))
            .storage(storage)
            .build()
            .unwrap();
        for &x in &values {
            let mut fixed = BTreeMap::new();
            fixed.insert("x".to_string(), ParamValue::Float(x));
            study.enqueue(fixed).unwrap();
            let mut t = study.ask().unwrap();
            let got = t.suggest_float("x", f64::MIN, f64::MAX).unwrap();
            assert_eq!(
                got.to_bits(),
                x.to_bits(),
                "{sname}: {x:e} came back as {got:e}"
            );
            study.tell(t, Outcome::Complete(0.0)).unwrap();
        }
    }
}

#[test]
fn studies_resume_by_name_and_keep_their_direction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&path).unwrap());
        let study = Study::builder("acc")
            .maximize()
            .storage(storage)
            .build()
            .unwrap();
        let opts = OptimizeOptions {
            n_trials: Some(5),
            ..Default::default()
        };
        study
            .optimize(|t| Ok(t.suggest_float("x", 0.0, 1.0)?), &opts)
            .unwrap();
    }
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&path).unwrap());
    let e = Study::builder("acc")
        .storage(storage.clone())
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("already exists"), "{e}");
    let e = Study::builder("acc")
        .storage(storage.clone())
        .load_if_exists(true)
        .build()
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("created to maximize"), "{e}");
    let e = Study::load("nope", storage.clone())
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("no study named `nope`") && e.contains("it holds: acc"),
        "{e}"
    );
    let study = Study::load("acc", storage).unwrap();
    assert_eq!(study.direction(), Direction::Maximize);
    let opts = OptimizeOptions {
        max_study_trials: Some(8),
        ..Default::default()
    };
    study
        .optimize(|t| Ok(t.suggest_float("x", 0.0, 1.0)?), &opts)
        .unwrap();
    assert_eq!(study.trials().unwrap().len(), 8);
}

#[test]
fn unreadable_and_locked_storage_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    // A directory.
    let e = SqlStorage::open_sqlite(dir.path())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("is a directory"), "{e}");
    // A missing directory.
    let e = SqlStorage::open_sqlite(dir.path().join("no/such/x.db"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("does not exist"), "{e}");
    // Not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let e = SqlStorage::open_sqlite(&junk).err().unwrap().to_string();
    assert!(e.contains("is not a SQLite database"), "{e}");
    // Locked: another connection holds the write lock past our busy timeout.
    let path = dir.path().join("locked.db");
    let storage =
        SqlStorage::open_sqlite_with_timeout(&path, std::time::Duration::from_millis(200)).unwrap();
    let storage: Arc<dyn Storage> = Arc::new(storage);
    let study = Study::builder("s").storage(storage).build().unwrap();
    // Another connection (as another process would) holds the write lock.
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let e = study.ask().err().unwrap().to_string();
    assert!(
        e.contains("is locked by another process") && e.contains("200 ms"),
        "{e}"
    );
    holder.execute_batch("COMMIT").unwrap();
    study.ask().unwrap();
}

#[test]
fn pruners_stop_the_laggards() {
    // Trials report a curve per step; trial quality is its number's parity.
    let curve = |good: bool, step: u64| {
        (if good { 0.9 } else { 0.5 }) * (1.0 - 0.5f64.powi(step as i32 + 1))
    };
    type Make = Box<dyn Fn() -> Box<dyn descent_tune::Pruner>>;
    let pruners: Vec<(&str, Make)> = vec![
        (
            "median",
            Box::new(|| Box::new(PercentilePruner::median().startup_trials(2))),
        ),
        (
            "percentile",
            Box::new(|| Box::new(PercentilePruner::new(25.0).unwrap().startup_trials(2))),
        ),
        (
            "sh",
            Box::new(|| Box::new(SuccessiveHalvingPruner::new(1, 2, 0).unwrap())),
        ),
        (
            "hyperband",
            Box::new(|| Box::new(HyperbandPruner::new(1, 8, 2).unwrap())),
        ),
    ];
    for (name, make) in pruners {
        let study = Study::builder(name)
            .maximize()
            .sampler(RandomSampler::new(0))
            .pruner(make())
            .build()
            .unwrap();
        let opts = OptimizeOptions {
            n_trials: Some(24),
            ..Default::default()
        };
        let s = study
            .optimize(
                |t| {
                    let good = t.number() % 2 == 0;
                    let mut v = 0.0;
                    for step in 1..=8 {
                        v = curve(good, step);
                        t.report(v, step)?;
                        if t.should_prune()? {
                            return Err(TrialError::Pruned);
                        }
                    }
                    Ok(v)
                },
                &opts,
            )
            .unwrap();
        let trials = study.trials().unwrap();
        let pruned_good = trials
            .iter()
            .filter(|t| t.state == TrialState::Pruned && t.number % 2 == 0)
            .count();
        let pruned_bad = trials
            .iter()
            .filter(|t| t.state == TrialState::Pruned && t.number % 2 == 1)
            .count();
        assert!(s.pruned > 0, "{name}: nothing pruned");
        assert!(
            pruned_bad > pruned_good,
            "{name}: bad {pruned_bad} good {pruned_good}"
        );
        // A pruned trial keeps its last value and its reports.
        for t in trials.iter().filter(|t| t.state == TrialState::Pruned) {
            assert_eq!(t.value, t.last_step().map(|s| s.1), "{name}");
        }
    }
}

/// descent's first schema, as descent 0.1 wrote study files before it took Optuna's.
const V1_SCHEMA: &str = "
CREATE TABLE descent_tune (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT INTO descent_tune VALUES ('schema_version', '1');
CREATE TABLE studies (study_id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE,
    direction TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, study_id INTEGER NOT NULL REFERENCES
    studies(study_id), number INTEGER NOT NULL, state TEXT NOT NULL, value REAL,
    fixed TEXT NOT NULL DEFAULT '{}', message TEXT, started REAL, finished REAL, owner TEXT,
    UNIQUE (study_id, number));
CREATE INDEX trials_by_state ON trials (study_id, state);
CREATE TABLE params (trial_id INTEGER NOT NULL REFERENCES trials(trial_id), name TEXT NOT NULL,
    distribution TEXT NOT NULL, internal REAL NOT NULL, PRIMARY KEY (trial_id, name));
CREATE TABLE intermediate (trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    step INTEGER NOT NULL, value REAL, PRIMARY KEY (trial_id, step));
CREATE TABLE user_attrs (trial_id INTEGER NOT NULL REFERENCES trials(trial_id),
    key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (trial_id, key));
INSERT INTO studies VALUES (1, 'old', 'maximize', 1700000000.0);
INSERT INTO trials VALUES (1, 1, 0, 'complete', 0.93, '{}', NULL, 1700000001.25, 1700000009.5, 'box:12');
INSERT INTO trials VALUES (2, 1, 1, 'fail', NULL, '{}', 'diverged', 1700000010.0, 1700000011.0, 'box:12');
INSERT INTO trials VALUES (3, 1, 2, 'waiting', NULL, '{\"lr\":0.01,\"optimizer\":\"adam\"}', NULL, NULL, NULL, NULL);
INSERT INTO params VALUES (1, 'lr', '{\"type\":\"float\",\"low\":0.0001,\"high\":1.0,\"log\":true,\"step\":null}', 0.003);
INSERT INTO params VALUES (1, 'optimizer', '{\"type\":\"categorical\",\"choices\":[\"sgd\",\"adam\"]}', 1.0);
INSERT INTO params VALUES (1, 'width', '{\"type\":\"int\",\"low\":16,\"high\":256,\"log\":false,\"step\":16}', 64.0);
INSERT INTO intermediate VALUES (1, 1, 0.9);
INSERT INTO intermediate VALUES (1, 2, NULL);
INSERT INTO user_attrs VALUES (1, 'epochs', '2');
";

#[test]
fn a_study_file_of_descents_first_schema_moves_into_optunas_losslessly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(V1_SCHEMA)
        .unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&path).unwrap());
    let study = Study::load("old", storage).unwrap();
    assert_eq!(study.direction(), Direction::Maximize);
    let t = study.trials().unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(
        (t[0].number, t[0].state, t[0].value),
        (0, TrialState::Complete, Some(0.93))
    );
    assert_eq!(t[0].param("lr"), Some(ParamValue::Float(0.003)));
    assert_eq!(
        t[0].param("optimizer"),
        Some(ParamValue::Str("adam".into()))
    );
    assert_eq!(t[0].param("width"), Some(ParamValue::Int(64)));
    assert_eq!(t[0].intermediate[&1], 0.9);
    assert!(t[0].intermediate[&2].is_nan());
    assert_eq!(t[0].user_attrs["epochs"], serde_json::json!(2));
    assert_eq!(t[0].owner.as_deref(), Some("box:12"));
    assert!((t[0].started.unwrap() - 1_700_000_001.25).abs() < 1e-6);
    assert!((t[0].duration().unwrap() - 8.25).abs() < 1e-6);
    assert_eq!((t[1].state, t[1].value), (TrialState::Fail, None));
    assert_eq!(t[1].message.as_deref(), Some("diverged"));
    assert_eq!(t[2].state, TrialState::Waiting);
    assert_eq!(t[2].fixed["optimizer"], ParamValue::Str("adam".into()));
    // The old tables are gone; the enqueued trial runs next, with its fixed values.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let old: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('descent_tune', 'params', \
             'intermediate', 'user_attrs')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(old, 0);
    let mut trial = study.ask().unwrap();
    assert_eq!(trial.number(), 2);
    let lr = trial.suggest_float_log("lr", 1e-4, 1.0).unwrap();
    assert_eq!(lr, 0.01);
    // Opening it again finds Optuna's schema and changes nothing.
    drop(trial);
    let again = SqlStorage::open_sqlite(&path).unwrap();
    assert_eq!(
        Study::load("old", Arc::new(again))
            .unwrap()
            .trials()
            .unwrap()
            .len(),
        3
    );
}

#[test]
fn a_database_of_another_optuna_schema_version_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("o.db");
    drop(SqlStorage::open_sqlite(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("UPDATE version_info SET schema_version = 11; UPDATE alembic_version SET version_num = 'v3.0.0.d'")
        .unwrap();
    let e = SqlStorage::open_sqlite(&path).err().unwrap().to_string();
    assert!(
        e.contains("schema version 11") && e.contains("optuna storage upgrade"),
        "{e}"
    );
}

#[test]
fn stale_trials_are_failed_by_heartbeat_and_retried_once_on_every_storage() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let grace = Duration::from_secs(1);
    let open = |storage: &Arc<dyn Storage>| {
        Study::builder("beats")
            .storage(storage.clone())
            .heartbeat(Duration::from_millis(300))
            .grace_period(grace)
            .retry_failed(1)
            .load_if_exists(true)
            .build()
            .unwrap()
    };
    // A worker starts a trial, records its parameters and vanishes without a word.
    let mut gone = Vec::new();
    for (name, storage) in storages(dir.path()) {
        let study = open(&storage);
        let mut t = study.ask().unwrap();
        t.suggest_float("x", 0.0, 1.0).unwrap();
        let x = t.params()["x"].clone();
        std::mem::forget(t);
        assert!(
            study.fail_stale_trials().unwrap().is_empty(),
            "{name}: fresh"
        );
        gone.push((name, storage, x));
    }
    // SQLite's CURRENT_TIMESTAMP counts whole seconds.
    std::thread::sleep(grace + Duration::from_millis(1200));
    for (name, storage, x) in gone {
        let study = open(&storage);
        assert_eq!(study.fail_stale_trials().unwrap(), vec![0], "{name}");
        assert!(
            study.fail_stale_trials().unwrap().is_empty(),
            "{name}: twice"
        );
        let trials = study.trials().unwrap();
        assert_eq!(trials.len(), 2, "{name}");
        assert_eq!(trials[0].state, TrialState::Fail);
        assert!(
            trials[0]
                .message
                .as_deref()
                .unwrap()
                .contains("no heartbeat"),
            "{name}"
        );
        assert_eq!(
            (trials[1].state, trials[1].retried_trial()),
            (TrialState::Waiting, Some(0))
        );
        // The retry runs next, with the failed trial's values, even past the study's limit.
        let mut retry = study.ask_limited(Some(1)).unwrap().expect("the retry");
        assert_eq!(retry.number(), 1);
        assert_eq!(
            ParamValue::Float(retry.suggest_float("x", 0.0, 1.0).unwrap()),
            x
        );
        std::mem::forget(retry);
        assert!(
            study.ask_limited(Some(1)).unwrap().is_none(),
            "{name}: limit"
        );
        // It goes stale too: retried at most once along the chain.
        std::thread::sleep(grace + Duration::from_millis(1200));
        assert_eq!(study.fail_stale_trials().unwrap(), vec![1], "{name}");
        let trials = study.trials().unwrap();
        assert_eq!(trials.len(), 2, "{name}: no second retry");
        assert_eq!(trials[1].retry_history(), vec![0]);
    }
}

#[test]
fn a_running_trial_keeps_its_heartbeat() {
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    for (name, storage) in storages(dir.path()) {
        let study = Study::builder("alive")
            .storage(storage.clone())
            .heartbeat(Duration::from_millis(200))
            .grace_period(Duration::from_secs(1))
            .build()
            .unwrap();
        // Another worker, looking for stale trials while this one runs.
        let watcher = Study::builder("alive")
            .storage(storage)
            .heartbeat(Duration::from_millis(200))
            .grace_period(Duration::from_secs(1))
            .load_if_exists(true)
            .build()
            .unwrap();
        let opts = OptimizeOptions {
            n_trials: Some(1),
            ..Default::default()
        };
        let summary = study
            .optimize(
                |t| {
                    // Longer than the grace period: only heartbeats keep it from going stale.
                    std::thread::sleep(Duration::from_millis(2500));
                    assert!(watcher.fail_stale_trials().unwrap().is_empty());
                    Ok(t.suggest_float("x", 0.0, 1.0)?)
                },
                &opts,
            )
            .unwrap();
        assert_eq!(summary.complete, 1, "{name}");
    }
}
