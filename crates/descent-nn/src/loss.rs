//! Softmax + cross-entropy, fused, mean over the batch (PyTorch's `nn.CrossEntropyLoss`).

use crate::NnError;

/// Loss and accuracy counts over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    /// Sum of the per-example losses (f64, so that sums over a whole epoch stay exact enough).
    pub loss_sum: f64,
    /// Examples whose highest logit is the label (ties go to the lowest index, as `argmax`).
    pub correct: usize,
    /// Examples seen.
    pub count: usize,
}

impl LossStats {
    /// Adds another batch's counts.
    pub fn merge(&mut self, other: LossStats) {
        self.loss_sum += other.loss_sum;
        self.correct += other.correct;
        self.count += other.count;
    }

    /// Mean loss.
    pub fn mean_loss(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    /// Accuracy in percent.
    pub fn accuracy(&self) -> f64 {
        100.0 * self.correct as f64 / self.count.max(1) as f64
    }
}

// logits is (B, C); labels is (B); dlogits, when given, is (B, C).
/// Per-example loss `logsumexp(z) - z[label]`, computed after subtracting the row maximum.
/// With `dlogits`, also writes the gradient of the *mean* loss: `(softmax(z) - onehot) / B`.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u8],
    classes: usize,
    mut dlogits: Option<&mut [f32]>,
) -> Result<LossStats, NnError> {
    let batch = labels.len();
    if logits.len() != batch * classes {
        return Err(NnError::Shape {
            what: "logits",
            expected: batch * classes,
            got: logits.len(),
        });
    }
    if let Some(d) = &dlogits {
        if d.len() != logits.len() {
            return Err(NnError::Shape {
                what: "logit gradients",
                expected: logits.len(),
                got: d.len(),
            });
        }
    }
    let mut stats = LossStats {
        count: batch,
        ..LossStats::default()
    };
    let inv_batch = 1.0 / batch as f32;
    for (i, (row, &label)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let label = label as usize;
        if label >= classes {
            return Err(NnError::LabelOutOfRange {
                label: label as u32,
                index: i,
                classes,
            });
        }
        let (mut arg, mut max) = (0, row[0]);
        for (j, &v) in row.iter().enumerate().skip(1) {
            if v > max {
                (arg, max) = (j, v);
            }
        }
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        stats.loss_sum += (sum.ln() - (row[label] - max)) as f64;
        stats.correct += usize::from(arg == label);
        if let Some(d) = dlogits.as_deref_mut() {
            let drow = &mut d[i * classes..(i + 1) * classes];
            let scale = inv_batch / sum;
            for (dv, v) in drow.iter_mut().zip(row) {
                *dv = (v - max).exp() * scale;
            }
            drow[label] -= inv_batch;
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_definition_and_is_stable() {
        let logits = [1.0f32, 2.0, 3.0, 1000.0, 1000.0, -1000.0];
        let s = softmax_cross_entropy(&logits, &[2, 0], 3, None).unwrap();
        let first = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln() - 3.0;
        let second = 2f64.ln();
        assert!(
            (s.loss_sum - (first + second)).abs() < 1e-5,
            "{}",
            s.loss_sum
        );
        assert_eq!(s.correct, 2);
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let logits: Vec<f32> = (0..12).map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.7).collect();
        let labels = [1u8, 3, 0];
        let mut d = vec![0.0; 12];
        softmax_cross_entropy(&logits, &labels, 4, Some(&mut d)).unwrap();
        let eps = 1e-2;
        for k in 0..12 {
            let mut p = logits.clone();
            p[k] += eps;
            let mut m = logits.clone();
            m[k] -= eps;
            let lp = softmax_cross_entropy(&p, &labels, 4, None)
                .unwrap()
                .mean_loss();
            let lm = softmax_cross_entropy(&m, &labels, 4, None)
                .unwrap()
                .mean_loss();
            let num = (lp - lm) / (2.0 * eps as f64);
            assert!(
                (num - d[k] as f64).abs() < 1e-4,
                "logit {k}: {num} vs {}",
                d[k]
            );
        }
    }

    #[test]
    fn bad_labels_and_shapes_are_errors() {
        assert!(matches!(
            softmax_cross_entropy(&[0.0; 4], &[0, 2], 2, None),
            Err(NnError::LabelOutOfRange {
                label: 2,
                index: 1,
                classes: 2
            })
        ));
        assert!(matches!(
            softmax_cross_entropy(&[0.0; 3], &[0, 1], 2, None),
            Err(NnError::Shape { .. })
        ));
    }
}
