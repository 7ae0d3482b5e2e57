//! An in-memory classification data set of normalized f32 images.

use crate::{DataError, IdxArray};

/// Per-pixel normalization `(x / 255 - mean) / std`, torchvision's `ToTensor` + `Normalize`.
#[derive(Clone, Copy, Debug, PartialEq)]
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

/// Images (each `features` f32 values, normalized) and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    features: usize,
    classes: usize,
    images: Vec<f32>,
    labels: Vec<u8>,
}

impl Dataset {
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
        let images = images
            .data
            .iter()
            .map(|&b| (b as f32 / 255.0 - norm.mean) / norm.std)
            .collect();
        Ok(Self {
            features,
            classes,
            images,
            labels: labels.data.clone(),
        })
    }

    /// Number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no example.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Values per image (784 for MNIST).
    pub fn features(&self) -> usize {
        self.features
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Example `i`'s normalized pixels.
    pub fn image(&self, i: usize) -> &[f32] {
        &self.images[i * self.features..(i + 1) * self.features]
    }

    /// All images, `len x features` row-major.
    pub fn images(&self) -> &[f32] {
        &self.images
    }

    /// All labels.
    pub fn labels(&self) -> &[u8] {
        &self.labels
    }
}
