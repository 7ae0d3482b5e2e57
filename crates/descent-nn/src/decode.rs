//! Token-by-token decoding of a GPT-shaped model with a key/value cache, and sampling.
//!
//! A model of [`ModelSpec::gpt`]'s shape (token and position embeddings, residual blocks of
//! `[layer_norm, linear, causal_self_attention, linear]` and `[layer_norm, linear,
//! activation, linear]`, a final layer norm and a head) runs one position at a time: each
//! block keeps the keys and values of the positions before, so a new token costs one row
//! through every matrix instead of a forward pass over the whole window. The logits equal
//! the full forward pass's at that position (tested).

use descent_tensor::{matmul_serial, MatMut, MatRef, Rng};

use crate::{Activation, LayerSpec, Model, NnError};

/// A linear layer's weight (`out x in`) and bias offsets in the values.
#[derive(Clone, Copy, Debug)]
struct Lin {
    weight: usize,
    bias: Option<usize>,
    out: usize,
    inp: usize,
}

/// A layer norm's offsets and epsilon.
#[derive(Clone, Copy, Debug)]
struct Norm {
    weight: Option<usize>,
    bias: Option<usize>,
    eps: f32,
}

#[derive(Clone, Debug)]
struct Block {
    ln1: Norm,
    qkv: Lin,
    heads: usize,
    proj: Lin,
    ln2: Norm,
    fc: Lin,
    act: Activation,
    fc_proj: Lin,
}

/// The decoding plan of a GPT-shaped model: where each tensor lives in its values.
#[derive(Clone, Debug)]
pub struct Decoder {
    vocab: usize,
    width: usize,
    block: usize,
    wte: usize,
    wpe: usize,
    blocks: Vec<Block>,
    ln_f: Norm,
    head: Lin,
}

/// The keys and values of the positions decoded so far, per block.
#[derive(Clone, Debug)]
pub struct Cache {
    /// Positions held.
    len: usize,
    /// Per block: `block x width` keys, then values.
    kv: Vec<(Vec<f32>, Vec<f32>)>,
}

fn not_gpt(why: impl Into<String>) -> NnError {
    NnError::Spec {
        at: "the model".into(),
        why: format!(
            "{}: decoding takes a GPT-shaped model (embedding, position_embedding, residual \
             blocks of [layer_norm, linear, causal_self_attention, linear] and [layer_norm, \
             linear, activation, linear], layer_norm, linear), as `ModelSpec::gpt` builds",
            why.into()
        ),
    }
}

impl Decoder {
    /// The plan for `model`, or why it is not GPT-shaped.
    pub fn new(model: &Model) -> Result<Self, NnError> {
        let spec = model.spec();
        let layout = model.layout();
        let off = |name: String| {
            layout
                .get(&name)
                .map(|v| v.offset)
                .ok_or_else(|| not_gpt(format!("it has no `{name}`")))
        };
        let [LayerSpec::Embedding {
            name: te,
            num_embeddings: vocab,
            embedding_dim: width,
        }, LayerSpec::PositionEmbedding {
            name: pe,
            num_embeddings: block,
        }, rest @ ..] = spec.layers.as_slice()
        else {
            return Err(not_gpt(
                "it does not start with embedding, position_embedding",
            ));
        };
        let name = |n: &Option<String>, i: usize| n.clone().unwrap_or_else(|| i.to_string());
        let wte = off(format!("{}.weight", name(te, 0)))?;
        let wpe = off(format!("{}.weight", name(pe, 1)))?;
        let prefix = |p: &str, n: &Option<String>, i: usize| format!("{p}{}", name(n, i));
        let lin = |full: String, inp: usize| -> Result<Lin, NnError> {
            let v = layout
                .get(&format!("{full}.weight"))
                .ok_or_else(|| not_gpt(format!("it has no `{full}.weight`")))?;
            if v.shape.len() != 2 || v.shape[1] != inp {
                return Err(not_gpt(format!("`{full}.weight` is not [_, {inp}]")));
            }
            Ok(Lin {
                weight: v.offset,
                bias: layout.get(&format!("{full}.bias")).map(|b| b.offset),
                out: v.shape[0],
                inp,
            })
        };
        let norm = |full: String, spec: &LayerSpec| -> Result<Norm, NnError> {
            let LayerSpec::LayerNorm { eps, .. } = spec else {
                return Err(not_gpt(format!("`{full}` is not a layer_norm")));
            };
            Ok(Norm {
                weight: layout.get(&format!("{full}.weight")).map(|v| v.offset),
                bias: layout.get(&format!("{full}.bias")).map(|v| v.offset),
                eps: *eps,
            })
        };
        let d = *width;
        let mut blocks = Vec::new();
        let mut i = 0;
        while i + 1 < rest.len() {
            let (
                LayerSpec::Residual {
                    name: n1, body: b1, ..
                },
                LayerSpec::Residual {
                    name: n2, body: b2, ..
                },
            ) = (&rest[i], &rest[i + 1])
            else {
                break;
            };
            let (p1, p2) = (
                format!("{}.", name(n1, i + 2)),
                format!("{}.", name(n2, i + 3)),
            );
            let [l1, q, LayerSpec::CausalSelfAttention { heads }, pr] = b1.as_slice() else {
                return Err(not_gpt(format!(
                    "block `{p1}` is not [layer_norm, linear, causal_self_attention, linear]"
                )));
            };
            let [l2, f1, a, f2] = b2.as_slice() else {
                return Err(not_gpt(format!(
                    "block `{p2}` is not [layer_norm, linear, activation, linear]"
                )));
            };
            let Some(act) = a.activation() else {
                return Err(not_gpt(format!(
                    "block `{p2}` has no activation in its third place"
                )));
            };
            let ln1 = norm(prefix(&p1, &l1.name_of(), 0), l1)?;
            let qkv = lin(prefix(&p1, &q.name_of(), 1), d)?;
            let proj = lin(prefix(&p1, &pr.name_of(), 3), d)?;
            let ln2 = norm(prefix(&p2, &l2.name_of(), 0), l2)?;
            let fc = lin(prefix(&p2, &f1.name_of(), 1), d)?;
            let fc_proj = lin(prefix(&p2, &f2.name_of(), 3), fc.out)?;
            if qkv.out != 3 * d || proj.out != d || fc_proj.out != d {
                return Err(not_gpt(format!("block `{p1}` does not keep the width {d}")));
            }
            blocks.push(Block {
                ln1,
                qkv,
                heads: *heads,
                proj,
                ln2,
                fc,
                act,
                fc_proj,
            });
            i += 2;
        }
        let [lnf, LayerSpec::Linear {
            name: hn,
            tie,
            out_features,
            ..
        }] = &rest[i..]
        else {
            return Err(not_gpt("it does not end with layer_norm, linear"));
        };
        let ln_f = norm(name(&lnf.name_of(), i + 2), lnf)?;
        let head = match tie {
            Some(t) => Lin {
                weight: off(format!("{t}.weight"))?,
                bias: layout
                    .get(&format!("{}.bias", name(hn, i + 3)))
                    .map(|v| v.offset),
                out: *out_features,
                inp: d,
            },
            None => lin(name(hn, i + 3), d)?,
        };
        Ok(Self {
            vocab: *vocab,
            width: d,
            block: *block,
            wte,
            wpe,
            blocks,
            ln_f,
            head,
        })
    }

    /// The vocabulary size.
    pub fn vocab(&self) -> usize {
        self.vocab
    }

    /// The longest context (the position table's rows).
    pub fn context(&self) -> usize {
        self.block
    }

    /// An empty cache.
    pub fn cache(&self) -> Cache {
        let n = self.block * self.width;
        Cache {
            len: 0,
            kv: self
                .blocks
                .iter()
                .map(|_| (vec![0.0; n], vec![0.0; n]))
                .collect(),
        }
    }

    /// Feeds `token` at the next position of `cache` and returns the logits for the token
    /// after it. The cache must have room (`cache.len() < context()`).
    pub fn step(&self, values: &[f32], cache: &mut Cache, token: u32) -> Result<Vec<f32>, NnError> {
        let (d, t) = (self.width, cache.len);
        if t >= self.block {
            return Err(NnError::Input(format!(
                "the cache holds the model's whole context of {} positions: start a new one",
                self.block
            )));
        }
        if token as usize >= self.vocab {
            return Err(NnError::Input(format!(
                "token {token} is not below the vocabulary of {}",
                self.vocab
            )));
        }
        let row = |off: usize, i: usize| &values[off + i * d..off + (i + 1) * d];
        let mut x: Vec<f32> = row(self.wte, token as usize)
            .iter()
            .zip(row(self.wpe, t))
            .map(|(a, b)| a + b)
            .collect();
        for (b, (keys, vals)) in self.blocks.iter().zip(cache.kv.iter_mut()) {
            let h = layer_norm(values, &x, b.ln1);
            let qkv = linear(values, &h, b.qkv);
            keys[t * d..(t + 1) * d].copy_from_slice(&qkv[d..2 * d]);
            vals[t * d..(t + 1) * d].copy_from_slice(&qkv[2 * d..]);
            let dh = d / b.heads;
            let scale = 1.0 / (dh as f32).sqrt();
            let mut att = vec![0.0; d];
            for head in 0..b.heads {
                let q = &qkv[head * dh..(head + 1) * dh];
                let mut s: Vec<f32> = (0..=t)
                    .map(|j| {
                        let k = &keys[j * d + head * dh..j * d + (head + 1) * dh];
                        q.iter().zip(k).map(|(a, b)| a * b).sum::<f32>() * scale
                    })
                    .collect();
                let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                s.iter_mut().for_each(|v| *v -= max);
                descent_tensor::vmath::exp(&mut s);
                let z: f32 = s.iter().sum();
                let o = &mut att[head * dh..(head + 1) * dh];
                for (j, p) in s.iter().enumerate() {
                    let v = &vals[j * d + head * dh..j * d + (head + 1) * dh];
                    o.iter_mut().zip(v).for_each(|(o, v)| *o += p / z * v);
                }
            }
            let a = linear(values, &att, b.proj);
            x.iter_mut().zip(&a).for_each(|(x, a)| *x += a);
            let h = layer_norm(values, &x, b.ln2);
            let mut m = linear(values, &h, b.fc);
            b.act.forward(&mut m);
            let m = linear(values, &m, b.fc_proj);
            x.iter_mut().zip(&m).for_each(|(x, m)| *x += m);
        }
        cache.len += 1;
        let h = layer_norm(values, &x, self.ln_f);
        Ok(linear(values, &h, self.head))
    }
}

impl Cache {
    /// Positions decoded so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was decoded yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

fn linear(values: &[f32], x: &[f32], l: Lin) -> Vec<f32> {
    let mut y = match l.bias {
        Some(b) => values[b..b + l.out].to_vec(),
        None => vec![0.0; l.out],
    };
    let w = MatRef::new(&values[l.weight..l.weight + l.out * l.inp], l.out, l.inp).expect("fits");
    let beta = if l.bias.is_some() { 1.0 } else { 0.0 };
    matmul_serial(
        MatMut::new(&mut y, 1, l.out).expect("fits"),
        MatRef::new(x, 1, l.inp).expect("fits"),
        w.t(),
        1.0,
        beta,
    );
    y
}

fn layer_norm(values: &[f32], x: &[f32], n: Norm) -> Vec<f32> {
    let d = x.len() as f32;
    let mu = descent_tensor::sum(x) / d;
    let var = x.iter().map(|v| (v - mu) * (v - mu)).sum::<f32>() / d;
    let inv = 1.0 / (var + n.eps).sqrt();
    x.iter()
        .enumerate()
        .map(|(i, v)| {
            let h = (v - mu) * inv;
            let g = n.weight.map_or(1.0, |w| values[w + i]);
            let b = n.bias.map_or(0.0, |b| values[b + i]);
            h * g + b
        })
        .collect()
}

/// How the next token is drawn from the logits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Divides the logits (0: always the most likely token).
    pub temperature: f32,
    /// Keep only the `k` most likely tokens (0: all).
    pub top_k: usize,
    /// Keep the fewest most likely tokens whose probabilities reach `p` (1: all).
    pub top_p: f32,
}

impl Sampling {
    /// A token drawn from `logits` with `rng`.
    pub fn draw(&self, logits: &[f32], rng: &mut Rng) -> u32 {
        let best = logits
            .iter()
            .enumerate()
            .fold(0, |b, (i, &v)| if v > logits[b] { i } else { b });
        if self.temperature <= 0.0 {
            return best as u32;
        }
        let mut order: Vec<usize> = (0..logits.len()).collect();
        order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
        if self.top_k > 0 {
            order.truncate(self.top_k.max(1));
        }
        let max = logits[order[0]];
        let mut probs: Vec<f64> = order
            .iter()
            .map(|&i| (((logits[i] - max) / self.temperature) as f64).exp())
            .collect();
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= z);
        if self.top_p < 1.0 {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|p| {
                    acc += p;
                    acc >= self.top_p as f64
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            order.truncate(keep);
            let z: f64 = probs.iter().sum();
            probs.iter_mut().for_each(|p| *p /= z);
        }
        let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let mut acc = 0.0;
        for (&i, p) in order.iter().zip(&probs) {
            acc += p;
            if u < acc {
                return i as u32;
            }
        }
        *order.last().expect("at least one token") as u32
    }
}

#[cfg(test)]
mod tests {
    use descent_tensor::Pool;

    use super::*;
    use crate::{GptSize, ModelSpec, Workspace};

    /// Position by position, the cached decoder's logits equal the full forward pass's.
    #[test]
    fn cached_steps_give_the_forward_pass_logits() {
        let size = GptSize {
            layers: 2,
            heads: 2,
            width: 8,
            block: 6,
        };
        let m = ModelSpec::gpt(11, size).build().unwrap();
        let values = m.init_params(&mut Rng::new(4));
        let tokens = [3u32, 1, 4, 1, 5, 9];
        let x: Vec<f32> = tokens.iter().map(|&t| t as f32).collect();
        let pool = Pool::new(1).unwrap();
        let mut ws = Workspace::new(&m, 1, 1);
        let full = m.forward(&values, &x, &mut ws, &pool).unwrap().to_vec();
        let dec = Decoder::new(&m).unwrap();
        let mut cache = dec.cache();
        for (t, &tok) in tokens.iter().enumerate() {
            let logits = dec.step(&values, &mut cache, tok).unwrap();
            for (a, b) in logits.iter().zip(&full[t * 11..(t + 1) * 11]) {
                assert!(
                    (a - b).abs() < 1e-4 * (1.0 + b.abs()),
                    "position {t}: {a} vs {b}"
                );
            }
        }
        assert!(
            dec.step(&values, &mut cache, 0).is_err(),
            "the context is full"
        );
        let mlp = Model::mlp(4, &[3], 2, Activation::Relu, 0.0).unwrap();
        assert!(Decoder::new(&mlp)
            .unwrap_err()
            .to_string()
            .contains("GPT-shaped"));
    }

    /// Temperature 0 takes the most likely token; top-k 1 too; sampling follows the seed.
    #[test]
    fn sampling_rules() {
        let logits = [0.1, 2.0, -1.0, 1.9];
        let mut rng = Rng::new(1);
        let greedy = Sampling {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
        };
        assert_eq!(greedy.draw(&logits, &mut rng), 1);
        let k1 = Sampling {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
        };
        assert!((0..20).all(|_| k1.draw(&logits, &mut rng) == 1));
        let p = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.5,
        };
        // Token 1 alone holds 44% of the mass; with token 3 over half: only 1 and 3.
        assert!((0..200).all(|_| [1, 3].contains(&p.draw(&logits, &mut rng))));
        let all = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
        };
        let a: Vec<u32> = (0..30)
            .map(|_| all.draw(&logits, &mut Rng::new(9)))
            .collect();
        let b: Vec<u32> = (0..30)
            .map(|_| all.draw(&logits, &mut Rng::new(9)))
            .collect();
        assert_eq!(a, b);
        let mut r = Rng::new(2);
        let seen: std::collections::BTreeSet<u32> =
            (0..400).map(|_| all.draw(&logits, &mut r)).collect();
        assert_eq!(seen.len(), 4, "every token is drawn sometimes");
    }
}
