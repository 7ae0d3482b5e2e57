//! An in-memory classification data set of normalized f32 images.

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

/// Images (each `features` f32 values, normalized) and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// Shape of one example: `[1, 28, 28]` for MNIST (a channel axis is added to 2-D images).
    shape: Vec<usize>,
    features: usize,
    classes: usize,
    images: Vec<f32>,
    labels: Vec<u32>,
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
            images,
            labels: labels.data.iter().map(|&l| u32::from(l)).collect(),
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
        let features: usize = shape.iter().product();
        if shape.is_empty() || features == 0 {
            return Err(DataError::Loader(format!(
                "example shape {shape:?}: give at least one dimension and no zero"
            )));
        }
        if images.len() != labels.len() * features {
            return Err(DataError::Loader(format!(
                "{} values for {} examples of shape {shape:?} ({features} values each): expected {}",
                images.len(),
                labels.len(),
                labels.len() * features
            )));
        }
        if let Some(i) = labels.iter().position(|&l| l as usize >= classes) {
            return Err(DataError::Loader(format!(
                "label {} of example {i} is not below the {classes} classes",
                labels[i]
            )));
        }
        if let Some(i) = images.iter().position(|v| !v.is_finite()) {
            return Err(DataError::Loader(format!(
                "value {i} (example {}) is {}: inputs must be finite",
                i / features,
                images[i]
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            features,
            classes,
            images,
            labels,
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

    /// Shape of one example (`[1, 28, 28]` for MNIST: channels, height, width).
    pub fn shape(&self) -> &[usize] {
        &self.shape
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

    /// All labels (class indices).
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Holds out `n` examples chosen by a shuffle seeded with `seed` and returns them as a new
    /// data set (in their original order); `self` keeps the rest, in order, without copying
    /// the whole set. The same seed always holds out the same examples.
    pub fn split_off_random(&mut self, n: usize, seed: u64) -> Result<Dataset, DataError> {
        if n == 0 || n >= self.len() {
            return Err(DataError::Loader(format!(
                "cannot hold out {n} of {} examples: keep at least one on each side",
                self.len()
            )));
        }
        let mut order: Vec<u32> = (0..self.len() as u32).collect();
        Rng::new(seed ^ 0x005E_ED0F_5A11_D00D).shuffle(&mut order);
        let mut held = vec![false; self.len()];
        for &i in &order[..n] {
            held[i as usize] = true;
        }
        let f = self.features;
        let mut val = Dataset {
            shape: self.shape.clone(),
            features: f,
            classes: self.classes,
            images: Vec::with_capacity(n * f),
            labels: Vec::with_capacity(n),
        };
        let mut kept = 0;
        for (i, &is_held) in held.iter().enumerate() {
            if is_held {
                val.images
                    .extend_from_slice(&self.images[i * f..(i + 1) * f]);
                val.labels.push(self.labels[i]);
            } else {
                self.images.copy_within(i * f..(i + 1) * f, kept * f);
                self.labels[kept] = self.labels[i];
                kept += 1;
            }
        }
        self.images.truncate(kept * f);
        self.labels.truncate(kept);
        Ok(val)
    }
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
}
