//! TensorBoard event files for descent's runs and studies.
//!
//! A [`SummaryWriter`] owns one event file in a log directory (`events.out.tfevents.*`, the
//! name TensorBoard looks for) and writes it on its own thread: the training loop only sends
//! a value down a channel, so logging every step costs it nothing it waits for. It writes
//! what PyTorch's `SummaryWriter` writes for the same calls: scalars (`simple_value`),
//! histograms (`HistogramProto`, 30 equal buckets as TensorBoard's own summaries use) and
//! the HParams plugin's sessions; [`write_experiment`] writes the experiment summary that
//! lists a study's hyperparameters and metrics.
//!
//! ```no_run
//! # fn main() -> Result<(), descent_board::BoardError> {
//! let tb = descent_board::SummaryWriter::create("runs/mnist")?;
//! for step in 1..=100u64 {
//!     tb.scalar("train/loss", step, 1.0 / step as f64);
//! }
//! tb.histogram("weights/fc1.weight", 100, vec![0.1, -0.2, 0.3]);
//! tb.close()?; // everything written and flushed, or the first I/O error
//! # Ok(()) }
//! ```
//!
//! [`read_events`] reads a file back (checksums checked), for tests and reports.

pub mod proto;
pub mod record;

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use prost::Message;
use proto::{event::What, value::Kind};

/// What went wrong writing or reading event files.
#[derive(Debug, thiserror::Error)]
pub enum BoardError {
    /// The file system refused.
    #[error("TensorBoard log {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file that is not a sequence of TensorBoard records.
    #[error("TensorBoard log {path} is damaged: {what}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// Where and how.
        what: String,
    },
    /// The writer's thread ended before the writer did (it panicked).
    #[error("the TensorBoard writer for {0} stopped unexpectedly")]
    Stopped(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BoardError + '_ {
    move |source| BoardError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Seconds since the Unix epoch, as events carry them.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A hyperparameter's value, for the HParams plugin.
#[derive(Clone, Debug, PartialEq)]
pub enum HParam {
    /// A number (ints too).
    Number(f64),
    /// A categorical's choice.
    Text(String),
    /// A flag.
    Bool(bool),
}

impl HParam {
    fn proto(&self) -> proto::PbValue {
        use proto::pb_value::Kind as K;
        proto::PbValue {
            kind: Some(match self {
                HParam::Number(x) => K::Number(*x),
                HParam::Text(s) => K::Text(s.clone()),
                HParam::Bool(b) => K::Bool(*b),
            }),
        }
    }
}

/// How a session (a trial, a run) ended, for the HParams plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// It finished.
    Success,
    /// It failed (or was pruned: TensorBoard has no word for that).
    Failure,
}

/// A study's search space and metrics, for the HParams plugin's table.
#[derive(Clone, Debug, Default)]
pub struct ExperimentInfo {
    /// The study's name.
    pub name: String,
    /// One line on what it searches.
    pub description: String,
    /// Each hyperparameter: its name and its domain.
    pub hparams: Vec<(String, Domain)>,
    /// The scalar tags a session's results are read from (`val/loss`).
    pub metrics: Vec<String>,
}

/// The values a hyperparameter takes.
#[derive(Clone, Debug, PartialEq)]
pub enum Domain {
    /// A number between two ends.
    Interval(f64, f64),
    /// One of these choices.
    Choices(Vec<HParam>),
}

/// A histogram of the finite `values` in `buckets` equal buckets. As in TensorFlow's
/// histograms, bucket `i` holds the values in `[bucket_limit[i-1], bucket_limit[i])`; the last
/// limit is the largest value, which the last bucket holds.
pub fn histogram(values: &[f32], buckets: usize) -> proto::HistogramProto {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (mut min, mut max, mut num, mut sum, mut sq) = (f64::MAX, f64::MIN, 0.0, 0.0, 0.0);
    for v in finite.clone() {
        let v = f64::from(v);
        min = min.min(v);
        max = max.max(v);
        num += 1.0;
        sum += v;
        sq += v * v;
    }
    if num == 0.0 {
        return proto::HistogramProto::default();
    }
    let buckets = buckets.max(1);
    let width = (max - min) / buckets as f64;
    if width == 0.0 {
        return proto::HistogramProto {
            min,
            max,
            num,
            sum,
            sum_squares: sq,
            bucket_limit: vec![max],
            bucket: vec![num],
        };
    }
    let mut counts = vec![0.0; buckets];
    for v in finite {
        let i = ((f64::from(v) - min) / width) as usize;
        counts[i.min(buckets - 1)] += 1.0;
    }
    let mut limits: Vec<f64> = (1..=buckets).map(|i| min + width * i as f64).collect();
    limits[buckets - 1] = max;
    proto::HistogramProto {
        min,
        max,
        num,
        sum,
        sum_squares: sq,
        bucket_limit: limits,
        bucket: counts,
    }
}

fn hparams_value(tag: &str, data: proto::hparams_plugin_data::Data) -> proto::Value {
    let content = proto::HParamsPluginData {
        version: 0,
        data: Some(data),
    }
    .encode_to_vec();
    proto::Value {
        tag: tag.into(),
        metadata: Some(proto::SummaryMetadata {
            plugin_data: Some(proto::PluginData {
                plugin_name: "hparams".into(),
                content,
            }),
        }),
        // TensorBoard's own HParams summaries carry an empty float tensor.
        kind: Some(Kind::Tensor(proto::TensorProto {
            dtype: 1,
            tensor_shape: Some(proto::TensorShape {
                dim: vec![proto::Dim { size: 0 }],
            }),
        })),
    }
}

/// One event file, written where it is called. [`SummaryWriter`] runs one on its own thread.
pub struct EventFile {
    out: BufWriter<File>,
    path: PathBuf,
}

impl EventFile {
    /// Creates `DIR/events.out.tfevents.SECS.HOST.PID.N` (and DIR), starting with the file
    /// version record.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, BoardError> {
        static FILES: AtomicU64 = AtomicU64::new(0);
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty() && !h.contains(['/', '\\']))
            .unwrap_or_else(|| "localhost".into());
        let name = format!(
            "events.out.tfevents.{}.{host}.{}.{}",
            now() as u64,
            std::process::id(),
            FILES.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir.join(name);
        let file = File::create_new(&path).map_err(io(&path))?;
        let mut f = EventFile {
            out: BufWriter::new(file),
            path,
        };
        f.write_event(&proto::Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        f.flush()?;
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one event.
    pub fn write_event(&mut self, event: &proto::Event) -> Result<(), BoardError> {
        record::write_record(&mut self.out, &event.encode_to_vec()).map_err(io(&self.path))
    }

    /// Appends tagged values as one event at `step`.
    pub fn write_values(
        &mut self,
        step: u64,
        wall_time: f64,
        value: Vec<proto::Value>,
    ) -> Result<(), BoardError> {
        self.write_event(&proto::Event {
            wall_time,
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::Summary(proto::Summary { value })),
        })
    }

    /// Writes what is buffered to the file.
    pub fn flush(&mut self) -> Result<(), BoardError> {
        self.out.flush().map_err(io(&self.path))
    }
}

/// Messages queued before the writer's thread is woken.
const BATCH: usize = 1024;

enum Msg {
    Scalar(String, u64, f64, f32),
    Histogram(String, u64, f64, Vec<f32>),
    Values(u64, f64, Vec<proto::Value>),
    Event(proto::Event),
    Flush(Sender<Result<(), String>>),
}

/// An event file written on its own thread: calls send and return.
///
/// I/O errors are kept, not lost: the first one is returned by [`SummaryWriter::flush`] and
/// [`SummaryWriter::close`], and nothing more is written after it.
pub struct SummaryWriter {
    tx: Option<Sender<Vec<Msg>>>,
    /// Messages not yet sent, and when the last batch went: the thread is woken once per
    /// batch, not per value, so that it takes no core from a training step that uses all of
    /// them (the seed's epoch, 15 alternating epochs each way on 2 cores: waking it for each
    /// value, median 0.93 s against 0.79 s without a log; batched, 0.92 s against 0.93 s).
    pending: Mutex<(Vec<Msg>, Instant)>,
    thread: Option<JoinHandle<Result<(), BoardError>>>,
    path: PathBuf,
}

impl SummaryWriter {
    /// Creates an event file in `dir` (created if missing) and its writer thread.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self, BoardError> {
        let mut file = EventFile::create(dir)?;
        let path = file.path().to_path_buf();
        let (tx, rx) = channel::<Vec<Msg>>();
        let thread = std::thread::Builder::new()
            .name("tensorboard".into())
            .spawn(move || {
                let mut failed: Option<BoardError> = None;
                for msg in rx.into_iter().flatten() {
                    let wrote = match (msg, &failed) {
                        (Msg::Flush(ack), _) => {
                            let r = match &failed {
                                Some(e) => Err(e.to_string()),
                                None => file.flush().map_err(|e| e.to_string()),
                            };
                            let _ = ack.send(r);
                            Ok(())
                        }
                        (_, Some(_)) => Ok(()),
                        (Msg::Scalar(tag, step, t, v), None) => file.write_values(
                            step,
                            t,
                            vec![proto::Value {
                                tag,
                                metadata: None,
                                kind: Some(Kind::SimpleValue(v)),
                            }],
                        ),
                        (Msg::Histogram(tag, step, t, values), None) => file.write_values(
                            step,
                            t,
                            vec![proto::Value {
                                tag,
                                metadata: None,
                                kind: Some(Kind::Histo(histogram(&values, 30))),
                            }],
                        ),
                        (Msg::Values(step, t, values), None) => file.write_values(step, t, values),
                        (Msg::Event(e), None) => file.write_event(&e),
                    };
                    if let Err(e) = wrote {
                        failed.get_or_insert(e);
                    }
                }
                match failed {
                    Some(e) => Err(e),
                    None => file.flush(),
                }
            })
            .map_err(io(&path))?;
        Ok(SummaryWriter {
            tx: Some(tx),
            pending: Mutex::new((Vec::new(), Instant::now())),
            thread: Some(thread),
            path,
        })
    }

    /// The event file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `msg`; sends the queue when it is long, a second old, or `now` is set.
    fn send_with(&self, msg: Msg, now: bool) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.0.push(msg);
        if now || p.0.len() >= BATCH || p.1.elapsed().as_secs_f64() >= 1.0 {
            let batch = std::mem::take(&mut p.0);
            p.1 = Instant::now();
            if let Some(tx) = &self.tx {
                // A send fails only once the thread has ended; close reports why.
                let _ = tx.send(batch);
            }
        }
    }

    fn send(&self, msg: Msg) {
        self.send_with(msg, false);
    }

    /// Marks a restart at `step`: TensorBoard then drops the events at `step` and later
    /// that earlier files of this directory hold (a resumed run's steps past its checkpoint,
    /// which it runs again), as it does for TensorFlow's restarted sessions.
    pub fn restart_at(&self, step: u64) {
        self.send(Msg::Event(proto::Event {
            wall_time: now(),
            step: i64::try_from(step).unwrap_or(i64::MAX),
            what: Some(What::SessionLog(proto::SessionLog { status: 1 })),
        }));
    }

    /// A scalar at `step` (shown as f32, as TensorBoard stores scalars).
    pub fn scalar(&self, tag: &str, step: u64, value: f64) {
        self.send(Msg::Scalar(tag.into(), step, now(), value as f32));
    }

    /// A histogram of `values` at `step` (non-finite values left out), bucketed on the
    /// writer's thread.
    pub fn histogram(&self, tag: &str, step: u64, values: Vec<f32>) {
        self.send(Msg::Histogram(tag.into(), step, now(), values));
    }

    /// The HParams plugin's start of a session: this run's hyperparameters. `group` names the
    /// session group (the trial); empty for the run's own directory name.
    pub fn session_start(&self, hparams: &BTreeMap<String, HParam>, group: &str) {
        let info = proto::SessionStartInfo {
            hparams: hparams
                .iter()
                .map(|(k, v)| (k.clone(), v.proto()))
                .collect(),
            group_name: group.into(),
            start_time_secs: now(),
        };
        let v = hparams_value(
            "_hparams_/session_start_info",
            proto::hparams_plugin_data::Data::SessionStartInfo(info),
        );
        self.send(Msg::Values(0, now(), vec![v]));
    }

    /// The HParams plugin's end of a session.
    pub fn session_end(&self, status: Status, step: u64) {
        let info = proto::SessionEndInfo {
            status: match status {
                Status::Success => 1,
                Status::Failure => 2,
            },
            end_time_secs: now(),
        };
        let v = hparams_value(
            "_hparams_/session_end_info",
            proto::hparams_plugin_data::Data::SessionEndInfo(info),
        );
        self.send(Msg::Values(step, now(), vec![v]));
    }

    /// Waits until everything sent so far is in the file; the first I/O error, if any.
    pub fn flush(&self) -> Result<(), BoardError> {
        let (ack, done) = channel();
        self.send_with(Msg::Flush(ack), true);
        match done.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(what)) => Err(BoardError::Io {
                path: self.path.clone(),
                source: std::io::Error::other(what),
            }),
            Err(_) => Err(BoardError::Stopped(self.path.clone())),
        }
    }

    /// Writes everything sent, flushes and ends the thread; the first I/O error, if any.
    pub fn close(mut self) -> Result<(), BoardError> {
        self.finish()
    }

    fn finish(&mut self) -> Result<(), BoardError> {
        let rest = std::mem::take(&mut self.pending.get_mut().unwrap_or_else(|e| e.into_inner()).0);
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(rest);
        }
        match self.thread.take().map(JoinHandle::join) {
            None => Ok(()),
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(BoardError::Stopped(self.path.clone())),
        }
    }
}

impl Drop for SummaryWriter {
    fn drop(&mut self) {
        let _ = self.finish();
    }
}

/// Writes the HParams experiment summary (the table's columns) into its own event file in
/// `dir`, the log directory whose runs are the study's trials.
pub fn write_experiment(dir: impl AsRef<Path>, info: &ExperimentInfo) -> Result<(), BoardError> {
    let hparam_infos = info
        .hparams
        .iter()
        .map(|(name, domain)| {
            let (r#type, domain_discrete, domain_interval) = match domain {
                Domain::Interval(lo, hi) => (
                    3,
                    None,
                    Some(proto::Interval {
                        min_value: *lo,
                        max_value: *hi,
                    }),
                ),
                Domain::Choices(c) => {
                    let ty = match c.first() {
                        Some(HParam::Number(_)) => 3,
                        Some(HParam::Bool(_)) => 2,
                        _ => 1,
                    };
                    let values = c.iter().map(HParam::proto).collect();
                    (ty, Some(proto::ListValue { values }), None)
                }
            };
            proto::HParamInfo {
                name: name.clone(),
                r#type,
                domain_discrete,
                domain_interval,
            }
        })
        .collect();
    let metric_infos = info
        .metrics
        .iter()
        .map(|tag| proto::MetricInfo {
            name: Some(proto::MetricName {
                group: String::new(),
                tag: tag.clone(),
            }),
        })
        .collect();
    let exp = proto::Experiment {
        description: info.description.clone(),
        time_created_secs: now(),
        hparam_infos,
        metric_infos,
        name: info.name.clone(),
    };
    let mut f = EventFile::create(dir)?;
    let v = hparams_value(
        "_hparams_/experiment",
        proto::hparams_plugin_data::Data::Experiment(exp),
    );
    f.write_values(0, now(), vec![v])?;
    f.flush()
}

/// Every event of an event file, its checksums checked.
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<proto::Event>, BoardError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(io(path))?;
    let damaged = |what: String| BoardError::Damaged {
        path: path.to_path_buf(),
        what,
    };
    let records = record::read_records(&bytes).map_err(|d| {
        damaged(match d {
            record::Damage::Truncated(at) => format!("it ends inside the record at byte {at}"),
            record::Damage::BadChecksum(at) => format!("a checksum fails at byte {at}"),
        })
    })?;
    records
        .into_iter()
        .enumerate()
        .map(|(i, r)| {
            proto::Event::decode(r)
                .map_err(|e| damaged(format!("record {i} is not a TensorBoard event: {e}")))
        })
        .collect()
}

/// What an HParams plugin value holds (the experiment, a session's start or end), decoded;
/// `None` for any other value.
pub fn hparams_data(value: &proto::Value) -> Option<proto::hparams_plugin_data::Data> {
    let plugin = value.metadata.as_ref()?.plugin_data.as_ref()?;
    if plugin.plugin_name != "hparams" {
        return None;
    }
    proto::HParamsPluginData::decode(plugin.content.as_slice())
        .ok()?
        .data
}

/// The event files (`*tfevents*`) directly in `dir`, sorted by name.
pub fn event_files(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>, BoardError> {
    let dir = dir.as_ref();
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io(dir))? {
        let e = e.map_err(io(dir))?;
        if e.file_name().to_string_lossy().contains("tfevents") {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}
