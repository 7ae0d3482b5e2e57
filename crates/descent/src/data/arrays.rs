//! `--data npy:X.npy,Y.npy` and `--data npz:FILE`: NumPy arrays of inputs and targets. Byte
//! arrays are pixels, scaled to [0, 1]; the standardization (per channel for images, per
//! feature for rows) is fitted on the training examples after the splits.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use descent_data::{arrays_dataset, read_npy, read_npz, Dataset, NpyArray, Task};

use super::table::TaskArg;
use super::{DataMeta, LoadOptions};

/// Inputs and targets.
type Pair = (NpyArray, NpyArray);

/// The arrays of an `.npz` archive that hold the inputs and targets: `x_train`/`y_train` (and
/// `x_test`/`y_test`, as Keras ships its sets), or `x`/`y` (either case).
fn pick(
    path: &Path,
    mut arrays: Vec<(String, NpyArray)>,
) -> Result<(NpyArray, NpyArray, Option<Pair>)> {
    let names: Vec<String> = arrays.iter().map(|(n, _)| n.clone()).collect();
    let mut take = |name: &str| -> Option<NpyArray> {
        let i = arrays
            .iter()
            .position(|(n, _)| n.eq_ignore_ascii_case(name))?;
        Some(arrays.remove(i).1)
    };
    if let (Some(x), Some(y)) = (take("x_train"), take("y_train")) {
        let test = match (take("x_test"), take("y_test")) {
            (Some(xt), Some(yt)) => Some((xt, yt)),
            (None, None) => None,
            _ => bail!(
                "invalid --data npz:{}: it has one of x_test and y_test but not the other",
                path.display()
            ),
        };
        return Ok((x, y, test));
    }
    match (take("x"), take("y")) {
        (Some(x), Some(y)) => Ok((x, y, None)),
        _ => bail!(
            "invalid --data npz:{}: name its arrays x and y (or x_train, y_train, x_test, \
             y_test); it holds {}",
            path.display(),
            names.join(", ")
        ),
    }
}

/// Pixels: byte arrays become values in [0, 1].
fn scaled(mut a: NpyArray) -> (NpyArray, bool) {
    let pixels = a.dtype.ends_with("u1");
    if pixels {
        a.values.iter_mut().for_each(|v| *v /= 255.0);
    }
    (a, pixels)
}

/// `npy:X.npy,Y.npy`'s two paths.
pub fn npy_paths(spec: &str) -> Result<(PathBuf, PathBuf)> {
    match spec.split_once(',') {
        Some((x, y)) if !x.is_empty() && !y.is_empty() => Ok((x.into(), y.into())),
        _ => bail!("invalid --data npy:{spec}: give the inputs and the targets, npy:X.npy,Y.npy"),
    }
}

/// Reads the arrays and holds out the test set when there is none.
pub fn load(source: &super::DataSource, o: &LoadOptions) -> Result<(Dataset, Dataset, DataMeta)> {
    let t = o.table;
    let task = t.task.map(|k| match k {
        TaskArg::Classify => Task::Classify,
        TaskArg::Regress => Task::Regress,
    });
    if t.target.is_some() || t.features.is_some() || t.test_data.is_some() {
        bail!("invalid --target/--features/--test-data: they are settings of --data csv:FILE");
    }
    let name = source.name();
    t.only_for_images(&name)?;
    let ((x, y, test), what) = match source {
        super::DataSource::Npy(xp, yp) => {
            let (x, y) = (read_npy(xp)?, read_npy(yp)?);
            (
                (x, y, None),
                format!("{} and {}", xp.display(), yp.display()),
            )
        }
        super::DataSource::Npz(p) => (pick(p, read_npz(p)?)?, p.display().to_string()),
        _ => unreachable!("arrays only"),
    };
    let (x, pixels) = scaled(x);
    let mut train =
        arrays_dataset(x, y, task, &what).map_err(|e| anyhow!("invalid --data {name}: {e}"))?;
    let test_split = test.is_none().then_some(t.test_split);
    let test = match test {
        Some((xt, yt)) => {
            let (xt, _) = scaled(xt);
            let task = Some(match train.is_regression() {
                true => Task::Regress,
                false => Task::Classify,
            });
            let test = arrays_dataset(xt, yt, task, &format!("{what} (test arrays)"))
                .map_err(|e| anyhow!("invalid --data {name}: {e}"))?;
            if test.shape() != train.shape()
                || test.outputs() > train.outputs() && !train.is_regression()
            {
                bail!(
                    "invalid --data {name}: the test examples are {:?} with {} classes, the \
                     training examples {:?} with {}",
                    test.shape(),
                    test.outputs(),
                    train.shape(),
                    train.outputs()
                );
            }
            test
        }
        None => super::split_test(&mut train, t.test_split, &name)?,
    };
    if !o.quiet {
        eprintln!(
            "arrays {what}: {} training and {} test examples of {:?}{}, {}",
            train.len(),
            test.len(),
            train.shape(),
            if pixels {
                " (bytes as pixels in [0, 1])"
            } else {
                ""
            },
            match train.is_regression() {
                true => format!("{} target values each", train.outputs()),
                false => format!("{} classes", train.classes()),
            }
        );
    }
    let meta = DataMeta {
        source: name,
        test_split,
        classes: match train.is_regression() {
            true => Vec::new(),
            false => (0..train.classes()).map(|c| c.to_string()).collect(),
        },
        ..Default::default()
    };
    Ok((train, test, meta))
}
