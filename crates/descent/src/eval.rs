//! `descent eval WEIGHTS`: loss, accuracy and the confusion matrix of a weights file on the
//! test set of its data (recorded in the file: MNIST, Fashion-MNIST, a directory of IDX files,
//! a table's held-out rows) or on `--data`; MSE, RMSE and MAE for a regression.

use anyhow::{Context, Result};
use descent_data::Dataset;
use descent_nn::{softmax_cross_entropy, LossStats, ModelSpec, Workspace};
use descent_tensor::Pool;
use std::path::Path;

use descent_train::checkpoint::{
    load_weights, load_weights_allowing_nonfinite, read_metadata, CheckpointError,
};

use crate::cli::{ActivationArg, EvalArgs};
use crate::data::{DataMeta, DataSource};

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

/// The weights of `args.weights` laid out by `layout`; values that are not finite are refused
/// unless `--allow-nonfinite` asks for them.
fn weights(args: &EvalArgs, layout: &descent_nn::ParamLayout) -> Result<Vec<f32>> {
    if args.allow_nonfinite {
        return Ok(load_weights_allowing_nonfinite(&args.weights, layout)?.0);
    }
    match load_weights(&args.weights, layout) {
        Ok((params, _)) => Ok(params),
        Err(e @ CheckpointError::NonFinite { .. }) => Err(anyhow::anyhow!(
            "{e}\n(to evaluate it anyway and see how far the run went, add --allow-nonfinite)"
        )),
        Err(e) => Err(e.into()),
    }
}

/// A language model on a text: the mean loss per token and the perplexity over the windows
/// of the model's context that tile the file (each position's next token the target).
fn run_text(args: &EvalArgs, path: &Path) -> Result<()> {
    let vocab = crate::generate::vocab_of(&args.weights)?;
    let spec = architecture(&args.weights, None, None, None)?;
    let net = crate::models::build(&spec)?;
    let params = weights(args, net.layout())?;
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

/// The test examples `eval` reads: `--data`'s (all rows of a table given there), else the
/// test set of the data the weights were trained on (the same held-out rows of a table).
fn test_set(args: &EvalArgs, recorded: Option<&DataMeta>) -> Result<Dataset> {
    let explicit = args.data.is_some();
    let name = args
        .data
        .clone()
        .or_else(|| recorded.map(|m| m.source.clone()));
    let source = DataSource::parse(name.as_deref())?;
    let fallback = DataMeta::default();
    let meta = recorded.unwrap_or(&fallback);
    Ok(match &source {
        DataSource::Set(set) => {
            let norm = meta.pixels.unwrap_or(set.norm);
            let (data, _) = crate::data::benchmark_set(
                set,
                args.data_dir.as_deref(),
                args.no_fetch,
                norm,
                false,
            )?;
            data.test
        }
        DataSource::Csv(path) if explicit => {
            let rows = crate::data::table_rows(meta, path)?;
            crate::data::rows_dataset(meta, rows)?.ok_or_else(|| {
                anyhow::anyhow!(
                    "invalid --data csv:{}: it has no target column `{}` to evaluate against; \
                     `descent predict` predicts rows without one",
                    path.display(),
                    meta.table.as_ref().map_or("", |t| t.target.as_str())
                )
            })?
        }
        DataSource::Csv(path) => crate::data::test_rows(meta, path)?,
        DataSource::Idx(_) | DataSource::Npy(..) | DataSource::Npz(_) | DataSource::Images(_) => {
            let mut table = crate::data::SourceArgs::default();
            table.test_split = meta.test_split.unwrap_or(table.test_split);
            if let Some(im) = meta.image {
                table.image_size = Some(format!("{}x{}", im.height, im.width));
                table.channels = Some(im.channels);
            }
            if matches!(source, DataSource::Npy(..) | DataSource::Npz(_)) {
                table.task = Some(match meta.classes.is_empty() {
                    true => crate::data::TaskArg::Regress,
                    false => crate::data::TaskArg::Classify,
                });
            }
            if let Some(p) = meta.pixels {
                table.normalize = format!("{},{}", p.mean, p.std);
            }
            let none = |_: usize| Ok(0);
            let o = crate::data::LoadOptions {
                data_dir: args.data_dir.as_deref(),
                no_fetch: args.no_fetch,
                quiet: true,
                val_count: &none,
                seed: 0,
                table: &table,
            };
            let (_, mut test, _) = crate::data::load_raw(&source, &o)?;
            crate::data::apply(meta, &mut test)?;
            test
        }
        DataSource::Text(_) => unreachable!("texts are evaluated by run_text"),
    })
}

pub fn run(args: EvalArgs) -> Result<()> {
    let file_meta = read_metadata(&args.weights)?;
    let recorded = DataMeta::of(&args.weights, &file_meta)?;
    let name = args
        .data
        .clone()
        .or_else(|| recorded.as_ref().map(|m| m.source.clone()));
    if let DataSource::Text(path) = DataSource::parse(name.as_deref())? {
        return run_text(&args, &path);
    }
    let spec = architecture(
        &args.weights,
        args.model.as_deref(),
        args.hidden.as_deref(),
        args.activation,
    )?;
    let test = test_set(&args, recorded.as_ref())?;
    let test = &test;
    crate::models::fits(&spec, test.shape(), test.outputs())
        .with_context(|| format!("{}", args.weights.display()))?;
    let net = crate::models::build(&spec)?;
    let params = weights(&args, net.layout()).map_err(|e| {
        let recorded = file_meta.contains_key("model");
        let mismatch = matches!(
            e.downcast_ref::<CheckpointError>(),
            Some(CheckpointError::Mismatch { .. })
        );
        match (recorded, &args.model) {
            (false, None) if mismatch => anyhow::anyhow!(
                "{e:#}\nthe file records no model (PyTorch's files do not): name it with --model \
                 (mlp, cnn, lenet5, resnet or a model file)"
            ),
            _ => e,
        }
    })?;
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let batch = Workspace::capacity_within(&net, 1000, pool.threads(), descent_train::EVAL_BYTES);
    let mut ws = Workspace::new(&net, batch, pool.threads());
    let mut gpu = crate::device::DeviceForward::new(args.device, &net, &params, batch)?;
    // The outputs of a batch (a copy: they are a few values per row).
    let mut forward = |xs: &[f32]| -> Result<Vec<f32>> {
        Ok(match &mut gpu {
            Some(g) => g.outputs(&net, xs)?,
            None => net.forward(&params, xs, &mut ws, &pool)?.to_vec(),
        })
    };
    let f = test.features();
    if test.is_regression() {
        let (mut se, mut ae) = (0f64, 0f64);
        for (xs, ys) in test
            .images()
            .chunks(batch * f)
            .zip(test.values().chunks(batch))
        {
            let out = forward(xs)?;
            for (&o, &y) in out.iter().zip(ys) {
                se += ((o - y) as f64).powi(2);
                ae += (o - y).abs() as f64;
            }
        }
        let n = test.len() as f64;
        out!(
            "{}: test_loss {:.6} (mse), rmse {:.6}, mae {:.6} ({} rows)",
            args.weights.display(),
            se / n,
            (se / n).sqrt(),
            ae / n,
            test.len()
        );
        return Ok(());
    }
    let classes = test.classes();
    let mut confusion = vec![vec![0usize; classes]; classes];
    let mut total = LossStats::default();
    for (xs, ys) in test
        .images()
        .chunks(batch * f)
        .zip(test.labels().chunks(batch))
    {
        let logits = &forward(xs)?[..];
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
    let meta = recorded.unwrap_or_default();
    out!("confusion matrix (rows: true class, columns: predicted)");
    out!(
        "     {}",
        (0..classes).map(|c| format!("{c:>5}")).collect::<String>()
    );
    for (c, row) in confusion.iter().enumerate() {
        let name = meta.class_name(c);
        out!(
            "{c:>3}  {}{}",
            row.iter().map(|n| format!("{n:>5}")).collect::<String>(),
            if name == c.to_string() {
                String::new()
            } else {
                format!("  {name}")
            }
        );
    }
    Ok(())
}
