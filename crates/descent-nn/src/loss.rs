//! Losses, mean over the batch as PyTorch's defaults (`reduction='mean'`): cross-entropy
//! (label smoothing, class weights; the softmax fused into it), NLL on log-probabilities,
//! MSE, L1 and Huber for regression, BCE-with-logits for binary and multi-label targets.
//!
//! Targets are typed by task: class indices ([`Targets::Classes`]) or f32 vectors of the
//! output's size ([`Targets::Values`]). The regression and binary losses read class indices
//! as one-hot vectors.

use serde::{Deserialize, Serialize};

use crate::NnError;

/// Loss and accuracy counts over a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct LossStats {
    /// Sum of the per-example losses (f64, so that sums over a whole epoch stay exact enough).
    pub loss_sum: f64,
    /// Examples whose highest output is the label (ties go to the lowest index, as `argmax`);
    /// for multi-label targets, examples whose every output has the target's sign.
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

/// What a batch's outputs are compared with.
#[derive(Clone, Copy, Debug)]
pub enum Targets<'a> {
    /// One class index per example.
    Classes(&'a [u32]),
    /// One f32 vector of the output's size per example, row-major.
    Values(&'a [f32]),
}

impl Targets<'_> {
    /// Examples, given the outputs per example.
    pub fn len(&self, outputs: usize) -> usize {
        match self {
            Targets::Classes(c) => c.len(),
            Targets::Values(v) => v.len() / outputs.max(1),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        match self {
            Targets::Classes(c) => c.is_empty(),
            Targets::Values(v) => v.is_empty(),
        }
    }

    /// Rows `start..start + n`.
    pub fn rows(&self, start: usize, n: usize, outputs: usize) -> Self {
        match *self {
            Targets::Classes(c) => Targets::Classes(&c[start..start + n]),
            Targets::Values(v) => Targets::Values(&v[start * outputs..(start + n) * outputs]),
        }
    }
}

/// A loss function and its settings, PyTorch's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Loss {
    /// `nn.CrossEntropyLoss(weight, label_smoothing)` on logits.
    CrossEntropy {
        /// Share of the target spread evenly over the classes (0: none).
        #[serde(default)]
        label_smoothing: f32,
        /// A weight per class; the mean divides by the batch's summed target weights.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f32>>,
    },
    /// `nn.NLLLoss(weight)` on log-probabilities (a model ending in `log_softmax`).
    Nll {
        /// A weight per class.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        weights: Option<Vec<f32>>,
    },
    /// `nn.MSELoss()`: the mean squared error over every output.
    Mse,
    /// `nn.L1Loss()`: the mean absolute error.
    L1,
    /// `nn.HuberLoss(delta)`: squared below `delta`, linear above.
    Huber {
        /// Where the loss turns linear (default 1).
        #[serde(default = "one")]
        delta: f32,
    },
    /// `nn.BCEWithLogitsLoss(pos_weight)`: a sigmoid and binary cross-entropy per output.
    BceWithLogits {
        /// A weight of the positive term per output.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pos_weight: Option<Vec<f32>>,
    },
}

fn one() -> f32 {
    1.0
}

impl Default for Loss {
    /// Cross-entropy, no smoothing, no weights: the seed's loss.
    fn default() -> Self {
        Loss::CrossEntropy {
            label_smoothing: 0.0,
            weights: None,
        }
    }
}

/// The loss names the command line and model files use.
pub const LOSS_NAMES: &[&str] = &[
    "cross_entropy",
    "nll",
    "mse",
    "l1",
    "huber",
    "bce_with_logits",
];

fn argmax(row: &[f32]) -> usize {
    let (mut arg, mut max) = (0, row[0]);
    for (j, &v) in row.iter().enumerate().skip(1) {
        if v > max {
            (arg, max) = (j, v);
        }
    }
    arg
}

impl Loss {
    /// The name in [`LOSS_NAMES`].
    pub fn name(&self) -> &'static str {
        match self {
            Loss::CrossEntropy { .. } => "cross_entropy",
            Loss::Nll { .. } => "nll",
            Loss::Mse => "mse",
            Loss::L1 => "l1",
            Loss::Huber { .. } => "huber",
            Loss::BceWithLogits { .. } => "bce_with_logits",
        }
    }

    /// Checks the settings against a model with `outputs` values per example.
    pub fn validate(&self, outputs: usize) -> Result<(), NnError> {
        let bad = |why: String| NnError::BadLoss {
            loss: self.name(),
            why,
        };
        let weights = match self {
            Loss::CrossEntropy {
                label_smoothing,
                weights,
            } => {
                if !(0.0..=1.0).contains(label_smoothing) {
                    return Err(bad(format!(
                        "label_smoothing {label_smoothing} must be in [0, 1]"
                    )));
                }
                weights
            }
            Loss::Nll { weights } => weights,
            Loss::BceWithLogits { pos_weight } => pos_weight,
            Loss::Huber { delta } => {
                if !(delta.is_finite() && *delta > 0.0) {
                    return Err(bad(format!("delta {delta} must be a finite number > 0")));
                }
                &None
            }
            Loss::Mse | Loss::L1 => &None,
        };
        if let Some(w) = weights {
            if w.len() != outputs {
                return Err(bad(format!(
                    "{} weights for a model of {outputs} outputs: give one per output",
                    w.len()
                )));
            }
            if w.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(bad("weights must be finite numbers >= 0".into()));
            }
        }
        Ok(())
    }

    // out is (B, K); targets B classes or (B, K) values; dout, when given, is (B, K).
    /// The batch's loss and accuracy counts; with `dout`, also the gradient of the *mean*
    /// loss w.r.t. the outputs.
    pub fn compute(
        &self,
        out: &[f32],
        targets: Targets<'_>,
        outputs: usize,
        dout: Option<&mut [f32]>,
    ) -> Result<LossStats, NnError> {
        let batch = targets.len(outputs);
        if out.len() != batch * outputs {
            return Err(NnError::Shape {
                what: "outputs",
                expected: batch * outputs,
                got: out.len(),
            });
        }
        if let Targets::Values(v) = targets {
            if v.len() != out.len() {
                return Err(NnError::Shape {
                    what: "target values",
                    expected: out.len(),
                    got: v.len(),
                });
            }
        }
        if let Some(d) = &dout {
            if d.len() != out.len() {
                return Err(NnError::Shape {
                    what: "output gradients",
                    expected: out.len(),
                    got: d.len(),
                });
            }
        }
        if let Targets::Classes(labels) = targets {
            if let Some(index) = labels.iter().position(|&l| l as usize >= outputs) {
                return Err(NnError::LabelOutOfRange {
                    label: labels[index],
                    index,
                    classes: outputs,
                });
            }
        }
        match self {
            Loss::CrossEntropy {
                label_smoothing,
                weights,
            } => match targets {
                Targets::Classes(labels) if *label_smoothing == 0.0 && weights.is_none() => {
                    softmax_cross_entropy(out, labels, outputs, dout)
                }
                Targets::Classes(labels) => Ok(cross_entropy(
                    out,
                    labels,
                    outputs,
                    *label_smoothing,
                    weights.as_deref(),
                    dout,
                )),
                Targets::Values(_) => Err(NnError::BadLoss {
                    loss: self.name(),
                    why: "it takes class indices as targets (use mse or bce_with_logits for \
                          vectors)"
                        .into(),
                }),
            },
            Loss::Nll { weights } => match targets {
                Targets::Classes(labels) => Ok(nll(out, labels, outputs, weights.as_deref(), dout)),
                Targets::Values(_) => Err(NnError::BadLoss {
                    loss: self.name(),
                    why: "it takes class indices as targets".into(),
                }),
            },
            Loss::Mse | Loss::L1 | Loss::Huber { .. } | Loss::BceWithLogits { .. } => {
                Ok(self.elementwise(out, targets, outputs, dout))
            }
        }
    }

    /// The losses that compare every output with its target, mean over all of them.
    fn elementwise(
        &self,
        out: &[f32],
        targets: Targets<'_>,
        outputs: usize,
        mut dout: Option<&mut [f32]>,
    ) -> LossStats {
        let batch = targets.len(outputs);
        let scale = 1.0 / (batch * outputs) as f32;
        let mut stats = LossStats {
            count: batch,
            ..LossStats::default()
        };
        for (i, row) in out.chunks_exact(outputs).enumerate() {
            let target = |k: usize| match targets {
                Targets::Classes(c) => f32::from(c[i] as usize == k),
                Targets::Values(v) => v[i * outputs + k],
            };
            let mut sum = 0.0f64;
            let mut all_right = true;
            for (k, &o) in row.iter().enumerate() {
                let t = target(k);
                let d = o - t;
                let (l, g) = match self {
                    Loss::Mse => (d * d, 2.0 * d),
                    Loss::L1 => (d.abs(), if d == 0.0 { 0.0 } else { d.signum() }),
                    Loss::Huber { delta } => {
                        if d.abs() < *delta {
                            (0.5 * d * d, d)
                        } else {
                            (delta * (d.abs() - 0.5 * delta), delta * d.signum())
                        }
                    }
                    Loss::BceWithLogits { pos_weight } => {
                        let pw = pos_weight.as_ref().map_or(1.0, |w| w[k]);
                        // (1 - t) x + (1 + (pw - 1) t) log(1 + e^-x), written stably.
                        let log1p_exp = (-o.abs()).exp().ln_1p() + (-o).max(0.0);
                        let l = (1.0 - t) * o + (1.0 + (pw - 1.0) * t) * log1p_exp;
                        let s = 1.0 / (1.0 + (-o).exp());
                        all_right &= (o > 0.0) == (t > 0.5);
                        (l, s * (pw * t + 1.0 - t) - pw * t)
                    }
                    _ => unreachable!("the element-wise losses"),
                };
                sum += l as f64;
                if let Some(d) = dout.as_deref_mut() {
                    d[i * outputs + k] = g * scale;
                }
            }
            stats.loss_sum += sum / outputs as f64;
            stats.correct += usize::from(match (self, targets) {
                (_, Targets::Classes(c)) => argmax(row) == c[i] as usize,
                (Loss::BceWithLogits { .. }, Targets::Values(_)) => all_right,
                _ => false,
            });
        }
        stats
    }
}

/// Cross-entropy with label smoothing `eps` and class weights `w` (PyTorch's
/// `cross_entropy`): per example `(1-eps)·w[y]·(-log p_y) + eps/C·Σ_c w[c]·(-log p_c)`, the
/// mean dividing by `Σ_i w[y_i]`.
fn cross_entropy(
    logits: &[f32],
    labels: &[u32],
    classes: usize,
    eps: f32,
    w: Option<&[f32]>,
    mut dlogits: Option<&mut [f32]>,
) -> LossStats {
    let batch = labels.len();
    let wt = |c: usize| w.map_or(1.0, |w| w[c]);
    let total_w: f64 = labels.iter().map(|&y| wt(y as usize) as f64).sum();
    let denom = if total_w > 0.0 { total_w } else { 1.0 };
    let w_all: f32 = (0..classes).map(wt).sum();
    let mut stats = LossStats {
        count: batch,
        ..LossStats::default()
    };
    let mut weighted = 0.0f64;
    for (i, (row, &y)) in logits.chunks_exact(classes).zip(labels).enumerate() {
        let y = y as usize;
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f32 = row.iter().map(|v| (v - max).exp()).sum();
        let lse = sum.ln() + max;
        let nll = (lse - row[y]) as f64;
        let smooth: f64 = (0..classes)
            .map(|c| wt(c) as f64 * (lse - row[c]) as f64)
            .sum();
        let l = (1.0 - eps as f64) * wt(y) as f64 * nll + eps as f64 / classes as f64 * smooth;
        weighted += l;
        stats.correct += usize::from(argmax(row) == y);
        if let Some(d) = dlogits.as_deref_mut() {
            let drow = &mut d[i * classes..(i + 1) * classes];
            let inv = (1.0 / denom) as f32;
            for (j, dv) in drow.iter_mut().enumerate() {
                let p = (row[j] - max).exp() / sum;
                let hard = (1.0 - eps) * wt(y) * (p - f32::from(j == y));
                let soft = eps / classes as f32 * (p * w_all - wt(j));
                *dv = (hard + soft) * inv;
            }
        }
    }
    // The batch's weighted mean, as a sum over its examples.
    stats.loss_sum = weighted / denom * batch as f64;
    stats
}

/// Negative log-likelihood of log-probabilities with class weights.
fn nll(
    logp: &[f32],
    labels: &[u32],
    classes: usize,
    w: Option<&[f32]>,
    mut dlogp: Option<&mut [f32]>,
) -> LossStats {
    let batch = labels.len();
    let wt = |c: usize| w.map_or(1.0, |w| w[c]);
    let total_w: f64 = labels.iter().map(|&y| wt(y as usize) as f64).sum();
    let denom = if total_w > 0.0 { total_w } else { 1.0 };
    let mut stats = LossStats {
        count: batch,
        ..LossStats::default()
    };
    let mut weighted = 0.0f64;
    for (i, (row, &y)) in logp.chunks_exact(classes).zip(labels).enumerate() {
        let y = y as usize;
        weighted -= wt(y) as f64 * row[y] as f64;
        stats.correct += usize::from(argmax(row) == y);
        if let Some(d) = dlogp.as_deref_mut() {
            let drow = &mut d[i * classes..(i + 1) * classes];
            drow.fill(0.0);
            drow[y] = -wt(y) / denom as f32;
        }
    }
    stats.loss_sum = weighted / denom * batch as f64;
    stats
}

// logits is (B, C); labels is (B); dlogits, when given, is (B, C).
/// Plain cross-entropy, the fused fast path: per example `logsumexp(z) - z[label]`, after
/// subtracting the row maximum. With `dlogits`, also writes the gradient of the *mean*
/// loss: `(softmax(z) - onehot) / B`.
pub fn softmax_cross_entropy(
    logits: &[f32],
    labels: &[u32],
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
    let grads = dlogits.is_some();
    let mut scratch = vec![0.0f32; if grads { 0 } else { classes }];
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
        // exp(z - max) once, vectorized, into the gradient's row (or a row of scratch).
        let e = match dlogits.as_deref_mut() {
            Some(d) => &mut d[i * classes..(i + 1) * classes],
            None => &mut scratch[..],
        };
        // Terms below f32's smallest normal number are 0, not subnormals (which the sum,
        // at least 1, cannot see): the gradient's products would read them through
        // microcode assists (see `exp_normal`).
        e.iter_mut().zip(row).for_each(|(e, v)| *e = v - max);
        descent_tensor::vmath::exp_normal(e);
        let sum = descent_tensor::sum(e);
        stats.loss_sum += (sum.ln() - (row[label] - max)) as f64;
        stats.correct += usize::from(arg == label);
        if grads {
            // So, too, a gradient `p / (B · sum)` below the smallest normal number: it is
            // 0 where PyTorch has a subnormal, chosen before the product so that none is made.
            let scale = inv_batch / sum;
            let tiny = f32::MIN_POSITIVE / scale;
            e.iter_mut()
                .for_each(|v| *v = if *v < tiny { 0.0 } else { *v * scale });
            e[label] -= inv_batch;
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

    /// Probabilities whose gradient would be subnormal are 0 (a confident model's logits, as
    /// a GPT's first steps have them); every other entry is `(softmax - onehot) / B` in f64
    /// to f32's rounding, and the loss is the definition's.
    #[test]
    fn gradients_too_small_for_a_normal_f32_are_zero() {
        let classes = 6;
        let rows = [
            [0.0f32, -50.0, -80.0, -86.0, -87.0, -120.0],
            [10.0, -75.0, -79.0, 9.0, -200.0, 0.5],
        ];
        let logits: Vec<f32> = rows.iter().flatten().copied().collect();
        let labels = [1u32, 3];
        let mut d = vec![f32::NAN; logits.len()];
        let s = softmax_cross_entropy(&logits, &labels, classes, Some(&mut d)).unwrap();
        let b = labels.len() as f64;
        let (mut zeros, mut want_loss) = (0, 0.0);
        for (r, row) in rows.iter().enumerate() {
            let max = row.iter().fold(f64::MIN, |m, &v| m.max(v as f64));
            let sum: f64 = row.iter().map(|&v| (v as f64 - max).exp()).sum();
            want_loss += sum.ln() + max - row[labels[r] as usize] as f64;
            for (j, &v) in row.iter().enumerate() {
                let p = (v as f64 - max).exp() / sum / b;
                let want = p - if j == labels[r] as usize {
                    1.0 / b
                } else {
                    0.0
                };
                let got = d[r * classes + j];
                assert!(!got.is_subnormal(), "[{r}, {j}]: {got:e} is subnormal");
                if want.abs() < f32::MIN_POSITIVE as f64 {
                    assert_eq!(got, 0.0, "[{r}, {j}]: {got:e}, the definition {want:e}");
                    zeros += 1;
                } else {
                    let rel = ((got as f64 - want) / want).abs();
                    assert!(rel < 1e-6, "[{r}, {j}]: {got:e} against {want:e}");
                }
            }
        }
        // Logits 120, 210 and 89 below their row's top, and 87 (87.7 with the 1 / B).
        assert_eq!(zeros, 4, "{d:?}");
        assert!(
            (s.loss_sum - want_loss).abs() < 1e-5 * want_loss,
            "{}",
            s.loss_sum
        );
    }

    fn all_losses() -> Vec<Loss> {
        vec![
            Loss::default(),
            Loss::CrossEntropy {
                label_smoothing: 0.1,
                weights: Some(vec![0.5, 2.0, 1.0, 0.25]),
            },
            Loss::Nll {
                weights: Some(vec![1.0, 3.0, 0.5, 1.0]),
            },
            Loss::Mse,
            Loss::L1,
            Loss::Huber { delta: 0.7 },
            Loss::BceWithLogits {
                pos_weight: Some(vec![1.0, 2.0, 0.5, 3.0]),
            },
        ]
    }

    /// Every loss's gradient against central differences of its mean, on class and value
    /// targets.
    #[test]
    fn gradients_match_finite_differences() {
        let out: Vec<f32> = (0..12)
            .map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.7 + 0.01)
            .collect();
        let labels = [1u32, 3, 0];
        let values: Vec<f32> = (0..12).map(|i| ((i * 3 % 5) as f32) / 4.0).collect();
        for loss in all_losses() {
            let mut cases = vec![Targets::Classes(&labels)];
            if matches!(
                loss,
                Loss::Mse | Loss::L1 | Loss::Huber { .. } | Loss::BceWithLogits { .. }
            ) {
                cases.push(Targets::Values(&values));
            }
            for t in cases {
                loss.validate(4).unwrap();
                let mut d = vec![0.0; 12];
                loss.compute(&out, t, 4, Some(&mut d)).unwrap();
                let eps = 1e-3;
                for k in 0..12 {
                    let f = |delta: f32| {
                        let mut p = out.clone();
                        p[k] += delta;
                        loss.compute(&p, t, 4, None).unwrap().mean_loss()
                    };
                    let num = (f(eps) - f(-eps)) / (2.0 * eps as f64);
                    assert!(
                        (num - d[k] as f64).abs() < 2e-3,
                        "{} output {k}: {num} vs {}",
                        loss.name(),
                        d[k]
                    );
                }
            }
        }
    }

    /// Values computed by PyTorch 2.15 (`F.cross_entropy(x, y, weight=w,
    /// label_smoothing=0.1)`, `F.huber_loss(x, t, delta=0.7)`,
    /// `F.binary_cross_entropy_with_logits(x, t, pos_weight=pw)` on these inputs).
    #[test]
    fn values_match_pytorch() {
        let out: Vec<f32> = (0..12)
            .map(|i| ((i * 5 % 7) as f32 - 3.0) * 0.7 + 0.01)
            .collect();
        let labels = [1u32, 3, 0];
        let values: Vec<f32> = (0..12).map(|i| ((i * 3 % 5) as f32) / 4.0).collect();
        let ce = Loss::CrossEntropy {
            label_smoothing: 0.1,
            weights: Some(vec![0.5, 2.0, 1.0, 0.25]),
        };
        let got = ce
            .compute(&out, Targets::Classes(&labels), 4, None)
            .unwrap();
        assert!(
            (got.mean_loss() - CE_TORCH).abs() < 1e-5,
            "{}",
            got.mean_loss()
        );
        let got = Loss::Huber { delta: 0.7 }
            .compute(&out, Targets::Values(&values), 4, None)
            .unwrap();
        assert!(
            (got.mean_loss() - HUBER_TORCH).abs() < 1e-5,
            "{}",
            got.mean_loss()
        );
        let bce = Loss::BceWithLogits {
            pos_weight: Some(vec![1.0, 2.0, 0.5, 3.0]),
        };
        let got = bce
            .compute(&out, Targets::Values(&values), 4, None)
            .unwrap();
        assert!(
            (got.mean_loss() - BCE_TORCH).abs() < 1e-5,
            "{}",
            got.mean_loss()
        );
    }

    const CE_TORCH: f64 = 0.958_445_43;
    const HUBER_TORCH: f64 = 0.651_808_26;
    const BCE_TORCH: f64 = 1.093_706_6;

    #[test]
    fn bad_labels_settings_and_shapes_are_errors() {
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
        let smooth = Loss::CrossEntropy {
            label_smoothing: 1.5,
            weights: None,
        };
        assert!(smooth
            .validate(3)
            .unwrap_err()
            .to_string()
            .contains("label_smoothing"));
        let w = Loss::Nll {
            weights: Some(vec![1.0; 2]),
        };
        assert!(w
            .validate(3)
            .unwrap_err()
            .to_string()
            .contains("2 weights for a model of 3"));
        assert!(Loss::default()
            .compute(&[0.0; 4], Targets::Values(&[0.0; 4]), 2, None)
            .is_err());
        assert!(matches!(
            Loss::Mse.compute(&[0.0; 4], Targets::Classes(&[0, 5]), 2, None),
            Err(NnError::LabelOutOfRange { .. })
        ));
    }
}
