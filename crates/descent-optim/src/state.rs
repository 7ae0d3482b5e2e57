//! The serializable state of an optimizer.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::OptimError;

/// Everything an optimizer's next steps depend on besides its hyperparameters: the number of
/// steps taken and named per-parameter buffers (e.g. `momentum_buffer`), each as long as the
/// flat parameter buffer.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OptimizerState {
    /// Which optimizer wrote it.
    pub optimizer: String,
    /// Steps taken so far.
    pub step: u64,
    /// Named buffers.
    pub buffers: BTreeMap<String, Vec<f32>>,
}

impl OptimizerState {
    /// Checks that the state was written by `optimizer`.
    pub fn expect_optimizer(&self, optimizer: &str) -> Result<(), OptimError> {
        if self.optimizer != optimizer {
            return Err(OptimError::StateMismatch(format!(
                "it was saved by `{}`, not `{optimizer}`; load it into the same optimizer",
                self.optimizer
            )));
        }
        Ok(())
    }
}
