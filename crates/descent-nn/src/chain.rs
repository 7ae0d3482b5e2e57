//! Layers run in order over one arena of activations: the body of a model and of a residual
//! block.
//!
//! The arena holds, per layer, its output (`cap x out`), the gradient w.r.t. that output
//! (same size) and the layer's workspace, back to back. Offsets are computed as the passes
//! walk the layers, so nothing is allocated during a step.

use descent_tensor::Rng;

use crate::layer::{mix_seed, numel, Backward, Forward, Layer};

/// A sequence of layers from an input shape.
#[derive(Debug)]
pub struct Chain {
    input: Vec<usize>,
    layers: Vec<Box<dyn Layer>>,
}

impl Chain {
    /// An empty chain (the identity) on inputs of `input` shape.
    pub fn new(input: Vec<usize>) -> Self {
        Self {
            input,
            layers: Vec::new(),
        }
    }

    /// Appends a layer built for the current output shape.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        self.layers.push(layer);
    }

    /// Tells the layer that owns the parameter at `offset` that a later layer shares it (see
    /// [`Layer::share`]); whether one did.
    pub fn share(&mut self, offset: usize) -> bool {
        self.layers.iter_mut().any(|l| l.share(offset))
    }

    /// The layers in order.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }

    /// Shape of one input example.
    pub fn input_shape(&self) -> &[usize] {
        &self.input
    }

    /// Shape of one output example (the input's for an empty chain).
    pub fn output_shape(&self) -> &[usize] {
        self.layers.last().map_or(&self.input, |l| l.output_shape())
    }

    /// Trainable values of every layer.
    pub fn param_count(&self) -> usize {
        self.layers.iter().map(|l| l.param_count()).sum()
    }

    /// Forward FLOPs per example (see [`Layer::flops`]).
    pub fn flops(&self) -> u64 {
        self.layers.iter().map(|l| l.flops()).sum()
    }

    /// Backward FLOPs per example of layer `i` as this chain runs it: twice the forward's
    /// (weight and input gradients), once when its input gradient is not needed (nothing
    /// before it learns).
    pub fn backward_flops(&self, i: usize) -> u64 {
        let needs_dx = self.layers[..i].iter().any(|p| p.param_count() > 0);
        let f = self.layers[i].flops();
        if needs_dx || self.layers[i].param_count() == 0 {
            2 * f
        } else {
            f
        }
    }

    /// Whether layer `i` is a view ([`Layer::is_view`]) that runs as none: not the first or
    /// the last (those copy, so that the chain's input and output stay where they are).
    fn elided(&self, i: usize) -> bool {
        i > 0 && i + 1 < self.layers.len() && self.layers[i].is_view()
    }

    /// The layer whose region holds layer `i`'s output (and its gradient): itself, or for an
    /// elided view the nearest layer before it that is not one.
    fn storage(&self, mut i: usize) -> usize {
        while self.elided(i) {
            i -= 1;
        }
        i
    }

    fn region(&self, i: usize, cap: usize, threads: usize) -> usize {
        if self.elided(i) {
            return 0;
        }
        let l = &self.layers[i];
        2 * cap * numel(l.output_shape()) + l.workspace_len(cap, threads)
    }

    /// Scratch values the layers share ([`Layer::scratch_len`]): the most any asks for.
    pub fn scratch_len(&self, cap: usize, threads: usize) -> usize {
        self.layers
            .iter()
            .map(|l| l.scratch_len(cap, threads))
            .max()
            .unwrap_or(0)
    }

    /// Turns activation recomputation on or off in every layer that offers it (see
    /// [`Layer::set_recompute`]); how many changed.
    pub fn set_recompute(&mut self, on: bool) -> usize {
        self.layers.iter_mut().map(|l| l.set_recompute(on)).sum()
    }

    /// Sets the precision of every layer's matrix products that offer one (see
    /// [`Layer::set_precision`]); how many took it.
    pub fn set_precision(&mut self, precision: descent_tensor::Precision) -> usize {
        self.layers
            .iter_mut()
            .map(|l| l.set_precision(precision))
            .sum()
    }

    /// Whether any layer couples the rows of a batch (see [`Layer::couples_rows`]).
    pub fn couples_rows(&self) -> bool {
        self.layers.iter().any(|l| l.couples_rows())
    }

    /// Arena values for batches of up to `cap` rows on `threads` threads.
    pub fn arena_len(&self, cap: usize, threads: usize) -> usize {
        (0..self.layers.len())
            .map(|i| self.region(i, cap, threads))
            .sum()
    }

    /// Initializes every layer's parameters and buffers in order.
    pub fn init(&self, params: &mut [f32], buffers: &mut [f32], rng: &mut Rng) {
        for l in &self.layers {
            l.init(params, buffers, rng);
        }
    }

    fn offset_of(&self, i: usize, cap: usize, threads: usize) -> usize {
        (0..i).map(|j| self.region(j, cap, threads)).sum()
    }

    /// The output of the last layer after a forward pass on `batch` rows. Panics on an
    /// empty chain.
    pub fn last_output<'a>(
        &self,
        arena: &'a [f32],
        batch: usize,
        cap: usize,
        threads: usize,
    ) -> &'a [f32] {
        let k = self.layers.len();
        assert!(k > 0, "an empty chain has no output of its own");
        let start = self.offset_of(k - 1, cap, threads);
        &arena[start..start + batch * numel(self.output_shape())]
    }

    /// The gradient slot of the output (where the loss gradient goes before `backward`).
    /// Panics on an empty chain.
    pub fn output_grad<'a>(
        &self,
        arena: &'a mut [f32],
        batch: usize,
        cap: usize,
        threads: usize,
    ) -> &'a mut [f32] {
        let k = self.layers.len();
        assert!(k > 0, "an empty chain has no gradient slot");
        let start = self.offset_of(k - 1, cap, threads);
        let out = numel(self.layers[k - 1].output_shape());
        &mut arena[start + cap * out..start + cap * out + batch * out]
    }

    /// The output of the last layer and its gradient slot, together (a loss reads the one
    /// and writes the other). Panics on an empty chain.
    pub fn output_and_grad<'a>(
        &self,
        arena: &'a mut [f32],
        batch: usize,
        cap: usize,
        threads: usize,
    ) -> (&'a [f32], &'a mut [f32]) {
        let k = self.layers.len();
        assert!(k > 0, "an empty chain has no gradient slot");
        let start = self.offset_of(k - 1, cap, threads);
        let out = numel(self.layers[k - 1].output_shape());
        let (y, g) = arena[start..start + 2 * cap * out].split_at_mut(cap * out);
        (&y[..batch * out], &mut g[..batch * out])
    }

    // x is (B, *input); each layer's output lands in its region of the arena.
    /// Runs every layer forward.
    pub fn forward(&self, f: &mut Forward<'_>, x: &[f32], arena: &mut [f32]) {
        let base_seed = f.seed;
        // Only this chain's own layers are timed: nested chains see no clock.
        let mut times = f.times.take();
        let mut start = 0;
        let mut prev: Option<(usize, usize)> = None; // (offset, len) of the previous output
        for (i, l) in self.layers.iter().enumerate() {
            if self.elided(i) {
                continue;
            }
            let out_n = f.cap * numel(l.output_shape());
            let ws_n = l.workspace_len(f.cap, f.threads);
            let (before, rest) = arena.split_at_mut(start);
            let input = match prev {
                None => x,
                Some((off, len)) => &before[off..off + len],
            };
            let (y, rest) = rest.split_at_mut(out_n);
            let ws = &mut rest[out_n..out_n + ws_n];
            f.seed = mix_seed(base_seed, i);
            let clock = times.is_some().then(std::time::Instant::now);
            l.forward(f, input, y, ws);
            if let (Some(t), Some(c)) = (times.as_deref_mut(), clock) {
                t[i] += c.elapsed().as_secs_f64();
            }
            prev = Some((start, out_n));
            start += 2 * out_n + ws_n;
        }
        f.seed = base_seed;
        f.times = times;
    }

    // x is (B, *input); dx, when given, is (B, *input).
    /// Runs every layer backward from the gradient in the last layer's slot (see
    /// [`Chain::output_grad`]). The input gradient of a layer is computed only where it is
    /// needed: for `dx`, or for a layer before it that has parameters.
    pub fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        arena: &mut [f32],
        mut dx: Option<&mut [f32]>,
    ) {
        let (cap, threads) = (b.cap, b.threads);
        let mut end: usize = (0..self.layers.len())
            .map(|i| self.region(i, cap, threads))
            .sum();
        let wants_dx = dx.is_some();
        let mut times = b.times.take();
        let base_seed = b.seed;
        for i in (0..self.layers.len()).rev() {
            if self.elided(i) {
                continue;
            }
            let clock = times.is_some().then(std::time::Instant::now);
            let l = &self.layers[i];
            let start = end - self.region(i, cap, threads);
            let out_n = cap * numel(l.output_shape());
            let (before, rest) = arena.split_at_mut(start);
            let (y, rest) = rest.split_at_mut(out_n);
            let (dy, rest) = rest.split_at_mut(out_n);
            let ws = &mut rest[..l.workspace_len(cap, threads)];
            let needed = wants_dx || self.layers[..i].iter().any(|p| p.param_count() > 0);
            // The stream the layer's forward pass had.
            b.seed = mix_seed(base_seed, i);
            if i == 0 {
                let dx = if needed { dx.as_deref_mut() } else { None };
                l.backward(b, x, y, dy, dx, ws);
            } else {
                // The input is the output of the layer that stores it (before any elided
                // views: they change no value).
                let s = self.storage(i - 1);
                let p_n = cap * numel(self.layers[s].output_shape());
                let p_start = self.offset_of(s, cap, threads);
                let (px, pdx) = before[p_start..p_start + 2 * p_n].split_at_mut(p_n);
                l.backward(b, px, y, dy, needed.then_some(pdx), ws);
            }
            if let (Some(t), Some(c)) = (times.as_deref_mut(), clock) {
                t[i] += c.elapsed().as_secs_f64();
            }
            end = start;
        }
        b.seed = base_seed;
        b.times = times;
    }
}
