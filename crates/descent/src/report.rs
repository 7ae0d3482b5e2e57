//! `descent report RUN_DIR`: the epochs of a run as a table, and its loss and accuracy curves.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use descent_train::checkpoint::write_atomic;
use descent_train::EpochReport;

use crate::cli::ReportArgs;
use descent_chart::{Axis, Chart, Series};

/// The epoch records of a run directory's metrics.jsonl.
pub fn read_epochs(dir: &Path) -> Result<Vec<EpochReport>> {
    let path = dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        anyhow!(
            "cannot read {} ({e}); is {} a run directory (descent train --run-dir)?",
            path.display(),
            dir.display()
        )
    })?;
    let mut epochs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        // A damaged line (a run killed while writing it) is named and skipped: the rest of
        // the record still reads.
        let parsed = serde_json::from_str::<serde_json::Value>(line).and_then(|v| {
            match v["type"] == "epoch" {
                true => serde_json::from_value::<EpochReport>(v).map(Some),
                false => Ok(None),
            }
        });
        match parsed {
            Ok(Some(r)) => epochs.push(r),
            Ok(None) => {}
            Err(e) => eprintln!(
                "warning: {} line {} is damaged ({e}); skipped it",
                path.display(),
                i + 1
            ),
        }
    }
    if epochs.is_empty() {
        bail!("{} has no finished epoch yet", path.display());
    }
    Ok(epochs)
}

/// Writes `chart` as NAME.svg and NAME.png in `dir`.
pub fn write_chart(dir: &Path, name: &str, chart: &Chart) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("creating {}: {e}", dir.display()))?;
    write_atomic(&dir.join(format!("{name}.svg")), chart.svg().as_bytes())?;
    write_atomic(&dir.join(format!("{name}.png")), &chart.png()?)?;
    Ok(())
}

fn series(
    name: &str,
    epochs: &[EpochReport],
    f: impl Fn(&EpochReport) -> Option<f64>,
) -> Option<Series> {
    let points: Vec<(f64, f64)> = epochs
        .iter()
        .filter_map(|r| f(r).map(|v| (r.epoch as f64, v)))
        .collect();
    (!points.is_empty()).then(|| Series::new(name, points))
}

fn opt(v: Option<f64>, digits: usize) -> String {
    v.map_or("-".into(), |v| format!("{v:.digits$}"))
}

pub fn run(args: ReportArgs) -> Result<()> {
    let epochs = read_epochs(&args.run_dir)?;
    if let Ok(cmd) = std::fs::read_to_string(args.run_dir.join("args.json")) {
        let argv: Vec<String> = serde_json::from_str(&cmd).unwrap_or_default();
        out!(
            "run {}: descent train {}",
            args.run_dir.display(),
            argv.join(" ")
        );
    }
    // The model run.json records (runs of earlier versions have none).
    let info: Option<serde_json::Value> = std::fs::read_to_string(args.run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(spec) = info
        .and_then(|i| descent_nn::ModelSpec::from_value(i["model"].clone()).ok())
        .and_then(|s| s.build().ok())
    {
        out!(
            "model: {} ({} parameters)",
            crate::models::describe(None, &spec),
            spec.param_count()
        );
    }
    out!(
        "{:>5} {:>7} {:>10} {:>9} {:>8} {:>8} {:>8} {:>10} {:>8}",
        "epoch",
        "steps",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_acc",
        "lr",
        "time"
    );
    for r in &epochs {
        out!(
            "{:>5} {:>7} {:>10.4} {:>8.2}% {:>8} {:>8} {:>8} {:>10.3e} {:>7.2}s",
            r.epoch,
            r.steps,
            r.train_loss,
            r.train_acc,
            opt(r.val.map(|v| v.loss), 4),
            opt(r.val.map(|v| v.acc), 2),
            opt(r.test_acc, 2),
            r.lr,
            r.seconds
        );
    }
    let mut loss = Chart::new(
        "loss per epoch",
        Axis::new("epoch"),
        Axis::new("mean cross-entropy").auto(),
    );
    loss.series = [
        series("train", &epochs, |r| Some(r.train_loss)),
        series("validation", &epochs, |r| r.val.map(|v| v.loss)),
        series("test", &epochs, |r| r.test_loss),
    ]
    .into_iter()
    .flatten()
    .collect();
    let acc = Chart::lines(
        "accuracy per epoch",
        "epoch",
        "accuracy (%)",
        [
            series("train", &epochs, |r| Some(r.train_acc)),
            series("validation", &epochs, |r| r.val.map(|v| v.acc)),
            series("test", &epochs, |r| r.test_acc),
        ]
        .into_iter()
        .flatten()
        .collect(),
    );
    let out = args.out.unwrap_or(args.run_dir);
    write_chart(&out, "loss", &loss)?;
    write_chart(&out, "accuracy", &acc)?;
    out!(
        "wrote {0}/loss.png, {0}/loss.svg, {0}/accuracy.png, {0}/accuracy.svg",
        out.display()
    );
    Ok(())
}
