//! A user's own convolutional network, trained with descent as a library: the model is
//! described in Rust code, the data made in memory, and the run uses descent's optimizers,
//! a warmup + cosine schedule, early stopping on a validation set, a checkpoint, and a
//! resume from it. No command line involved.
//!
//!     cargo run --release --example custom_cnn -p descent-train
//!
//! The task: 16x16 images holding one bar, horizontal, vertical or diagonal, at a random
//! place, with noise; the class is the bar's direction.

use descent_data::Dataset;
use descent_nn::{LayerSpec, ModelSpec};
use descent_optim::schedule::Schedule;
use descent_optim::{AdamConfig, OptimizerConfig};
use descent_tensor::Rng;
use descent_train::{EarlyStop, Event, Monitor, TrainConfig, Trainer};

const SIDE: usize = 16;

/// `n` noisy images of bars and their directions (0 horizontal, 1 vertical, 2 diagonal).
fn bars(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let mut images = Vec::with_capacity(n * SIDE * SIDE);
    let mut labels = Vec::with_capacity(n);
    for _ in 0..n {
        let class = rng.below(3) as u32;
        let (r, c) = (2 + rng.below(12) as isize, 2 + rng.below(12) as isize);
        let mut img = [0.0f32; SIDE * SIDE];
        for t in -2..=2isize {
            let (y, x) = match class {
                0 => (r, c + t),
                1 => (r + t, c),
                _ => (r + t, c + t),
            };
            img[y as usize * SIDE + x as usize] = 1.0;
        }
        images.extend(img.iter().map(|v| v + rng.uniform(-0.3, 0.3)));
        labels.push(class);
    }
    Dataset::from_vecs(&[1, SIDE, SIDE], images, labels, 3).expect("shapes fit")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The model: described in code, built and checked layer by layer.
    let spec = ModelSpec {
        input: vec![1, SIDE, SIDE],
        layers: vec![
            LayerSpec::conv2d(8, 3).named("conv1").padding(1),
            LayerSpec::batch_norm2d().named("bn1"),
            LayerSpec::Relu,
            LayerSpec::max_pool2d(2),
            LayerSpec::conv2d(16, 3).named("conv2").padding(1),
            LayerSpec::Relu,
            LayerSpec::AdaptiveAvgPool2d {
                output: descent_nn::Pair::One(1),
            },
            LayerSpec::Flatten,
            LayerSpec::linear(3).named("head"),
        ],
    };
    let (mut train, test) = (bars(3000, 1), bars(600, 2));
    let val = train.split_off_random(300, 0)?;

    let steps_per_epoch = train.len().div_ceil(32) as u64;
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            ..AdamConfig::default()
        }),
        schedule: Schedule::warmup_then(
            50,
            Schedule::Cosine {
                t_max: 12 * steps_per_epoch,
                eta_min: 0.0,
            },
        ),
        early_stop: Some(EarlyStop {
            monitor: Monitor::ValLoss,
            patience: 2,
            min_delta: 0.0,
        }),
        batch_size: 32,
        epochs: 12,
        log_every: 0,
        ..TrainConfig::default()
    };
    let dir = std::env::temp_dir().join(format!("descent-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let checkpoint = dir.join("checkpoint.safetensors");

    // Train the first 3 epochs, checkpointing after each: a run that stops here...
    let short = TrainConfig {
        epochs: 3,
        ..cfg.clone()
    };
    let mut first = Trainer::new(spec.build()?, &short)?;
    first.checkpoint_every(&checkpoint, 1);
    println!(
        "model: {} parameters, layers {:?}",
        first.net().param_count(),
        first
            .net()
            .layers()
            .iter()
            .map(|l| l.kind())
            .collect::<Vec<_>>()
    );
    let report = |e: Event| {
        if let Event::EpochEnd(r) = e {
            let v = r.val.expect("validating");
            println!(
                "epoch {:2}: train_loss {:.4} val_loss {:.4} val_acc {:.1}% lr {:.2e}",
                r.epoch, r.train_loss, v.loss, v.acc, r.lr
            );
        }
    };
    first.run_split(&train, Some(&val), &test, report)?;

    // ... and goes on from its checkpoint with the whole schedule, to early stopping.
    let mut rest = Trainer::new(spec.build()?, &cfg)?;
    rest.load_checkpoint(&checkpoint)?;
    let summary = rest.run_split(&train, Some(&val), &test, report)?;
    println!(
        "stopped: {}; test accuracy {:.1}% with the weights of epoch {}",
        summary.stop, summary.test.acc, summary.kept_epoch
    );
    std::fs::remove_dir_all(&dir)?;
    assert!(summary.test.acc > 90.0, "the bars are learnable");
    Ok(())
}
