//! `descent models [NAME|FILE]`: the presets, or one model layer by layer with its output
//! shapes, parameters and work.

use anyhow::Result;
use descent_nn::{Model, PRESETS};

use crate::cli::ModelsArgs;
use crate::models::{ModelArgs, MNIST_SHAPE};

fn shape(s: &[usize]) -> String {
    s.iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

/// The vocabulary `descent models gpt` sizes the GPT for: the fortunes text's 113
/// characters, as torch_gpt.py counts them (a real run takes its text's).
const GPT_VOCAB: usize = 113;

fn build(name: &str) -> Result<Model> {
    let args = ModelArgs {
        model: Some(name),
        ..Default::default()
    };
    if name == "gpt" {
        let block = descent_nn::GptSize::default().block;
        return crate::models::build(&crate::models::spec(args, &[block], GPT_VOCAB)?);
    }
    crate::models::build(&crate::models::spec(args, &MNIST_SHAPE, 10)?)
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let Some(name) = args.name else {
        out!("presets for MNIST-shaped inputs (1x28x28, 10 classes); `descent models NAME` shows one");
        out!(
            "{:<8} {:>12} {:>14}  layers",
            "model",
            "parameters",
            "MFLOP/image"
        );
        for p in PRESETS {
            let m = build(p)?;
            let kinds: Vec<&str> = m.spec().layers.iter().map(|l| l.type_name()).collect();
            out!(
                "{:<8} {:>12} {:>14.2}  {}",
                p,
                m.param_count(),
                m.flops() as f64 / 1e6,
                kinds.join(" ")
            );
        }
        let g = build("gpt")?;
        out!(
            "{:<8} {:>12} {:>14.2}  a language model for --data text:FILE (context {}, a \
             vocabulary of {GPT_VOCAB}); `descent models gpt`",
            "gpt",
            g.param_count(),
            g.flops() as f64 / 1e6,
            descent_nn::GptSize::default().block
        );
        out!("a model file (TOML) works wherever a preset does: docs/models.md");
        return Ok(());
    };
    let m = build(&name)?;
    if name == "gpt" {
        out!(
            "a vocabulary of {GPT_VOCAB} characters (the fortunes text's); a run sizes the \
             token embedding and the tied head by its own text"
        );
    }
    out!(
        "{name}: input {}, {} parameters, {:.2} MFLOP per example forward, {:.2} per training step",
        shape(m.input_shape()),
        m.param_count(),
        m.flops() as f64 / 1e6,
        m.step_flops() as f64 / 1e6
    );
    out!(
        "{:<3} {:>12} {:>10} {:>8}  layer",
        "#",
        "output",
        "params",
        "MFLOP"
    );
    for (i, l) in m.layers().iter().enumerate() {
        out!(
            "{:<3} {:>12} {:>10} {:>8.2}  {}",
            i + 1,
            shape(l.output_shape()),
            l.param_count(),
            l.flops() as f64 / 1e6,
            l.summary()
        );
    }
    let buffers = m.layout().len() - m.layout().trainable_len();
    if buffers > 0 {
        out!("plus {buffers} buffer values (running statistics), saved but not trained");
    }
    let names: Vec<String> = m
        .layout()
        .views()
        .iter()
        .map(|v| format!("{} {}", v.name, shape(&v.shape)))
        .collect();
    out!("tensors (PyTorch's state_dict names):");
    for chunk in names.chunks(4) {
        out!("  {}", chunk.join(", "));
    }
    Ok(())
}
