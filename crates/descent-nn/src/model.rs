//! A model built from a [`ModelSpec`]: its layers, the layout of its flat parameters and
//! buffers, and the training step (forward, loss, backward, optionally a fused SGD update).

use descent_tensor::{Pool, Rng};

use crate::chain::Chain;
use crate::layer::{numel, Backward, Forward, Layer, Sink};
use crate::{Loss, LossStats, ModelSpec, NnError, ParamLayout, Targets};

/// A model: layers in order, and where each tensor lives in the flat buffer of values
/// (trainable parameters first, then buffers such as BatchNorm's running statistics).
#[derive(Debug)]
pub struct Model {
    spec: ModelSpec,
    chain: Chain,
    layout: ParamLayout,
}

/// The buffers a forward and backward pass need, allocated once for batches of up to
/// `capacity` rows on a given number of threads, so that training steps allocate nothing.
#[derive(Debug)]
pub struct Workspace {
    capacity: usize,
    threads: usize,
    arena: Vec<f32>,
    /// Shared by the layers during a pass (a recomputed block's body).
    scratch: Vec<f32>,
    /// Seeds the random streams (dropout masks) of the next training step.
    seed: u64,
    /// A chunk's gradient, for batches larger than the capacity (allocated on the first).
    chunk_grads: Vec<f32>,
}

impl Workspace {
    /// Buffers for `model`, batches of up to `capacity` rows, work split over `threads`
    /// parts (the engine pool's thread count; results depend on it, bit for bit).
    pub fn new(model: &Model, capacity: usize, threads: usize) -> Self {
        let threads = threads.max(1);
        Self {
            capacity,
            threads,
            arena: vec![0.0; model.chain.arena_len(capacity, threads)],
            scratch: vec![0.0; model.chain.scratch_len(capacity, threads)],
            seed: 0,
            chunk_grads: Vec::new(),
        }
    }

    /// The values [`Workspace::new`] would allocate for these arguments, without allocating.
    pub fn values_for(model: &Model, capacity: usize, threads: usize) -> usize {
        let threads = threads.max(1);
        (model.chain.arena_len(capacity, threads))
            .saturating_add(model.chain.scratch_len(capacity, threads))
    }

    /// The largest capacity up to `want` rows whose buffers fit in `bytes` (at least 1): an
    /// evaluation batch of 1000 fits an MLP easily, but a convolutional network's activations
    /// for 1000 images take hundreds of megabytes.
    pub fn capacity_within(model: &Model, want: usize, threads: usize, bytes: usize) -> usize {
        let t = threads.max(1);
        let per_row = (model.chain.arena_len(1, t) + model.chain.scratch_len(1, t)).max(1) * 4;
        want.min(bytes / per_row).max(1)
    }

    /// Seeds the dropout masks of the next training step (the trainer passes a function of
    /// its seed and the step, so that a resumed run draws the same masks).
    pub fn set_dropout_seed(&mut self, seed: u64) {
        self.seed = seed;
    }

    /// Largest batch the workspace holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Values held (activations, their gradients and the layers' workspace), for memory
    /// reports.
    pub fn len(&self) -> usize {
        self.arena.len() + self.scratch.len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Model {
    pub(crate) fn from_parts(spec: ModelSpec, chain: Chain, layout: ParamLayout) -> Self {
        Self {
            spec,
            chain,
            layout,
        }
    }

    /// The seed's kind of model: an MLP (see [`ModelSpec::mlp`]).
    pub fn mlp(
        input: usize,
        hidden: &[usize],
        classes: usize,
        act: crate::Activation,
        dropout: f32,
    ) -> Result<Self, NnError> {
        ModelSpec::mlp(input, hidden, classes, act, dropout).build()
    }

    /// Activation recomputation on or off (see [`Layer::set_recompute`]): each top-level
    /// residual block keeps its output only and runs its body again in the backward pass, so
    /// one body's activations are held instead of every block's, for about one more forward
    /// pass of compute; the gradients are the same bit for bit. Returns how many blocks
    /// changed (0: the model has none to recompute). Make workspaces after it.
    pub fn set_recompute(&mut self, on: bool) -> usize {
        self.chain.set_recompute(on)
    }

    /// Mixed precision: the matrix products of the layers that offer it (Linear: the
    /// forward pass and both gradients) round their inputs to bf16 and sum in f32; the
    /// parameters, gradients, activations and optimizer state stay f32. Returns how many
    /// layers took it. Native on CPUs with AVX512-BF16 ([`descent_tensor::bf16_native`]),
    /// emulated elsewhere (the same arithmetic, slower than f32).
    pub fn set_precision(&mut self, precision: descent_tensor::Precision) -> usize {
        self.chain.set_precision(precision)
    }

    /// The description it was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// The layers as built (an activation fused onto the layer before it is not listed).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        self.chain.layers()
    }

    /// Names, shapes and offsets of the parameters and buffers.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Shape of one input example.
    pub fn input_shape(&self) -> &[usize] {
        self.chain.input_shape()
    }

    /// Shape of one output example.
    pub fn output_shape(&self) -> &[usize] {
        self.chain.output_shape()
    }

    /// Values per input example.
    pub fn input_features(&self) -> usize {
        numel(self.input_shape())
    }

    /// Values per output example (classes, for a classifier).
    pub fn output_features(&self) -> usize {
        numel(self.output_shape())
    }

    /// Classes a per-position class target picks from: the last dimension of the output (the
    /// vocabulary of a language model's `(L, V)` output).
    pub fn classes(&self) -> usize {
        *self.output_shape().last().unwrap_or(&1)
    }

    /// Positions of an output that can each have a class target: `L` for an `(L, V)` output,
    /// 1 for a flat one.
    pub fn targets_per_example(&self) -> usize {
        self.output_features() / self.classes().max(1)
    }

    /// Examples in a batch of `x_len` input values, the target rows per example and the
    /// outputs each target row compares with: one class target per example picks from the
    /// whole output; one per position (`targets_per_example` of them) from its last dimension.
    fn rows(&self, targets: &Targets<'_>, x_len: usize) -> Result<(usize, usize, usize), NnError> {
        let batch = x_len / self.input_features().max(1);
        match targets {
            Targets::Classes(c) if c.len() == batch => Ok((batch, 1, self.output_features())),
            Targets::Classes(c) if c.len() == batch * self.targets_per_example() => {
                Ok((batch, self.targets_per_example(), self.classes()))
            }
            Targets::Classes(c) => Err(NnError::Shape {
                what: "class targets (one per example, or one per position of each)",
                expected: batch * self.targets_per_example(),
                got: c.len(),
            }),
            Targets::Values(_) => {
                let n = self.output_features();
                Ok((targets.len(n), 1, n))
            }
        }
    }

    /// Forward FLOPs per example (matrix products; see [`Layer::flops`]).
    pub fn flops(&self) -> u64 {
        self.chain.flops()
    }

    /// FLOPs of one training step per example: forward and backward matrix products.
    pub fn step_flops(&self) -> u64 {
        let n = self.chain.layers().len();
        self.flops() + (0..n).map(|i| self.chain.backward_flops(i)).sum::<u64>()
    }

    /// Backward FLOPs per example of top-level layer `i` (see [`Chain::backward_flops`]).
    pub fn backward_flops(&self, i: usize) -> u64 {
        self.chain.backward_flops(i)
    }

    /// Trainable values.
    pub fn param_count(&self) -> usize {
        self.layout.trainable_len()
    }

    /// Fresh values (parameters with PyTorch's default initialization, layer by layer, then
    /// buffers at their starting values), seeded by `rng`.
    pub fn init_params(&self, rng: &mut Rng) -> Vec<f32> {
        let mut values = vec![0.0; self.layout.len()];
        let (params, buffers) = values.split_at_mut(self.layout.trainable_len());
        self.chain.init(params, buffers, rng);
        values
    }

    fn check(
        &self,
        values: &[f32],
        x: &[f32],
        batch: usize,
        ws: &Workspace,
    ) -> Result<(), NnError> {
        let shape = |what, expected, got| match expected == got {
            true => Ok(()),
            false => Err(NnError::Shape {
                what,
                expected,
                got,
            }),
        };
        shape("parameters", self.layout.len(), values.len())?;
        shape("inputs", batch * self.input_features(), x.len())?;
        if let Some(first) = self.chain.layers().first() {
            first.check_input(x).map_err(NnError::Input)?;
        }
        shape(
            "workspace",
            self.chain.arena_len(ws.capacity, ws.threads),
            ws.arena.len(),
        )?;
        shape(
            "workspace scratch",
            self.chain.scratch_len(ws.capacity, ws.threads),
            ws.scratch.len(),
        )?;
        if batch > ws.capacity {
            return Err(NnError::BatchTooLarge {
                batch,
                capacity: ws.capacity,
            });
        }
        Ok(())
    }

    // x is (B, *input); returns the output (B, *output), a view into the workspace.
    /// Forward pass in evaluation mode on `batch = x.len() / input_features` rows.
    pub fn forward<'w>(
        &self,
        values: &[f32],
        x: &[f32],
        ws: &'w mut Workspace,
        pool: &Pool,
    ) -> Result<&'w [f32], NnError> {
        let batch = x.len() / self.input_features().max(1);
        self.check(values, x, batch, ws)?;
        let (params, buffers) = values.split_at(self.layout.trainable_len());
        let mut f = Forward::eval(pool, params, buffers);
        (f.batch, f.cap, f.threads) = (batch, ws.capacity, ws.threads);
        f.scratch = std::mem::take(&mut ws.scratch);
        self.chain.forward(&mut f, x, &mut ws.arena);
        ws.scratch = std::mem::take(&mut f.scratch);
        Ok(self
            .chain
            .last_output(&ws.arena, batch, ws.capacity, ws.threads))
    }

    /// Forward, loss and backward on one batch: writes the gradient of the mean loss into
    /// `grads` (laid out like the trainable parameters, `layout().trainable_len()` values)
    /// and returns the batch's loss and accuracy counts. Training mode: BatchNorm updates its
    /// running statistics in `values`.
    ///
    /// A batch larger than the workspace's capacity runs in chunks of that many rows, one
    /// forward and backward pass each, and `grads` gets their gradients weighted by their
    /// rows: the gradient of the whole batch's mean loss, the same up to the order of the
    /// sums (a chunk's dropout masks are drawn from its own stream). A workspace for a few
    /// rows keeps a large model's activations in the cache; see [`Model::chunks_batches`]
    /// for the models and losses that allow it.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step_grads(
        &self,
        values: &mut [f32],
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        grads: &mut [f32],
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        if grads.len() != self.layout.trainable_len() {
            return Err(NnError::Shape {
                what: "gradients",
                expected: self.layout.trainable_len(),
                got: grads.len(),
            });
        }
        let rows = self.rows(&targets, x.len())?;
        let batch = rows.0;
        if batch > ws.capacity && ws.capacity > 0 && self.chunks_batches(loss) {
            return self.chunked_grads(values, x, targets, loss, grads, ws, pool, rows);
        }
        let stats = self.forward_loss(values, x, targets, loss, ws, pool, None)?;
        self.backward(values, Sink::Grads(grads), x, batch, ws, pool, None);
        Ok(stats)
    }

    /// Whether [`Model::train_step_grads`] may split a batch into chunks of rows with the
    /// same gradient: no layer couples the rows of a batch (BatchNorm does) and `loss` is a
    /// mean with the same weight for every row (a class-weighted cross-entropy divides by
    /// its batch's summed weights instead).
    pub fn chunks_batches(&self, loss: &Loss) -> bool {
        let weighted = matches!(
            loss,
            Loss::CrossEntropy {
                weights: Some(_),
                ..
            } | Loss::Nll { weights: Some(_) }
        );
        !weighted && !self.chain.couples_rows()
    }

    /// [`Model::train_step_grads`] on a batch of more rows than the workspace holds: chunks
    /// of its capacity in order, the first chunk's gradient into `grads`, the others' into
    /// the workspace's chunk buffer and added, each weighted by its share of the rows.
    /// `(batch, per, outputs)` is [`Model::rows`] of the targets.
    #[allow(clippy::too_many_arguments)]
    fn chunked_grads(
        &self,
        values: &mut [f32],
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        grads: &mut [f32],
        ws: &mut Workspace,
        pool: &Pool,
        (batch, per, outputs): (usize, usize, usize),
    ) -> Result<LossStats, NnError> {
        let features = self.input_features();
        // The whole input first: an error names its place in the batch, not in a chunk, and
        // comes before any chunk has run.
        if let Some(first) = self.chain.layers().first() {
            first.check_input(x).map_err(NnError::Input)?;
        }
        let (cap, seed) = (ws.capacity, ws.seed);
        let mut acc = std::mem::take(&mut ws.chunk_grads);
        acc.resize(grads.len(), 0.0);
        let mut stats = LossStats::default();
        let mut run = || -> Result<(), NnError> {
            for (c, r0) in (0..batch).step_by(cap).enumerate() {
                let rows = (batch - r0).min(cap);
                let xc = &x[r0 * features..(r0 + rows) * features];
                let tc = match targets {
                    Targets::Classes(_) => targets.rows(r0 * per, rows * per, outputs),
                    Targets::Values(_) => targets.rows(r0, rows, outputs),
                };
                ws.seed = match c {
                    0 => seed,
                    c => crate::layer::mix_seed(seed, c),
                };
                let out = if c == 0 { &mut *grads } else { &mut acc[..] };
                stats.merge(self.forward_loss(values, xc, tc, loss, ws, pool, None)?);
                self.backward(values, Sink::Grads(out), xc, rows, ws, pool, None);
                let w = rows as f32 / batch as f32;
                match c {
                    0 => pool.split_slice(grads, 16, 1 << 14, |_, g| {
                        g.iter_mut().for_each(|g| *g *= w)
                    }),
                    _ => {
                        let acc = &acc;
                        pool.split_slice(grads, 16, 1 << 14, |start, g| {
                            let a = &acc[start..start + g.len()];
                            g.iter_mut().zip(a).for_each(|(g, a)| *g += w * a)
                        })
                    }
                }
            }
            Ok(())
        };
        let done = run();
        ws.seed = seed;
        ws.chunk_grads = acc;
        done.map(|()| stats)
    }

    /// Forward, loss, backward and the plain SGD update `p -= lr * grad` in one pass: each
    /// layer updates its parameters as soon as its input gradient has used them (a linear
    /// layer's weights by the weight-gradient product itself), so no gradient buffer is
    /// written or read again. Gives the same parameters as [`Model::train_step_grads`]
    /// followed by an SGD step.
    #[allow(clippy::too_many_arguments)]
    pub fn train_step_sgd(
        &self,
        values: &mut [f32],
        lr: f32,
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        let (batch, _, _) = self.rows(&targets, x.len())?;
        let stats = self.forward_loss(values, x, targets, loss, ws, pool, None)?;
        self.backward(values, Sink::Sgd(lr), x, batch, ws, pool, None);
        Ok(stats)
    }

    /// Checks the inputs, runs the forward pass in training mode and writes the loss
    /// gradient into the last layer's gradient slot; `times` collects each layer's seconds.
    #[allow(clippy::too_many_arguments)]
    fn forward_loss(
        &self,
        values: &mut [f32],
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        ws: &mut Workspace,
        pool: &Pool,
        times: Option<&mut [f64]>,
    ) -> Result<LossStats, NnError> {
        let (batch, _, outputs) = self.rows(&targets, x.len())?;
        self.check(values, x, batch, ws)?;
        let (params, buffers) = values.split_at_mut(self.layout.trainable_len());
        let mut f = Forward::train(pool, params, buffers, ws.seed);
        (f.batch, f.cap, f.threads) = (batch, ws.capacity, ws.threads);
        f.times = times;
        f.scratch = std::mem::take(&mut ws.scratch);
        self.chain.forward(&mut f, x, &mut ws.arena);
        ws.scratch = std::mem::take(&mut f.scratch);
        let (logits, dlogits) =
            self.chain
                .output_and_grad(&mut ws.arena, batch, ws.capacity, ws.threads);
        loss.compute(logits, targets, outputs, Some(dlogits))
    }

    #[allow(clippy::too_many_arguments)]
    fn backward(
        &self,
        values: &mut [f32],
        sink: Sink<'_>,
        x: &[f32],
        batch: usize,
        ws: &mut Workspace,
        pool: &Pool,
        times: Option<&mut [f64]>,
    ) {
        let (params, buffers) = values.split_at_mut(self.layout.trainable_len());
        let mut b = Backward {
            pool,
            batch,
            cap: ws.capacity,
            threads: ws.threads,
            params,
            sink,
            buffers,
            times,
            seed: ws.seed,
            scratch: std::mem::take(&mut ws.scratch),
        };
        self.chain.backward(&mut b, x, &mut ws.arena, None);
        ws.scratch = std::mem::take(&mut b.scratch);
    }

    /// One training step (gradients out) that adds each top-level layer's forward and
    /// backward seconds to `forward[i]` and `backward[i]` (one entry per [`Model::layers`]).
    #[allow(clippy::too_many_arguments)]
    pub fn profile_step(
        &self,
        values: &mut [f32],
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        grads: &mut [f32],
        ws: &mut Workspace,
        pool: &Pool,
        (forward, backward): (&mut [f64], &mut [f64]),
    ) -> Result<LossStats, NnError> {
        let n = self.chain.layers().len();
        if forward.len() != n || backward.len() != n || grads.len() != self.param_count() {
            return Err(NnError::Shape {
                what: "timing slots or gradients",
                expected: n,
                got: forward.len(),
            });
        }
        let (batch, _, _) = self.rows(&targets, x.len())?;
        let stats = self.forward_loss(values, x, targets, loss, ws, pool, Some(forward))?;
        let sink = Sink::Grads(grads);
        self.backward(values, sink, x, batch, ws, pool, Some(backward));
        Ok(stats)
    }

    /// Loss and accuracy over a whole data set (evaluation mode), `x` holding one row per
    /// target, in batches of the workspace's capacity.
    pub fn evaluate(
        &self,
        values: &[f32],
        x: &[f32],
        targets: Targets<'_>,
        loss: &Loss,
        ws: &mut Workspace,
        pool: &Pool,
    ) -> Result<LossStats, NnError> {
        let features = self.input_features();
        let (n, per, outputs) = self.rows(&targets, x.len())?;
        if x.len() != n * features {
            return Err(NnError::Shape {
                what: "inputs",
                expected: n * features,
                got: x.len(),
            });
        }
        let mut total = LossStats::default();
        let cap = ws.capacity.max(1);
        let mut start = 0;
        while start < n {
            let rows = cap.min(n - start);
            let out = self.forward(
                values,
                &x[start * features..(start + rows) * features],
                ws,
                pool,
            )?;
            let t = targets.rows(start * per, rows * per, outputs);
            total.merge(loss.compute(out, t, outputs, None)?);
            start += rows;
        }
        Ok(total)
    }
}
