//! Models described, not hard-coded: a [`ModelSpec`] is an input shape and a list of
//! [`LayerSpec`]s (residual blocks nest lists), read from TOML or JSON and stored as JSON in
//! weights files, so that a file rebuilds its own model. Presets build the usual ones.
//!
//! ```
//! use descent_nn::ModelSpec;
//!
//! let spec = ModelSpec::from_value(serde_json::json!({
//!     "input": [1, 28, 28],
//!     "layers": [
//!         {"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel": 3},
//!         {"type": "relu"},
//!         {"type": "max_pool2d", "kernel": 2},
//!         {"type": "flatten"},
//!         {"type": "linear", "name": "fc", "out_features": 10},
//!     ],
//! }))
//! .unwrap();
//! let model = spec.build().unwrap();
//! assert_eq!(model.output_shape(), &[10]);
//! assert!(model.layout().get("conv1.weight").is_some());
//! ```

use serde::{Deserialize, Serialize};

use crate::attention::CausalSelfAttention;
use crate::chain::Chain;
use crate::conv::{Conv2d, Window};
use crate::dropout::{Dropout, Flatten};
use crate::embedding::{Embedding, PositionEmbedding};
use crate::layer::{numel, Layer};
use crate::norm::{BatchNorm, LayerNorm};
use crate::pool2d::{Pool2d, PoolKind};
use crate::residual::Residual;
use crate::{Activation, ActivationLayer, LayoutBuilder, Linear, LogSoftmax, Model, NnError};

/// A size given as one number for both axes or as `[height, width]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Pair {
    /// The same along both axes.
    One(usize),
    /// Height, then width.
    Two([usize; 2]),
}

impl Pair {
    /// `(height, width)`.
    pub fn hw(self) -> (usize, usize) {
        match self {
            Pair::One(v) => (v, v),
            Pair::Two([h, w]) => (h, w),
        }
    }
}

fn one() -> Pair {
    Pair::One(1)
}
fn zero() -> Pair {
    Pair::One(0)
}
fn yes() -> bool {
    true
}
fn half() -> f32 {
    0.5
}
fn bn_momentum() -> f32 {
    0.1
}
fn norm_eps() -> f32 {
    1e-5
}
fn leaky_slope() -> f32 {
    0.01
}
fn is_true(b: &bool) -> bool {
    *b
}

/// GELU's form.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeluApprox {
    /// The exact form with erf (PyTorch's default).
    #[default]
    None,
    /// The tanh approximation.
    Tanh,
}

/// One layer of a model description, with PyTorch's defaults. `name` is the layer's prefix
/// in parameter names (`conv1` gives `conv1.weight`); without one, the layer's position in
/// its list is used, as in `nn.Sequential` (`0.weight`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum LayerSpec {
    /// `nn.Linear(in, out_features, bias)` on the last dimension.
    Linear {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Input features: optional, checked against the layer before when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_features: Option<usize>,
        /// Output features.
        out_features: usize,
        /// Whether it has a bias.
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
        /// The name of an earlier `embedding` whose weight (`[out_features, in]`) this layer
        /// uses as its own (weight tying: a language model's head reads the token table).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tie: Option<String>,
    },
    /// `nn.Embedding(num_embeddings, embedding_dim)`: token ids (whole numbers, held as f32)
    /// to rows of a table; `(L)` inputs to `(L, embedding_dim)`.
    Embedding {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Rows of the table (the vocabulary).
        num_embeddings: usize,
        /// Width of a row.
        embedding_dim: usize,
    },
    /// A learned position embedding added to a `(L, D)` sequence: `x + W[0..L]`, the weight
    /// `[num_embeddings, D]` (GPT-2's `wpe`).
    PositionEmbedding {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Rows of the table: the longest sequence.
        num_embeddings: usize,
    },
    /// Causal multi-head self-attention (`F.scaled_dot_product_attention(is_causal=True)`)
    /// on `(L, 3D)` concatenated queries, keys and values, to `(L, D)`.
    CausalSelfAttention {
        /// Heads; they divide `D`.
        heads: usize,
    },
    /// `nn.Conv2d(in, out_channels, kernel, stride, padding, dilation, groups, bias)`.
    Conv2d {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Input channels: optional, checked against the layer before when given.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        in_channels: Option<usize>,
        /// Output channels.
        out_channels: usize,
        /// Kernel size.
        kernel: Pair,
        /// Stride (default 1).
        #[serde(default = "one")]
        stride: Pair,
        /// Zero padding on each side (default 0).
        #[serde(default = "zero")]
        padding: Pair,
        /// Dilation (default 1).
        #[serde(default = "one")]
        dilation: Pair,
        /// Channel groups (default 1).
        #[serde(default = "default_groups")]
        groups: usize,
        /// Whether it has a bias (default true).
        #[serde(default = "yes", skip_serializing_if = "is_true")]
        bias: bool,
    },
    /// `nn.MaxPool2d(kernel, stride=kernel, padding)`.
    MaxPool2d {
        /// Window size.
        kernel: Pair,
        /// Stride (default: the kernel).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        /// Padding (default 0).
        #[serde(default = "zero")]
        padding: Pair,
    },
    /// `nn.AvgPool2d(kernel, stride=kernel, padding)`, padding counted in the mean.
    AvgPool2d {
        /// Window size.
        kernel: Pair,
        /// Stride (default: the kernel).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stride: Option<Pair>,
        /// Padding (default 0).
        #[serde(default = "zero")]
        padding: Pair,
    },
    /// `nn.AdaptiveAvgPool2d(output)`: 1 is global average pooling.
    AdaptiveAvgPool2d {
        /// Output height and width.
        #[serde(default = "one")]
        output: Pair,
    },
    /// `nn.BatchNorm1d(C, eps, momentum, affine)` on `(C)` or `(C, L)` inputs.
    BatchNorm1d {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Weight of a new batch in the running statistics (default 0.1).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Added to the variance (default 1e-5).
        #[serde(default = "norm_eps")]
        eps: f32,
        /// Learnable scale and shift (default true).
        #[serde(default = "yes")]
        affine: bool,
    },
    /// `nn.BatchNorm2d(C, eps, momentum, affine)` on `(C, H, W)` inputs.
    BatchNorm2d {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Weight of a new batch in the running statistics (default 0.1).
        #[serde(default = "bn_momentum")]
        momentum: f32,
        /// Added to the variance (default 1e-5).
        #[serde(default = "norm_eps")]
        eps: f32,
        /// Learnable scale and shift (default true).
        #[serde(default = "yes")]
        affine: bool,
    },
    /// `nn.LayerNorm(normalized_shape, eps, elementwise_affine)`.
    LayerNorm {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The trailing dimensions normalized (default: the last one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        normalized_shape: Option<Vec<usize>>,
        /// Added to the variance (default 1e-5).
        #[serde(default = "norm_eps")]
        eps: f32,
        /// Learnable scale and shift (default true).
        #[serde(default = "yes")]
        affine: bool,
    },
    /// `nn.Dropout(p)` (default 0.5).
    Dropout {
        /// Probability of zeroing a value.
        #[serde(default = "half")]
        p: f32,
    },
    /// `nn.Dropout2d(p)`: whole channels (default 0.5).
    Dropout2d {
        /// Probability of zeroing a channel.
        #[serde(default = "half")]
        p: f32,
    },
    /// `nn.Flatten()`.
    Flatten,
    /// `nn.ReLU()`.
    Relu,
    /// `nn.LeakyReLU(negative_slope)` (default 0.01).
    LeakyRelu {
        /// Slope for negative inputs.
        #[serde(default = "leaky_slope")]
        negative_slope: f32,
    },
    /// `nn.GELU(approximate)` (`none` or `tanh`).
    Gelu {
        /// The form.
        #[serde(default)]
        approximate: GeluApprox,
    },
    /// `nn.SiLU()`.
    Silu,
    /// `nn.Tanh()`.
    Tanh,
    /// `nn.Sigmoid()`.
    Sigmoid,
    /// `nn.LogSoftmax(dim=-1)`: log-probabilities, for the NLL loss.
    LogSoftmax,
    /// `body(x) + shortcut(x)`; the shortcut is the identity when empty. Body layers are
    /// named under the block (`layer1.0.conv1.weight`), shortcut layers under
    /// `shortcut` (`layer1.0.shortcut.0.weight`).
    Residual {
        /// Prefix of the parameter names.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// The main path.
        body: Vec<LayerSpec>,
        /// The shortcut path (empty: the identity).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        shortcut: Vec<LayerSpec>,
    },
}

fn default_groups() -> usize {
    1
}

/// Short constructors for describing models in code, with PyTorch's defaults:
/// `LayerSpec::conv2d(32, 3).named("conv1").padding(1)`.
impl LayerSpec {
    /// `linear` with `out` features and a bias.
    pub fn linear(out: usize) -> Self {
        LayerSpec::Linear {
            name: None,
            in_features: None,
            out_features: out,
            bias: true,
            tie: None,
        }
    }

    /// `conv2d` with `out` channels, a square `kernel`, stride 1, no padding, a bias.
    pub fn conv2d(out: usize, kernel: usize) -> Self {
        LayerSpec::Conv2d {
            name: None,
            in_channels: None,
            out_channels: out,
            kernel: Pair::One(kernel),
            stride: Pair::One(1),
            padding: Pair::One(0),
            dilation: Pair::One(1),
            groups: 1,
            bias: true,
        }
    }

    /// `max_pool2d` with a square `kernel` and stride.
    pub fn max_pool2d(kernel: usize) -> Self {
        LayerSpec::MaxPool2d {
            kernel: Pair::One(kernel),
            stride: None,
            padding: Pair::One(0),
        }
    }

    /// `batch_norm2d` with PyTorch's defaults.
    pub fn batch_norm2d() -> Self {
        LayerSpec::BatchNorm2d {
            name: None,
            momentum: 0.1,
            eps: 1e-5,
            affine: true,
        }
    }

    /// The same layer with its parameters named `name.*` (layers without parameters ignore
    /// it).
    pub fn named(mut self, new: &str) -> Self {
        match &mut self {
            LayerSpec::Linear { name, .. }
            | LayerSpec::Embedding { name, .. }
            | LayerSpec::PositionEmbedding { name, .. }
            | LayerSpec::Conv2d { name, .. }
            | LayerSpec::BatchNorm1d { name, .. }
            | LayerSpec::BatchNorm2d { name, .. }
            | LayerSpec::LayerNorm { name, .. }
            | LayerSpec::Residual { name, .. } => *name = Some(new.to_string()),
            _ => {}
        }
        self
    }

    /// The same convolution or pooling with zero padding `p` on each side.
    pub fn padding(mut self, p: usize) -> Self {
        match &mut self {
            LayerSpec::Conv2d { padding, .. }
            | LayerSpec::MaxPool2d { padding, .. }
            | LayerSpec::AvgPool2d { padding, .. } => *padding = Pair::One(p),
            _ => {}
        }
        self
    }

    /// The same convolution or pooling with stride `s`.
    pub fn stride(mut self, s: usize) -> Self {
        match &mut self {
            LayerSpec::Conv2d { stride, .. } => *stride = Pair::One(s),
            LayerSpec::MaxPool2d { stride, .. } | LayerSpec::AvgPool2d { stride, .. } => {
                *stride = Some(Pair::One(s))
            }
            _ => {}
        }
        self
    }

    /// The type name as written in model files.
    pub fn type_name(&self) -> &'static str {
        match self {
            LayerSpec::Linear { .. } => "linear",
            LayerSpec::Embedding { .. } => "embedding",
            LayerSpec::PositionEmbedding { .. } => "position_embedding",
            LayerSpec::CausalSelfAttention { .. } => "causal_self_attention",
            LayerSpec::Conv2d { .. } => "conv2d",
            LayerSpec::MaxPool2d { .. } => "max_pool2d",
            LayerSpec::AvgPool2d { .. } => "avg_pool2d",
            LayerSpec::AdaptiveAvgPool2d { .. } => "adaptive_avg_pool2d",
            LayerSpec::BatchNorm1d { .. } => "batch_norm1d",
            LayerSpec::BatchNorm2d { .. } => "batch_norm2d",
            LayerSpec::LayerNorm { .. } => "layer_norm",
            LayerSpec::Dropout { .. } => "dropout",
            LayerSpec::Dropout2d { .. } => "dropout2d",
            LayerSpec::Flatten => "flatten",
            LayerSpec::Relu => "relu",
            LayerSpec::LeakyRelu { .. } => "leaky_relu",
            LayerSpec::Gelu { .. } => "gelu",
            LayerSpec::Silu => "silu",
            LayerSpec::Tanh => "tanh",
            LayerSpec::Sigmoid => "sigmoid",
            LayerSpec::LogSoftmax => "log_softmax",
            LayerSpec::Residual { .. } => "residual",
        }
    }

    /// The activation this entry is, if it is one.
    pub fn activation(&self) -> Option<Activation> {
        match *self {
            LayerSpec::Relu => Some(Activation::Relu),
            LayerSpec::LeakyRelu { negative_slope } => Some(Activation::LeakyRelu(negative_slope)),
            LayerSpec::Gelu { approximate } => Some(match approximate {
                GeluApprox::None => Activation::Gelu,
                GeluApprox::Tanh => Activation::GeluTanh,
            }),
            LayerSpec::Silu => Some(Activation::Silu),
            LayerSpec::Tanh => Some(Activation::Tanh),
            LayerSpec::Sigmoid => Some(Activation::Sigmoid),
            _ => None,
        }
    }

    /// The entry for an activation.
    pub fn from_activation(a: Activation) -> Self {
        match a {
            Activation::Relu => LayerSpec::Relu,
            Activation::LeakyRelu(s) => LayerSpec::LeakyRelu { negative_slope: s },
            Activation::Gelu => LayerSpec::Gelu {
                approximate: GeluApprox::None,
            },
            Activation::GeluTanh => LayerSpec::Gelu {
                approximate: GeluApprox::Tanh,
            },
            Activation::Silu => LayerSpec::Silu,
            Activation::Tanh => LayerSpec::Tanh,
            Activation::Sigmoid => LayerSpec::Sigmoid,
        }
    }

    /// The name it gives its parameters, when it has one.
    pub(crate) fn name_of(&self) -> Option<String> {
        self.name().map(str::to_string)
    }

    fn name(&self) -> Option<&str> {
        match self {
            LayerSpec::Linear { name, .. }
            | LayerSpec::Embedding { name, .. }
            | LayerSpec::PositionEmbedding { name, .. }
            | LayerSpec::Conv2d { name, .. }
            | LayerSpec::BatchNorm1d { name, .. }
            | LayerSpec::BatchNorm2d { name, .. }
            | LayerSpec::LayerNorm { name, .. }
            | LayerSpec::Residual { name, .. } => name.as_deref(),
            _ => None,
        }
    }
}

/// A whole model: the shape of one input example and the layers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Shape of one example: `[features]`, `[channels, height, width]`, ...
    pub input: Vec<usize>,
    /// The layers in order.
    pub layers: Vec<LayerSpec>,
}

/// A place in a model description: `layer 3` or `layer 5 (residual `layer1.0`) body layer 2`.
fn position(path: &str, index: usize) -> String {
    if path.is_empty() {
        format!("layer {}", index + 1)
    } else {
        format!("{path} layer {}", index + 1)
    }
}

fn bad(at: &str, spec: &LayerSpec, why: impl Into<String>) -> NnError {
    NnError::BadLayer {
        at: at.to_string(),
        what: spec.type_name().to_string(),
        why: why.into(),
    }
}

fn shape_str(s: &[usize]) -> String {
    format!(
        "({})",
        s.iter()
            .map(|d| d.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

impl ModelSpec {
    /// Reads a description from a JSON value (a TOML file converted with serde keeps the
    /// same structure). Errors name the layer's position and the key at fault.
    pub fn from_value(value: serde_json::Value) -> Result<Self, NnError> {
        let obj = value.as_object().ok_or_else(|| NnError::Spec {
            at: "the model file".into(),
            why: "it must be a table with `input` and `layers`".into(),
        })?;
        for key in obj.keys() {
            if key != "input" && key != "layers" {
                return Err(NnError::Spec {
                    at: "the model file".into(),
                    why: format!("unknown key `{key}`: a model has `input` and `[[layers]]`"),
                });
            }
        }
        let input: Vec<usize> =
            serde_json::from_value(obj.get("input").cloned().ok_or_else(|| NnError::Spec {
                at: "the model file".into(),
                why:
                    "it has no `input` (the shape of one example, e.g. input = [1, 28, 28])".into(),
            })?)
            .map_err(|e| NnError::Spec {
                at: "`input`".into(),
                why: format!("{e}: give the shape of one example, e.g. [1, 28, 28] or [784]"),
            })?;
        let layers = match obj.get("layers") {
            Some(serde_json::Value::Array(items)) => parse_layers(items, "")?,
            _ => {
                return Err(NnError::Spec {
                    at: "the model file".into(),
                    why: "it has no `layers` list ([[layers]] tables)".into(),
                })
            }
        };
        Ok(Self { input, layers })
    }

    /// The description as JSON (what weights files record).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a model description serializes")
    }

    /// Reads a description written by [`ModelSpec::to_json`].
    pub fn from_json(text: &str) -> Result<Self, NnError> {
        let value: serde_json::Value = serde_json::from_str(text).map_err(|e| NnError::Spec {
            at: "the model description".into(),
            why: e.to_string(),
        })?;
        Self::from_value(value)
    }

    /// The description with one layer setting changed: `key` is a layer's name and a field,
    /// `conv1.out_channels`, `fc1.out_features`, `layer2.0.conv1.out_channels` (a residual
    /// block's body layer), `3.p` (an unnamed layer by its position). How a search varies a
    /// model's width: `descent tune --param model.conv1.out_channels=int:8:64`.
    pub fn with_setting(&self, key: &str, value: serde_json::Value) -> Result<Self, NnError> {
        let mut json = serde_json::to_value(self).expect("a model description serializes");
        let mut names = Vec::new();
        let mut path = Vec::new();
        let layers = json["layers"].as_array().expect("layers are a list");
        let Some(field) = locate(layers, "", key, &mut names, &mut path) else {
            return Err(NnError::Spec {
                at: format!("setting `{key}`"),
                why: format!(
                    "no layer is named `{}`: the layers are {}",
                    key.rsplit_once('.').map_or(key, |(l, _)| l),
                    names.join(", ")
                ),
            });
        };
        if field == "type" || field == "name" || field == "body" || field == "shortcut" {
            return Err(NnError::Spec {
                at: format!("setting `{key}`"),
                why: format!("`{field}` cannot be set; set a layer's size or rate"),
            });
        }
        let mut list = &mut json["layers"];
        for (i, next) in path {
            list = &mut list[i];
            if !next.is_empty() {
                list = &mut list[next];
            }
        }
        list.as_object_mut()
            .expect("a layer is a table")
            .insert(field, value);
        Self::from_value(json).map_err(|e| match e {
            NnError::Spec { at, why } => NnError::Spec {
                at: format!("setting `{key}`: {at}"),
                why,
            },
            other => other,
        })
    }

    /// Builds the model, checking every layer against the shape before it.
    pub fn build(&self) -> Result<Model, NnError> {
        if self.input.is_empty() || self.input.contains(&0) {
            return Err(NnError::Spec {
                at: "`input`".into(),
                why: format!(
                    "the input shape {} needs at least one dimension and no zero",
                    shape_str(&self.input)
                ),
            });
        }
        if self.layers.is_empty() {
            return Err(NnError::Spec {
                at: "`layers`".into(),
                why: "a model needs at least one layer".into(),
            });
        }
        let mut b = LayoutBuilder::default();
        let chain = build_chain(&mut b, &self.layers, self.input.clone(), "")?;
        let layout = b.finish();
        Ok(Model::from_parts(self.clone(), chain, layout))
    }

    /// A multilayer perceptron on flat inputs: `fc1 .. fcN` with `act` (and dropout `p` when
    /// not 0) after each hidden layer. The seed's model is `mlp(784, &[512], 10, Relu, 0)`.
    pub fn mlp(input: usize, hidden: &[usize], classes: usize, act: Activation, p: f32) -> Self {
        let mut layers = Vec::new();
        for (i, &h) in hidden.iter().enumerate() {
            layers.push(LayerSpec::Linear {
                name: Some(format!("fc{}", i + 1)),
                in_features: None,
                out_features: h,
                bias: true,
                tie: None,
            });
            layers.push(LayerSpec::from_activation(act));
            if p > 0.0 {
                layers.push(LayerSpec::Dropout { p });
            }
        }
        layers.push(LayerSpec::Linear {
            name: Some(format!("fc{}", hidden.len() + 1)),
            in_features: None,
            out_features: classes,
            bias: true,
            tie: None,
        });
        Self {
            input: vec![input],
            layers,
        }
    }
}

/// Where the layer named by `key` (a qualified name and a field) sits: the indices down the
/// nested lists (with the list to enter next: `body` or `shortcut`) and the field. `names`
/// collects the qualified names seen, for messages.
fn locate(
    layers: &[serde_json::Value],
    prefix: &str,
    key: &str,
    names: &mut Vec<String>,
    path: &mut Vec<(usize, &'static str)>,
) -> Option<String> {
    for (i, layer) in layers.iter().enumerate() {
        let local = layer["name"]
            .as_str()
            .map_or_else(|| i.to_string(), str::to_string);
        let name = if prefix.is_empty() {
            local
        } else {
            format!("{prefix}.{local}")
        };
        names.push(name.clone());
        if let Some(field) = key.strip_prefix(&format!("{name}.")) {
            if !field.contains('.') {
                path.push((i, ""));
                return Some(field.to_string());
            }
        }
        if layer["type"] == "residual" {
            let short = format!("{name}.shortcut");
            for (list, p) in [("body", name.as_str()), ("shortcut", short.as_str())] {
                if let Some(items) = layer.get(list).and_then(|v| v.as_array()) {
                    path.push((i, list));
                    if let Some(field) = locate(items, p, key, names, path) {
                        return Some(field);
                    }
                    path.pop();
                }
            }
        }
    }
    None
}

/// Parses a list of layer tables; `path` says where the list is, for messages.
fn parse_layers(items: &[serde_json::Value], path: &str) -> Result<Vec<LayerSpec>, NnError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = position(path, i);
        let obj = item.as_object().ok_or_else(|| NnError::Spec {
            at: at.clone(),
            why: "a layer is a table with a `type`".into(),
        })?;
        let ty = match obj.get("type") {
            Some(serde_json::Value::String(t)) => t.clone(),
            _ => {
                return Err(NnError::Spec {
                    at,
                    why: format!("it has no `type` (one of {})", LAYER_TYPES.join(", ")),
                })
            }
        };
        if !LAYER_TYPES.contains(&ty.as_str()) {
            return Err(NnError::Spec {
                at,
                why: format!(
                    "unknown layer type `{ty}`: the layers are {}",
                    LAYER_TYPES.join(", ")
                ),
            });
        }
        let spec = if ty == "residual" {
            let mut plain = obj.clone();
            let list =
                |key: &str, plain: &mut serde_json::Map<String, serde_json::Value>| match plain
                    .remove(key)
                {
                    None => Ok(Vec::new()),
                    Some(serde_json::Value::Array(v)) => {
                        parse_layers(&v, &format!("{at} ({ty}) {key}"))
                    }
                    Some(_) => Err(NnError::Spec {
                        at: at.clone(),
                        why: format!("`{key}` must be a list of layer tables"),
                    }),
                };
            let body = list("body", &mut plain)?;
            let shortcut = list("shortcut", &mut plain)?;
            let mut name = None;
            for (k, v) in plain {
                match (k.as_str(), v) {
                    ("type", _) => {}
                    ("name", serde_json::Value::String(s)) => name = Some(s),
                    (k, _) => {
                        return Err(NnError::Spec {
                            at,
                            why: format!(
                                "unknown key `{k}` for residual: it takes name, body, shortcut"
                            ),
                        })
                    }
                }
            }
            LayerSpec::Residual {
                name,
                body,
                shortcut,
            }
        } else {
            serde_json::from_value(item.clone()).map_err(|e| NnError::Spec {
                at: at.clone(),
                why: format!("{ty}: {e}"),
            })?
        };
        out.push(spec);
    }
    Ok(out)
}

/// Every layer type a model file may use.
pub const LAYER_TYPES: &[&str] = &[
    "linear",
    "embedding",
    "position_embedding",
    "causal_self_attention",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "batch_norm1d",
    "batch_norm2d",
    "layer_norm",
    "dropout",
    "dropout2d",
    "flatten",
    "relu",
    "leaky_relu",
    "gelu",
    "silu",
    "tanh",
    "sigmoid",
    "log_softmax",
    "residual",
];

fn window(at: &str, spec: &LayerSpec, input: &[usize], w: Window) -> Result<(), NnError> {
    if input.len() != 3 {
        return Err(bad(
            at,
            spec,
            format!(
                "it takes (channels, height, width) inputs, but gets {}; \
                 put it before any flatten",
                shape_str(input)
            ),
        ));
    }
    let zero = [w.kernel, w.stride, w.dilation]
        .iter()
        .any(|&(a, b)| a == 0 || b == 0);
    if zero {
        return Err(bad(
            at,
            spec,
            "kernel, stride and dilation must be at least 1",
        ));
    }
    if w.output(input[1], input[2]).is_none() {
        return Err(bad(
            at,
            spec,
            format!(
                "its window ({}x{}, dilation {:?}, padding {:?}) is larger than its padded input {}",
                w.kernel.0,
                w.kernel.1,
                w.dilation,
                w.padding,
                shape_str(input)
            ),
        ));
    }
    Ok(())
}

/// Builds `specs` on inputs of `input` shape. Linear and Conv2d layers absorb a following
/// ReLU, leaky ReLU, tanh or sigmoid (run in place on their output).
fn build_chain(
    b: &mut LayoutBuilder,
    specs: &[LayerSpec],
    input: Vec<usize>,
    path: &str,
) -> Result<Chain, NnError> {
    let mut chain = Chain::new(input);
    let mut i = 0;
    while i < specs.len() {
        let spec = &specs[i];
        let at = position(path, i);
        let shape = chain.output_shape().to_vec();
        let name = spec.name().map_or_else(|| i.to_string(), str::to_string);
        if name.is_empty() || name.starts_with('.') || name.ends_with('.') {
            return Err(bad(
                &at,
                spec,
                format!("its name `{name}` is not a valid prefix"),
            ));
        }
        let fuse = specs
            .get(i + 1)
            .and_then(LayerSpec::activation)
            .filter(|a| a.fusable());
        let mut pooled = false;
        let declared =
            |b: &LayoutBuilder, suffix: &str| b.contains(&b.qualify(&format!("{name}.{suffix}")));
        let layer: Box<dyn Layer> = match spec {
            LayerSpec::Linear {
                out_features,
                bias,
                in_features,
                tie,
                ..
            } => {
                let last = *shape.last().expect("shapes are not empty");
                if let Some(want) = *in_features {
                    if want != last {
                        let hint = if shape.len() > 1 && numel(&shape) == want {
                            "; add a flatten before it"
                        } else {
                            ""
                        };
                        return Err(bad(
                            &at,
                            spec,
                            format!(
                                "it expects {want} input features, but the layer before gives {}{hint}",
                                shape_str(&shape)
                            ),
                        ));
                    }
                }
                if *out_features == 0 {
                    return Err(bad(&at, spec, "out_features must be at least 1"));
                }
                let mut l = match tie {
                    None => {
                        if declared(b, "weight") {
                            return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                        }
                        Linear::build(b, &name, &shape, *out_features, *bias)
                    }
                    Some(target) => {
                        let full = b.qualify(&format!("{target}.weight"));
                        let want = vec![*out_features, last];
                        let Some((offset, got)) = b.param_shape(&full) else {
                            return Err(bad(
                                &at,
                                spec,
                                format!("tie: there is no `{full}` before it to share"),
                            ));
                        };
                        if got != want {
                            return Err(bad(
                                &at,
                                spec,
                                format!(
                                    "tie: `{full}` is {} but this layer's weight would be {}",
                                    shape_str(&got),
                                    shape_str(&want)
                                ),
                            ));
                        }
                        if !chain.share(offset) {
                            return Err(bad(
                                &at,
                                spec,
                                format!("tie: `{target}` is not an embedding earlier in this list"),
                            ));
                        }
                        if *bias && declared(b, "bias") {
                            return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                        }
                        Linear::build_tied(b, &name, &shape, *out_features, offset, *bias)
                    }
                };
                l.act = fuse;
                Box::new(l)
            }
            LayerSpec::Embedding {
                num_embeddings,
                embedding_dim,
                ..
            } => {
                if *num_embeddings == 0 || *embedding_dim == 0 {
                    return Err(bad(
                        &at,
                        spec,
                        "num_embeddings and embedding_dim must be at least 1",
                    ));
                }
                if declared(b, "weight") {
                    return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                }
                Box::new(Embedding::build(
                    b,
                    &name,
                    &shape,
                    *num_embeddings,
                    *embedding_dim,
                ))
            }
            LayerSpec::PositionEmbedding { num_embeddings, .. } => {
                if shape.len() != 2 {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "it takes (length, width) sequences, but gets {}",
                            shape_str(&shape)
                        ),
                    ));
                }
                if shape[0] > *num_embeddings {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "the sequence has {} positions but the table holds {num_embeddings}",
                            shape[0]
                        ),
                    ));
                }
                if declared(b, "weight") {
                    return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                }
                Box::new(PositionEmbedding::build(b, &name, &shape, *num_embeddings))
            }
            LayerSpec::CausalSelfAttention { heads } => {
                let ok = shape.len() == 2 && shape[1].is_multiple_of(3);
                if !ok {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "it takes (length, 3 x width) queries, keys and values, but gets {}; \
                             put a linear with 3 x width outputs before it",
                            shape_str(&shape)
                        ),
                    ));
                }
                let width = shape[1] / 3;
                if *heads == 0 || !width.is_multiple_of(*heads) {
                    return Err(bad(
                        &at,
                        spec,
                        format!("heads {heads} must divide the width {width} (at least 1)"),
                    ));
                }
                Box::new(CausalSelfAttention::new(&shape, *heads))
            }
            LayerSpec::Conv2d {
                out_channels,
                kernel,
                stride,
                padding,
                dilation,
                groups,
                bias,
                in_channels,
                ..
            } => {
                let w = Window {
                    kernel: kernel.hw(),
                    stride: stride.hw(),
                    padding: padding.hw(),
                    dilation: dilation.hw(),
                };
                window(&at, spec, &shape, w)?;
                let c = shape[0];
                if let Some(want) = *in_channels {
                    if want != c {
                        return Err(bad(
                            &at,
                            spec,
                            format!(
                                "it expects {want} input channels, but the layer before gives {}",
                                shape_str(&shape)
                            ),
                        ));
                    }
                }
                if *groups == 0
                    || !c.is_multiple_of(*groups)
                    || !out_channels.is_multiple_of(*groups)
                    || *out_channels == 0
                {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "groups {groups} must divide both its {c} input channels and its \
                             {out_channels} output channels (at least 1)"
                        ),
                    ));
                }
                if declared(b, "weight") {
                    return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                }
                let mut l = Conv2d::build(b, &name, &shape, *out_channels, w, *groups, *bias);
                l.act = fuse;
                // 2x2 max pooling right after (and after the activation) runs inside the
                // convolution, image by image.
                let next = i + 1 + usize::from(fuse.is_some());
                if let Some(pool) = specs
                    .get(next)
                    .and_then(|p| fusable_pool(p, l.output_shape()))
                {
                    l = l.with_max_pool(pool);
                    pooled = true;
                }
                Box::new(l)
            }
            LayerSpec::MaxPool2d {
                kernel,
                stride,
                padding,
            }
            | LayerSpec::AvgPool2d {
                kernel,
                stride,
                padding,
            } => {
                let w = Window {
                    kernel: kernel.hw(),
                    stride: stride.unwrap_or(*kernel).hw(),
                    padding: padding.hw(),
                    dilation: (1, 1),
                };
                window(&at, spec, &shape, w)?;
                if 2 * w.padding.0 > w.kernel.0 || 2 * w.padding.1 > w.kernel.1 {
                    return Err(bad(&at, spec, "padding must be at most half the kernel"));
                }
                let kind = match spec {
                    LayerSpec::MaxPool2d { .. } => PoolKind::Max,
                    _ => PoolKind::Avg,
                };
                Box::new(Pool2d::new(kind, w, &shape))
            }
            LayerSpec::AdaptiveAvgPool2d { output } => {
                let (oh, ow) = output.hw();
                if shape.len() != 3 {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "it takes (channels, height, width) inputs, but gets {}",
                            shape_str(&shape)
                        ),
                    ));
                }
                if oh == 0 || ow == 0 {
                    return Err(bad(&at, spec, "the output size must be at least 1"));
                }
                Box::new(Pool2d::adaptive((oh, ow), &shape))
            }
            LayerSpec::BatchNorm1d {
                momentum,
                eps,
                affine,
                ..
            }
            | LayerSpec::BatchNorm2d {
                momentum,
                eps,
                affine,
                ..
            } => {
                let two_d = matches!(spec, LayerSpec::BatchNorm2d { .. });
                let ok = if two_d {
                    shape.len() == 3
                } else {
                    shape.len() <= 2
                };
                if !ok {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "it takes {} inputs, but gets {}",
                            if two_d { "(C, H, W)" } else { "(C) or (C, L)" },
                            shape_str(&shape)
                        ),
                    ));
                }
                if !(0.0..=1.0).contains(momentum) || eps.is_nan() || *eps <= 0.0 {
                    return Err(bad(&at, spec, "momentum must be in [0, 1] and eps > 0"));
                }
                if declared(b, "running_mean") {
                    return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                }
                Box::new(BatchNorm::build(b, &name, &shape, *momentum, *eps, *affine))
            }
            LayerSpec::LayerNorm {
                normalized_shape,
                eps,
                affine,
                ..
            } => {
                let ns = normalized_shape
                    .clone()
                    .unwrap_or_else(|| vec![*shape.last().expect("shapes are not empty")]);
                if ns.is_empty()
                    || ns.len() > shape.len()
                    || shape[shape.len() - ns.len()..] != ns[..]
                {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "normalized_shape {} must be the last dimensions of its input {}",
                            shape_str(&ns),
                            shape_str(&shape)
                        ),
                    ));
                }
                if eps.is_nan() || *eps <= 0.0 {
                    return Err(bad(&at, spec, "eps must be > 0"));
                }
                if *affine && declared(b, "weight") {
                    return Err(bad(&at, spec, format!("the name `{name}` is used twice")));
                }
                Box::new(LayerNorm::build(b, &name, &shape, &ns, *eps, *affine))
            }
            LayerSpec::Dropout { p } | LayerSpec::Dropout2d { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(bad(
                        &at,
                        spec,
                        format!("p = {p}: the probability must be in [0, 1)"),
                    ));
                }
                let channels = matches!(spec, LayerSpec::Dropout2d { .. });
                if channels && shape.len() < 2 {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "it drops channels of (C, H, W) inputs, but gets {}",
                            shape_str(&shape)
                        ),
                    ));
                }
                Box::new(Dropout::new(*p, channels, shape.clone()))
            }
            LayerSpec::Flatten => Box::new(Flatten::new(&shape)),
            LayerSpec::LogSoftmax => Box::new(LogSoftmax::new(shape.clone())),
            LayerSpec::Residual { body, shortcut, .. } => {
                if body.is_empty() {
                    return Err(bad(&at, spec, "its body needs at least one layer"));
                }
                b.push_prefix(&name);
                let sub = format!("{at} (residual `{name}`)");
                let body_chain = build_chain(b, body, shape.clone(), &format!("{sub} body"));
                let short_chain = match (&body_chain, shortcut.is_empty()) {
                    (Err(_), _) | (_, true) => None,
                    (Ok(_), false) => {
                        b.push_prefix("shortcut");
                        let c = build_chain(b, shortcut, shape.clone(), &format!("{sub} shortcut"));
                        b.pop_prefix();
                        Some(c)
                    }
                };
                b.pop_prefix();
                let body_chain = body_chain?;
                let short_chain = short_chain.transpose()?;
                let want = short_chain
                    .as_ref()
                    .map_or(shape.clone(), |c| c.output_shape().to_vec());
                if body_chain.output_shape() != want.as_slice() {
                    return Err(bad(
                        &at,
                        spec,
                        format!(
                            "its body gives {} but its shortcut gives {}: they must match to be \
                             added (give the shortcut a strided 1x1 conv2d)",
                            shape_str(body_chain.output_shape()),
                            shape_str(&want)
                        ),
                    ));
                }
                Box::new(Residual::new(body_chain, short_chain))
            }
            act => {
                let a = act
                    .activation()
                    .expect("every other entry is an activation");
                Box::new(ActivationLayer::new(a, shape.clone()))
            }
        };
        if numel(layer.output_shape()) == 0 {
            return Err(bad(&at, spec, "its output is empty"));
        }
        chain.push(layer);
        let fused =
            fuse.is_some() && matches!(spec, LayerSpec::Linear { .. } | LayerSpec::Conv2d { .. });
        i += 1 + usize::from(fused) + usize::from(pooled);
    }
    Ok(chain)
}

/// The pooling `spec` as one a convolution with output `shape` can run itself: 2x2 max
/// pooling with stride 2 and no padding, on an output at least 2 x 2.
fn fusable_pool(spec: &LayerSpec, shape: &[usize]) -> Option<Pool2d> {
    let LayerSpec::MaxPool2d {
        kernel,
        stride,
        padding,
    } = spec
    else {
        return None;
    };
    let w = Window {
        kernel: kernel.hw(),
        stride: stride.unwrap_or(*kernel).hw(),
        padding: padding.hw(),
        dilation: (1, 1),
    };
    let tiled = (w.kernel, w.stride, w.padding) == ((2, 2), (2, 2), (0, 0));
    (tiled && shape.len() == 3 && shape[1] >= 2 && shape[2] >= 2)
        .then(|| Pool2d::new(PoolKind::Max, w, shape))
}
