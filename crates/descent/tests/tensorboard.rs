//! `descent train`'s TensorBoard logs, read back with descent-board's reader (the same files
//! pass TensorBoard's own reader in tools/tensorboard_check.py).

use std::path::Path;

use descent_board::proto::{event::What, value::Kind, Event};

mod common;
use common::*;

/// (step, tag, scalar or histogram count) of every value in the event files of `dir`, file by
/// file in name order, and the steps at which a file marks a restart.
type Values = Vec<(i64, String, f64)>;

fn log(dir: &Path) -> (Vec<Values>, Vec<i64>) {
    let mut files = Vec::new();
    let mut restarts = Vec::new();
    for f in descent_board::event_files(dir).unwrap() {
        let events: Vec<Event> = descent_board::read_events(&f).unwrap();
        let mut values = Vec::new();
        for e in events {
            match e.what {
                Some(What::Summary(s)) => {
                    for v in s.value {
                        let x = match v.kind {
                            Some(Kind::SimpleValue(x)) => f64::from(x),
                            Some(Kind::Histo(h)) => h.num,
                            _ => f64::NAN,
                        };
                        values.push((e.step, v.tag, x));
                    }
                }
                Some(What::SessionLog(l)) if l.status == 1 => restarts.push(e.step),
                _ => {}
            }
        }
        files.push(values);
    }
    (files, restarts)
}

fn steps_of<'a>(values: &'a [(i64, String, f64)], tag: &'a str) -> Vec<i64> {
    values.iter().filter(|v| v.1 == tag).map(|v| v.0).collect()
}

#[test]
fn a_run_directory_holds_a_tensorboard_log_that_a_resume_continues() {
    let dir = tempfile::tempdir().unwrap();
    let data = classes_source(dir.path(), 300, 7);
    let run = dir.path().join("run");
    let run_s = run.to_str().unwrap();
    let train = [
        "train",
        "--data",
        &data,
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
    ];
    ok(&[&train[..], &["--epochs", "2", "--run-dir", run_s]].concat());
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let epochs: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .filter(|v: &serde_json::Value| v["type"] == "epoch")
        .collect();
    let ends: Vec<i64> = epochs
        .iter()
        .map(|e| e["steps"].as_i64().unwrap())
        .collect();
    let (files, restarts) = log(&run.join("tensorboard"));
    assert_eq!(files.len(), 1);
    assert!(restarts.is_empty());
    let v = &files[0];
    let last = ends[1];
    for tag in [
        "train/loss",
        "train/lr",
        "train/grad_norm",
        "train/step_time",
    ] {
        assert_eq!(steps_of(v, tag), (1..=last).collect::<Vec<_>>(), "{tag}");
    }
    assert_eq!(steps_of(v, "test/loss"), ends);
    assert_eq!(steps_of(v, "epoch/train_acc"), ends);
    for (e, end) in epochs.iter().zip(&ends) {
        let got = v
            .iter()
            .find(|x| x.1 == "test/loss" && x.0 == *end)
            .unwrap()
            .2;
        let want = e["test_loss"].as_f64().unwrap();
        assert!(
            (got - want).abs() < 1e-6 * want.abs().max(1.0),
            "{got} {want}"
        );
    }
    let hist: Vec<&str> = v
        .iter()
        .filter(|x| x.1.starts_with("weights/") || x.1.starts_with("grads/"))
        .map(|x| x.1.as_str())
        .collect();
    assert!(hist.contains(&"weights/fc1.weight") && hist.contains(&"grads/fc1.weight"));
    assert_eq!(steps_of(v, "weights/fc1.bias"), ends);

    // Two more epochs: a second file that marks the restart after the checkpoint's steps
    // and carries on from there.
    ok(&["train", "--resume", run_s, "--epochs", "4"]);
    let (files, restarts) = log(&run.join("tensorboard"));
    assert_eq!(files.len(), 2);
    assert_eq!(restarts, [last + 1]);
    let loss = steps_of(&files[1], "train/loss");
    assert_eq!(loss.first(), Some(&(last + 1)));
    assert_eq!(
        loss.len() as i64,
        last,
        "two more epochs of the same length"
    );
}

#[test]
fn tensorboard_goes_where_it_is_told_and_a_bad_place_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = classes_source(dir.path(), 100, 3);
    let tb = dir.path().join("tb");
    ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--tensorboard",
        tb.to_str().unwrap(),
    ]);
    let (files, _) = log(&tb);
    assert_eq!(files.len(), 1);
    // Plain SGD is fused into the backward pass: no gradient to measure or show.
    assert!(steps_of(&files[0], "train/grad_norm").is_empty());
    assert!(!steps_of(&files[0], "train/loss").is_empty());
    assert!(!steps_of(&files[0], "weights/fc1.weight").is_empty());
    let file = write(dir.path(), "a-file", "x");
    fails(
        &[
            "train",
            "--data",
            &data,
            "--epochs",
            "1",
            "--tensorboard",
            file.join("tb").to_str().unwrap(),
        ],
        &["cannot write TensorBoard logs to", "a-file"],
    );
}

/// Every HParams value in the event files of `dir`, with its step.
fn hparams_in(dir: &Path) -> Vec<(i64, descent_board::proto::hparams_plugin_data::Data)> {
    let mut out = Vec::new();
    for f in descent_board::event_files(dir).unwrap() {
        for e in descent_board::read_events(&f).unwrap() {
            if let Some(What::Summary(s)) = e.what {
                out.extend(
                    s.value
                        .iter()
                        .filter_map(descent_board::hparams_data)
                        .map(|d| (e.step, d)),
                );
            }
        }
    }
    out
}

/// `descent tune --tensorboard DIR`: the searched space as the HParams experiment in DIR, and
/// each trial a run DIR/trial-NNNN whose session holds exactly the trial's parameters, whose
/// curves are there, and whose objective is the value the study stored.
#[test]
fn tune_writes_each_trial_as_a_tensorboard_run_with_its_hyperparameters() {
    use descent_board::proto::{hparams_plugin_data::Data, pb_value::Kind as PbKind};
    use descent_tune::{ParamValue, SqlStorage, Study, TrialState};

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let tb = dir.path().join("tb");
    tiny_gpt_study(dir.path(), 3, 12, &["--tensorboard", tb.to_str().unwrap()]);

    let experiment: Vec<_> = hparams_in(&tb)
        .into_iter()
        .filter_map(|(_, d)| match d {
            Data::Experiment(e) => Some(e),
            _ => None,
        })
        .collect();
    assert_eq!(experiment.len(), 1, "one experiment summary");
    let names: Vec<&str> = experiment[0]
        .hparam_infos
        .iter()
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        names,
        ["lr", "weight-decay"],
        "the searched flags (warmup is fixed)"
    );
    let lr = experiment[0].hparam_infos[0]
        .domain_interval
        .as_ref()
        .unwrap();
    assert!(lr.min_value < lr.max_value);
    let metrics: Vec<&str> = experiment[0]
        .metric_infos
        .iter()
        .map(|m| m.name.as_ref().unwrap().tag.as_str())
        .collect();
    assert!(metrics.contains(&"trial/objective") && metrics.contains(&"val/loss"));

    let storage = std::sync::Arc::new(SqlStorage::open_sqlite(&db).unwrap());
    let trials = Study::load("s", storage).unwrap().trials().unwrap();
    assert_eq!(trials.len(), 3);
    for t in trials.iter() {
        assert_eq!(t.state, TrialState::Complete);
        let run_dir = tb.join(format!("trial-{:04}", t.number));
        let sessions = hparams_in(&run_dir);
        let start = sessions
            .iter()
            .find_map(|(_, d)| match d {
                Data::SessionStartInfo(s) => Some(s),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{}: no session start", run_dir.display()));
        assert_eq!(start.hparams.len(), t.params.len(), "trial {}", t.number);
        for (name, v) in &t.params {
            let ParamValue::Float(want) = v.value() else {
                panic!("{name} is not a float")
            };
            match start.hparams[name].kind {
                Some(PbKind::Number(got)) => assert_eq!(got, want, "trial {} {name}", t.number),
                ref k => panic!("{name}: {k:?}"),
            }
        }
        let end = sessions.iter().find_map(|(step, d)| match d {
            Data::SessionEndInfo(e) => Some((*step, e.status)),
            _ => None,
        });
        assert_eq!(
            end,
            Some((12, 1)),
            "trial {} ends at step 12, successfully",
            t.number
        );
        let (files, _) = log(&run_dir);
        let values: Values = files.concat();
        assert_eq!(steps_of(&values, "val/loss"), [4, 8, 12]);
        assert_eq!(
            steps_of(&values, "train/loss"),
            (1..=12).collect::<Vec<_>>()
        );
        let objective: Vec<f64> = values
            .iter()
            .filter(|v| v.1 == "trial/objective")
            .map(|v| v.2)
            .collect();
        assert_eq!(objective.len(), 1);
        let stored = t.value.unwrap();
        assert!(
            (objective[0] - stored).abs() <= 1e-6 * stored.abs(),
            "{objective:?} vs {stored}"
        );
    }
}
