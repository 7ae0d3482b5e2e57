//! `descent generate WEIGHTS`: continue a text with a language model, token by token with a
//! key/value cache, drawing with a temperature, top-k and top-p from a seed.

use std::io::Write;

use anyhow::{anyhow, bail, Result};
use descent_data::Vocab;
use descent_nn::{Decoder, Sampling};
use descent_tensor::Rng;
use descent_train::checkpoint::{load_weights, read_metadata};

use crate::cli::GenerateArgs;

/// The vocabulary a language model's weights file records.
pub fn vocab_of(path: &std::path::Path) -> Result<Vocab> {
    let meta = read_metadata(path)?;
    let json = meta.get("vocab").ok_or_else(|| {
        anyhow!(
            "{} records no vocabulary: it is not a language model trained on a text \
             (`descent train --model gpt --data text:FILE --save ...`)",
            path.display()
        )
    })?;
    serde_json::from_str(json).map_err(|e| {
        anyhow!(
            "{}: its recorded vocabulary cannot be read: {e}",
            path.display()
        )
    })
}

pub fn run(args: GenerateArgs) -> Result<()> {
    if !(args.temperature >= 0.0 && args.temperature.is_finite()) {
        bail!(
            "invalid --temperature {}: give a number >= 0",
            args.temperature
        );
    }
    if !(args.top_p > 0.0 && args.top_p <= 1.0) {
        bail!(
            "invalid --top-p {}: give a probability in (0, 1]",
            args.top_p
        );
    }
    let vocab = vocab_of(&args.weights)?;
    let spec = crate::models::recorded(&args.weights, &read_metadata(&args.weights)?, None, None)?;
    let model = crate::models::build(&spec)?;
    let decoder = Decoder::new(&model).map_err(|e| anyhow!("{}: {e}", args.weights.display()))?;
    if decoder.vocab() != vocab.len() {
        bail!(
            "{}: the model has {} tokens but its recorded vocabulary {}",
            args.weights.display(),
            decoder.vocab(),
            vocab.len()
        );
    }
    let (values, _) = load_weights(&args.weights, model.layout())?;
    let prompt = args.prompt.replace("\\n", "\n");
    if prompt.is_empty() {
        bail!("invalid --prompt: give at least one character to start from");
    }
    let ids = vocab
        .encode(&prompt)
        .map_err(|e| anyhow!("invalid --prompt: {e}"))?;
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
    };
    let mut rng = Rng::new(args.seed);
    let mut out = std::io::stdout().lock();
    write!(out, "{prompt}")?;
    // The context: when the cache is full, start again from the last half of it.
    let context = decoder.context();
    let mut history: Vec<u32> = Vec::new();
    let mut cache = decoder.cache();
    let mut logits = Vec::new();
    for &t in &ids {
        if cache.len() == context {
            (cache, _) = refill(&decoder, &values, &history, context)?;
        }
        logits = decoder.step(&values, &mut cache, t)?;
        history.push(t);
    }
    for _ in 0..args.tokens {
        let next = sampling.draw(&logits, &mut rng);
        write!(out, "{}", vocab.decode(&[next]))?;
        out.flush()?;
        if cache.len() == context {
            (cache, _) = refill(&decoder, &values, &history, context)?;
        }
        logits = decoder.step(&values, &mut cache, next)?;
        history.push(next);
    }
    writeln!(out)?;
    Ok(())
}

/// A cache of the last half-context of `history` (positions restart at 0).
fn refill(
    decoder: &Decoder,
    values: &[f32],
    history: &[u32],
    context: usize,
) -> Result<(descent_nn::Cache, Vec<f32>)> {
    let keep = &history[history.len().saturating_sub(context / 2)..];
    let mut cache = decoder.cache();
    let mut logits = Vec::new();
    for &t in keep {
        logits = decoder.step(values, &mut cache, t)?;
    }
    Ok((cache, logits))
}
