//! Embeddings: PyTorch's `nn.Embedding` (token ids to vectors) and a learned position
//! embedding added to a sequence (GPT-2's `wpe`).

use descent_tensor::Rng;

use crate::layer::{numel, Backward, Forward, Layer};
use crate::par::images;
use crate::LayoutBuilder;

/// `nn.Embedding(num_embeddings, embedding_dim)`: each input value is a token id (a whole
/// number below `num_embeddings`, held as f32) and becomes row `id` of the weight. Inputs are
/// `(N, L)` ids, outputs `(N, L, D)`.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// Rows of the table (the vocabulary).
    pub num_embeddings: usize,
    /// Width of a row.
    pub embedding_dim: usize,
    /// Offset of the weight `[num_embeddings, embedding_dim]`.
    pub weight: usize,
    /// A later layer (a tied output head) reads the weight too and puts its gradient first:
    /// this layer then adds its own.
    pub shared: bool,
    shape: Vec<usize>,
}

impl Embedding {
    /// Declares `name.weight` for inputs of `input` shape (ids; any shape).
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        num_embeddings: usize,
        embedding_dim: usize,
    ) -> Self {
        let weight = b.param(
            b.qualify(&format!("{name}.weight")),
            vec![num_embeddings, embedding_dim],
        );
        let mut shape = input.to_vec();
        shape.push(embedding_dim);
        Self {
            num_embeddings,
            embedding_dim,
            weight,
            shared: false,
            shape,
        }
    }

    fn ids(&self) -> usize {
        numel(&self.shape) / self.embedding_dim
    }
}

impl Layer for Embedding {
    fn kind(&self) -> &'static str {
        "Embedding"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        format!("Embedding({}, {})", self.num_embeddings, self.embedding_dim)
    }

    fn param_count(&self) -> usize {
        self.num_embeddings * self.embedding_dim
    }

    fn workspace_len(&self, _cap: usize, threads: usize) -> usize {
        // Each thread's share of the weight gradient.
        threads * self.param_count()
    }

    fn share(&mut self, offset: usize) -> bool {
        self.shared |= offset == self.weight;
        offset == self.weight
    }

    fn check_input(&self, x: &[f32]) -> Result<(), String> {
        match x
            .iter()
            .position(|&v| !(v >= 0.0 && v.fract() == 0.0 && (v as usize) < self.num_embeddings))
        {
            None => Ok(()),
            Some(i) => Err(format!(
                "input value {i} is {}, not a token id: ids are whole numbers in 0..{}",
                x[i], self.num_embeddings
            )),
        }
    }

    /// PyTorch's default: the weight drawn from N(0, 1).
    fn init(&self, params: &mut [f32], _buffers: &mut [f32], rng: &mut Rng) {
        for v in &mut params[self.weight..self.weight + self.param_count()] {
            *v = rng.normal();
        }
    }

    // x is (B, L) ids, y is (B, L, D): y[b, l] = W[x[b, l]].
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let d = self.embedding_dim;
        let w = &f.params[self.weight..self.weight + self.param_count()];
        let n = f.batch * self.ids();
        for (row, &id) in y[..n * d].chunks_exact_mut(d).zip(&x[..n]) {
            let id = id as usize;
            row.copy_from_slice(&w[id * d..(id + 1) * d]);
        }
    }

    // dy is (B, L, D): dW[id] += dy[b, l] for every position holding id. No input gradient.
    fn backward(
        &self,
        b: &mut Backward<'_>,
        x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        _dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let d = self.embedding_dim;
        let n = b.batch * self.ids();
        let len = self.param_count();
        let parts = b.threads.min(n).max(1);
        let scratch = crate::par::Scratch::new(&mut ws[..parts * len]);
        let (x, dy) = (&x[..n], &dy[..n * d]);
        // Each thread sums the rows of its positions; the parts are added in order.
        b.pool.run(parts, |p| {
            let (start, end) = images(n, parts, p);
            // SAFETY: part p uses its own block of the scratch.
            let g = unsafe { scratch.part(p * len, len) };
            g.fill(0.0);
            for (i, &id) in x.iter().enumerate().take(end).skip(start) {
                let id = id as usize;
                let row = &dy[i * d..(i + 1) * d];
                g[id * d..(id + 1) * d]
                    .iter_mut()
                    .zip(row)
                    .for_each(|(g, v)| *g += v);
            }
        });
        let (first, rest) = ws[..parts * len].split_at_mut(len);
        for p in 1..parts {
            let other = &rest[(p - 1) * len..p * len];
            first.iter_mut().zip(other).for_each(|(a, b)| *a += b);
        }
        if self.shared {
            b.add(self.weight, first);
        } else {
            b.put(self.weight, first);
        }
    }
}

/// A learned position embedding added to a sequence: `y[b, l] = x[b, l] + W[l]`, the
/// weight `[num_embeddings, D]` (GPT-2's `wpe`, in PyTorch `x + nn.Embedding(T, D)(arange(L))`).
/// Inputs and outputs are `(N, L, D)`, `L <= num_embeddings`.
#[derive(Clone, Debug)]
pub struct PositionEmbedding {
    /// Rows of the table (the longest sequence).
    pub num_embeddings: usize,
    /// Offset of the weight.
    pub weight: usize,
    shape: Vec<usize>,
}

impl PositionEmbedding {
    /// Declares `name.weight` for `(L, D)` inputs.
    pub fn build(
        b: &mut LayoutBuilder,
        name: &str,
        input: &[usize],
        num_embeddings: usize,
    ) -> Self {
        let d = input[input.len() - 1];
        let weight = b.param(
            b.qualify(&format!("{name}.weight")),
            vec![num_embeddings, d],
        );
        Self {
            num_embeddings,
            weight,
            shape: input.to_vec(),
        }
    }

    fn width(&self) -> usize {
        self.shape[self.shape.len() - 1]
    }
}

impl Layer for PositionEmbedding {
    fn kind(&self) -> &'static str {
        "PositionEmbedding"
    }

    fn output_shape(&self) -> &[usize] {
        &self.shape
    }

    fn summary(&self) -> String {
        format!(
            "PositionEmbedding({}, {})",
            self.num_embeddings,
            self.width()
        )
    }

    fn param_count(&self) -> usize {
        self.num_embeddings * self.width()
    }

    fn workspace_len(&self, _cap: usize, _threads: usize) -> usize {
        self.param_count()
    }

    /// PyTorch's `nn.Embedding` default: N(0, 1).
    fn init(&self, params: &mut [f32], _buffers: &mut [f32], rng: &mut Rng) {
        for v in &mut params[self.weight..self.weight + self.param_count()] {
            *v = rng.normal();
        }
    }

    // x and y are (B, L, D).
    fn forward(&self, f: &mut Forward<'_>, x: &[f32], y: &mut [f32], _ws: &mut [f32]) {
        let per = numel(&self.shape);
        let w = &f.params[self.weight..self.weight + per];
        for (yb, xb) in y[..f.batch * per]
            .chunks_exact_mut(per)
            .zip(x.chunks_exact(per))
        {
            for ((y, x), w) in yb.iter_mut().zip(xb).zip(w) {
                *y = x + w;
            }
        }
    }

    // dx = dy; dW[l] = Σ_b dy[b, l] (rows past L get zero).
    fn backward(
        &self,
        b: &mut Backward<'_>,
        _x: &[f32],
        _y: &[f32],
        dy: &mut [f32],
        dx: Option<&mut [f32]>,
        ws: &mut [f32],
    ) {
        let per = numel(&self.shape);
        let g = &mut ws[..self.param_count()];
        g.fill(0.0);
        for db in dy[..b.batch * per].chunks_exact(per) {
            g[..per].iter_mut().zip(db).for_each(|(g, v)| *g += v);
        }
        if let Some(dx) = dx {
            dx[..b.batch * per].copy_from_slice(&dy[..b.batch * per]);
        }
        b.put(self.weight, g);
    }
}
