//! What the command-line tests share: running the binary offline, reading what it printed,
//! writing small files.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn descent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_descent"))
        .args(args)
        .env("DESCENT_FASHION_MNIST_MIRRORS", "http://127.0.0.1:9/")
        .env("DESCENT_APT", "none")
        .env("DESCENT_NPM", "none")
        .output()
        .expect("the binary runs")
}

pub fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

pub fn ok(args: &[&str]) -> String {
    let o = descent(args);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{args:?} failed: {err}");
    out + &err
}

pub fn fails(args: &[&str], needles: &[&str]) {
    let o = descent(args);
    let (_, err) = text(&o);
    assert!(!o.status.success(), "{args:?} should fail: {err}");
    assert!(!err.contains("panicked"), "must not panic: {err}");
    for n in needles {
        assert!(err.contains(n), "expected {n:?} in: {err}");
    }
}

pub fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, body).unwrap();
    p
}

/// [`classes_table`] written to `dir/t.csv`, as the source `csv:PATH`.
pub fn classes_source(dir: &Path, rows: usize, seed: u64) -> String {
    let csv = write(dir, "t.csv", &classes_table(rows, seed));
    format!("csv:{}", csv.display())
}

/// A table whose class is `big` when f0 + f1 > 0, else `small` (a third column is noise).
pub fn classes_table(rows: usize, seed: u64) -> String {
    let mut s = String::from("f0,f1,noise,size\n");
    let mut r = seed;
    let mut next = || {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((r >> 33) as f64 / (1u64 << 31) as f64) * 4.0 - 2.0
    };
    for _ in 0..rows {
        let (a, b, c) = (next(), next(), next());
        let label = if a + b > 0.0 { "big" } else { "small" };
        s += &format!("{a:.4},{b:.4},{c:.4},{label}\n");
    }
    s
}

/// The value after `key` in `text` (`test_acc 97.50%` gives 97.5).
pub fn value_after(text: &str, key: &str) -> f64 {
    let at = text
        .rfind(key)
        .unwrap_or_else(|| panic!("no {key} in {text}"))
        + key.len();
    text[at..]
        .trim_start()
        .split(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A study `s` of a tiny GPT (1 block, 2 heads, width 16, context 8) on a short text in
/// `dir`, `trials` random trials of `steps` steps each, evaluated every 4, in the SQLite file
/// `dir/t.db`; `extra` flags go to `descent tune`. Returns the storage (`sqlite:PATH`).
pub fn tiny_gpt_study(dir: &Path, trials: u32, steps: u32, extra: &[&str]) -> String {
    let text = write(
        dir,
        "t.txt",
        &"the cat sat on the mat. the dog sat on the log.\n".repeat(60),
    );
    let storage = format!("sqlite:{}", dir.join("t.db").display());
    let (data, trials, steps) = (
        format!("data=text:{}", text.display()),
        trials.to_string(),
        format!("max-steps={steps}"),
    );
    let mut args = vec![
        "tune",
        "--storage",
        &storage,
        "--study",
        "s",
        "--trials",
        &trials,
        "--sampler",
        "random",
        "--fixed",
        &data,
        "--fixed",
        &steps,
    ];
    for fixed in [
        "eval-every=4",
        "batch-size=4",
        "layers=1",
        "heads=2",
        "embd=16",
        "block-size=8",
        "warmup-steps=2",
    ] {
        args.extend(["--fixed", fixed]);
    }
    args.extend_from_slice(extra);
    ok(&args);
    storage
}
