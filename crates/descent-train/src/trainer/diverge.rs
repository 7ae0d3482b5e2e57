//! Divergence that is not (yet) NaN: the training loss rising far above where it started and
//! staying there.
//!
//! The rule: the start is the loss of the run's first batch, before any update; the run has
//! diverged when the median loss of the last [`WINDOW`] batches is more than [`FACTOR`] times
//! the start (a start below [`FLOOR`] counts as `FLOOR`, so that the noise of a nearly trained
//! start, as in fine-tuning, is not taken for divergence). A median ignores a few spikes (half
//! the window must be that high). The factor is set from measurements (docs/robustness.md): on
//! the seed's model no optimizer's default settings take the median past 42 times the start
//! (RMSprop at PyTorch's lr 0.01 jumps to a few hundred for its first batches, then learns;
//! every other optimizer stays below 1.01), while SGD at lr 10 takes it to 10^5 times within
//! ten batches and then falls back to chance, 2.3, with every ReLU dead: the epoch's numbers
//! alone would not tell.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Batches whose median is compared with the start.
pub const WINDOW: usize = 10;
/// How many times the start the window's median must exceed.
pub const FACTOR: f64 = 1000.0;
/// The smallest start the factor applies to.
pub const FLOOR: f64 = 0.1;

/// What the rule has seen: part of the loop's state, so that a resumed run keeps its start.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LossWatch {
    /// The first batch's loss.
    start: Option<f64>,
    /// The last `WINDOW` batch losses.
    recent: VecDeque<f64>,
    /// A warning was given already.
    pub(super) warned: bool,
}

/// The loss far above its start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rise {
    /// The first batch's loss.
    pub start: f64,
    /// The median of the last batches.
    pub now: f64,
}

impl LossWatch {
    /// Records a batch's (finite) loss; `Some` when the rule says the run diverged.
    pub fn push(&mut self, loss: f64) -> Option<Rise> {
        let start = *self.start.get_or_insert(loss);
        if self.recent.len() == WINDOW {
            self.recent.pop_front();
        }
        self.recent.push_back(loss);
        if self.recent.len() < WINDOW {
            return None;
        }
        let mut sorted: Vec<f64> = self.recent.iter().copied().collect();
        sorted.sort_by(f64::total_cmp);
        let now = (sorted[WINDOW / 2 - 1] + sorted[WINDOW / 2]) / 2.0;
        (now > FACTOR * start.max(FLOOR)).then_some(Rise { start, now })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loss_that_rises_a_thousandfold_and_stays_is_caught_and_spikes_are_not() {
        let mut w = LossWatch::default();
        assert_eq!(w.push(2.3), None);
        // Spikes in fewer than half the batches: the median ignores them.
        for i in 0..200 {
            let loss = if i % 3 == 0 { 1e6 } else { 0.5 };
            assert_eq!(w.push(loss), None, "batch {i}");
        }
        let mut caught = None;
        for i in 0..WINDOW {
            if let Some(r) = w.push(8e4) {
                caught = Some((i, r));
                break;
            }
        }
        let (i, rise) = caught.expect("a sustained rise is caught");
        // Caught once half the window is high (the spikes count with it).
        assert!((1..WINDOW / 2).contains(&i), "caught after {i}");
        assert!(rise.start == 2.3 && rise.now > FACTOR * 2.3, "{rise:?}");
    }

    #[test]
    fn a_loss_just_under_the_factor_is_not_caught_and_a_small_start_counts_as_the_floor() {
        let mut w = LossWatch::default();
        w.push(1.0);
        for _ in 0..1000 {
            assert_eq!(w.push(FACTOR * 0.99), None);
        }
        assert!(w.push(FACTOR * 1.01).is_none(), "one batch is not a window");
        let mut fine_tuning = LossWatch::default();
        fine_tuning.push(0.001);
        for _ in 0..100 {
            assert_eq!(fine_tuning.push(FACTOR * FLOOR * 0.99), None);
        }
        let caught = (0..WINDOW).find_map(|_| fine_tuning.push(FACTOR * FLOOR * 1.01));
        assert!(caught.is_some());
    }
}
