//! Errors of model construction and of the losses.

/// What went wrong building or running a model.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum NnError {
    /// A layer size of zero.
    #[error("layer {layer} has size 0: every layer needs at least one unit")]
    ZeroSize {
        /// Which layer (e.g. `hidden layer 2`).
        layer: String,
    },
    /// The layers do not chain.
    #[error("layer {index} ({what}) cannot follow the layers before it: {why}")]
    BadStack {
        /// Position in the stack.
        index: usize,
        /// The layer.
        what: String,
        /// Why.
        why: String,
    },
    /// A layer of a model description that cannot be built where it stands.
    #[error("{at} ({what}): {why}")]
    BadLayer {
        /// Where: `layer 3`, or `layer 2 (residual `block`) body layer 1`.
        at: String,
        /// The layer's type.
        what: String,
        /// What was expected.
        why: String,
    },
    /// A model description that cannot be read.
    #[error("model description, {at}: {why}")]
    Spec {
        /// Where in the description.
        at: String,
        /// What is wrong and what is expected.
        why: String,
    },
    /// Loss settings that do not fit the model or its targets.
    #[error("loss {loss}: {why}")]
    BadLoss {
        /// The loss's name.
        loss: &'static str,
        /// What is wrong.
        why: String,
    },
    /// A label outside the classes the model predicts.
    #[error("label {label} at batch position {index} is outside the model's {classes} classes (0..{classes})")]
    LabelOutOfRange {
        /// The label.
        label: u32,
        /// Where in the batch.
        index: usize,
        /// The number of classes.
        classes: usize,
    },
    /// Inputs whose size does not match the model or the workspace.
    #[error("{what}: expected {expected} values, got {got}")]
    Shape {
        /// Which buffer.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Actual length.
        got: usize,
    },
    /// Input values the model's first layer cannot take (a token id outside the vocabulary).
    #[error("the model's input: {0}")]
    Input(String),
    /// A batch larger than the workspace was made for.
    #[error("batch of {batch} rows exceeds the workspace's {capacity}; build the Workspace with a larger batch")]
    BatchTooLarge {
        /// Rows in the batch.
        batch: usize,
        /// Rows the workspace holds.
        capacity: usize,
    },
    /// A model or loss that has no device program (a layer without one, a loss other than
    /// plain cross-entropy).
    #[error("cannot run this model on {device}: {why}; train it on the CPU (`cpu`)")]
    NotOnDevice {
        /// The device asked for.
        device: String,
        /// What has no device program.
        why: String,
    },
}
