//! A model's training step on a [`Backend`]: each layer's device program in order, softmax
//! cross-entropy, and the backward pass into the gradients region.
//!
//! The activations region holds, per top-level layer, its output (`cap x out`) and the
//! gradient w.r.t. that output, back to back; a view layer (`Flatten`) shares the spans of the
//! layer before it. The batch region holds the inputs (`cap x in`), then one class id per
//! example.

use descent_tensor::backend::{Backend, BackendError, Region, Span};

use crate::layer::{numel, DeviceIo};
use crate::{Loss, Model, NnError};

/// Where each activation of a model lives on a backend, for batches of up to `cap` rows.
#[derive(Clone, Debug)]
pub struct DeviceProgram {
    cap: usize,
    input: usize,
    classes: usize,
    /// Per top-level layer: its output and the gradient w.r.t. it.
    slots: Vec<(Span, Span)>,
    acts_len: usize,
}

impl DeviceProgram {
    /// The program of `model` trained with `loss` on batches of up to `cap` rows; an error
    /// naming what has no device program yet (`device` is for the message).
    pub fn new(model: &Model, loss: &Loss, cap: usize, device: &str) -> Result<Self, NnError> {
        let refuse = |why: String| NnError::NotOnDevice {
            device: device.to_string(),
            why,
        };
        let plain_xent = matches!(loss, Loss::CrossEntropy { label_smoothing, weights: None }
            if *label_smoothing == 0.0);
        if !plain_xent {
            return Err(refuse(format!(
                "the loss there is plain cross-entropy, not {loss:?}"
            )));
        }
        if model.targets_per_example() != 1 {
            return Err(refuse(
                "a sequence model's output has no device program yet".into(),
            ));
        }
        if model.layout().trainable_len() != model.layout().len() {
            return Err(refuse(
                "layers with buffers (BatchNorm) have no device program yet".into(),
            ));
        }
        let input = model.input_features();
        let mut slots: Vec<(Span, Span)> = Vec::with_capacity(model.layers().len());
        let mut at = 0;
        let mut prev = (
            Span::new(Region::Batch, 0, cap * input),
            Span::new(Region::Acts, 0, 0),
        );
        for (i, layer) in model.layers().iter().enumerate() {
            layer
                .on_device()
                .map_err(|why| refuse(format!("layer {i}: {why}")))?;
            if layer.is_view() {
                slots.push(prev);
                continue;
            }
            let n = cap * numel(layer.output_shape());
            let y = Span::new(Region::Acts, at, n);
            let dy = Span::new(Region::Acts, at + n, n);
            at += 2 * n;
            prev = (y, dy);
            slots.push(prev);
        }
        Ok(Self {
            cap,
            input,
            classes: model.classes(),
            slots,
            acts_len: at,
        })
    }

    /// Rows the program was made for.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Values the activations region needs.
    pub fn acts_len(&self) -> usize {
        self.acts_len
    }

    /// Values the batch region needs: the inputs, then the labels.
    pub fn batch_len(&self) -> usize {
        self.cap * (self.input + 1)
    }

    /// Where a batch of `rows` inputs goes (`rows x input features`).
    pub fn inputs(&self, rows: usize) -> Span {
        Span::new(Region::Batch, 0, rows * self.input)
    }

    /// Where a batch's `rows` class ids go.
    pub fn labels(&self, rows: usize) -> Span {
        Span::new(Region::Batch, self.cap * self.input, rows)
    }

    /// The logits of the last forward pass of `rows` rows.
    pub fn logits(&self, rows: usize) -> Span {
        let (y, _) = self
            .slots
            .last()
            .copied()
            .unwrap_or((self.inputs(self.cap), self.inputs(0)));
        y.sub(0, rows * self.classes)
    }

    /// The forward pass of `model` on the `rows` inputs in the batch region; returns the span
    /// of the logits.
    pub fn forward(
        &self,
        model: &Model,
        be: &mut dyn Backend,
        rows: usize,
    ) -> Result<Span, BackendError> {
        self.check(rows)?;
        let mut x = self.inputs(self.cap);
        for (layer, &(y, _)) in model.layers().iter().zip(&self.slots) {
            if !layer.is_view() {
                layer.device_forward(be, rows, x, y)?;
            }
            x = y;
        }
        Ok(self.logits(rows))
    }

    /// One training step's forward pass, softmax cross-entropy against the labels in the
    /// batch region (the mean over the rows), and the backward pass: the gradients of the
    /// mean loss are put in [`Region::Grads`] at the parameters' offsets. Adds the batch's
    /// summed loss to `stats[0]` and its correct predictions to `stats[1]`.
    pub fn train_step(
        &self,
        model: &Model,
        be: &mut dyn Backend,
        rows: usize,
        stats: Span,
    ) -> Result<(), BackendError> {
        let logits = self.forward(model, be, rows)?;
        let dlogits = self
            .slots
            .last()
            .map(|s| s.1.sub(0, logits.len))
            .ok_or_else(|| {
                BackendError::Unsupported("a model without layers has nothing to train".into())
            })?;
        be.softmax_xent(
            logits,
            self.labels(rows),
            dlogits,
            self.classes,
            1.0 / rows as f32,
            stats,
        )?;
        for (i, layer) in model.layers().iter().enumerate().rev() {
            if layer.is_view() {
                continue;
            }
            let (y, dy) = self.slots[i];
            let (x, dx) = match i {
                0 => (self.inputs(self.cap), None),
                _ => (self.slots[i - 1].0, Some(self.slots[i - 1].1)),
            };
            // A layer whose inputs are the model's (after views only) needs no input gradient:
            // its slot is the empty one before the first layer.
            let dx = dx.filter(|d| d.len > 0);
            layer.device_backward(be, rows, DeviceIo { x, y, dy, dx })?;
        }
        Ok(())
    }

    fn check(&self, rows: usize) -> Result<(), BackendError> {
        if rows == 0 || rows > self.cap {
            return Err(BackendError::Unsupported(format!(
                "a batch of {rows} rows on a program made for 1..={}",
                self.cap
            )));
        }
        Ok(())
    }
}
