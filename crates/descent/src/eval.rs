//! `descent eval WEIGHTS`: loss, accuracy and the confusion matrix of a weights file on the
//! MNIST test set.

use anyhow::{anyhow, Result};
use descent_data::Normalize;
use descent_nn::{softmax_cross_entropy, Activation, LossStats, Sequential, Workspace};
use descent_tensor::Pool;
use std::path::Path;

use descent_train::checkpoint::{load_weights, read_metadata};

use crate::cli::{ActivationArg, EvalArgs};

/// The architecture of the weights at `path`: from the file's metadata (descent writes it),
/// with `hidden` and `activation` filling in or overriding it; the seed's model otherwise.
pub fn architecture(
    path: &Path,
    hidden: Option<&[usize]>,
    activation: Option<ActivationArg>,
) -> Result<(Vec<usize>, Activation)> {
    let meta = read_metadata(path)?;
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
    Ok((hidden, activation))
}

pub fn run(args: EvalArgs) -> Result<()> {
    let (hidden, activation) =
        architecture(&args.weights, args.hidden.as_deref(), args.activation)?;
    let (data, _) = crate::data::mnist(
        args.data_dir.as_deref(),
        args.no_fetch,
        Normalize::default(),
        false,
    )?;
    let test = &data.test;
    let net = Sequential::mlp(test.features(), &hidden, test.classes(), activation)?;
    let (params, _) = load_weights(&args.weights, net.layout())?;
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let batch = 1000;
    let mut ws = Workspace::new(&net, batch);
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
