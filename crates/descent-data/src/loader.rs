//! Batches over a [`Dataset`]: seeded shuffles, PyTorch's treatment of the last batch.

use descent_tensor::Rng;

use crate::{DataError, Dataset};

/// The order of examples for each epoch and the batches cut from it.
///
/// The order of epoch `e` depends only on the seed and `e`, so a run resumed at any epoch
/// sees the same batches as one that never stopped.
#[derive(Clone, Debug)]
pub struct BatchLoader {
    batch_size: usize,
    shuffle: bool,
    drop_last: bool,
    seed: u64,
    order: Vec<u32>,
}

impl BatchLoader {
    /// Batches of `batch_size` over `len` examples. With `drop_last`, a last batch smaller than
    /// `batch_size` is skipped; without it, kept (PyTorch's default).
    pub fn new(
        len: usize,
        batch_size: usize,
        shuffle: bool,
        drop_last: bool,
        seed: u64,
    ) -> Result<Self, DataError> {
        if batch_size == 0 {
            return Err(DataError::Loader(
                "batch size 0: batches need 1 example or more".into(),
            ));
        }
        if len > u32::MAX as usize {
            return Err(DataError::Loader(format!(
                "{len} examples is more than a loader indexes"
            )));
        }
        Ok(Self {
            batch_size,
            shuffle,
            drop_last,
            seed,
            order: (0..len as u32).collect(),
        })
    }

    /// Sets the order for `epoch` (counted from 1): file order, or a shuffle seeded by the
    /// loader's seed and the epoch.
    pub fn start_epoch(&mut self, epoch: u64) {
        for (i, o) in self.order.iter_mut().enumerate() {
            *o = i as u32;
        }
        if self.shuffle {
            let mut rng = Rng::new(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            rng.shuffle(&mut self.order);
        }
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        if self.drop_last {
            self.order.len() / self.batch_size
        } else {
            self.order.len().div_ceil(self.batch_size)
        }
    }

    /// The largest batch.
    pub fn batch_size(&self) -> usize {
        self.batch_size
    }

    /// Example indices of batch `b` in this epoch's order.
    pub fn indices(&self, b: usize) -> &[u32] {
        let start = b * self.batch_size;
        &self.order[start..(start + self.batch_size).min(self.order.len())]
    }

    /// Copies batch `b` into `x` (`rows x features`) and `y` (`rows x` targets per
    /// example); returns the rows.
    pub fn fill(&self, ds: &Dataset, b: usize, x: &mut [f32], y: &mut [u32]) -> usize {
        let idx = self.indices(b);
        let (f, p) = (ds.features(), ds.targets_per_example());
        for (k, &i) in idx.iter().enumerate() {
            x[k * f..(k + 1) * f].copy_from_slice(ds.example(i as usize));
            y[k * p..(k + 1) * p].copy_from_slice(ds.targets(i as usize));
        }
        idx.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{parse_idx, Normalize};

    fn toy(n: usize) -> Dataset {
        let mut img = vec![0, 0, 8, 2];
        img.extend((n as u32).to_be_bytes());
        img.extend(1u32.to_be_bytes());
        img.extend((0..n).map(|i| i as u8));
        let mut lab = vec![0, 0, 8, 1];
        lab.extend((n as u32).to_be_bytes());
        lab.extend((0..n).map(|i| (i % 10) as u8));
        let norm = Normalize {
            mean: 0.0,
            std: 1.0 / 255.0,
        };
        Dataset::new(
            &parse_idx(&img, "i").unwrap(),
            &parse_idx(&lab, "l").unwrap(),
            norm,
            10,
        )
        .unwrap()
    }

    #[test]
    fn last_batch_is_kept_or_dropped() {
        let l = BatchLoader::new(10, 4, false, false, 0).unwrap();
        assert_eq!(l.num_batches(), 3);
        assert_eq!(l.indices(2), &[8, 9]);
        let l = BatchLoader::new(10, 4, false, true, 0).unwrap();
        assert_eq!(l.num_batches(), 2);
        assert_eq!(
            BatchLoader::new(60_000, 64, true, false, 0)
                .unwrap()
                .num_batches(),
            938
        );
    }

    #[test]
    fn shuffles_are_seeded_per_epoch_and_cover_everything() {
        let mut a = BatchLoader::new(100, 7, true, false, 42).unwrap();
        let mut b = BatchLoader::new(100, 7, true, false, 42).unwrap();
        a.start_epoch(1);
        b.start_epoch(1);
        assert_eq!(a.order, b.order);
        let first = a.order.clone();
        a.start_epoch(2);
        assert_ne!(a.order, first);
        b.start_epoch(3);
        b.start_epoch(2);
        assert_eq!(
            a.order, b.order,
            "epoch 2's order does not depend on what came before"
        );
        let mut sorted = a.order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
        let mut plain = BatchLoader::new(100, 7, false, false, 42).unwrap();
        plain.start_epoch(5);
        assert_eq!(plain.order, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn fill_copies_the_right_rows() {
        let ds = toy(10);
        let mut l = BatchLoader::new(10, 4, true, false, 1).unwrap();
        l.start_epoch(1);
        let (mut x, mut y) = (vec![0.0; 4], vec![0u32; 4]);
        let rows = l.fill(&ds, 2, &mut x, &mut y);
        assert_eq!(rows, 2);
        for k in 0..rows {
            let i = l.indices(2)[k] as usize;
            assert!((x[k] - i as f32).abs() < 1e-4);
            assert_eq!(y[k] as usize, i % 10);
        }
    }

    #[test]
    fn zero_batch_is_refused() {
        assert!(matches!(
            BatchLoader::new(10, 0, false, false, 0),
            Err(DataError::Loader(_))
        ));
    }
}
