//! `--data idx:DIR`: any directory of IDX files in the benchmark sets' layout (train and test
//! images and labels, raw or gzip), its classes found in its labels, its pixel statistics
//! fitted on its training images.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use descent_data::{read_idx, Dataset, IdxArray, Normalize};

use super::{DataMeta, LoadOptions};

/// The file of `dir` whose name (without `.gz`) matches `split` (`train`, or `t10k` / `test`)
/// and `kind` (`images` / `idx3`, `labels` / `idx1`); none is `None`, several an error.
fn find(dir: &Path, names: &[String], split: &[&str], kind: &[&str]) -> Result<Option<PathBuf>> {
    let hits: Vec<&String> = names
        .iter()
        .filter(|n| {
            let n = n.strip_suffix(".gz").unwrap_or(n).to_lowercase();
            split.iter().any(|s| n.contains(s)) && kind.iter().any(|k| n.contains(k))
        })
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(dir.join(one))),
        many => bail!(
            "invalid --data idx:{}: {} files could be the {} {}: {}; keep one",
            dir.display(),
            many.len(),
            split[0],
            kind[0],
            many.iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The mean and standard deviation of `images`' pixels scaled to [0, 1].
fn pixel_stats(images: &IdxArray) -> Normalize {
    let mut hist = [0u64; 256];
    for &b in &images.data {
        hist[b as usize] += 1;
    }
    stats_of(&hist)
}

/// The mean and standard deviation, scaled to [0, 1], of pixels counted by value.
fn stats_of(hist: &[u64; 256]) -> Normalize {
    let n = hist.iter().sum::<u64>().max(1) as f64;
    let mean = hist
        .iter()
        .enumerate()
        .map(|(v, &c)| v as f64 * c as f64)
        .sum::<f64>()
        / n;
    let var = hist
        .iter()
        .enumerate()
        .map(|(v, &c)| (v as f64 - mean).powi(2) * c as f64)
        .sum::<f64>()
        / n;
    let std = (var.sqrt() / 255.0) as f32;
    Normalize {
        mean: (mean / 255.0) as f32,
        std: if std > 1e-12 { std } else { 1.0 },
    }
}

/// Loads the training and test sets of `dir` (the test set held out of the training files
/// when `dir` has none).
pub fn load(dir: &Path, o: &LoadOptions) -> Result<(Dataset, Dataset, DataMeta)> {
    o.table.only_for_tables(&format!("idx:{}", dir.display()))?;
    o.table.only_for_images(&format!("idx:{}", dir.display()))?;
    let names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| anyhow!("invalid --data idx:{}: {e}", dir.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    let (train, test) = (&["train"][..], &["t10k", "test"][..]);
    let (images, labels) = (&["images", "idx3"][..], &["labels", "idx1"][..]);
    let need = |found: Option<PathBuf>, what: &str| {
        found.ok_or_else(|| {
            anyhow!(
                "invalid --data idx:{}: no {what} file (a name with `{what}`, e.g. \
                 train-images-idx3-ubyte[.gz]); it holds: {}",
                dir.display(),
                if names.is_empty() {
                    "nothing".to_string()
                } else {
                    names.join(", ")
                }
            )
        })
    };
    let tr_x_path = need(find(dir, &names, train, images)?, "train images")?;
    let tr_y = read_idx(&need(find(dir, &names, train, labels)?, "train labels")?)?;
    let te_paths = match (
        find(dir, &names, test, images)?,
        find(dir, &names, test, labels)?,
    ) {
        (Some(x), Some(y)) => Some((x, y)),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => bail!(
            "invalid --data idx:{}: it has test images or test labels but not both",
            dir.display()
        ),
    };
    if o.table.stream || too_big(&tr_x_path) {
        return load_streamed(dir, &tr_x_path, tr_y, te_paths, o);
    }
    let tr_x = read_idx(&tr_x_path)?;
    let te = match te_paths {
        Some((x, y)) => Some((read_idx(&x)?, read_idx(&y)?)),
        None => None,
    };
    if tr_x.dims.len() < 2 {
        bail!(
            "invalid --data idx:{}: the training images have dimensions {}; expected N x ...",
            dir.display(),
            tr_x.dims_string()
        );
    }
    let classes = tr_y
        .data
        .iter()
        .chain(te.iter().flat_map(|(_, y)| y.data.iter()))
        .max()
        .map_or(0, |&m| m as usize + 1);
    if classes < 2 {
        bail!(
            "invalid --data idx:{}: its labels hold one class; a classifier needs two or more",
            dir.display()
        );
    }
    let norm = o.table.pixel_norm(pixel_stats(&tr_x))?;
    let mut train_set = Dataset::new(&tr_x, &tr_y, norm, classes)?;
    let test_split = te.is_none().then_some(o.table.test_split);
    let test_set = match te {
        Some((x, y)) => {
            if x.dims[1..] != tr_x.dims[1..] {
                bail!(
                    "invalid --data idx:{}: test images are {}, training images {}",
                    dir.display(),
                    x.dims_string(),
                    tr_x.dims_string()
                );
            }
            Dataset::new(&x, &y, norm, classes)?
        }
        None => super::split_test(
            &mut train_set,
            o.table.test_split,
            &format!("idx:{}", dir.display()),
        )?,
    };
    if !o.quiet {
        eprintln!(
            "IDX files in {}: {} training and {} test examples of {:?}, {classes} classes, \
             pixels normalized with mean {:.4} std {:.4}",
            dir.display(),
            train_set.len(),
            test_set.len(),
            train_set.shape(),
            norm.mean,
            norm.std
        );
    }
    let meta = DataMeta {
        source: format!("idx:{}", dir.display()),
        pixels: Some(norm),
        test_split,
        classes: (0..classes).map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    Ok((train_set, test_set, meta))
}

/// Whether the images of a raw IDX file would take more than half of the available memory as
/// f32 values (Linux's MemAvailable; never elsewhere).
fn too_big(images: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(images) else {
        return false;
    };
    let gz = std::fs::File::open(images)
        .and_then(|mut f| {
            let mut h = [0u8; 2];
            std::io::Read::read_exact(&mut f, &mut h).map(|_| h == [0x1f, 0x8b])
        })
        .unwrap_or(true);
    let available = descent_train::available_memory().map(|a| a as u64);
    !gz && available.is_some_and(|a| meta.len().saturating_mul(4) > a / 2)
}

/// The mean and std of the pixels of a raw IDX file, read in chunks.
fn streamed_stats(path: &Path) -> Result<Normalize> {
    use std::io::Read;
    let mut f = std::io::BufReader::with_capacity(1 << 20, std::fs::File::open(path)?);
    let mut head = [0u8; 4];
    f.read_exact(&mut head)?;
    let mut dims = vec![0u8; 4 * head[3] as usize];
    f.read_exact(&mut dims)?;
    let mut hist = [0u64; 256];
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            hist[b as usize] += 1;
        }
    }
    Ok(stats_of(&hist))
}

/// Training images read from their file as batches need them; the test images too.
fn load_streamed(
    dir: &Path,
    images: &Path,
    labels: IdxArray,
    test: Option<(PathBuf, PathBuf)>,
    o: &LoadOptions,
) -> Result<(Dataset, Dataset, DataMeta)> {
    let name = format!("idx:{}", dir.display());
    let test_labels = match &test {
        Some((_, y)) => Some(read_idx(y)?),
        None => None,
    };
    let classes = labels
        .data
        .iter()
        .chain(test_labels.iter().flat_map(|y| y.data.iter()))
        .max()
        .map_or(0, |&m| m as usize + 1);
    if classes < 2 {
        bail!("invalid --data {name}: its labels hold one class; a classifier needs two or more");
    }
    let norm = match o.table.normalize()? {
        super::table::NormalizeArg::Auto => streamed_stats(images)
            .map_err(|e| anyhow!("invalid --data {name}: reading {}: {e}", images.display()))?,
        _ => o.table.pixel_norm(Normalize::default())?,
    };
    let as_u32 = |a: &IdxArray| a.data.iter().map(|&l| u32::from(l)).collect::<Vec<_>>();
    let mut train = Dataset::streamed_idx(images, as_u32(&labels), norm, classes)
        .map_err(|e| anyhow!("invalid --data {name}: {e}"))?;
    let test_split = test.is_none().then_some(o.table.test_split);
    let test = match (&test, &test_labels) {
        (Some((x, _)), Some(y)) => Dataset::streamed_idx(x, as_u32(y), norm, classes)
            .map_err(|e| anyhow!("invalid --data {name}: {e}"))?,
        _ => super::split_test(&mut train, o.table.test_split, &name)?,
    };
    if !o.quiet {
        eprintln!(
            "IDX files in {} streamed from {}: {} training and {} test examples of {:?}, \
             {classes} classes, pixels normalized with mean {:.4} std {:.4}",
            dir.display(),
            images.display(),
            train.len(),
            test.len(),
            train.shape(),
            norm.mean,
            norm.std
        );
    }
    let meta = DataMeta {
        source: name,
        pixels: Some(norm),
        test_split,
        classes: (0..classes).map(|c| c.to_string()).collect(),
        ..Default::default()
    };
    Ok((train, test, meta))
}
