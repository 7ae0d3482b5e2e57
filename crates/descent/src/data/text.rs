//! Texts for language models: `--data text:FILE`, its windows for training and validation.

use std::path::Path;

use anyhow::Result;

/// A text to train a language model on: its tokens' vocabulary, every window of the first
/// 90% (training) and `val_windows` windows at seeded offsets of the rest (validation).
pub struct Text {
    /// What the ids stand for.
    pub vocab: descent_data::Vocab,
    /// Every window of `block` tokens of the first 90%.
    pub train: descent_data::Dataset,
    /// Windows of the last 10%.
    pub val: descent_data::Dataset,
}

/// Reads `path` as tokens of `kind`.
pub fn read_text(path: &Path, kind: descent_data::TokenKind) -> Result<descent_data::TextCorpus> {
    descent_data::TextCorpus::read(path, kind).map_err(|e| anyhow::anyhow!("invalid --data: {e}"))
}

/// The windows of `block` tokens of `corpus` for training and validation.
pub fn text_windows(
    corpus: &descent_data::TextCorpus,
    block: usize,
    val_windows: usize,
    seed: u64,
) -> Result<Text> {
    let (train, val) = corpus.split(0.9);
    if val.len() <= block || train.len() <= block {
        anyhow::bail!(
            "invalid --data: {} tokens split 90/10 leave fewer than a window of {block} tokens \
             and its next ones on a side; use a longer text or a smaller --block-size",
            corpus.ids.len()
        );
    }
    if val_windows == 0 {
        anyhow::bail!("invalid --val-windows 0: validate on 1 or more windows");
    }
    Ok(Text {
        vocab: corpus.vocab.clone(),
        train: corpus.windows(train, block)?,
        val: corpus.sampled_windows(val, block, val_windows, seed)?,
    })
}

/// The windows and the model of a text run: the GPT the flags shape (sized by the corpus's
/// vocabulary), and the text's training and validation windows of its context length.
pub fn text_run(
    args: &crate::cli::TrainArgs,
    corpus: &descent_data::TextCorpus,
) -> Result<(Text, descent_nn::ModelSpec)> {
    let block = args
        .block_size
        .unwrap_or(descent_nn::GptSize::default().block);
    let spec = crate::train::model_spec_for(args, &[block], corpus.vocab.len())?;
    let text = text_windows(
        corpus,
        descent_nn::numel(&spec.input),
        args.val_windows,
        args.seed,
    )?;
    crate::models::fits(&spec, text.train.shape(), text.train.classes())?;
    Ok((text, spec))
}

/// Epochs enough for a text run to reach its step limit: `args.epochs`, or more when the
/// windows of `train_len` make fewer steps than `--max-steps` in that many (a short text).
pub fn epochs_for_steps(args: &crate::cli::TrainArgs, train_len: usize) -> usize {
    let per_epoch = train_len
        .div_ceil(args.batch_size.max(1))
        .div_ceil(args.grad_accum.max(1))
        .max(1) as u64;
    let needed = args.max_steps.map_or(0, |m| m.div_ceil(per_epoch)) as usize;
    args.epochs.max(needed)
}
