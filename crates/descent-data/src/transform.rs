//! Transforms fitted on a training set and applied to every split: standardization (mean and
//! standard deviation per feature or per channel) and mean imputation of missing values. Both
//! serialize, so that a model's file carries the numbers its inputs were made with.

use serde::{Deserialize, Serialize};

use crate::{DataError, Dataset};

/// What one mean and standard deviation cover.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Per {
    /// Every value of an example (a table's column).
    Feature,
    /// Every value of a channel (the first axis of an example's shape: an image's colour).
    Channel,
}

/// `(x - mean) / std`, with a mean and standard deviation per feature or per channel fitted on
/// a training set (population statistics, as torchvision's `Normalize` numbers are computed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardize {
    /// What each pair covers.
    pub per: Per,
    /// Means, one per feature or channel.
    pub mean: Vec<f32>,
    /// Standard deviations (a constant column's is 1, so that it passes unchanged).
    pub std: Vec<f32>,
}

/// The group of each value of an example: `groups` means over `features` values, each group
/// a contiguous run (a channel) or a single value (a feature).
fn group_width(features: usize, groups: usize) -> Result<usize, DataError> {
    if groups == 0 || !features.is_multiple_of(groups) {
        return Err(DataError::Loader(format!(
            "{groups} normalization statistics do not divide an example's {features} values"
        )));
    }
    Ok(features / groups)
}

impl Standardize {
    /// Fits the statistics on `train` (which must hold no missing values).
    pub fn fit(train: &Dataset, per: Per) -> Result<Self, DataError> {
        if train.has_missing() {
            return Err(DataError::Loader(
                "fill the missing values before fitting the normalization".into(),
            ));
        }
        if train.is_empty() || train.images().is_empty() {
            return Err(DataError::Loader(
                "normalization is fitted on the rows of a non-empty training set".into(),
            ));
        }
        let f = train.features();
        let groups = match per {
            Per::Feature => f,
            Per::Channel => train.shape()[0],
        };
        let width = group_width(f, groups)?;
        let (mut sum, mut sq) = (vec![0f64; groups], vec![0f64; groups]);
        for row in train.images().chunks_exact(f) {
            for (g, vals) in row.chunks_exact(width).enumerate() {
                for &v in vals {
                    sum[g] += v as f64;
                }
            }
        }
        let count = (train.len() * width) as f64;
        let mean: Vec<f64> = sum.iter().map(|s| s / count).collect();
        for row in train.images().chunks_exact(f) {
            for (g, vals) in row.chunks_exact(width).enumerate() {
                for &v in vals {
                    let d = v as f64 - mean[g];
                    sq[g] += d * d;
                }
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let sd = (s / count).sqrt() as f32;
                if sd > 1e-12 {
                    sd
                } else {
                    1.0
                }
            })
            .collect();
        Ok(Self {
            per,
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        })
    }

    /// Standardizes one example's values in place.
    pub fn apply_row(&self, row: &mut [f32]) -> Result<(), DataError> {
        let width = group_width(row.len(), self.mean.len())?;
        for (g, vals) in row.chunks_exact_mut(width).enumerate() {
            let (m, inv) = (self.mean[g], 1.0 / self.std[g]);
            for v in vals {
                *v = (*v - m) * inv;
            }
        }
        Ok(())
    }

    /// Standardizes every example of `data` in place.
    pub fn apply(&self, data: &mut Dataset) -> Result<(), DataError> {
        let (f, missing) = (data.features(), data.has_missing());
        group_width(f, self.mean.len())?;
        for row in data.images_mut(missing).chunks_exact_mut(f) {
            self.apply_row(row)?;
        }
        Ok(())
    }
}

/// Fills missing values (NaN) with each feature's mean over a training set's present values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanImpute {
    /// One mean per feature.
    pub means: Vec<f32>,
}

impl MeanImpute {
    /// Fits the means on `train`; a feature with no present value at all is an error naming
    /// it (by `names`, else by index).
    pub fn fit(train: &Dataset, names: &[String]) -> Result<Self, DataError> {
        let f = train.features();
        let (mut sum, mut n) = (vec![0f64; f], vec![0usize; f]);
        for row in train.images().chunks_exact(f) {
            for (j, &v) in row.iter().enumerate() {
                if !v.is_nan() {
                    sum[j] += v as f64;
                    n[j] += 1;
                }
            }
        }
        if let Some(j) = n.iter().position(|&c| c == 0) {
            let name = names
                .get(j)
                .map_or(format!("feature {j}"), |n| format!("column `{n}`"));
            return Err(DataError::Loader(format!(
                "{name} has no value in any training row: nothing to fill it with"
            )));
        }
        Ok(Self {
            means: sum
                .iter()
                .zip(&n)
                .map(|(s, &c)| (s / c as f64) as f32)
                .collect(),
        })
    }

    /// Fills one example's missing values.
    pub fn apply_row(&self, row: &mut [f32]) {
        for (v, &m) in row.iter_mut().zip(&self.means) {
            if v.is_nan() {
                *v = m;
            }
        }
    }

    /// Fills every missing value of `data`; returns how many there were.
    pub fn apply(&self, data: &mut Dataset) -> Result<usize, DataError> {
        let f = data.features();
        if f != self.means.len() {
            return Err(DataError::Loader(format!(
                "{} imputation means for examples of {f} values",
                self.means.len()
            )));
        }
        let mut filled = 0;
        for row in data.images_mut(false).chunks_exact_mut(f) {
            filled += row.iter().filter(|v| v.is_nan()).count();
            self.apply_row(row);
        }
        Ok(filled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_feature_statistics_are_the_training_sets() {
        // Two features: 1, 2, 3 and 10, 10, 10 (constant: std 1, passes through shifted).
        let mut train = Dataset::regression(
            &[2],
            vec![1.0, 10.0, 2.0, 10.0, 3.0, 10.0],
            vec![0.0; 3],
            1,
            false,
        )
        .unwrap();
        let s = Standardize::fit(&train, Per::Feature).unwrap();
        assert_eq!(s.mean, vec![2.0, 10.0]);
        assert!((s.std[0] - (2.0f32 / 3.0).sqrt()).abs() < 1e-6);
        assert_eq!(s.std[1], 1.0);
        s.apply(&mut train).unwrap();
        let col: Vec<f32> = (0..3).map(|i| train.example(i)[0]).collect();
        assert!(col.iter().sum::<f32>().abs() < 1e-6);
        assert!((col.iter().map(|v| v * v).sum::<f32>() / 3.0 - 1.0).abs() < 1e-5);
        assert_eq!(train.example(1)[1], 0.0);
    }

    #[test]
    fn per_channel_statistics_cover_each_channel() {
        // Two examples of 2 channels x 2 values.
        let x = vec![0.0, 2.0, 5.0, 5.0, 4.0, 6.0, 7.0, 7.0];
        let train = Dataset::from_vecs(&[2, 1, 2], x, vec![0, 1], 2).unwrap();
        let s = Standardize::fit(&train, Per::Channel).unwrap();
        assert_eq!(s.mean, vec![3.0, 6.0]);
        assert!((s.std[0] - 5f32.sqrt()).abs() < 1e-6);
        assert_eq!(s.std[1], 1.0);
        assert!(Standardize {
            per: Per::Channel,
            mean: vec![0.0; 3],
            std: vec![1.0; 3]
        }
        .apply_row(&mut [0.0; 4])
        .is_err());
    }

    #[test]
    fn imputation_fills_with_training_means() {
        let nan = f32::NAN;
        let train = Dataset::regression(
            &[2],
            vec![1.0, nan, 3.0, 4.0, nan, 8.0],
            vec![0.0; 3],
            1,
            true,
        )
        .unwrap();
        assert!(Standardize::fit(&train, Per::Feature).is_err());
        let imp = MeanImpute::fit(&train, &[]).unwrap();
        assert_eq!(imp.means, vec![2.0, 6.0]);
        let mut test = Dataset::regression(&[2], vec![nan, nan], vec![0.0], 1, true).unwrap();
        assert_eq!(imp.apply(&mut test).unwrap(), 2);
        assert_eq!(test.example(0), &[2.0, 6.0]);
        assert!(!test.has_missing());
        let empty = Dataset::regression(&[1], vec![nan, nan], vec![0.0; 2], 1, true).unwrap();
        let e = MeanImpute::fit(&empty, &[]).unwrap_err().to_string();
        assert!(e.contains("feature 0 has no value"), "{e}");
        // Without `missing`, NaN is refused.
        assert!(Dataset::regression(&[1], vec![nan], vec![0.0], 1, false).is_err());
    }
}
