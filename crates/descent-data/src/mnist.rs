//! The MNIST data set on disk: where it lives, what its files must be, how to load it.

use std::io::Read;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::{read_idx, DataError, Dataset, IdxArray, Normalize};

/// One of MNIST's four files: its name and the MD5 of its uncompressed content.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MnistFile {
    /// File name, without `.gz`.
    pub name: &'static str,
    /// MD5 of the uncompressed file, as torchvision publishes it.
    pub md5: &'static str,
    /// Expected dimensions.
    pub dims: &'static [usize],
}

/// The four files, in the order train images, train labels, test images, test labels.
pub const MNIST_FILES: [MnistFile; 4] = [
    MnistFile {
        name: "train-images-idx3-ubyte",
        md5: "6bbc9ace898e44ae57da46a324031adb",
        dims: &[60_000, 28, 28],
    },
    MnistFile {
        name: "train-labels-idx1-ubyte",
        md5: "a25bea736e30d166cdddb491f175f624",
        dims: &[60_000],
    },
    MnistFile {
        name: "t10k-images-idx3-ubyte",
        md5: "2646ac647ad5339dbf082846283269ea",
        dims: &[10_000, 28, 28],
    },
    MnistFile {
        name: "t10k-labels-idx1-ubyte",
        md5: "27ae3e4e09519cfbb04c329615203637",
        dims: &[10_000],
    },
];

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

/// Where MNIST's files are under a data root: the root itself when it already holds them
/// (a directory of IDX files you downloaded), else `root/mnist`, where fetch puts them.
pub fn locate_mnist(root: &Path) -> PathBuf {
    if missing_mnist_files(root).is_empty() {
        root.into()
    } else {
        root.join("mnist")
    }
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

/// Reads and checks one file: checksum of the uncompressed bytes, then dimensions.
fn load_file(dir: &Path, f: &MnistFile) -> Result<IdxArray, DataError> {
    let path = find(dir, f.name).ok_or_else(|| DataError::Missing {
        dir: dir.into(),
        missing: f.name.into(),
    })?;
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
            fix: "the file is corrupt or not the official MNIST: delete it and run `descent data fetch mnist`",
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

/// MNIST's training and test sets, normalized.
#[derive(Clone, Debug)]
pub struct Mnist {
    /// 60 000 training examples.
    pub train: Dataset,
    /// 10 000 test examples.
    pub test: Dataset,
}

/// The MNIST files that `dir` holds neither raw nor gzip.
pub fn missing_mnist_files(dir: &Path) -> Vec<&'static str> {
    MNIST_FILES
        .iter()
        .filter(|f| find(dir, f.name).is_none())
        .map(|f| f.name)
        .collect()
}

/// Loads MNIST from `dir` (raw or gzip IDX files), verifying each file's MD5 and shape.
pub fn load_mnist(dir: &Path, norm: Normalize) -> Result<Mnist, DataError> {
    let missing = missing_mnist_files(dir);
    if !missing.is_empty() {
        return Err(DataError::Missing {
            dir: dir.into(),
            missing: missing.join(", "),
        });
    }
    let split = |i: usize, j: usize| -> Result<Dataset, DataError> {
        let images = load_file(dir, &MNIST_FILES[i])?;
        let labels = load_file(dir, &MNIST_FILES[j])?;
        Dataset::new(&images, &labels, norm, 10)
    };
    Ok(Mnist {
        train: split(0, 1)?,
        test: split(2, 3)?,
    })
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
