//! `descent train`.

use anyhow::Result;
use descent_data::Normalize;
use descent_nn::Activation;
use descent_train::{Event, TrainConfig, Trainer};

use crate::cli::{ActivationArg, TrainArgs};
use crate::progress::Bar;

pub fn config(args: &TrainArgs) -> TrainConfig {
    TrainConfig {
        hidden: args.hidden.clone(),
        activation: match args.activation {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::Tanh => Activation::Tanh,
            ActivationArg::Sigmoid => Activation::Sigmoid,
        },
        optimizer: args.optimizer.clone(),
        lr: args.lr,
        momentum: args.momentum,
        batch_size: args.batch_size,
        epochs: args.epochs,
        seed: args.seed,
        threads: args.threads.unwrap_or(0),
        log_every: args.log_every,
        shuffle: !args.no_shuffle,
        drop_last: args.drop_last,
        normalize: Normalize::default(),
        ..TrainConfig::default()
    }
}

pub fn run(args: TrainArgs) -> Result<()> {
    let cfg = config(&args);
    cfg.validate()?;
    let (data, _) = crate::data::mnist(
        args.data_dir.as_deref(),
        args.no_fetch,
        cfg.normalize,
        args.quiet,
    )?;
    let mut trainer = Trainer::new(&cfg, data.train.features(), data.train.classes())?;
    if !args.quiet {
        let sizes: Vec<String> = std::iter::once(data.train.features())
            .chain(cfg.hidden.iter().copied())
            .chain(std::iter::once(data.train.classes()))
            .map(|s| s.to_string())
            .collect();
        eprintln!(
            "model {} {} ({} parameters), {} lr {}, batch {}, {} epochs, seed {}, {} threads",
            sizes.join("-"),
            cfg.activation.name(),
            trainer.params().len(),
            cfg.optimizer,
            cfg.lr,
            cfg.batch_size,
            cfg.epochs,
            cfg.seed,
            trainer.threads()
        );
    }
    let bar = Bar::new(!args.quiet);
    let quiet = args.quiet;
    let result = trainer.run(&data.train, &data.test, |e| match e {
        Event::Log { epoch, batch, loss } if !quiet => {
            bar.println(&format!("[{}, {:5}] loss: {:.3}", epoch, batch, loss))
        }
        Event::Log { .. } => {}
        Event::Progress {
            epoch,
            batch,
            batches,
        } => {
            if batch == 1 {
                bar.reset(format!("epoch {epoch}"), batches as u64);
            }
            bar.set(batch as u64);
        }
        Event::EpochEnd(r) => bar.println(&format!(
            "epoch {}: train_loss {:.4} test_acc {:.2}% time {:.2}s",
            r.epoch, r.train_loss, r.test_acc, r.seconds
        )),
    });
    bar.finish();
    result?;
    Ok(())
}
