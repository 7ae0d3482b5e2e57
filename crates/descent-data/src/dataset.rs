//! An in-memory data set: rows of f32 values with class targets (images and their labels, a
//! table's classes) or f32 targets (a regression table), or the windows of a token stream (a
//! text, each window's targets the next tokens).

use descent_tensor::Rng;

use crate::{DataError, IdxArray};

/// Per-pixel normalization `(x / 255 - mean) / std`, torchvision's `ToTensor` + `Normalize`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalize {
    /// Mean subtracted after scaling to [0, 1].
    pub mean: f32,
    /// Standard deviation divided by.
    pub std: f32,
}

impl Default for Normalize {
    /// MNIST's training-set statistics, as in the seed program: 0.1307 and 0.3081.
    fn default() -> Self {
        Self {
            mean: 0.1307,
            std: 0.3081,
        }
    }
}

/// Examples (each `features` f32 values of `shape`) and their class targets: one per example
/// (a label), or one per position of a sequence (the next token of each window of a text).
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Shape of one example: `[1, 28, 28]` for MNIST (a channel axis is added to 2-D images),
    /// `[L]` for windows of `L` tokens.
    shape: Vec<usize>,
    features: usize,
    classes: usize,
    /// Targets per example (class indices or values).
    per_example: usize,
    /// Whether values may be NaN, standing for missing cells (a table read with missing
    /// values kept for imputation); such a set does not train until they are filled.
    missing: bool,
    store: Store,
}

#[derive(Clone, Debug)]
enum Store {
    /// `len x features` values and `len x per_example` targets.
    Rows { images: Vec<f32>, labels: Vec<u32> },
    /// `len x features` values and `len x per_example` f32 targets (regression).
    Values { x: Vec<f32>, y: Vec<f32> },
    /// Bytes read from a file when a batch needs them (a set larger than memory): example `i`
    /// is row `rows[i]` of the file, `(byte / 255 - mean) / std`, with class `labels[i]`.
    Streamed {
        file: std::sync::Arc<StreamedFile>,
        rows: Vec<u32>,
        labels: Vec<u32>,
        norm: Normalize,
    },
    /// Windows of a token stream: example `i` is `ids[s..s + L]` (as f32) with targets
    /// `ids[s + 1..s + L + 1]`, `s = i` (every offset) or `starts[i]`.
    Windows {
        tokens: Vec<f32>,
        ids: Vec<u32>,
        starts: Option<Vec<u32>>,
    },
}

/// A file of fixed-size rows of bytes after a header, read with positioned reads.
#[derive(Debug)]
pub struct StreamedFile {
    file: std::fs::File,
    path: std::path::PathBuf,
    offset: u64,
    row_bytes: usize,
}

impl StreamedFile {
    fn read_rows(&self, rows: impl Iterator<Item = u32>, out: &mut [f32], norm: Normalize) {
        let mut buf = vec![0u8; self.row_bytes];
        let (m, inv) = (norm.mean, 1.0 / norm.std);
        for (r, dst) in rows.zip(out.chunks_exact_mut(self.row_bytes)) {
            let at = self.offset + r as u64 * self.row_bytes as u64;
            match read_at(&self.file, &mut buf, at) {
                Ok(()) => {
                    for (d, &b) in dst.iter_mut().zip(&buf) {
                        *d = (b as f32 / 255.0 - m) * inv;
                    }
                }
                // The file was checked when opened; a read that fails later (the file cut
                // short under a running job) gives NaN inputs, which stop training with a
                // non-finite loss rather than a panic in a loader thread.
                Err(_) => dst.fill(f32::NAN),
            }
        }
    }
}

#[cfg(unix)]
fn read_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(f, buf, at)
}

#[cfg(not(unix))]
fn read_at(f: &std::fs::File, buf: &mut [u8], at: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = f.try_clone()?;
    f.seek(SeekFrom::Start(at))?;
    f.read_exact(buf)
}

impl Dataset {
    /// A data set streamed from a raw (uncompressed) IDX file of images: only its header is
    /// read now; each batch reads its examples' bytes (positioned reads, so the process holds
    /// no more than a batch of them). `labels` are the classes of every image, in order.
    pub fn streamed_idx(
        path: &std::path::Path,
        labels: Vec<u32>,
        norm: Normalize,
        classes: usize,
    ) -> Result<Self, DataError> {
        use std::io::Read;
        let mut file = std::fs::File::open(path).map_err(DataError::io("reading", path))?;
        let mut head = [0u8; 4];
        file.read_exact(&mut head)
            .map_err(DataError::io("reading", path))?;
        if head[..2] == [0x1f, 0x8b] {
            return Err(DataError::Loader(format!(
                "{} is gzip: a streamed set reads its rows in place, so decompress it first \
                 (gunzip -k)",
                path.display()
            )));
        }
        let magic = u32::from_be_bytes(head);
        let ndims = (magic & 0xff) as usize;
        if magic & 0xffff_ff00 != 0x0000_0800 || ndims < 2 {
            return Err(DataError::BadMagic {
                path: path.into(),
                found: magic,
            });
        }
        let mut dims = vec![0u8; 4 * ndims];
        file.read_exact(&mut dims)
            .map_err(DataError::io("reading", path))?;
        let dims: Vec<usize> = dims
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
            .collect();
        let (n, row_bytes) = (dims[0], dims[1..].iter().product::<usize>());
        let offset = 4 + 4 * ndims as u64;
        let len = file
            .metadata()
            .map_err(DataError::io("reading", path))?
            .len();
        let expected = offset + (n as u64) * row_bytes as u64;
        if len != expected {
            return Err(DataError::Size {
                path: path.into(),
                what: if len < expected {
                    "truncated"
                } else {
                    "longer than its header says"
                },
                expected,
                found: len,
            });
        }
        if labels.len() != n {
            return Err(DataError::CountMismatch {
                images: n,
                labels: labels.len(),
            });
        }
        if let Some(index) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::Loader(format!(
                "label {} of example {index} is not below the {classes} classes",
                labels[index]
            )));
        }
        let shape = match &dims[1..] {
            [h, w] => vec![1, *h, *w],
            d => d.to_vec(),
        };
        Ok(Self {
            shape,
            features: row_bytes,
            classes,
            per_example: 1,
            missing: false,
            store: Store::Streamed {
                file: std::sync::Arc::new(StreamedFile {
                    file,
                    path: path.into(),
                    offset,
                    row_bytes,
                }),
                rows: (0..n as u32).collect(),
                labels,
                norm,
            },
        })
    }

    /// Whether examples are read from a file as batches need them (see
    /// [`Dataset::streamed_idx`]); such a set has no [`Dataset::images`] slice.
    pub fn is_streamed(&self) -> bool {
        matches!(self.store, Store::Streamed { .. })
    }

    /// The file a streamed set reads.
    pub fn streamed_path(&self) -> Option<&std::path::Path> {
        match &self.store {
            Store::Streamed { file, .. } => Some(&file.path),
            _ => None,
        }
    }

    /// Copies the values of the examples `idx` into `x` (`idx.len() x features`), whatever
    /// the store.
    pub fn fill_rows(&self, idx: &[u32], x: &mut [f32]) {
        let f = self.features;
        match &self.store {
            Store::Streamed {
                file, rows, norm, ..
            } => file.read_rows(
                idx.iter().map(|&i| rows[i as usize]),
                &mut x[..idx.len() * f],
                *norm,
            ),
            _ => {
                for (dst, &i) in x.chunks_exact_mut(f).zip(idx) {
                    dst.copy_from_slice(self.example(i as usize));
                }
            }
        }
    }

    /// Builds a data set from an IDX image array (`N x ...`) and an IDX label array (`N`).
    pub fn new(
        images: &IdxArray,
        labels: &IdxArray,
        norm: Normalize,
        classes: usize,
    ) -> Result<Self, DataError> {
        if !(norm.std.is_finite() && norm.std > 0.0 && norm.mean.is_finite()) {
            return Err(DataError::Loader(format!(
                "normalization mean {} / std {}: the std must be a finite number > 0",
                norm.mean, norm.std
            )));
        }
        let n = images.dims.first().copied().unwrap_or(0);
        if labels.dims.len() != 1 || labels.dims[0] != n {
            return Err(DataError::CountMismatch {
                images: n,
                labels: labels.dims.iter().product(),
            });
        }
        if let Some(index) = labels.data.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::BadLabel {
                path: "labels".into(),
                index,
                label: labels.data[index],
                classes,
            });
        }
        let features = images.dims[1..].iter().product();
        let shape = match &images.dims[1..] {
            [h, w] => vec![1, *h, *w],
            [] => vec![1],
            dims => dims.to_vec(),
        };
        let images = images
            .data
            .iter()
            .map(|&b| (b as f32 / 255.0 - norm.mean) / norm.std)
            .collect();
        Ok(Self {
            shape,
            features,
            classes,
            per_example: 1,
            missing: false,
            store: Store::Rows {
                images,
                labels: labels.data.iter().map(|&l| u32::from(l)).collect(),
            },
        })
    }

    /// Checks a shape and the number of values it makes with `n` examples.
    fn check_shape(shape: &[usize], values: usize, n: usize) -> Result<usize, DataError> {
        let features: usize = shape.iter().product();
        if shape.is_empty() || features == 0 {
            return Err(DataError::Loader(format!(
                "example shape {shape:?}: give at least one dimension and no zero"
            )));
        }
        if Some(values) != n.checked_mul(features) {
            return Err(DataError::Loader(format!(
                "{values} values for {n} examples of shape {shape:?} ({features} values each): \
                 expected {}",
                n.saturating_mul(features)
            )));
        }
        Ok(features)
    }

    /// The first value that is not finite (NaN counts only when `missing` is false), as
    /// `(index, value)`.
    fn first_nonfinite(values: &[f32], missing: bool) -> Option<(usize, f32)> {
        values
            .iter()
            .position(|v| !(v.is_finite() || missing && v.is_nan()))
            .map(|i| (i, values[i]))
    }

    /// A regression set from memory: `x` holds `n` examples of `shape`, `y` their `outputs`
    /// target values each, both row-major. With `missing`, NaN in `x` stands for a missing
    /// value, to be filled (see [`crate::MeanImpute`]) before training; otherwise every
    /// value must be finite.
    pub fn regression(
        shape: &[usize],
        x: Vec<f32>,
        y: Vec<f32>,
        outputs: usize,
        missing: bool,
    ) -> Result<Self, DataError> {
        if outputs == 0 || !y.len().is_multiple_of(outputs) {
            return Err(DataError::Loader(format!(
                "{} target values do not make rows of {outputs}",
                y.len()
            )));
        }
        let n = y.len() / outputs;
        let features = Self::check_shape(shape, x.len(), n)?;
        if let Some((i, v)) = Self::first_nonfinite(&x, missing) {
            return Err(DataError::Loader(format!(
                "value {} of example {} is {v}: inputs must be finite",
                i % features,
                i / features
            )));
        }
        if let Some((i, v)) = Self::first_nonfinite(&y, false) {
            return Err(DataError::Loader(format!(
                "target {} of example {} is {v}: targets must be finite",
                i % outputs,
                i / outputs
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            features,
            classes: 0,
            per_example: outputs,
            missing,
            store: Store::Values { x, y },
        })
    }

    /// A data set from memory: `images` holds `labels.len()` examples of `shape` (already
    /// normalized as the model expects), row-major; labels are class indices below `classes`.
    pub fn from_vecs(
        shape: &[usize],
        images: Vec<f32>,
        labels: Vec<u32>,
        classes: usize,
    ) -> Result<Self, DataError> {
        Self::classes_with_missing(shape, images, labels, classes, false)
    }

    /// [`Dataset::from_vecs`], where with `missing` NaN values stand for missing ones, to be
    /// filled (see [`crate::MeanImpute`]) before training.
    pub fn classes_with_missing(
        shape: &[usize],
        images: Vec<f32>,
        labels: Vec<u32>,
        classes: usize,
        missing: bool,
    ) -> Result<Self, DataError> {
        let features = Self::check_shape(shape, images.len(), labels.len())?;
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::Loader(format!(
                "label {} of example {i} is not below the {classes} classes",
                labels[i]
            )));
        }
        if let Some((i, v)) = Self::first_nonfinite(&images, missing) {
            return Err(DataError::Loader(format!(
                "value {} of example {} is {v}: inputs must be finite",
                i % features,
                i / features
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            features,
            classes,
            per_example: 1,
            missing,
            store: Store::Rows { images, labels },
        })
    }

    /// The windows of `block` tokens of a token stream `ids` (every id below `classes`), each
    /// with the next `block` tokens as its targets: at every offset (`starts` `None`: `len -
    /// block` windows), or at the given offsets.
    pub fn windows(
        ids: Vec<u32>,
        block: usize,
        classes: usize,
        starts: Option<Vec<u32>>,
    ) -> Result<Self, DataError> {
        if block == 0 || ids.len() <= block {
            return Err(DataError::Loader(format!(
                "{} tokens hold no window of {block} tokens and its next ones: give a longer \
                 text or a shorter block",
                ids.len()
            )));
        }
        if let Some(i) = ids.iter().position(|&t| t as usize >= classes) {
            return Err(DataError::Loader(format!(
                "token {i} is {}, not below the vocabulary of {classes}",
                ids[i]
            )));
        }
        if let Some(s) = starts
            .as_ref()
            .and_then(|s| s.iter().find(|&&s| s as usize + block >= ids.len()))
        {
            return Err(DataError::Loader(format!(
                "a window at {s} runs past the {} tokens",
                ids.len()
            )));
        }
        Ok(Self {
            shape: vec![block],
            features: block,
            classes,
            per_example: block,
            missing: false,
            store: Store::Windows {
                tokens: ids.iter().map(|&t| t as f32).collect(),
                ids,
                starts,
            },
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        match &self.store {
            Store::Rows { labels, .. } | Store::Streamed { labels, .. } => {
                labels.len() / self.per_example
            }
            Store::Values { y, .. } => y.len() / self.per_example,
            Store::Windows {
                starts: Some(s), ..
            } => s.len(),
            Store::Windows { ids, .. } => ids.len() - self.features,
        }
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Shape of one example (`[1, 28, 28]` for MNIST: channels, height, width).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Values per example (784 for MNIST).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Number of classes (the vocabulary, for a text; 0 for regression).
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Targets per example: 1 class, a window's positions, or a regression's values.
    pub fn targets_per_example(&self) -> usize {
        self.per_example
    }

    /// Whether the targets are f32 values (regression) rather than class indices.
    pub fn is_regression(&self) -> bool {
        matches!(self.store, Store::Values { .. })
    }

    /// The outputs per example a model needs: the classes (the vocabulary for each position
    /// of a window), or the regression's target values.
    pub fn outputs(&self) -> usize {
        match self.store {
            Store::Values { .. } => self.per_example,
            _ => self.classes,
        }
    }

    /// Whether NaN values stand for missing ones still to fill.
    pub fn has_missing(&self) -> bool {
        self.missing
    }

    /// Example `i`'s values (empty for a streamed set: see [`Dataset::fill_rows`]).
    pub fn example(&self, i: usize) -> &[f32] {
        let f = self.features;
        match &self.store {
            Store::Streamed { .. } => &[],
            Store::Rows { images: x, .. } | Store::Values { x, .. } => &x[i * f..(i + 1) * f],
            Store::Windows { tokens, starts, .. } => {
                let s = starts.as_ref().map_or(i, |s| s[i] as usize);
                &tokens[s..s + f]
            }
        }
    }

    /// Example `i`'s target values (empty for class targets: see [`Dataset::targets`]).
    pub fn target_values(&self, i: usize) -> &[f32] {
        let p = self.per_example;
        match &self.store {
            Store::Values { y, .. } => &y[i * p..(i + 1) * p],
            _ => &[],
        }
    }

    /// All target values, `len x targets_per_example` (empty for class targets).
    pub fn values(&self) -> &[f32] {
        match &self.store {
            Store::Values { y, .. } => y,
            _ => &[],
        }
    }

    /// Example `i`'s class targets (empty for regression: see [`Dataset::target_values`]).
    pub fn targets(&self, i: usize) -> &[u32] {
        let p = self.per_example;
        match &self.store {
            Store::Values { .. } => &[],
            Store::Rows { labels, .. } | Store::Streamed { labels, .. } => {
                &labels[i * p..(i + 1) * p]
            }
            Store::Windows { ids, starts, .. } => {
                let s = starts.as_ref().map_or(i, |s| s[i] as usize);
                &ids[s + 1..s + 1 + p]
            }
        }
    }

    /// Example `i`'s normalized pixels (the same as [`Dataset::example`]).
    pub fn image(&self, i: usize) -> &[f32] {
        self.example(i)
    }

    /// All images, `len x features` row-major (empty for the windows of a text: see
    /// [`Dataset::example`]).
    pub fn images(&self) -> &[f32] {
        match &self.store {
            Store::Rows { images: x, .. } | Store::Values { x, .. } => x,
            Store::Windows { .. } | Store::Streamed { .. } => &[],
        }
    }

    /// All values, for transforms that change them in place (empty for a text's windows);
    /// `missing` says whether NaN still stands for missing values afterwards.
    pub fn images_mut(&mut self, missing: bool) -> &mut [f32] {
        self.missing = missing;
        match &mut self.store {
            Store::Rows { images: x, .. } | Store::Values { x, .. } => x,
            Store::Windows { .. } | Store::Streamed { .. } => &mut [],
        }
    }

    /// All labels (class indices; empty for the windows of a text: see
    /// [`Dataset::targets`]).
    pub fn labels(&self) -> &[u32] {
        match &self.store {
            Store::Rows { labels, .. } | Store::Streamed { labels, .. } => labels,
            _ => &[],
        }
    }

    /// Holds out `n` examples chosen by a shuffle seeded with `seed` and returns them as a new
    /// data set (in their original order); `self` keeps the rest, in order, without copying
    /// the whole set. The same seed always holds out the same examples.
    pub fn split_off_random(&mut self, n: usize, seed: u64) -> Result<Dataset, DataError> {
        let len = self.len();
        if matches!(self.store, Store::Windows { .. }) {
            return Err(DataError::Loader(
                "the windows of a text are split by position, not at random: split the text \
                 (TextCorpus::split) and make windows of each part"
                    .into(),
            ));
        }
        if n == 0 || n >= len {
            return Err(DataError::Loader(format!(
                "cannot hold out {n} of {len} examples: keep at least one on each side"
            )));
        }
        let mut order: Vec<u32> = (0..len as u32).collect();
        Rng::new(seed ^ 0x005E_ED0F_5A11_D00D).shuffle(&mut order);
        let mut held = vec![false; len];
        for &i in &order[..n] {
            held[i as usize] = true;
        }
        let (f, p) = (self.features, self.per_example);
        let store = match &mut self.store {
            Store::Rows { images, labels } => {
                let v_images = partition(images, f, &held);
                Store::Rows {
                    images: v_images,
                    labels: partition(labels, p, &held),
                }
            }
            Store::Values { x, y } => {
                let vx = partition(x, f, &held);
                Store::Values {
                    x: vx,
                    y: partition(y, p, &held),
                }
            }
            Store::Streamed {
                file,
                rows,
                labels,
                norm,
            } => {
                let held_rows = partition(rows, 1, &held);
                Store::Streamed {
                    file: file.clone(),
                    rows: held_rows,
                    labels: partition(labels, 1, &held),
                    norm: *norm,
                }
            }
            Store::Windows { .. } => unreachable!("refused above"),
        };
        Ok(Dataset {
            shape: self.shape.clone(),
            store,
            ..*self
        })
    }
}

/// Moves the rows of `width` values of `v` that `held` marks into a new vector, in order;
/// `v` keeps the others, in order.
fn partition<T: Copy>(v: &mut Vec<T>, width: usize, held: &[bool]) -> Vec<T> {
    let n = held.iter().filter(|&&h| h).count();
    let mut out = Vec::with_capacity(n * width);
    let mut kept = 0;
    for (i, &is_held) in held.iter().enumerate() {
        if is_held {
            out.extend_from_slice(&v[i * width..(i + 1) * width]);
        } else {
            v.copy_within(i * width..(i + 1) * width, kept * width);
            kept += 1;
        }
    }
    v.truncate(kept * width);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_idx;

    fn numbered(n: usize) -> Dataset {
        let mut img = vec![0, 0, 8, 2];
        img.extend((n as u32).to_be_bytes());
        img.extend(2u32.to_be_bytes());
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        for i in 0..n {
            img.extend([i as u8, i as u8]);
            lab.push((i % 10) as u8);
        }
        let norm = Normalize {
            mean: 0.0,
            std: 1.0,
        };
        Dataset::new(
            &parse_idx(&img, "x").unwrap(),
            &parse_idx(&lab, "y").unwrap(),
            norm,
            10,
        )
        .unwrap()
    }

    #[test]
    fn a_random_split_partitions_the_examples_by_seed() {
        let mut train = numbered(100);
        let val = train.split_off_random(10, 7).unwrap();
        assert_eq!((train.len(), val.len()), (90, 10));
        let id = |d: &Dataset, i: usize| (d.image(i)[0] * 255.0).round() as usize;
        let mut all: Vec<usize> = (0..90)
            .map(|i| id(&train, i))
            .chain((0..10).map(|i| id(&val, i)))
            .collect();
        // Each side keeps its images with their labels, in the original order.
        for d in [&train, &val] {
            for i in 0..d.len() {
                assert_eq!(d.labels()[i] as usize, id(d, i) % 10);
                assert_eq!(d.image(i)[1], d.image(i)[0]);
            }
            assert!((1..d.len()).all(|i| id(d, i - 1) < id(d, i)));
        }
        all.sort();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let mut again = numbered(100);
        let val2 = again.split_off_random(10, 7).unwrap();
        assert_eq!(val.images(), val2.images());
        let mut other = numbered(100);
        assert_ne!(
            other.split_off_random(10, 8).unwrap().images(),
            val.images()
        );
        assert!(numbered(5).split_off_random(5, 0).is_err());
        assert!(numbered(5).split_off_random(0, 0).is_err());
    }

    #[test]
    fn a_streamed_set_reads_the_values_of_the_loaded_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut img = vec![0, 0, 8, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3];
        img.extend((0..30u8).map(|v| v * 8));
        let path = dir.path().join("x-idx3-ubyte");
        std::fs::write(&path, &img).unwrap();
        let labels: Vec<u8> = vec![0, 1, 2, 1, 0];
        let mut lab = vec![0, 0, 8, 1, 0, 0, 0, 5];
        lab.extend(&labels);
        let norm = Normalize {
            mean: 0.25,
            std: 0.5,
        };
        let loaded = Dataset::new(
            &parse_idx(&img, "x").unwrap(),
            &parse_idx(&lab, "y").unwrap(),
            norm,
            3,
        )
        .unwrap();
        let as_u32: Vec<u32> = labels.iter().map(|&l| u32::from(l)).collect();
        let mut streamed = Dataset::streamed_idx(&path, as_u32.clone(), norm, 3).unwrap();
        assert!(streamed.is_streamed() && streamed.images().is_empty());
        assert_eq!((streamed.len(), streamed.shape()), (5, &[1, 2, 3][..]));
        let (mut a, mut b) = (vec![0.0; 18], vec![0.0; 18]);
        loaded.fill_rows(&[4, 0, 2], &mut a);
        streamed.fill_rows(&[4, 0, 2], &mut b);
        assert_eq!(a, b);
        assert_eq!(streamed.targets(4), &[0]);
        // A split keeps each example with its label, on both sides.
        let held = streamed.split_off_random(2, 3).unwrap();
        for d in [&streamed, &held] {
            for i in 0..d.len() {
                let mut row = vec![0.0; 6];
                d.fill_rows(&[i as u32], &mut row);
                let first = ((row[0] * 0.5 + 0.25) * 255.0).round() as usize / 8;
                assert_eq!(d.targets(i)[0], as_u32[first / 6]);
            }
        }
        std::fs::write(&path, &img[..img.len() - 1]).unwrap();
        let e = Dataset::streamed_idx(&path, as_u32.clone(), norm, 3).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &img).unwrap();
        std::fs::write(&path, gz.finish().unwrap()).unwrap();
        let e = Dataset::streamed_idx(&path, as_u32, norm, 3).unwrap_err();
        assert!(e.to_string().contains("gunzip"), "{e}");
    }
}
