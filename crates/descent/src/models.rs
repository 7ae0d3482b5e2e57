//! Which model a command uses: `--model` (a preset or a TOML file), `--hidden`,
//! `--activation` and `--dropout` for the MLP, or the description a weights file records.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use descent_nn::{numel, Activation, Model, ModelSpec, PRESETS};

use crate::cli::ActivationArg;

/// MNIST's example shape: one channel of 28 x 28.
pub const MNIST_SHAPE: [usize; 3] = [1, 28, 28];

/// The settings that choose a model, from any command's flags.
#[derive(Clone, Copy, Debug, Default)]
pub struct ModelArgs<'a> {
    /// `--model`.
    pub model: Option<&'a str>,
    /// `--hidden`.
    pub hidden: Option<&'a [usize]>,
    /// `--activation`.
    pub activation: Option<ActivationArg>,
    /// `--dropout`.
    pub dropout: Option<f32>,
    /// `--model-set LAYER.FIELD=VALUE`, in order.
    pub set: &'a [String],
    /// `--layers`, `--heads`, `--embd`, `--block-size` of `--model gpt`.
    pub gpt: GptArgs,
}

/// The sizes `--model gpt` takes; unset ones are torch_gpt.py's.
#[derive(Clone, Copy, Debug, Default)]
pub struct GptArgs {
    /// `--layers`.
    pub layers: Option<usize>,
    /// `--heads`.
    pub heads: Option<usize>,
    /// `--embd`.
    pub embd: Option<usize>,
    /// `--block-size`.
    pub block: Option<usize>,
}

impl GptArgs {
    /// Whether any size is given.
    pub fn any(&self) -> bool {
        self.layers.is_some() || self.heads.is_some() || self.embd.is_some() || self.block.is_some()
    }

    /// The sizes, checked.
    pub fn size(&self) -> Result<descent_nn::GptSize> {
        let d = descent_nn::GptSize::default();
        let size = descent_nn::GptSize {
            layers: self.layers.unwrap_or(d.layers),
            heads: self.heads.unwrap_or(d.heads),
            width: self.embd.unwrap_or(d.width),
            block: self.block.unwrap_or(d.block),
        };
        for (flag, v) in [
            ("--layers", size.layers),
            ("--heads", size.heads),
            ("--embd", size.width),
            ("--block-size", size.block),
        ] {
            if v == 0 {
                bail!("invalid {flag} 0: give at least 1");
            }
        }
        if !size.width.is_multiple_of(size.heads) {
            bail!(
                "invalid --heads {}: it must divide --embd {} (each head takes an equal share)",
                size.heads,
                size.width
            );
        }
        Ok(size)
    }
}

/// The description with every `--model-set` applied in order.
fn apply_settings(mut spec: ModelSpec, set: &[String]) -> Result<ModelSpec> {
    for s in set {
        let (key, value) = s.split_once('=').ok_or_else(|| {
            anyhow!("invalid --model-set {s}: write LAYER.FIELD=VALUE, e.g. conv1.out_channels=16")
        })?;
        let value = if let Ok(i) = value.parse::<i64>() {
            serde_json::json!(i)
        } else if let Ok(x) = value.parse::<f64>() {
            serde_json::json!(x)
        } else if let Ok(b) = value.parse::<bool>() {
            serde_json::json!(b)
        } else {
            serde_json::json!(value)
        };
        spec = spec
            .with_setting(key.trim(), value)
            .map_err(|e| anyhow!("invalid --model-set {s}: {e}"))?;
        spec.build()
            .map_err(|e| anyhow!("invalid --model-set {s}: {e}"))?;
    }
    Ok(spec)
}

/// The description `args` name, for examples of `input` shape and `classes` classes. The
/// MLP flags go with `--model mlp` only; a file's input and output must fit the data.
pub fn spec(args: ModelArgs<'_>, input: &[usize], classes: usize) -> Result<ModelSpec> {
    let spec = unset_spec(args, input, classes)?;
    let spec = apply_settings(spec, args.set)?;
    fits(&spec, input, classes)
        .with_context(|| format!("--model {}", args.model.unwrap_or("mlp")))?;
    Ok(spec)
}

fn unset_spec(args: ModelArgs<'_>, input: &[usize], classes: usize) -> Result<ModelSpec> {
    let name = args.model.unwrap_or("mlp");
    if name != "mlp" {
        for (flag, given) in [
            ("--hidden", args.hidden.is_some()),
            ("--activation", args.activation.is_some()),
            ("--dropout", args.dropout.is_some()),
        ] {
            if given {
                bail!(
                    "invalid {flag}: it shapes --model mlp, not --model {name} (write a model \
                     file to change the layers of a preset: docs/models.md)"
                );
            }
        }
    }
    if name != "gpt" && args.gpt.any() {
        bail!(
            "invalid --layers/--heads/--embd/--block-size: they shape --model gpt, not --model \
             {name}"
        );
    }
    if name == "gpt" {
        return Ok(ModelSpec::gpt(classes, args.gpt.size()?));
    }
    if name == "mlp" {
        let hidden = args.hidden.unwrap_or(&[512]);
        if hidden.contains(&0) || hidden.is_empty() {
            let list: Vec<String> = hidden.iter().map(|h| h.to_string()).collect();
            bail!(
                "invalid --hidden {}: every hidden layer needs at least 1 unit (e.g. 512 or 256,128)",
                list.join(",")
            );
        }
        let dropout = args.dropout.unwrap_or(0.0);
        if !(0.0..1.0).contains(&dropout) {
            bail!("invalid --dropout {dropout}: the probability must be in [0, 1)");
        }
        let act: Activation = args.activation.unwrap_or(ActivationArg::Relu).into();
        return Ok(ModelSpec::mlp(numel(input), hidden, classes, act, dropout));
    }
    if let Some(spec) = ModelSpec::preset(name, input, classes) {
        return Ok(spec);
    }
    let path = Path::new(name);
    if !path.exists() {
        bail!(
            "invalid --model {name}: not a preset ({}, gpt) nor a model file",
            PRESETS.join(", ")
        );
    }
    read_file(path)
}

/// Reads a TOML model file (`input = [1, 28, 28]` and `[[layers]]` tables).
pub fn read_file(path: &Path) -> Result<ModelSpec> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow!("invalid --model {}: cannot read it: {e}", path.display()))?;
    let value: toml::Value = toml::from_str(&text)
        .map_err(|e| anyhow!("invalid --model {}: not TOML: {e}", path.display()))?;
    let json = serde_json::to_value(value)?;
    let spec = ModelSpec::from_value(json)
        .map_err(|e| anyhow!("invalid --model {}: {e}", path.display()))?;
    // Every layer is checked against the shape before it now, before any data is read.
    spec.build()
        .map_err(|e| anyhow!("invalid --model {}: {e}", path.display()))?;
    Ok(spec)
}

/// Refuses a description whose input or output does not fit the data.
pub fn fits(spec: &ModelSpec, input: &[usize], classes: usize) -> Result<()> {
    if numel(&spec.input) != numel(input) {
        bail!(
            "the model takes inputs of shape {:?} ({} values) but the data's examples are {:?} ({} values)",
            spec.input,
            numel(&spec.input),
            input,
            numel(input)
        );
    }
    let model = spec.build()?;
    // One class per example from the whole output, or one per position from its last
    // dimension (a language model's windows).
    let per_position = model.targets_per_example() > 1
        && model.targets_per_example() == numel(input)
        && model.classes() == classes;
    if model.output_features() != classes && !per_position {
        bail!(
            "the model gives {} outputs (shape {:?}) but the data has {classes} classes: make \
             the last layer's out_features {classes}",
            model.output_features(),
            model.output_shape()
        );
    }
    Ok(())
}

/// The model recorded in a weights file's metadata: descent's `model` description; older
/// files' `hidden` and `activation`; the seed's MLP for a file with neither (PyTorch's).
/// `hidden` and `activation` override the recorded MLP.
pub fn recorded(
    path: &Path,
    meta: &BTreeMap<String, String>,
    hidden: Option<&[usize]>,
    activation: Option<ActivationArg>,
) -> Result<ModelSpec> {
    if let (Some(json), None, None) = (meta.get("model"), hidden, activation) {
        return ModelSpec::from_json(json)
            .map_err(|e| anyhow!("{}: its recorded model cannot be read: {e}", path.display()));
    }
    let hidden = match (hidden, meta.get("hidden")) {
        (Some(h), _) => h.to_vec(),
        (None, Some(h)) => h
            .split(',')
            .map(|s| s.parse::<usize>())
            .collect::<Result<_, _>>()
            .map_err(|_| {
                anyhow!(
                    "{}: bad `hidden` metadata {h:?}; pass --hidden",
                    path.display()
                )
            })?,
        (None, None) => vec![512],
    };
    let activation = match (activation, meta.get("activation")) {
        (Some(a), _) => a.into(),
        (None, Some(a)) => Activation::from_name(a).ok_or_else(|| {
            anyhow!(
                "{}: unknown activation {a:?}; pass --activation",
                path.display()
            )
        })?,
        (None, None) => Activation::Relu,
    };
    Ok(ModelSpec::mlp(
        numel(&MNIST_SHAPE),
        &hidden,
        10,
        activation,
        0.0,
    ))
}

/// One line about a model: the MLP's sizes as before (`784-512-10 relu`), else the preset's
/// or file's name and its layers.
pub fn describe(name: Option<&str>, model: &Model) -> String {
    let spec = model.spec();
    let mlp = name.is_none_or(|n| n == "mlp")
        && spec.layers.iter().all(|l| {
            matches!(
                l,
                descent_nn::LayerSpec::Linear { .. } | descent_nn::LayerSpec::Dropout { .. }
            ) || l.activation().is_some()
        });
    if mlp {
        let mut sizes = vec![model.input_features().to_string()];
        let mut act = None;
        for l in &spec.layers {
            if let descent_nn::LayerSpec::Linear { out_features, .. } = l {
                sizes.push(out_features.to_string());
            }
            if let Some(a) = l.activation() {
                act = Some(a.name());
            }
        }
        return format!("{} {}", sizes.join("-"), act.unwrap_or("linear"));
    }
    if let Some(gpt) = describe_gpt(&spec.layers) {
        return format!("{} ({gpt})", name.unwrap_or("gpt"));
    }
    let kinds: Vec<&str> = model.layers().iter().map(|l| l.kind()).collect();
    match name {
        Some(n) => format!("{n} ({})", kinds.join(" ")),
        None => kinds.join(" "),
    }
}

/// A GPT's shape in words, if `layers` are a token embedding, a position embedding and
/// residual blocks with attention.
fn describe_gpt(layers: &[descent_nn::LayerSpec]) -> Option<String> {
    use descent_nn::LayerSpec as L;
    let [L::Embedding {
        num_embeddings: vocab,
        embedding_dim: width,
        ..
    }, L::PositionEmbedding {
        num_embeddings: block,
        ..
    }, ..] = layers
    else {
        return None;
    };
    let mut heads = None;
    let mut blocks = 0;
    for l in layers {
        if let L::Residual { body, .. } = l {
            if let Some(h) = body.iter().find_map(|b| match b {
                L::CausalSelfAttention { heads } => Some(*heads),
                _ => None,
            }) {
                heads = Some(h);
                blocks += 1;
            }
        }
    }
    Some(format!(
        "{blocks} blocks x {} heads, {width} wide, context {block}, vocabulary {vocab}",
        heads?
    ))
}

/// Builds a model, naming where its description came from on error.
pub fn build(spec: &ModelSpec) -> Result<Model> {
    spec.build().map_err(|e| anyhow!("{e}"))
}
