//! Four processes share one SQLite study until it holds 200 trials: exactly 200 trials,
//! numbered 0..199 once each, all finished, none lost. The test re-runs its own binary as
//! the workers.

use std::sync::Arc;

use descent_tune::{OptimizeOptions, SqlStorage, Storage, Study, TpeSampler, TrialState};

const WORKER_ENV: &str = "DESCENT_TUNE_WORKER_DB";

#[test]
fn four_processes_share_one_sqlite_study_without_losing_a_trial() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shared.db");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "worker",
                    "--ignored",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(WORKER_ENV, &db)
                .env("DESCENT_TUNE_WORKER_SEED", i.to_string())
                .output_spawn()
        })
        .collect();
    let mut ran = Vec::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "worker failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: u64 = text
            .lines()
            .find_map(|l| l.split("worker ran ").nth(1))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no count in {text}"));
        ran.push(n);
    }
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&db).unwrap());
    let study = Study::load("shared", storage).unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials.len(), 200);
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t.number, i as u64);
        assert_eq!(t.state, TrialState::Complete, "trial {i}");
        assert!(t.params.contains_key("x") && t.params.contains_key("y"));
    }
    assert_eq!(ran.iter().sum::<u64>(), 200, "{ran:?}");
    assert!(
        ran.iter().filter(|&&n| n > 0).count() >= 2,
        "one process did all: {ran:?}"
    );
}

trait SpawnPiped {
    fn output_spawn(&mut self) -> std::process::Child;
}
impl SpawnPiped for std::process::Command {
    fn output_spawn(&mut self) -> std::process::Child {
        self.stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
#[ignore = "run as a child process by the test above"]
fn worker() {
    let Ok(db) = std::env::var(WORKER_ENV) else {
        return;
    };
    let seed: u64 = std::env::var("DESCENT_TUNE_WORKER_SEED")
        .unwrap()
        .parse()
        .unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&db).unwrap());
    let study = Study::builder("shared")
        .storage(storage)
        .sampler(TpeSampler::new(seed))
        .load_if_exists(true)
        .build()
        .unwrap();
    let opts = OptimizeOptions {
        max_study_trials: Some(200),
        ..Default::default()
    };
    let s = study
        .optimize(
            |t| {
                let x = t.suggest_float("x", -5.0, 5.0)?;
                let y = t.suggest_int("y", 0, 10)?;
                t.report(x, 1)?;
                std::thread::sleep(std::time::Duration::from_millis(2));
                Ok(x * x + y as f64)
            },
            &opts,
        )
        .unwrap();
    println!("worker ran {}", s.complete + s.pruned + s.failed);
}

const HANG_ENV: &str = "DESCENT_TUNE_HANG_DB";

#[test]
fn a_trial_whose_process_was_killed_is_failed_and_the_study_goes_on() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("killed.db");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "hanging_worker", "--ignored", "--nocapture"])
        .env(HANG_ENV, &db)
        .output_spawn();
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.contains("trial started"))),
        "the worker did not start its trial"
    );
    child.kill().unwrap(); // SIGKILL: no chance to record anything
    child.wait().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&db).unwrap());
    let study = Study::load("killed", storage).unwrap();
    assert_eq!(study.trials().unwrap()[0].state, TrialState::Running);
    assert_eq!(study.fail_stale_trials().unwrap(), vec![0]);
    let t = &study.trials().unwrap()[0];
    assert_eq!(t.state, TrialState::Fail);
    assert!(t.message.as_deref().unwrap().contains("stale"), "{t:?}");
    assert!(study.fail_stale_trials().unwrap().is_empty());
    let opts = OptimizeOptions {
        max_study_trials: Some(3),
        ..Default::default()
    };
    study
        .optimize(|t| Ok(t.suggest_float("x", 0.0, 1.0)?), &opts)
        .unwrap();
    let states: Vec<TrialState> = study.trials().unwrap().iter().map(|t| t.state).collect();
    assert_eq!(
        states,
        [TrialState::Fail, TrialState::Complete, TrialState::Complete]
    );
}

#[test]
#[ignore = "run as a child process by the test above"]
fn hanging_worker() {
    let Ok(db) = std::env::var(HANG_ENV) else {
        return;
    };
    let storage: Arc<dyn Storage> = Arc::new(SqlStorage::open_sqlite(&db).unwrap());
    let study = Study::builder("killed").storage(storage).build().unwrap();
    let mut trial = study.ask().unwrap();
    trial.suggest_float("x", 0.0, 1.0).unwrap();
    println!("trial started");
    std::thread::sleep(std::time::Duration::from_secs(120));
}
