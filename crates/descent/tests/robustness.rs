//! Resources, non-finite values, divergence and reproducible files, through the real binary
//! as a user meets them (docs/robustness.md).

use std::path::Path;

mod common;
use common::*;

/// A small classification table in `dir`, as `csv:PATH`.
fn table(dir: &Path) -> String {
    classes_source(dir, 300, 7)
}

#[test]
fn thread_counts_past_the_cores_are_capped_with_a_note() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let out = ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--threads",
        "100000",
    ]);
    assert!(
        out.contains("note: --threads 100000 is more than this machine's")
            && out.contains("cores; using"),
        "{out}"
    );
    fails(
        &["train", "--data", &data, "--threads", "many"],
        &["`many` is not a thread count"],
    );
}

#[test]
fn a_run_larger_than_memory_is_refused_before_allocating() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    fails(
        &["train", "--data", &data, "--hidden", "100000000,100000000"],
        &[
            "the run needs about",
            "of memory is available",
            "parameters",
            "--hidden",
        ],
    );
}

#[test]
fn a_loss_far_above_its_start_stops_with_a_diagnosis_or_warns() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let run = [
        "train",
        "--data",
        &data,
        "--lr",
        "10",
        "--batch-size",
        "8",
        "--epochs",
        "2",
    ];
    fails(
        &run,
        &[
            "the training loss rose from",
            "at the first batch",
            "by epoch 1, batch 10",
            "sgd's learning rate 10 is too large, try 0.01",
        ],
    );
    let warn = [&run[..], &["--divergence", "warn"]].concat();
    let o = descent(&warn);
    let (_, err) = text(&o);
    // Warned once; the run then goes on until the loss is no longer a number.
    let warnings = err.matches("warning: the training loss rose").count();
    assert_eq!(warnings, 1, "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // The defaults never fire on this table.
    ok(&["train", "--data", &data, "--epochs", "3"]);
}

/// Overwrites the first value of the first tensor in the safetensors file at `path` with NaN.
fn poison(path: &Path) {
    let mut b = std::fs::read(path).unwrap();
    let header = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    b[8 + header..8 + header + 4].copy_from_slice(&f32::NAN.to_le_bytes());
    std::fs::write(path, b).unwrap();
}

#[test]
fn weights_holding_nan_are_refused_by_every_reader_but_a_forensic_eval() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let w = dir.path().join("w.safetensors");
    let ws = w.to_str().unwrap();
    ok(&["train", "--data", &data, "--epochs", "1", "--save", ws]);
    poison(&w);
    let named = ["values that are not finite numbers", "(1 of", "diverged"];
    fails(
        &["eval", ws],
        &[&named[..], &["--allow-nonfinite"]].concat(),
    );
    let rows = write(dir.path(), "new.csv", "f0,f1,noise\n0.5,0.5,0\n");
    fails(&["predict", ws, rows.to_str().unwrap()], &named);
    fails(&["train", "--data", &data, "--init-from", ws], &named);
    // Forensic evaluation reads it and says what it computes.
    let out = ok(&["eval", ws, "--allow-nonfinite"]);
    assert!(out.contains("test_loss"), "{out}");
}

#[test]
fn the_same_run_writes_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let save = |name: &str, seed: &str| {
        let w = dir.path().join(name);
        let w = w.to_str().unwrap();
        ok(&[
            "train", "--data", &data, "--epochs", "2", "--seed", seed, "--save", w,
        ]);
        std::fs::read(w).unwrap()
    };
    let (a, b) = (save("a.safetensors", "3"), save("b.safetensors", "3"));
    assert!(a == b, "two runs with the same seed wrote different bytes");
    // The header's keys are sorted (the metadata came from a hash map).
    let header = u64::from_le_bytes(a[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&a[8..8 + header]).unwrap();
    let meta = json["__metadata__"].as_object().unwrap();
    let keys: Vec<&String> = meta.keys().collect();
    let text = String::from_utf8_lossy(&a[8..8 + header]).into_owned();
    let positions: Vec<usize> = keys
        .iter()
        .map(|k| text.find(&format!("\"{k}\"")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    assert!(
        save("c.safetensors", "4") != a,
        "a file that does not depend on the run"
    );
}

#[test]
fn a_resume_applies_a_new_end_refuses_other_changes_and_repairs_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "2",
        "--schedule",
        "cosine",
        "--run-dir",
        run,
    ]);
    fails(
        &["train", "--resume", run, "--lr", "0.5", "--batch-size", "8"],
        &[
            "--lr, --batch-size would change it",
            "what may change: --epochs and --max-steps",
        ],
    );
    // A run killed while writing its metrics leaves part of a line.
    let metrics = Path::new(run).join("metrics.jsonl");
    let mut lines = std::fs::read_to_string(&metrics).unwrap();
    let count = lines.lines().count();
    lines += "{\"type\": \"ep";
    std::fs::write(&metrics, &lines).unwrap();
    let report = descent(&["report", run]);
    let (out, err) = text(&report);
    assert!(report.status.success(), "{err}");
    assert!(
        err.contains(&format!("metrics.jsonl line {} is damaged", count + 1)),
        "{err}"
    );
    assert!(out.contains("epoch") && !err.contains("panicked"), "{out}");
    // Two more epochs: the damaged line is dropped, saying so, and the new end is kept for
    // the next resume.
    let more = ok(&["train", "--resume", run, "--epochs", "4"]);
    assert!(more.contains("had damaged lines (line"), "{more}");
    assert!(
        more.contains("epoch 4:") && !more.contains("epoch 5:"),
        "{more}"
    );
    let again = ok(&["train", "--resume", run]);
    assert!(again.contains("already finished its 4 epochs"), "{again}");
    let report = ok(&["report", run]);
    assert!(!report.contains("damaged"), "{report}");
}

#[test]
fn the_rough_edges_of_a_first_hour() {
    // Flags sit under their own headings, not under the last group's.
    let help = ok(&["train", "--help"]);
    let schedule = &help[help.find("\nSchedule:").unwrap()..];
    let schedule = &schedule[..schedule[1..].find("\n\n").map_or(schedule.len(), |i| i + 1)];
    for flag in [
        "--batch-size",
        "--epochs",
        "--seed",
        "--threads",
        "--data-dir",
    ] {
        assert!(
            !schedule.contains(flag),
            "{flag} under Schedule: {schedule}"
        );
    }
    assert!(
        help.contains("Training:") && help.contains("Data:"),
        "{help}"
    );
    // `momentum` means the seed's form in compare too; the old name says what it is now.
    fails(
        &["compare", "--optimizers", "ema"],
        &[
            "`momentum`, as in `descent train --optimizer momentum`",
            "`sgd-momentum`",
        ],
    );
    let compare = ok(&["compare", "--help"]);
    assert!(
        compare.contains("sgd-momentum (momentum 0.9) lr 0.01")
            && compare.contains("lion lr 0.0001"),
        "{compare}"
    );
    // run.json holds numbers as written: an f32 rate of 0.0001 is not 0.00009999999747378752.
    let dir = tempfile::tempdir().unwrap();
    let data = table(dir.path());
    let run = dir.path().join("run");
    let run = run.to_str().unwrap();
    ok(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--optimizer",
        "lion",
        "--run-dir",
        run,
    ]);
    let info = std::fs::read_to_string(Path::new(run).join("run.json")).unwrap();
    assert!(
        info.contains("\"lr\": 0.0001,") && info.contains("\"beta1\": 0.9,"),
        "{info}"
    );
    // A .gz that is not gzip (a web page saved in its place) says so.
    let idx = dir.path().join("idx");
    std::fs::create_dir(&idx).unwrap();
    std::fs::write(idx.join("train-images-idx3-ubyte.gz"), "<!DOCTYPE html>").unwrap();
    std::fs::write(idx.join("train-labels-idx1-ubyte.gz"), "<!DOCTYPE html>").unwrap();
    fails(
        &["train", "--data", &format!("idx:{}", idx.display())],
        &[
            "-ubyte.gz is not a valid gzip file",
            "does not start as gzip data does",
            "HTML page",
        ],
    );
}
