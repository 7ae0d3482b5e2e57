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
