//! Errors of reading, fetching and loading data. Each names the file and says how to fix it.

use std::path::PathBuf;

/// What went wrong with a data file or a download.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The operating system refused a read or write.
    #[error("{action} {path}")]
    Io {
        /// What was being done (`reading`, `writing`, ...).
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file does not start with an IDX magic number of unsigned bytes.
    #[error("{path} is not an IDX file of unsigned bytes: magic number {found:#010x}, expected 0x00000801..0x000008ff (0x0000080N = N dimensions); if it was downloaded, delete it and fetch it again")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes, big-endian.
        found: u32,
    },
    /// The file is shorter or longer than its header says.
    #[error("{path} is {what}: its header promises {expected} bytes, the file holds {found}; if it was downloaded, delete it and fetch it again")]
    Size {
        /// The file.
        path: PathBuf,
        /// `truncated` or `longer than its header says`.
        what: &'static str,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        found: u64,
    },
    /// Dimensions other than the data set's.
    #[error("{path} has dimensions {found}, expected {expected}")]
    Dims {
        /// The file.
        path: PathBuf,
        /// What was expected, e.g. `60000x28x28`.
        expected: String,
        /// What the header says.
        found: String,
    },
    /// A label outside the classes.
    #[error("{path}: label {label} at index {index} is not a class 0..{classes}")]
    BadLabel {
        /// The file.
        path: PathBuf,
        /// Where.
        index: usize,
        /// The value.
        label: u8,
        /// Number of classes.
        classes: usize,
    },
    /// Images and labels disagree on the number of examples.
    #[error("{images} images but {labels} labels: the two files must come from the same split")]
    CountMismatch {
        /// Images.
        images: usize,
        /// Labels.
        labels: usize,
    },
    /// A gzip stream that cannot be decoded.
    #[error("{path} is not a valid gzip file ({source}); delete it and fetch again")]
    Gzip {
        /// The file.
        path: PathBuf,
        /// The decoder's complaint.
        source: std::io::Error,
    },
    /// Content whose MD5 is not the published one.
    #[error("checksum mismatch for {file} from {origin}: MD5 {found}, expected {expected}; {fix}")]
    Checksum {
        /// What to do about it.
        fix: String,
        /// The file's name.
        file: String,
        /// Where it came from (a URL, a path).
        origin: String,
        /// The published MD5.
        expected: String,
        /// The MD5 of what arrived.
        found: String,
    },
    /// The data set is not on disk and was not to be fetched.
    #[error("{set} is not in {dir} (missing: {missing}); fetch it there (on the command line `descent data fetch {name}`), or copy the four IDX files there")]
    Missing {
        /// The set's title (`MNIST`).
        set: &'static str,
        /// The set's name (`mnist`).
        name: &'static str,
        /// Where it was looked for.
        dir: PathBuf,
        /// The missing files.
        missing: String,
    },
    /// Every source failed.
    #[error("could not fetch {file}; tried:\n{attempts}\nCheck the network, or download the set's four IDX files by hand into {dir}")]
    FetchFailed {
        /// The file.
        file: String,
        /// Where the data set was to go.
        dir: PathBuf,
        /// One line per source and why it failed.
        attempts: String,
    },
    /// No cache directory could be chosen.
    #[error("no data directory: give one or set DESCENT_DATA (no home cache directory was found)")]
    NoDataDir,
    /// Batch settings that cannot work.
    #[error("invalid loader setting: {0}")]
    Loader(String),
    /// A text that cannot be read as tokens.
    #[error("{what}: {why}")]
    Text {
        /// The file (or "the text").
        what: String,
        /// What was wrong.
        why: String,
    },
}

impl DataError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> DataError {
        let path = path.into();
        move |source| DataError::Io {
            action,
            path,
            source,
        }
    }
}
