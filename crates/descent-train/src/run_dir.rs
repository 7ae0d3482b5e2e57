//! Run directories: where a run keeps its record, so that it can be watched, reported,
//! interrupted and resumed.
//!
//! ```text
//! run.json                 what ran: the model description, the training configuration,
//!                          descent's version, and what the caller adds (command line, machine)
//! metrics.jsonl            one JSON line per log line and per epoch, as they happen
//! checkpoint.safetensors   everything the rest of the run depends on (Trainer::save_checkpoint)
//! weights.safetensors      the weights kept at the end, with the model they belong to
//! ```
//!
//! Every file is written atomically but the metrics, which are appended line by line; on
//! resume, lines written after the checkpoint are dropped so that none appears twice.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use descent_nn::{Model, ModelSpec};

use crate::checkpoint::{read_metadata, save_weights, write_atomic};
use crate::{Event, TrainConfig, TrainError};

/// The run's record: model, configuration, version, and the caller's additions.
pub const RUN_FILE: &str = "run.json";
/// One JSON line per log line and per epoch.
pub const METRICS_FILE: &str = "metrics.jsonl";
/// TensorBoard's event files (`descent train` writes them here unless told elsewhere).
pub const TENSORBOARD_DIR: &str = "tensorboard";
/// The checkpoint a resume starts from.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The final weights.
pub const WEIGHTS_FILE: &str = "weights.safetensors";

/// A run directory.
#[derive(Clone, Debug)]
pub struct RunDir {
    path: PathBuf,
}

fn bad(path: &Path, why: impl Into<String>) -> TrainError {
    TrainError::RunDir {
        path: path.to_path_buf(),
        why: why.into(),
    }
}

impl RunDir {
    /// Refuses a directory that already holds a run (resume it instead), or in which no file
    /// can be created; nothing is written.
    pub fn check_new(path: &Path) -> Result<(), TrainError> {
        if path.join(CHECKPOINT_FILE).exists() || path.join(RUN_FILE).exists() {
            return Err(bad(
                path,
                "it already holds a run: resume it, or pick another directory",
            ));
        }
        // The nearest folder that exists must take new files.
        let mut probe = path;
        while !probe.exists() {
            probe = match probe.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
        }
        if !probe.is_dir() {
            return Err(bad(path, format!("{} is not a directory", probe.display())));
        }
        tempfile::Builder::new()
            .prefix(".descent-write-check.")
            .tempfile_in(probe)
            .map(drop)
            .map_err(|e| bad(path, format!("cannot write in {}: {e}", probe.display())))
    }

    /// Starts a new run in `path`: creates the directory, records `run.json` (the model, the
    /// configuration, descent's version, the start time and `extra`, a JSON object of the
    /// caller's) and an empty metrics file.
    pub fn create(
        path: &Path,
        model: &ModelSpec,
        cfg: &TrainConfig,
        extra: serde_json::Value,
    ) -> Result<Self, TrainError> {
        Self::check_new(path)?;
        std::fs::create_dir_all(path).map_err(|e| bad(path, format!("cannot create it: {e}")))?;
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        // Written from the structs themselves, not through a `serde_json::Value`, which holds
        // numbers as f64: an f32 learning rate of 0.01 stays `0.01`, not 0.009999999776482582.
        #[derive(serde::Serialize)]
        struct Info<'a> {
            descent: &'a str,
            model: &'a ModelSpec,
            config: &'a TrainConfig,
            started_unix: u64,
            #[serde(flatten)]
            extra: serde_json::Map<String, serde_json::Value>,
        }
        let info = Info {
            descent: env!("CARGO_PKG_VERSION"),
            model,
            config: cfg,
            started_unix: started,
            extra: match extra {
                serde_json::Value::Object(more) => more,
                _ => Default::default(),
            },
        };
        let text = serde_json::to_string_pretty(&info).expect("plain data serializes");
        write_atomic(&path.join(RUN_FILE), text.as_bytes())?;
        write_atomic(&path.join(METRICS_FILE), b"")?;
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// An existing run to resume: it must hold a checkpoint.
    pub fn open(path: &Path) -> Result<Self, TrainError> {
        let dir = Self {
            path: path.to_path_buf(),
        };
        if !dir.checkpoint().exists() {
            return Err(bad(
                path,
                format!("it holds no {CHECKPOINT_FILE}: is it a run directory?"),
            ));
        }
        read_metadata(&dir.checkpoint())?;
        Ok(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the checkpoint is.
    pub fn checkpoint(&self) -> PathBuf {
        self.path.join(CHECKPOINT_FILE)
    }

    /// Where the final weights are.
    pub fn weights(&self) -> PathBuf {
        self.path.join(WEIGHTS_FILE)
    }

    /// The model the checkpoint records.
    pub fn model(&self) -> Result<ModelSpec, TrainError> {
        let meta = read_metadata(&self.checkpoint())?;
        let json = meta
            .get("descent.model")
            .ok_or_else(|| bad(&self.path, "its checkpoint records no model"))?;
        ModelSpec::from_json(json).map_err(|e| bad(&self.path, format!("its model: {e}")))
    }

    /// The training configuration `run.json` records.
    pub fn config(&self) -> Result<TrainConfig, TrainError> {
        let path = self.path.join(RUN_FILE);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| bad(&self.path, format!("cannot read {RUN_FILE}: {e}")))?;
        let info: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| bad(&self.path, format!("{RUN_FILE} is damaged: {e}")))?;
        serde_json::from_value(info["config"].clone())
            .map_err(|e| bad(&self.path, format!("{RUN_FILE}'s config: {e}")))
    }

    /// Keeps the metrics lines up to where a checkpoint at `epoch` after `batch` stands (a
    /// run killed after its last checkpoint wrote lines that the resumed run writes again),
    /// and drops damaged lines (a run killed while writing one leaves part of a line). Returns
    /// the numbers (from 1) of the damaged lines dropped.
    pub fn trim_metrics(&self, epoch: usize, batch: usize) -> Result<Vec<usize>, TrainError> {
        let path = self.path.join(METRICS_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Vec::new());
        };
        let mut damaged = Vec::new();
        let mut keep = String::new();
        for (i, line) in text.lines().enumerate() {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                damaged.push(i + 1);
                continue;
            };
            let e = v["epoch"].as_u64().unwrap_or(0) as usize;
            let before = match v["batch"].as_u64() {
                Some(b) => e < epoch || (e == epoch && b as usize <= batch),
                None => e < epoch,
            };
            if before {
                keep += &format!("{v}\n");
            }
        }
        write_atomic(&path, keep.as_bytes())?;
        Ok(damaged)
    }

    /// The metrics file, opened for appending.
    pub fn metrics(&self) -> Result<MetricsLog, TrainError> {
        let path = self.path.join(METRICS_FILE);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| bad(&self.path, format!("opening {METRICS_FILE}: {e}")))?;
        Ok(MetricsLog { file })
    }

    /// Saves the weights the run keeps, with the model and `metadata` in the file's header.
    pub fn save_weights(
        &self,
        model: &Model,
        values: &[f32],
        metadata: &BTreeMap<String, String>,
    ) -> Result<(), TrainError> {
        let mut meta = metadata.clone();
        meta.insert("model".into(), model.spec().to_json());
        save_weights(&self.weights(), model.layout(), values, &meta)?;
        Ok(())
    }
}

/// Appends a run's events to its metrics file, one JSON object per line: log lines as
/// `{"type": "log", "epoch", "batch", "loss"}`, epochs as their report with `"type": "epoch"`,
/// step evaluations as `{"type": "step_eval", "step", "train_loss", "eval_loss", "eval_acc"}`,
/// warnings as `{"type": "warning", "message"}`.
#[derive(Debug)]
pub struct MetricsLog {
    file: std::fs::File,
}

impl MetricsLog {
    /// Records `event` (batch progress is not recorded). A failed write is ignored: metrics
    /// are a record of the run, not a reason to stop it.
    pub fn record(&mut self, event: &Event) {
        let line = match event {
            Event::Log { epoch, batch, loss } => {
                serde_json::json!({"type": "log", "epoch": epoch, "batch": batch, "loss": loss})
            }
            Event::EpochEnd(r) => {
                let mut json = serde_json::to_value(r).unwrap_or_default();
                json["type"] = "epoch".into();
                json
            }
            Event::StepEval {
                step,
                train_loss,
                eval,
            } => serde_json::json!({"type": "step_eval", "step": step, "train_loss": train_loss,
                                    "eval_loss": eval.loss, "eval_acc": eval.acc}),
            Event::Diverging { diagnosis } => {
                serde_json::json!({"type": "warning", "message": diagnosis})
            }
            Event::Progress { .. } | Event::Step { .. } | Event::Tensors { .. } => return,
        };
        let _ = writeln!(self.file, "{line}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EpochReport;

    fn report(epoch: usize) -> EpochReport {
        EpochReport {
            epoch,
            steps: epoch as u64 * 10,
            lr: 0.1,
            train_loss: 1.0 / epoch as f64,
            train_acc: 50.0,
            val: None,
            test_loss: None,
            test_acc: None,
            seconds: 0.5,
            data_wait: 0.0,
        }
    }

    #[test]
    fn a_run_records_itself_and_trims_its_metrics_for_a_resume() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run");
        let spec = ModelSpec::mlp(4, &[3], 2, descent_nn::Activation::Relu, 0.0);
        let cfg = TrainConfig {
            epochs: 3,
            ..TrainConfig::default()
        };
        let run = RunDir::create(&path, &spec, &cfg, serde_json::json!({"command": "x"})).unwrap();
        assert_eq!(run.config().unwrap(), cfg);
        let info: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path.join(RUN_FILE)).unwrap()).unwrap();
        assert_eq!(info["command"], "x");
        assert_eq!(ModelSpec::from_value(info["model"].clone()).unwrap(), spec);
        let mut log = run.metrics().unwrap();
        for e in 1..=2 {
            for b in [5, 10] {
                log.record(&Event::Log {
                    epoch: e,
                    batch: b,
                    loss: 0.5,
                });
            }
            log.record(&Event::EpochEnd(report(e)));
        }
        drop(log);
        std::fs::OpenOptions::new()
            .append(true)
            .open(path.join(METRICS_FILE))
            .unwrap()
            .write_all(b"{\"type\": \"lo")
            .unwrap();
        // A checkpoint in epoch 2 after batch 5: epoch 2's later lines and the damaged one go.
        assert_eq!(run.trim_metrics(2, 5).unwrap(), [7]);
        let text = std::fs::read_to_string(path.join(METRICS_FILE)).unwrap();
        let kept: Vec<(u64, Option<u64>)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| (v["epoch"].as_u64().unwrap(), v["batch"].as_u64()))
            .collect();
        assert_eq!(kept, [(1, Some(5)), (1, Some(10)), (1, None), (2, Some(5))]);
        // The directory holds a run now: a second one is refused; opening needs a checkpoint.
        let e = RunDir::check_new(&path).unwrap_err().to_string();
        assert!(e.contains("already holds a run"), "{e}");
        assert!(RunDir::open(&path)
            .unwrap_err()
            .to_string()
            .contains("no checkpoint"));
    }

    #[test]
    fn an_unwritable_place_is_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let e = RunDir::check_new(&file.join("run"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a directory"), "{e}");
    }
}
