//! Named views into one flat parameter buffer.

/// One named tensor inside a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamView {
    /// PyTorch's name, e.g. `fc1.weight`.
    pub name: String,
    /// Shape, row-major (`[out, in]` for a weight, `[out]` for a bias).
    pub shape: Vec<usize>,
    /// First element in the flat buffer.
    pub offset: usize,
}

impl ParamView {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Its range in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// The layout of a flat parameter (or gradient) buffer: named tensors, back to back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    views: Vec<ParamView>,
    len: usize,
}

impl ParamLayout {
    /// Appends a tensor and returns its offset.
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>) -> usize {
        let offset = self.len;
        let view = ParamView {
            name: name.into(),
            shape,
            offset,
        };
        self.len += view.len();
        self.views.push(view);
        offset
    }

    /// All tensors in buffer order.
    pub fn views(&self) -> &[ParamView] {
        &self.views
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&ParamView> {
        self.views.iter().find(|v| v.name == name)
    }

    /// Total number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no parameters.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}
