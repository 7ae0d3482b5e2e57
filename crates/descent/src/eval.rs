//! `descent eval WEIGHTS`: loss, accuracy and the confusion matrix of a weights file on the
//! MNIST test set.

use anyhow::{Context, Result};
use descent_data::Normalize;
use descent_nn::{softmax_cross_entropy, LossStats, ModelSpec, Workspace};
use descent_tensor::Pool;
use std::path::Path;

use descent_train::checkpoint::{load_weights, read_metadata};

use crate::cli::{ActivationArg, EvalArgs};

/// The model of the weights at `path`: `model` when given (a file PyTorch saved records
/// none), else the description the file records, else the MLP that `hidden` and
/// `activation` describe.
pub fn architecture(
    path: &Path,
    model: Option<&str>,
    hidden: Option<&[usize]>,
    activation: Option<ActivationArg>,
) -> Result<ModelSpec> {
    let meta = read_metadata(path)?;
    if model.is_some() {
        let args = crate::models::ModelArgs {
            model,
            hidden,
            activation,
            dropout: None,
            set: &[],
            gpt: Default::default(),
        };
        return crate::models::spec(args, &crate::models::MNIST_SHAPE, 10);
    }
    crate::models::recorded(path, &meta, hidden, activation)
}

/// A language model on a text: the mean loss per token and the perplexity over the windows
/// of the model's context that tile the file (each position's next token the target).
fn run_text(args: &EvalArgs, path: &Path) -> Result<()> {
    let vocab = crate::generate::vocab_of(&args.weights)?;
    let spec = architecture(&args.weights, None, None, None)?;
    let net = crate::models::build(&spec)?;
    let (params, _) = load_weights(&args.weights, net.layout())?;
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("invalid --data text:{}: {e}", path.display()))?;
    let ids = vocab
        .encode(&text)
        .map_err(|e| anyhow::anyhow!("invalid --data text:{}: {e}", path.display()))?;
    let block = descent_nn::numel(&spec.input);
    if ids.len() <= block {
        anyhow::bail!(
            "invalid --data text:{}: {} tokens hold no window of the model's {block} and the next",
            path.display(),
            ids.len()
        );
    }
    let starts: Vec<u32> = (0..(ids.len() - 1) / block)
        .map(|w| (w * block) as u32)
        .collect();
    let windows = descent_data::Dataset::windows(ids, block, vocab.len(), Some(starts))?;
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let batch = Workspace::capacity_within(&net, 64, pool.threads(), descent_train::EVAL_BYTES);
    let mut ws = Workspace::new(&net, batch, pool.threads());
    let mut total = LossStats::default();
    let (mut x, mut y) = (vec![0.0; batch * block], vec![0; batch * block]);
    for start in (0..windows.len()).step_by(batch) {
        let rows = batch.min(windows.len() - start);
        for r in 0..rows {
            x[r * block..(r + 1) * block].copy_from_slice(windows.example(start + r));
            y[r * block..(r + 1) * block].copy_from_slice(windows.targets(start + r));
        }
        total.merge(net.evaluate(
            &params,
            &x[..rows * block],
            descent_nn::Targets::Classes(&y[..rows * block]),
            &descent_nn::Loss::default(),
            &mut ws,
            &pool,
        )?);
    }
    out!(
        "{} on {}: loss {:.4} per token, perplexity {:.2}, next-token accuracy {:.2}% ({} tokens in {} windows of {block})",
        args.weights.display(),
        path.display(),
        total.mean_loss(),
        total.mean_loss().exp(),
        total.accuracy(),
        total.count,
        windows.len()
    );
    Ok(())
}

pub fn run(args: EvalArgs) -> Result<()> {
    if let Some(path) = crate::data::text_source(args.data.as_deref())? {
        return run_text(&args, &path);
    }
    let spec = architecture(
        &args.weights,
        args.model.as_deref(),
        args.hidden.as_deref(),
        args.activation,
    )?;
    let (data, _) = crate::data::mnist(
        args.data_dir.as_deref(),
        args.no_fetch,
        Normalize::default(),
        false,
    )?;
    let test = &data.test;
    crate::models::fits(&spec, test.shape(), test.classes())
        .with_context(|| format!("{}", args.weights.display()))?;
    let net = crate::models::build(&spec)?;
    let (params, _) = load_weights(&args.weights, net.layout()).map_err(|e| {
        let recorded = read_metadata(&args.weights).is_ok_and(|m| m.contains_key("model"));
        match (recorded, &args.model) {
            (false, None) => anyhow::anyhow!(
                "{e}\nthe file records no model (PyTorch's files do not): name it with --model \
                 (mlp, cnn, lenet5, resnet or a model file)"
            ),
            _ => e.into(),
        }
    })?;
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let batch = Workspace::capacity_within(&net, 1000, pool.threads(), descent_train::EVAL_BYTES);
    let mut ws = Workspace::new(&net, batch, pool.threads());
    let classes = test.classes();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut total = LossStats::default();
    let f = test.features();
    for (xs, ys) in test
        .images()
        .chunks(batch * f)
        .zip(test.labels().chunks(batch))
    {
        let logits = net.forward(&params, xs, &mut ws, &pool)?;
        total.merge(softmax_cross_entropy(logits, ys, classes, None)?);
        for (row, &y) in logits.chunks(classes).zip(ys) {
            let pred = row
                .iter()
                .enumerate()
                .fold(0, |best, (c, &v)| if v > row[best] { c } else { best });
            confusion[y as usize][pred] += 1;
        }
    }
    out!(
        "{}: test_loss {:.4} test_acc {:.2}% ({} of {})",
        args.weights.display(),
        total.mean_loss(),
        total.accuracy(),
        total.correct,
        total.count
    );
    out!("confusion matrix (rows: true class, columns: predicted)");
    out!(
        "     {}",
        (0..classes).map(|c| format!("{c:>5}")).collect::<String>()
    );
    for (c, row) in confusion.iter().enumerate() {
        out!(
            "{c:>3}  {}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>()
        );
    }
    Ok(())
}
