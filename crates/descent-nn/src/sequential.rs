//! A stack of layers run in order, with the workspace that holds its activations.

use descent_tensor::{MatMut, MatRef, Pool, Rng};

use crate::{softmax_cross_entropy, Activation, Linear, LossStats, NnError, ParamLayout};

/// One layer of a [`Sequential`].
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// A fully connected layer; its parameters are named `fc{n}.weight` and `fc{n}.bias`.
    Linear(Linear),
    /// An activation applied to the output of the linear layer before it.
    Activation(Activation),
    /// Dropout with this probability of zeroing each value (training only).
    Dropout(f32),
}

/// One entry of a model description for [`Sequential::new`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LayerSpec {
    /// A fully connected layer with this many output features.
    Linear(usize),
    /// An activation on the output of the linear layer before it.
    Activation(Activation),
    /// Dropout (Srivastava et al. 2014, as `torch.nn.Dropout`): in training, each value of
    /// the output before it is zeroed with probability `p` and the rest scaled by
    /// `1 / (1 - p)`; in evaluation it passes values through.
    Dropout(f32),
}

/// A linear layer and the activation and dropout fused onto its output, if any.
#[derive(Clone, Debug)]
struct Stage {
    linear: Linear,
    act: Option<Activation>,
    dropout: Option<f32>,
}

/// Layers applied in order; the last output is the logits of a classifier.
#[derive(Clone, Debug)]
pub struct Sequential {
    layers: Vec<Layer>,
    stages: Vec<Stage>,
    layout: ParamLayout,
}

/// The buffers a forward and backward pass need, allocated once for batches of up to
/// `capacity` rows so that training steps allocate nothing.
#[derive(Debug)]
pub struct Workspace {
    capacity: usize,
    /// Per stage: output after its activation, `capacity x out`.
    outs: Vec<Vec<f32>>,
    /// Per stage: gradient of the loss w.r.t. that output, `capacity x out`.
    grads: Vec<Vec<f32>>,
    /// The widest layer's bias gradient, for fused SGD steps.
    bias_grad: Vec<f32>,
    /// Per stage with dropout: the output after dropout (the next layer's input), and the
    /// scale each value was multiplied by (0 or 1 / (1 - p)); empty for other stages.
    dropped: Vec<Vec<f32>>,
    masks: Vec<Vec<f32>>,
    /// Seeds the dropout masks of the next training step.
    dropout_seed: u64,
}

impl Workspace {
    /// Buffers for `net` and batches of up to `capacity` rows.
    pub fn new(net: &Sequential, capacity: usize) -> Self {
        let sizes = net.stages.iter().map(|s| capacity * s.linear.out_features);
        let widest = net
            .stages
            .iter()
            .map(|s| s.linear.out_features)
            .max()
            .unwrap_or(0);
        let dropout_sizes = net.stages.iter().map(|s| match s.dropout {
            Some(_) => capacity * s.linear.out_features,
            None => 0,
        });
        Self {
            capacity,
            bias_grad: vec![0.0; widest],
            outs: sizes.clone().map(|n| vec![0.0; n]).collect(),
            grads: sizes.map(|n| vec![0.0; n]).collect(),
            dropped: dropout_sizes.clone().map(|n| vec![0.0; n]).collect(),
            masks: dropout_sizes.map(|n| vec![0.0; n]).collect(),
            dropout_seed: 0,
        }
    }

    /// Seeds the dropout masks of the next training step (the trainer passes a function of
    /// its seed and the step, so that a resumed run draws the same masks).
    pub fn set_dropout_seed(&mut self, seed: u64) {
        self.dropout_seed = seed;
    }

    /// Largest batch the workspace holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Where the backward pass puts its result.
enum Update<'a> {
    /// Gradients into a buffer laid out like the parameters.
    Grads {
        params: &'a [f32],
        grads: &'a mut [f32],
    },
    /// Straight into the parameters as a plain SGD step.
    Sgd { params: &'a mut [f32], lr: f32 },
}

impl Update<'_> {
    fn params(&self) -> &[f32] {
        match self {
            Update::Grads { params, .. } => params,
            Update::Sgd { params, .. } => params,
        }
    }
}

/// Features per thread below which a layer is not split.
const MIN_FEATURES_PER_THREAD: usize = 16;

impl Sequential {
    /// Builds a stack from `input` features and a description such as
    /// `[Linear(512), Activation(Relu), Linear(10)]`. The first entry must be a linear layer,
    /// and every activation must follow one. [`Sequential::mlp`] covers the usual case.
    pub fn new(input: usize, spec: &[LayerSpec]) -> Result<Self, NnError> {
        if input == 0 {
            return Err(NnError::ZeroSize {
                layer: "input".into(),
            });
        }
        let mut layout = ParamLayout::default();
        let mut layers = Vec::new();
        let mut stages: Vec<Stage> = Vec::new();
        let mut width = input;
        for (index, entry) in spec.iter().enumerate() {
            match *entry {
                LayerSpec::Linear(out) => {
                    let n = stages.len() + 1;
                    if out == 0 {
                        return Err(NnError::ZeroSize {
                            layer: format!("fc{n}"),
                        });
                    }
                    let weight = layout.push(format!("fc{n}.weight"), vec![out, width]);
                    let bias = layout.push(format!("fc{n}.bias"), vec![out]);
                    let l = Linear {
                        in_features: width,
                        out_features: out,
                        weight,
                        bias,
                    };
                    layers.push(Layer::Linear(l.clone()));
                    stages.push(Stage {
                        linear: l,
                        act: None,
                        dropout: None,
                    });
                    width = out;
                }
                LayerSpec::Activation(a) => {
                    let bad = |why: &str| NnError::BadStack {
                        index,
                        what: a.name().into(),
                        why: why.into(),
                    };
                    let stage = stages
                        .last_mut()
                        .ok_or_else(|| bad("an activation needs a linear layer before it"))?;
                    if stage.act.is_some() {
                        return Err(bad("two activations in a row"));
                    }
                    if stage.dropout.is_some() {
                        return Err(bad("an activation after dropout: put dropout last"));
                    }
                    stage.act = Some(a);
                    layers.push(Layer::Activation(a));
                }
                LayerSpec::Dropout(p) => {
                    let bad = |why: &str| NnError::BadStack {
                        index,
                        what: format!("dropout {p}"),
                        why: why.into(),
                    };
                    if !(0.0..1.0).contains(&p) {
                        return Err(bad("the probability must be in [0, 1)"));
                    }
                    let stage = stages
                        .last_mut()
                        .ok_or_else(|| bad("dropout needs a linear layer before it"))?;
                    if stage.dropout.is_some() {
                        return Err(bad("two dropouts in a row"));
                    }
                    stage.dropout = Some(p);
                    layers.push(Layer::Dropout(p));
                }
            }
        }
        if stages.is_empty() {
            return Err(NnError::BadStack {
                index: 0,
                what: "(nothing)".into(),
                why: "a model needs at least one linear layer".into(),
            });
        }
        Ok(Self {
            layers,
            stages,
            layout,
        })
    }

    /// [`Sequential::mlp`] with dropout of probability `p` after each hidden activation
    /// (none when `p` is 0).
    pub fn mlp_dropout(
        input: usize,
        hidden: &[usize],
        output: usize,
        act: Activation,
        p: f32,
    ) -> Result<Self, NnError> {
        if p == 0.0 {
            return Self::mlp(input, hidden, output, act);
        }
        if let Some(i) = hidden.iter().position(|&h| h == 0) {
            return Err(NnError::ZeroSize {
                layer: format!("hidden layer {} (fc{})", i + 1, i + 1),
            });
        }
        let mut spec: Vec<_> = hidden
            .iter()
            .flat_map(|&h| {
                [
                    LayerSpec::Linear(h),
                    LayerSpec::Activation(act),
                    LayerSpec::Dropout(p),
                ]
            })
            .collect();
        spec.push(LayerSpec::Linear(output));
        Self::new(input, &spec)
    }

    /// A multilayer perceptron: `input -> hidden[0] -> act -> ... -> output`. The seed's model
    /// is `Sequential::mlp(784, &[512], 10, Activation::Relu)`.
    pub fn mlp(
        input: usize,
        hidden: &[usize],
        output: usize,
        act: Activation,
    ) -> Result<Self, NnError> {
        if let Some(i) = hidden.iter().position(|&h| h == 0) {
            return Err(NnError::ZeroSize {
                layer: format!("hidden layer {} (fc{})", i + 1, i + 1),
            });
        }
        let mut spec: Vec<_> = hidden
            .iter()
            .flat_map(|&h| [LayerSpec::Linear(h), LayerSpec::Activation(act)])
            .collect();
        spec.push(LayerSpec::Linear(output));
        Self::new(input, &spec)
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Layer] {
        &self.layers
    }

    /// Names, shapes and offsets of the parameters.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Input features.
    pub fn input_features(&self) -> usize {
        self.stages[0].linear.in_features
    }

    /// Output features (classes).
    pub fn output_features(&self) -> usize {
        self.stages[self.stages.len() - 1].linear.out_features
    }

    /// Fresh parameters with PyTorch's default initialization, layer by layer.
    pub fn init_params(&self, rng: &mut Rng) -> Vec<f32> {
        let mut p = vec![0.0; self.layout.len()];
        for s in &self.stages {
            s.linear.init(&mut p, rng);
        }
        p
    }

    fn check(
        &self,
        params: &[f32],
        x: &[f32],
        batch: usize,
        ws: &Workspace,
    ) -> Result<(), NnError> {
        let shape = |what, expected, got| {
            if expected == got {
                Ok(())
            } else {
                Err(NnError::Shape {
                    what,
                    expected,
                    got,
                })
            }
        };
        shape("parameters", self.layout.len(), params.len())?;
        shape("inputs", batch * self.input_features(), x.len())?;
        shape("workspace stages", self.stages.len(), ws.outs.len())?;
        if batch > ws.capacity {
            return Err(NnError::BatchTooLarge {
                batch,
                capacity: ws.capacity,
            });
        }
        for (s, out) in self.stages.iter().zip(&ws.outs) {
            shape(
                "workspace buffer",
                ws.capacity * s.linear.out_features,
                out.len(),
            )?;
        }
        Ok(())
    }

    // x is (B, in); returns the logits (B, classes), a view into the workspace.
    /// Forward pass on `batch = x.len() / input_features` rows; returns the logits.
    pub fn forward<'w>(
        &self,
        params: &[f32],
        x: &[f32],
        ws: &'w mut Workspace,
        pool: &Pool,
    ) -> Result<&'w [f32], NnError> {
        let batch = x.len() / self.input_features();
        self.check(params, x, batch, ws)?;
        self.forward_unchecked(params, x, batch, ws, pool, false);
        let last = ws.outs.len() - 1;
        Ok(&ws.outs[last][..batch * self.output_features()])
    }

    fn forward_unchecked(
        &self,
        params: &[f32],
        x: &[f32],
        batch: usize,
        ws: &mut Workspace,
        pool: &Pool,
        train: bool,
    ) {
        for (i, stage) in self.stages.iter().enumerate() {
            let (done, rest) = ws.outs.split_at_mut(i);
            let l = &stage.linear;
            let input = if i == 0 {
                x
            } else if train && self.stages[i - 1].dropout.is_some() {
                &ws.dropped[i - 1][..batch * l.in_features]
            } else {
                &done[i - 1][..batch * l.in_features]
            };
            let input = MatRef::new(input, batch, l.in_features).expect("input fits");
            let out = MatMut::new(&mut rest[0], batch, l.out_features).expect("output fits");
            pool.split_cols(out, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                l.forward_block(params, input, block.rb_mut(), j0);
                if let Some(act) = stage.act {
                    for r in 0..block.rows() {
                        act.forward(block.row_mut(r));
                    }
                }
            });
            if let (true, Some(p)) = (train, stage.dropout) {
                // One seeded stream per step and layer, drawn in order: the same masks on
                // any number of threads.
                let n = batch * l.out_features;
                let mut rng =
                    Rng::new(ws.dropout_seed ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                let keep = 1.0 / (1.0 - p);
                let (y, mask, out) = (
                    &rest[0][..n],
                    &mut ws.masks[i][..n],
                    &mut ws.dropped[i][..n],
                );
                for ((m, o), &v) in mask.iter_mut().zip(out.iter_mut()).zip(y) {
                    *m = if rng.uniform(0.0, 1.0) < p { 0.0 } else { keep };
                    *o = v * *m;
                }
            }
        }
    }

    /// Forward, loss and backward on one batch: writes the gradient of the mean
    /// cross-entropy into `grads` (same layout as `params`) and returns the batch's loss
    /// and accuracy counts.
    pub fn train_step_grads(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        grads: &mut [f32],
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        if grads.len() != params.len() {
            return Err(NnError::Shape {
                what: "gradients",
                expected: params.len(),
                got: grads.len(),
            });
        }
        let stats = self.forward_loss(params, x, labels, ws, pool)?;
        self.backward(Update::Grads { params, grads }, x, labels.len(), ws, pool);
        Ok(stats)
    }

    /// Forward, loss, backward and the plain SGD update `p -= lr * grad` in one pass: each
    /// layer's weights are updated by the weight-gradient product itself (after the layer's
    /// input gradient has used them), so no gradient buffer is written or read again. Gives
    /// the same parameters as [`Sequential::train_step_grads`] followed by an SGD step.
    pub fn train_step_sgd(
        &self,
        params: &mut [f32],
        lr: f32,
        x: &[f32],
        labels: &[u8],
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        let stats = self.forward_loss(params, x, labels, ws, pool)?;
        self.backward(Update::Sgd { params, lr }, x, labels.len(), ws, pool);
        Ok(stats)
    }

    /// Checks the inputs, runs the forward pass and writes the loss gradient into the last
    /// stage's gradient buffer.
    fn forward_loss(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        let batch = labels.len();
        self.check(params, x, batch, ws)?;
        self.forward_unchecked(params, x, batch, ws, pool, true);
        let last = self.stages.len() - 1;
        let classes = self.output_features();
        let n = batch * classes;
        let stats = softmax_cross_entropy(
            &ws.outs[last][..n],
            labels,
            classes,
            Some(&mut ws.grads[last][..n]),
        )?;
        if let Some(act) = self.stages[last].act {
            act.backward(&ws.outs[last][..n], &mut ws.grads[last][..n]);
        }
        Ok(stats)
    }

    /// Backward from the loss gradient in the last stage's buffer, layer by layer: the input
    /// gradient first (it needs the layer's weights as they were), then the weight and bias
    /// gradients, written to a gradient buffer or applied as an SGD step.
    fn backward(
        &self,
        mut update: Update<'_>,
        x: &[f32],
        batch: usize,
        ws: &mut Workspace,
        pool: &Pool,
    ) {
        for i in (0..self.stages.len()).rev() {
            let l = &self.stages[i].linear;
            let input = if i == 0 {
                x
            } else if self.stages[i - 1].dropout.is_some() {
                &ws.dropped[i - 1][..batch * l.in_features]
            } else {
                &ws.outs[i - 1][..batch * l.in_features]
            };
            let input = MatRef::new(input, batch, l.in_features).expect("input fits");
            let (lower, upper) = ws.grads.split_at_mut(i);
            let dy_buf = &upper[0][..batch * l.out_features];
            let dy = MatRef::new(dy_buf, batch, l.out_features).expect("gradient fits");
            if i > 0 {
                // dx (B, in) = dy (B, out) · W (out, in), then through the activation before.
                let act = self.stages[i - 1].act;
                let y_prev = &ws.outs[i - 1][..batch * l.in_features];
                let mask = match self.stages[i - 1].dropout {
                    Some(_) => Some(&ws.masks[i - 1][..batch * l.in_features]),
                    None => None,
                };
                let dx = MatMut::new(&mut lower[i - 1], batch, l.in_features)
                    .expect("input gradient fits");
                let params = update.params();
                pool.split_cols(dx, 16, MIN_FEATURES_PER_THREAD, |j0, mut block| {
                    l.backward_input_block(params, dy, block.rb_mut(), j0);
                    let w = block.cols();
                    if let Some(mask) = mask {
                        // Through the dropout: the kept values' scale, zero for the dropped.
                        for r in 0..block.rows() {
                            let m = &mask[r * l.in_features + j0..r * l.in_features + j0 + w];
                            block
                                .row_mut(r)
                                .iter_mut()
                                .zip(m)
                                .for_each(|(g, m)| *g *= m);
                        }
                    }
                    if let Some(act) = act {
                        for r in 0..block.rows() {
                            let y = &y_prev[r * l.in_features + j0..r * l.in_features + j0 + w];
                            act.backward(y, block.row_mut(r));
                        }
                    }
                });
            }
            // dW (out, in) = dyᵀ (out, B) · x (B, in), one band of output features per
            // thread; with SGD, W = W - lr · dW in the same product.
            let (target, alpha, beta, sgd_lr) = match &mut update {
                Update::Grads { grads, .. } => (&mut **grads, 1.0, 0.0, None),
                Update::Sgd { params, lr } => (&mut **params, -*lr, 1.0, Some(*lr)),
            };
            let (w, b) = target[l.weight..l.bias + l.out_features]
                .split_at_mut(l.out_features * l.in_features);
            let w = MatMut::new(w, l.out_features, l.in_features).expect("weight fits");
            pool.split_rows(w, 8, MIN_FEATURES_PER_THREAD, |i0, band| {
                Linear::backward_weight_block(dy, input, band, i0, alpha, beta)
            });
            match sgd_lr {
                None => Linear::backward_bias(dy_buf, batch, b),
                Some(lr) => {
                    let g = &mut ws.bias_grad[..l.out_features];
                    Linear::backward_bias(dy_buf, batch, g);
                    b.iter_mut().zip(g.iter()).for_each(|(p, g)| *p -= lr * g);
                }
            }
        }
    }

    /// Loss and accuracy over a whole data set, `x` holding `labels.len()` rows, evaluated in
    /// batches of the workspace's capacity.
    pub fn evaluate(
        &self,
        params: &[f32],
        x: &[f32],
        labels: &[u8],
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        let features = self.input_features();
        if x.len() != labels.len() * features {
            return Err(NnError::Shape {
                what: "inputs",
                expected: labels.len() * features,
                got: x.len(),
            });
        }
        let mut total = LossStats::default();
        let cap = ws.capacity.max(1);
        let classes = self.output_features();
        for (xs, ys) in x.chunks(cap * features).zip(labels.chunks(cap)) {
            let logits = self.forward(params, xs, ws, pool)?;
            total.merge(softmax_cross_entropy(logits, ys, classes, None)?);
        }
        Ok(total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rng: &mut Rng, batch: usize, features: usize, classes: usize) -> (Vec<f32>, Vec<u8>) {
        let x = (0..batch * features)
            .map(|_| rng.uniform(-1.5, 1.5))
            .collect();
        let y = (0..batch)
            .map(|_| rng.below(classes as u64) as u8)
            .collect();
        (x, y)
    }

    /// Every gradient against central differences of `loss` (steps of 1e-2).
    fn check_against_differences(
        params: &[f32],
        grads: &[f32],
        mut loss: impl FnMut(&[f32]) -> f64,
        what: &str,
    ) {
        let eps = 1e-2f32;
        for k in 0..params.len() {
            let mut p = params.to_vec();
            p[k] = params[k] + eps;
            let lp = loss(&p);
            p[k] = params[k] - eps;
            let lm = loss(&p);
            let num = (lp - lm) / (2.0 * eps as f64);
            let g = grads[k] as f64;
            assert!(
                (num - g).abs() <= 2e-3 + 2e-2 * g.abs(),
                "{what} param {k}: analytic {g} numeric {num}"
            );
        }
    }

    /// Every parameter of a deep net, for every activation, against central differences.
    #[test]
    fn gradients_match_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            let net = Sequential::mlp(6, &[7, 5], 4, act).unwrap();
            let mut rng = Rng::new(11);
            let params = net.init_params(&mut rng);
            let (x, y) = data(&mut rng, 5, 6, 4);
            let pool = Pool::new(1).unwrap();
            let mut ws = Workspace::new(&net, 5);
            let mut grads = vec![0.0; params.len()];
            net.train_step_grads(&params, &x, &y, &mut grads, &mut ws, &pool)
                .unwrap();
            let loss = |p: &[f32], ws: &mut Workspace| {
                net.evaluate(p, &x, &y, ws, &pool).unwrap().mean_loss()
            };
            check_against_differences(&params, &grads, |p| loss(p, &mut ws), &format!("{act:?}"));
        }
    }

    /// With dropout, the training loss for a fixed mask seed is a function of the parameters:
    /// its gradient against central differences, for every activation.
    #[test]
    fn dropout_gradients_match_finite_differences() {
        for act in [Activation::Relu, Activation::Tanh, Activation::Sigmoid] {
            let net = Sequential::mlp_dropout(6, &[7, 5], 4, act, 0.4).unwrap();
            let mut rng = Rng::new(12);
            let params = net.init_params(&mut rng);
            let (x, y) = data(&mut rng, 5, 6, 4);
            let pool = Pool::new(1).unwrap();
            let mut ws = Workspace::new(&net, 5);
            let mut grads = vec![0.0; params.len()];
            let mut scratch = vec![0.0; params.len()];
            ws.set_dropout_seed(77);
            net.train_step_grads(&params, &x, &y, &mut grads, &mut ws, &pool)
                .unwrap();
            let mut loss = |p: &[f32], ws: &mut Workspace| {
                ws.set_dropout_seed(77);
                net.train_step_grads(p, &x, &y, &mut scratch, ws, &pool)
                    .unwrap()
                    .mean_loss()
            };
            check_against_differences(&params, &grads, |p| loss(p, &mut ws), &format!("{act:?}"));
        }
    }

    /// Dropout drops about p of the values in training, by seed, and nothing in evaluation.
    #[test]
    fn dropout_drops_by_seed_in_training_only() {
        let p = 0.3;
        let with = Sequential::mlp_dropout(20, &[400], 3, Activation::Relu, p).unwrap();
        let without = Sequential::mlp(20, &[400], 3, Activation::Relu).unwrap();
        let mut rng = Rng::new(5);
        let params = with.init_params(&mut rng);
        let (x, y) = data(&mut rng, 50, 20, 3);
        let pool = Pool::new(2).unwrap();
        let mut ws = Workspace::new(&with, 50);
        let mut grads = vec![0.0; params.len()];
        let mut masks = Vec::new();
        for seed in [1, 1, 2] {
            ws.set_dropout_seed(seed);
            with.train_step_grads(&params, &x, &y, &mut grads, &mut ws, &pool)
                .unwrap();
            masks.push(ws.masks[0].clone());
        }
        assert_eq!(masks[0], masks[1]);
        assert_ne!(masks[0], masks[2]);
        let dropped = masks[0].iter().filter(|&&m| m == 0.0).count() as f64;
        let frac = dropped / masks[0].len() as f64;
        assert!((frac - p as f64).abs() < 0.01, "dropped {frac}");
        assert!(masks[0].iter().all(|&m| m == 0.0 || m == 1.0 / (1.0 - p)));
        let mut ws2 = Workspace::new(&without, 50);
        let a = with.evaluate(&params, &x, &y, &mut ws, &pool).unwrap();
        let b = without.evaluate(&params, &x, &y, &mut ws2, &pool).unwrap();
        assert_eq!(a, b, "evaluation ignores dropout");
        assert!(Sequential::new(4, &[LayerSpec::Linear(3), LayerSpec::Dropout(1.0)]).is_err());
        assert!(Sequential::new(4, &[LayerSpec::Dropout(0.5)]).is_err());
    }

    /// One thread and several threads give the same gradients (the split path against the
    /// whole-matrix path), on the seed model's shapes.
    #[test]
    fn threads_agree_on_the_seed_model() {
        let net = Sequential::mlp(784, &[512], 10, Activation::Relu).unwrap();
        let mut rng = Rng::new(3);
        let params = net.init_params(&mut rng);
        let (x, y) = data(&mut rng, 64, 784, 10);
        let run = |threads| {
            let pool = Pool::new(threads).unwrap();
            let mut ws = Workspace::new(&net, 64);
            let mut grads = vec![0.0; params.len()];
            let s = net
                .train_step_grads(&params, &x, &y, &mut grads, &mut ws, &pool)
                .unwrap();
            (s.loss_sum, grads)
        };
        let (l1, g1) = run(1);
        let (l2, g2) = run(2);
        assert!((l1 - l2).abs() < 1e-4 * l1.abs());
        for (a, b) in g1.iter().zip(&g2) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * a.abs(), "{a} vs {b}");
        }
    }

    /// The fused SGD step gives the parameters of gradients followed by `p -= lr * g`.
    #[test]
    fn fused_sgd_matches_gradients_then_sgd() {
        for (hidden, act) in [
            (vec![512], Activation::Relu),
            (vec![32, 16], Activation::Tanh),
        ] {
            let net = Sequential::mlp(784, &hidden, 10, act).unwrap();
            let mut rng = Rng::new(4);
            let start = net.init_params(&mut rng);
            let (x, y) = data(&mut rng, 64, 784, 10);
            let pool = Pool::new(2).unwrap();
            let mut ws = Workspace::new(&net, 64);
            let lr = 0.05;
            let mut unfused = start.clone();
            let mut grads = vec![0.0; start.len()];
            for _ in 0..3 {
                net.train_step_grads(&unfused, &x, &y, &mut grads, &mut ws, &pool)
                    .unwrap();
                unfused
                    .iter_mut()
                    .zip(&grads)
                    .for_each(|(p, g)| *p -= lr * g);
            }
            let mut fused = start.clone();
            for _ in 0..3 {
                net.train_step_sgd(&mut fused, lr, &x, &y, &mut ws, &pool)
                    .unwrap();
            }
            for (k, (a, b)) in fused.iter().zip(&unfused).enumerate() {
                assert!(
                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                    "param {k}: {a} vs {b}"
                );
            }
            assert_ne!(fused, start);
        }
    }

    #[test]
    fn names_and_shapes_follow_pytorch() {
        let net = Sequential::mlp(784, &[256, 128], 10, Activation::Tanh).unwrap();
        let names: Vec<_> = net
            .layout()
            .views()
            .iter()
            .map(|v| (v.name.as_str(), v.shape.clone()))
            .collect();
        assert_eq!(
            names,
            vec![
                ("fc1.weight", vec![256, 784]),
                ("fc1.bias", vec![256]),
                ("fc2.weight", vec![128, 256]),
                ("fc2.bias", vec![128]),
                ("fc3.weight", vec![10, 128]),
                ("fc3.bias", vec![10]),
            ]
        );
        let seed = Sequential::mlp(784, &[512], 10, Activation::Relu).unwrap();
        assert_eq!(seed.layout().len(), 407_050);
    }

    #[test]
    fn init_is_bounded_by_fan_in() {
        let net = Sequential::mlp(784, &[512], 10, Activation::Relu).unwrap();
        let p = net.init_params(&mut Rng::new(0));
        let fc1 = net.layout().get("fc1.weight").unwrap();
        let b = 1.0 / 784f32.sqrt();
        assert!(p[fc1.range()].iter().all(|v| v.abs() <= b));
        let max = p[fc1.range()].iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(max > 0.99 * b, "uniform fills the range: {max} vs {b}");
        let fc2 = net.layout().get("fc2.bias").unwrap();
        assert!(p[fc2.range()]
            .iter()
            .all(|v| v.abs() <= 1.0 / 512f32.sqrt()));
    }

    #[test]
    fn new_builds_what_it_is_told() {
        use LayerSpec::*;
        let net = Sequential::new(
            3,
            &[Linear(4), Activation(self::Activation::Tanh), Linear(2)],
        )
        .unwrap();
        assert_eq!(net.layers().len(), 3);
        assert_eq!(
            (
                net.input_features(),
                net.output_features(),
                net.layout().len()
            ),
            (3, 2, 4 * 3 + 4 + 2 * 4 + 2)
        );
        let twice = [
            Linear(4),
            Activation(self::Activation::Relu),
            Activation(self::Activation::Relu),
        ];
        assert!(matches!(
            Sequential::new(3, &twice),
            Err(NnError::BadStack { index: 2, .. })
        ));
    }

    #[test]
    fn bad_models_and_inputs_are_errors() {
        assert!(matches!(
            Sequential::mlp(784, &[512, 0], 10, Activation::Relu),
            Err(NnError::ZeroSize { .. })
        ));
        assert!(matches!(
            Sequential::new(4, &[LayerSpec::Activation(Activation::Relu)]),
            Err(NnError::BadStack { .. })
        ));
        assert!(matches!(
            Sequential::new(4, &[]),
            Err(NnError::BadStack { .. })
        ));
        let net = Sequential::mlp(4, &[3], 2, Activation::Relu).unwrap();
        let p = net.init_params(&mut Rng::new(0));
        let mut ws = Workspace::new(&net, 2);
        let pool = Pool::new(1).unwrap();
        let mut g = vec![0.0; p.len()];
        assert!(matches!(
            net.train_step_grads(&p, &[0.0; 12], &[0, 1, 0], &mut g, &mut ws, &pool),
            Err(NnError::BatchTooLarge { .. })
        ));
        assert!(matches!(
            net.train_step_grads(&p, &[0.0; 7], &[0, 1], &mut g, &mut ws, &pool),
            Err(NnError::Shape { .. })
        ));
        assert!(matches!(
            net.train_step_grads(&p, &[0.0; 8], &[0, 5], &mut g, &mut ws, &pool),
            Err(NnError::LabelOutOfRange { .. })
        ));
    }
}
