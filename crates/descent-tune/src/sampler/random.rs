//! Uniform random search (on each parameter's own scale).

use super::Sampler;
use crate::distribution::Distribution;
use crate::error::Result;
use crate::rng::Rng;
use crate::trial::History;

/// Draws every parameter uniformly (log-uniformly on a log scale).
#[derive(Clone, Debug)]
pub struct RandomSampler {
    seed: u64,
}

impl RandomSampler {
    /// A sampler whose draws depend only on `seed`, the trial number and the parameter name.
    pub fn new(seed: u64) -> Self {
        RandomSampler { seed }
    }
}

impl Sampler for RandomSampler {
    fn sample_independent(
        &self,
        _history: &History,
        number: u64,
        name: &str,
        distribution: &Distribution,
    ) -> Result<f64> {
        Ok(distribution.from_unit(Rng::for_trial(self.seed, number, name).unit()))
    }
}
