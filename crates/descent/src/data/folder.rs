//! `--data images:DIR`: a folder of class sub-folders of pictures (or `train/` and `test/`
//! folders of them), decoded, sized and normalized per channel on the training pictures.

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use descent_data::{read_image_folder, Dataset, ImageOptions};

use super::{DataMeta, ImageMeta, LoadOptions};

/// `--image-size HxW`.
pub fn parse_size(s: &str) -> Result<(u32, u32)> {
    let bad = || anyhow!("invalid --image-size {s}: give HEIGHTxWIDTH in pixels, e.g. 32x32");
    let (h, w) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let (h, w) = (
        h.trim().parse::<u32>().map_err(|_| bad())?,
        w.trim().parse::<u32>().map_err(|_| bad())?,
    );
    if h == 0 || w == 0 || h > 4096 || w > 4096 {
        return Err(bad());
    }
    Ok((h, w))
}

/// Whether `dir` is laid out as `train/` and `test/` (or `val/`) folders of classes.
fn split_dirs(dir: &Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let train = dir.join("train");
    let test = ["test", "val"]
        .iter()
        .map(|t| dir.join(t))
        .find(|p| p.is_dir())?;
    train.is_dir().then_some((train, test))
}

/// Reads the pictures and holds out a test set when the folder has no `test/`.
pub fn load(dir: &Path, o: &LoadOptions) -> Result<(Dataset, Dataset, DataMeta)> {
    let t = o.table;
    t.only_for_tables(&format!("images:{}", dir.display()))?;
    let opts = ImageOptions {
        size: t.image_size.as_deref().map(parse_size).transpose()?,
        channels: t.channels,
    };
    let name = format!("images:{}", dir.display());
    let read = |d: &Path, opts: &ImageOptions| {
        read_image_folder(d, opts).map_err(|e| anyhow!("invalid --data {name}: {e}"))
    };
    let (train, test, test_split) = match split_dirs(dir) {
        Some((tr, te)) => {
            let train = read(&tr, &opts)?;
            let s = train.data.shape();
            // The test pictures take the training pictures' size and channels.
            let same = ImageOptions {
                size: Some((s[1] as u32, s[2] as u32)),
                channels: Some(s[0]),
            };
            let test = read(&te, &same)?;
            if test.classes != train.classes {
                bail!(
                    "invalid --data {name}: {} has classes {} but {} has {}",
                    te.display(),
                    test.classes.join(", "),
                    tr.display(),
                    train.classes.join(", ")
                );
            }
            (train, test.data, None)
        }
        None => {
            let mut train = read(dir, &opts)?;
            let test = super::split_test(&mut train.data, t.test_split, &name)?;
            (train, test, Some(t.test_split))
        }
    };
    let s = train.data.shape().to_vec();
    if !o.quiet {
        eprintln!(
            "pictures in {}: {} training and {} test examples of {}x{} {}, {} classes ({}){}",
            dir.display(),
            train.data.len(),
            test.len(),
            s[1],
            s[2],
            if s[0] == 1 { "grey" } else { "RGB" },
            train.classes.len(),
            train.classes.join(", "),
            match train.skipped {
                0 => String::new(),
                n => format!("; {n} files that are not PNG or JPEG left out"),
            }
        );
    }
    let meta = DataMeta {
        source: name,
        test_split,
        classes: train.classes.clone(),
        image: Some(ImageMeta {
            channels: s[0],
            height: s[1] as u32,
            width: s[2] as u32,
        }),
        ..Default::default()
    };
    Ok((train.data, test, meta))
}
