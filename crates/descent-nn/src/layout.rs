//! Named views into one flat buffer of parameters and non-trainable buffers.
//!
//! A model's values live in one `Vec<f32>`: every trainable parameter first (what optimizers,
//! clipping and gradients see: `values[..layout.trainable_len()]`), then every buffer
//! (BatchNorm's running statistics), which are saved with the weights but never stepped.

/// One named tensor inside a flat buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamView {
    /// PyTorch's name, e.g. `fc1.weight` or `bn1.running_mean`.
    pub name: String,
    /// Shape, row-major (`[out, in]` for a weight, `[out]` for a bias).
    pub shape: Vec<usize>,
    /// First element in the flat buffer.
    pub offset: usize,
    /// False for a buffer (running statistics): saved, never given to an optimizer.
    pub trainable: bool,
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

/// The layout of a flat parameter buffer: named tensors, back to back, trainable ones first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    views: Vec<ParamView>,
    len: usize,
    trainable: usize,
}

impl ParamLayout {
    /// Appends a trainable tensor and returns its offset. Panics if a buffer was pushed
    /// before (use a [`LayoutBuilder`] to declare both in any order).
    pub fn push(&mut self, name: impl Into<String>, shape: Vec<usize>) -> usize {
        assert_eq!(
            self.len, self.trainable,
            "parameters come before buffers in a layout"
        );
        let offset = self.push_any(name.into(), shape, true);
        self.trainable = self.len;
        offset
    }

    fn push_any(&mut self, name: String, shape: Vec<usize>, trainable: bool) -> usize {
        let offset = self.len;
        let view = ParamView {
            name,
            shape,
            offset,
            trainable,
        };
        self.len += view.len();
        self.views.push(view);
        offset
    }

    /// All tensors in buffer order.
    pub fn views(&self) -> &[ParamView] {
        &self.views
    }

    /// The trainable tensors, in buffer order.
    pub fn params(&self) -> impl Iterator<Item = &ParamView> {
        self.views.iter().filter(|v| v.trainable)
    }

    /// The tensor named `name`.
    pub fn get(&self, name: &str) -> Option<&ParamView> {
        self.views.iter().find(|v| v.name == name)
    }

    /// Total number of elements, buffers included.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Elements of the trainable tensors: they are `values[..trainable_len()]`.
    pub fn trainable_len(&self) -> usize {
        self.trainable
    }

    /// Whether there are no values at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Collects parameters and buffers as layers declare them, in any order; [`finish`] lays the
/// parameters out first and the buffers after them.
///
/// [`finish`]: LayoutBuilder::finish
#[derive(Debug, Default)]
pub struct LayoutBuilder {
    params: ParamLayout,
    buffers: Vec<(String, Vec<usize>)>,
    buffer_len: usize,
    prefix: Vec<String>,
}

impl LayoutBuilder {
    /// The full name of `local` inside the current prefixes (`layer1.0.conv1`).
    pub fn qualify(&self, local: &str) -> String {
        let mut parts = self.prefix.clone();
        parts.push(local.to_string());
        parts.join(".")
    }

    /// Names declared until [`LayoutBuilder::pop`] are prefixed with `name.` (a container).
    pub fn push_prefix(&mut self, name: &str) {
        self.prefix.push(name.to_string());
    }

    /// Ends the innermost prefix.
    pub fn pop_prefix(&mut self) {
        self.prefix.pop();
    }

    /// Declares a trainable tensor named `name` (already qualified); returns its offset in the
    /// flat buffer.
    pub fn param(&mut self, name: String, shape: Vec<usize>) -> usize {
        self.params.push(name, shape)
    }

    /// Declares a buffer; returns its offset among the buffers (the region after the
    /// parameters, which a layer sees as `Forward::buffers`).
    pub fn buffer(&mut self, name: String, shape: Vec<usize>) -> usize {
        let offset = self.buffer_len;
        self.buffer_len += shape.iter().product::<usize>();
        self.buffers.push((name, shape));
        offset
    }

    /// The offset and shape of the trainable tensor of this full name, if declared.
    pub fn param_shape(&self, name: &str) -> Option<(usize, Vec<usize>)> {
        self.params.get(name).map(|v| (v.offset, v.shape.clone()))
    }

    /// Whether a tensor of this full name was declared already.
    pub fn contains(&self, name: &str) -> bool {
        self.params.get(name).is_some() || self.buffers.iter().any(|(n, _)| n == name)
    }

    /// The layout: parameters, then buffers.
    pub fn finish(self) -> ParamLayout {
        let mut layout = self.params;
        for (name, shape) in self.buffers {
            layout.push_any(name, shape, false);
        }
        layout
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_come_first_and_buffers_after() {
        let mut b = LayoutBuilder::default();
        b.push_prefix("bn");
        let w = b.param(b.qualify("weight"), vec![3]);
        let m = b.buffer(b.qualify("running_mean"), vec![3]);
        let bias = b.param(b.qualify("bias"), vec![3]);
        b.pop_prefix();
        let l = b.finish();
        assert_eq!((w, bias, m), (0, 3, 0));
        assert_eq!((l.trainable_len(), l.len()), (6, 9));
        let v = l.get("bn.running_mean").unwrap();
        assert_eq!((v.offset, v.trainable), (6, false));
        assert_eq!(l.params().count(), 2);
    }
}
