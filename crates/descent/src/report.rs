//! `descent report RUN_DIR`: the epochs of a run as a table, and its loss and accuracy curves.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use descent_train::checkpoint::write_atomic;
use descent_train::EpochReport;

use crate::cli::ReportArgs;
use crate::html::Page;
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

/// The epochs as rows of text: a header, then one row per epoch.
fn epoch_rows(epochs: &[EpochReport]) -> Vec<Vec<String>> {
    let mut rows = vec![[
        "epoch",
        "steps",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "test_acc",
        "lr",
        "time",
    ]
    .map(String::from)
    .to_vec()];
    for r in epochs {
        rows.push(vec![
            r.epoch.to_string(),
            r.steps.to_string(),
            format!("{:.4}", r.train_loss),
            format!("{:.2}%", r.train_acc),
            opt(r.val.map(|v| v.loss), 4),
            opt(r.val.map(|v| v.acc), 2),
            opt(r.test_acc, 2),
            format!("{:.3e}", r.lr),
            format!("{:.2}s", r.seconds),
        ]);
    }
    rows
}

pub fn run(args: ReportArgs) -> Result<()> {
    let epochs = read_epochs(&args.run_dir)?;
    let mut heading = Vec::new();
    if let Ok(cmd) = std::fs::read_to_string(args.run_dir.join("args.json")) {
        let argv: Vec<String> = serde_json::from_str(&cmd).unwrap_or_default();
        heading.push(format!(
            "run {}: descent train {}",
            args.run_dir.display(),
            argv.join(" ")
        ));
    }
    // The model run.json records (runs of earlier versions have none).
    let info: Option<serde_json::Value> = std::fs::read_to_string(args.run_dir.join("run.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    if let Some(spec) = info
        .as_ref()
        .and_then(|i| descent_nn::ModelSpec::from_value(i["model"].clone()).ok())
        .and_then(|s| s.build().ok())
    {
        heading.push(format!(
            "model: {} ({} parameters)",
            crate::models::describe(None, &spec),
            spec.param_count()
        ));
    }
    for h in &heading {
        out!("{h}");
    }
    let rows = epoch_rows(&epochs);
    let widths = [5, 7, 10, 9, 8, 8, 8, 10, 8];
    for r in &rows {
        let cells: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:>w$}"))
            .collect();
        out!("{}", cells.join(" "));
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
    if let Some(path) = &args.html {
        let mut page = Page::new(
            format!("descent report: {}", args.run_dir.display()),
            heading.join(" · "),
        );
        page.chart(&loss);
        page.chart(&acc);
        page.table("Epochs", &rows);
        if let Some(info) = &info {
            page.settings("Settings (run.json)", info);
        }
        page.write(path)?;
        out!("wrote {}", path.display());
    }
    let out = args.out.unwrap_or(args.run_dir);
    write_chart(&out, "loss", &loss)?;
    write_chart(&out, "accuracy", &acc)?;
    out!(
        "wrote {0}/loss.png, {0}/loss.svg, {0}/accuracy.png, {0}/accuracy.svg",
        out.display()
    );
    Ok(())
}
