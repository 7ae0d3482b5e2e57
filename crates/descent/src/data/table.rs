//! `--data csv:FILE`: a table's columns, its test split, the imputation and standardization
//! fitted on its training rows, and new rows read the same way (`eval`, `predict`).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use clap::{Args, ValueEnum};
use descent_data::{
    read_csv, read_csv_rows, Augment, CsvOptions, Dataset, MeanImpute, Na, Normalize, Per, Rows,
    Standardize, Task,
};

use super::{DataMeta, LoadOptions};

/// `--task`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TaskArg {
    /// Predict the target's class.
    Classify,
    /// Predict the target's value (loss mse).
    Regress,
}

/// `--na`.
#[derive(
    ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum NaArg {
    /// Refuse a file with a missing cell, naming it.
    #[default]
    Refuse,
    /// Leave out rows with a missing cell.
    Drop,
    /// Fill missing features with the training rows' column means (rows missing the target
    /// are left out).
    Mean,
}

/// The flags of tables and of normalization.
#[derive(Args, Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct SourceArgs {
    /// csv:FILE's target column (default: the last).
    #[arg(long, value_name = "COLUMN", help_heading = "Data")]
    pub target: Option<String>,
    /// csv:FILE's feature columns, comma-separated (default: every column but the target).
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "COL,...",
        help_heading = "Data"
    )]
    pub features: Option<Vec<String>>,
    /// csv:FILE's task (default: classify when the target has text or at most 32 distinct
    /// integers, regress otherwise).
    #[arg(long, value_enum, help_heading = "Data")]
    pub task: Option<TaskArg>,
    /// csv:FILE's missing cells (empty, NA, N/A, NaN, null, ?).
    #[arg(long, value_enum, default_value = "refuse", help_heading = "Data")]
    pub na: NaArg,
    /// The share held out as the test set of a source without one (csv:FILE, idx:DIR
    /// without test files): the same rows for every run and for `eval`.
    #[arg(long, default_value_t = 0.2, value_name = "F", help_heading = "Data")]
    pub test_split: f64,
    /// csv:FILE's test rows from another file (its columns read as the training file's)
    /// instead of holding out --test-split of the training file.
    #[arg(long, value_name = "FILE", help_heading = "Data")]
    pub test_data: Option<std::path::PathBuf>,
    /// images:DIR: resize every picture to HEIGHTxWIDTH (default: refuse pictures of
    /// different sizes).
    #[arg(long, value_name = "HxW", help_heading = "Data")]
    pub image_size: Option<String>,
    /// images:DIR: read pictures as 1 (grey) or 3 (RGB) channels (default: grey when every
    /// picture is grey).
    #[arg(long, value_name = "N", help_heading = "Data")]
    pub channels: Option<usize>,
    /// idx:DIR: read the training images from the file as batches need them instead of
    /// loading them (raw IDX files; the default when they would take more than half of the
    /// available memory).
    #[arg(long, help_heading = "Data")]
    pub stream: bool,
    /// Augment the training pictures (off by default; evaluation sees them as they are):
    /// comma-separated crop:P (pad by P pixels and crop back at a random place: random shifts
    /// of up to P), flip (mirror left-right half the time), rotate:DEG (by up to DEG degrees),
    /// e.g. crop:4,flip. Seeded: each picture's draw depends on --seed, the epoch and the
    /// picture.
    #[arg(long, value_name = "LIST", help_heading = "Data")]
    pub augment: Option<String>,
    /// Normalization: auto (images: the set's training mean and std, fitted on idx:DIR's
    /// training images; tables: each column standardized with its training mean and std),
    /// none, or MEAN,STD for images' pixels scaled to [0, 1] (e.g. 0.1307,0.3081).
    #[arg(
        long,
        default_value = "auto",
        value_name = "auto|none|MEAN,STD",
        help_heading = "Data"
    )]
    pub normalize: String,
}

impl Default for SourceArgs {
    /// The flags' defaults.
    fn default() -> Self {
        Self {
            target: None,
            features: None,
            task: None,
            na: NaArg::Refuse,
            test_split: 0.2,
            test_data: None,
            image_size: None,
            channels: None,
            stream: false,
            augment: None,
            normalize: "auto".into(),
        }
    }
}

/// `--normalize`, parsed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NormalizeArg {
    /// Fitted (or the set's statistics).
    Auto,
    /// Off.
    None,
    /// Given.
    Fixed(Normalize),
}

impl SourceArgs {
    /// `--normalize`, checked.
    pub fn normalize(&self) -> Result<NormalizeArg> {
        let bad = || {
            anyhow!(
                "invalid --normalize {}: give auto, none, or MEAN,STD (a finite mean and a std \
                 > 0, e.g. 0.1307,0.3081)",
                self.normalize
            )
        };
        match self.normalize.as_str() {
            "auto" => Ok(NormalizeArg::Auto),
            "none" => Ok(NormalizeArg::None),
            s => {
                let (m, sd) = s.split_once(',').ok_or_else(bad)?;
                let (mean, std) = (
                    m.trim().parse::<f32>().map_err(|_| bad())?,
                    sd.trim().parse::<f32>().map_err(|_| bad())?,
                );
                if !(mean.is_finite() && std.is_finite() && std > 0.0) {
                    return Err(bad());
                }
                Ok(NormalizeArg::Fixed(Normalize { mean, std }))
            }
        }
    }

    /// The pixel normalization of an image set whose statistics are `auto`.
    pub fn pixel_norm(&self, auto: Normalize) -> Result<Normalize> {
        Ok(match self.normalize()? {
            NormalizeArg::Auto => auto,
            NormalizeArg::None => Normalize {
                mean: 0.0,
                std: 1.0,
            },
            NormalizeArg::Fixed(n) => n,
        })
    }

    fn na(&self) -> Na {
        match self.na {
            NaArg::Refuse => Na::Refuse,
            NaArg::Drop => Na::Drop,
            NaArg::Mean => Na::Mean,
        }
    }

    /// Refuses picture flags given for a source that is not a folder of pictures.
    pub fn only_for_images(&self, source: &str) -> Result<()> {
        let given = [
            ("--image-size", self.image_size.is_some()),
            ("--channels", self.channels.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            bail!("invalid {flag}: it is a setting of --data images:DIR, not of {source}");
        }
        Ok(())
    }

    /// Refuses table flags given for a source that is not a table.
    pub fn only_for_tables(&self, source: &str) -> Result<()> {
        let given = [
            ("--target", self.target.is_some()),
            ("--features", self.features.is_some()),
            ("--task", self.task.is_some()),
            ("--na", self.na != NaArg::Refuse),
            ("--test-data", self.test_data.is_some()),
        ];
        if let Some((flag, _)) = given.iter().find(|(_, g)| *g) {
            bail!("invalid {flag}: it is a setting of --data csv:FILE, not of {source}");
        }
        Ok(())
    }
}

/// Reads the table and holds out its test rows; the transforms come after the validation
/// split ([`fit_transforms`]).
pub fn load(path: &Path, o: &LoadOptions) -> Result<(Dataset, Dataset, DataMeta)> {
    let t = o.table;
    t.only_for_images(&format!("csv:{}", path.display()))?;
    if let NormalizeArg::Fixed(_) = t.normalize()? {
        bail!(
            "invalid --normalize {}: a table's columns are standardized each with its own \
             statistics (auto) or not at all (none)",
            t.normalize
        );
    }
    let opts = CsvOptions {
        target: t.target.clone(),
        features: t.features.clone(),
        task: t.task.map(|k| match k {
            TaskArg::Classify => Task::Classify,
            TaskArg::Regress => Task::Regress,
        }),
        na: t.na(),
    };
    let mut table =
        read_csv(path, &opts).map_err(|e| anyhow!("invalid --data csv:{}: {e}", path.display()))?;
    let test = match &t.test_data {
        Some(file) => {
            let probe = DataMeta {
                table: Some(table.schema.clone()),
                ..Default::default()
            };
            let na = match t.na {
                NaArg::Mean => Na::Mean,
                _ => Na::Refuse,
            };
            let rows = read_csv_rows(file, &table.schema, na)
                .map_err(|e| anyhow!("invalid --test-data {}: {e}", file.display()))?;
            rows_dataset(&probe, rows)?.ok_or_else(|| {
                anyhow!(
                    "invalid --test-data {}: it has no target column `{}`",
                    file.display(),
                    table.schema.target
                )
            })?
        }
        None => super::split_test(
            &mut table.data,
            t.test_split,
            &format!("csv:{}", path.display()),
        )?,
    };
    if !o.quiet {
        let s = &table.schema;
        let what = match s.task {
            Task::Classify => format!("classify `{}` into {} classes", s.target, s.labels.len()),
            Task::Regress => format!("regress `{}`", s.target),
        };
        let mut line = format!(
            "table {}: {} rows of {} features, {what}; {}",
            path.display(),
            table.data.len(),
            s.features.len(),
            match &t.test_data {
                Some(f) => format!("{} test rows from {}", test.len(), f.display()),
                None => format!("{} of them held out for testing", test.len()),
            }
        );
        if table.dropped > 0 {
            line += &format!("; {} rows with missing cells left out", table.dropped);
        }
        if table.missing > 0 {
            line += &format!(
                "; {} missing cells filled with training means",
                table.missing
            );
        }
        eprintln!("{line}");
    }
    let meta = DataMeta {
        source: format!("csv:{}", path.display()),
        test_split: t.test_data.is_none().then_some(t.test_split),
        test_data: t.test_data.as_ref().map(|p| p.display().to_string()),
        na: Some(
            t.na.to_possible_value()
                .expect("named")
                .get_name()
                .to_string(),
        ),
        classes: table.schema.labels.clone(),
        table: Some(table.schema),
        ..Default::default()
    };
    Ok((table.data, test, meta))
}

/// Fits the imputation and standardization (`per` feature or channel, as `--normalize` says)
/// on `train`, applies them to it, and records them.
pub fn fit_transforms(
    train: &mut Dataset,
    meta: &mut DataMeta,
    t: &super::SourceArgs,
    per: Per,
) -> Result<()> {
    if train.has_missing() {
        let names = meta.table.as_ref().map_or(&[][..], |s| &s.features[..]);
        let imp = MeanImpute::fit(train, names).map_err(|e| anyhow!("invalid --na mean: {e}"))?;
        imp.apply(train)?;
        meta.impute = Some(imp);
    }
    let s = match t.normalize()? {
        NormalizeArg::Auto => Some(Standardize::fit(train, per)?),
        NormalizeArg::None => None,
        NormalizeArg::Fixed(n) => {
            let groups = match per {
                Per::Feature => train.features(),
                Per::Channel => train.shape()[0],
            };
            Some(Standardize {
                per,
                mean: vec![n.mean; groups],
                std: vec![n.std; groups],
            })
        }
    };
    if let Some(s) = s {
        s.apply(train)?;
        meta.standardize = Some(s);
    }
    Ok(())
}

/// Applies a record's imputation and standardization to `data`.
pub fn apply(meta: &DataMeta, data: &mut Dataset) -> Result<()> {
    if let Some(imp) = &meta.impute {
        imp.apply(data)?;
    }
    if let Some(s) = &meta.standardize {
        s.apply(data)?;
    }
    Ok(())
}

/// New rows of a table read with a model's record: features in the model's order, filled
/// and standardized as in training, and the targets when the file has the target column.
pub fn table_rows(meta: &DataMeta, path: &Path) -> Result<Rows> {
    let schema = meta.table.as_ref().ok_or_else(|| {
        anyhow!(
            "the model was not trained on a table (its data: {})",
            meta.source
        )
    })?;
    let na = match meta.impute {
        Some(_) => Na::Mean,
        None => Na::Refuse,
    };
    let mut rows = read_csv_rows(path, schema, na)
        .map_err(|e| anyhow!("invalid --data csv:{}: {e}", path.display()))?;
    let f = schema.features.len();
    for row in rows.x.chunks_exact_mut(f) {
        if let Some(imp) = &meta.impute {
            imp.apply_row(row);
        }
        if let Some(s) = &meta.standardize {
            s.apply_row(row)?;
        }
    }
    Ok(rows)
}

/// The test rows of the table a model was trained on, read and transformed as in training
/// (the same file gives the same rows).
pub fn test_rows(meta: &DataMeta, path: &Path) -> Result<Dataset> {
    if let Some(file) = &meta.test_data {
        let rows = table_rows(meta, Path::new(file))?;
        return rows_dataset(meta, rows)?
            .ok_or_else(|| anyhow!("{file} has no target column to evaluate against"));
    }
    let schema = meta.table.as_ref().ok_or_else(|| {
        anyhow!(
            "the model was not trained on a table (its data: {})",
            meta.source
        )
    })?;
    let na = match meta.na.as_deref() {
        Some("drop") => Na::Drop,
        Some("mean") => Na::Mean,
        _ => Na::Refuse,
    };
    let opts = CsvOptions {
        target: Some(schema.target.clone()),
        features: Some(schema.features.clone()),
        task: Some(schema.task),
        na,
    };
    let mut table =
        read_csv(path, &opts).map_err(|e| anyhow!("invalid --data csv:{}: {e}", path.display()))?;
    if table.schema.labels != schema.labels {
        bail!(
            "{} has changed since training: its classes are now {} (the model's: {}); evaluate \
             new rows with --data csv:FILE",
            path.display(),
            table.schema.labels.join(", "),
            schema.labels.join(", ")
        );
    }
    let fraction = meta.test_split.unwrap_or(0.2);
    let mut test = super::split_test(&mut table.data, fraction, &meta.source)?;
    apply(meta, &mut test)?;
    Ok(test)
}

/// New rows with their targets as a data set (for `eval`); `None` when the file has no target
/// column.
pub fn rows_dataset(meta: &DataMeta, rows: Rows) -> Result<Option<Dataset>> {
    let schema = meta.table.as_ref().expect("a table's record");
    let shape = [schema.features.len()];
    // Missing values (read for imputation) are filled by the caller.
    let missing = rows.x.iter().any(|v| v.is_nan());
    Ok(match rows.targets {
        None => None,
        Some(descent_data::Targets::Classes(y)) => Some(Dataset::classes_with_missing(
            &shape,
            rows.x,
            y,
            schema.labels.len(),
            missing,
        )?),
        Some(descent_data::Targets::Values(y)) => {
            Some(Dataset::regression(&shape, rows.x, y, 1, missing)?)
        }
    })
}

/// `--augment`, parsed, with the fill of a black pixel of each channel as `meta`'s
/// normalization makes it (0 before any was fitted).
pub fn augment(
    t: &SourceArgs,
    meta: Option<&DataMeta>,
    channels: usize,
) -> Result<Option<Augment>> {
    let Some(list) = &t.augment else {
        return Ok(None);
    };
    let mut a = Augment::default();
    let bad = |part: &str, why: &str| {
        anyhow!("invalid --augment {list}: `{part}` {why}; give e.g. crop:4,flip,rotate:10")
    };
    for part in list.split(',').map(str::trim) {
        match part.split_once(':') {
            Some(("crop", p)) => {
                a.crop_pad = p
                    .parse()
                    .map_err(|_| bad(part, "needs a whole number of pixels"))?
            }
            Some(("rotate", d)) => {
                a.rotate = d.parse().map_err(|_| bad(part, "needs degrees"))?;
                if !(a.rotate.is_finite() && (0.0..=180.0).contains(&a.rotate)) {
                    return Err(bad(part, "needs 0 to 180 degrees"));
                }
            }
            None if part == "flip" => a.flip = true,
            _ => return Err(bad(part, "is not crop:P, flip or rotate:DEG")),
        }
    }
    a.fill = (0..channels)
        .map(|c| match meta {
            Some(DataMeta {
                pixels: Some(p), ..
            }) => (0.0 - p.mean) / p.std,
            Some(DataMeta {
                standardize: Some(s),
                ..
            }) => {
                let k = c.min(s.mean.len().saturating_sub(1));
                (0.0 - s.mean[k]) / s.std[k]
            }
            _ => 0.0,
        })
        .collect();
    Ok(Some(a))
}
