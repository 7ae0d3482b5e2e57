//! Exhaustive search over a grid of listed values.

use std::collections::BTreeMap;

use super::Sampler;
use crate::distribution::{Distribution, ParamValue};
use crate::error::{Result, TuneError};
use crate::rng::Rng;
use crate::trial::History;

/// Visits every combination of the listed values once, in an order shuffled by the seed.
/// Trial `n` takes combination `n` of that order, so trials started by several threads or
/// processes never repeat a combination; once every combination has a trial the study stops.
#[derive(Clone, Debug)]
pub struct GridSampler {
    space: Vec<(String, Vec<ParamValue>)>,
    order: Vec<u64>,
}

impl GridSampler {
    /// A grid over `space` (each parameter's values, at least one each).
    pub fn new(space: BTreeMap<String, Vec<ParamValue>>, seed: u64) -> Result<Self> {
        let mut total: u64 = 1;
        for (name, values) in &space {
            if values.is_empty() {
                return Err(TuneError::InvalidDistribution {
                    name: name.clone(),
                    reason: "the grid lists no values for it: give at least one".into(),
                });
            }
            total = total.checked_mul(values.len() as u64).ok_or_else(|| {
                TuneError::InvalidValue("the grid has more than 2^64 points".into())
            })?;
        }
        if total > 100_000_000 {
            return Err(TuneError::InvalidValue(format!(
                "the grid has {total} points; a grid sampler visits every one: use TPE or \
                 random search for a space this large"
            )));
        }
        let mut order: Vec<u64> = (0..total).collect();
        let mut rng = Rng::new(seed);
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
        Ok(GridSampler {
            space: space.into_iter().collect(),
            order,
        })
    }

    /// The number of grid points.
    pub fn len(&self) -> u64 {
        self.order.len() as u64
    }

    /// Whether the grid is empty (never: every parameter has a value).
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The value of `name` at grid point `point`.
    fn value(&self, point: u64, name: &str) -> Option<&ParamValue> {
        let mut rest = point;
        for (n, values) in &self.space {
            let k = values.len() as u64;
            if n == name {
                return values.get((rest % k) as usize);
            }
            rest /= k;
        }
        None
    }
}

impl Sampler for GridSampler {
    fn sample_independent(
        &self,
        _history: &History,
        number: u64,
        name: &str,
        distribution: &Distribution,
    ) -> Result<f64> {
        let point = self.order[(number % self.len()) as usize];
        let value = self
            .value(point, name)
            .ok_or_else(|| TuneError::InvalidDistribution {
                name: name.into(),
                reason: format!(
                    "the grid does not list it (it lists: {}): add it to the grid",
                    self.space
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        distribution
            .to_internal(value)
            .ok_or_else(|| TuneError::ValueOutsideDistribution {
                name: name.into(),
                value: value.to_string(),
                distribution: distribution.to_string(),
            })
    }

    fn max_trials(&self) -> Option<u64> {
        Some(self.len())
    }
}
