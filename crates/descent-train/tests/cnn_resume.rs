//! A convolutional network with BatchNorm and dropout trains, and a run interrupted mid-epoch
//! and resumed from its checkpoint ends with the weights, running statistics and optimizer
//! state of an uninterrupted run, bit for bit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use descent_data::Dataset;
use descent_nn::{LayerSpec, Model, ModelSpec, Pair};
use descent_optim::{OptimizerConfig, SgdConfig};
use descent_tensor::Rng;
use descent_train::{Event, StopReason, TrainConfig, Trainer};

/// 6x6 images whose class is the quadrant holding a bright blob.
fn blobs(n: usize, seed: u64) -> Dataset {
    let mut rng = Rng::new(seed);
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for _ in 0..n {
        let c = rng.below(4) as u32;
        let (r0, c0) = (3 * (c as usize / 2), 3 * (c as usize % 2));
        for r in 0..6 {
            for col in 0..6 {
                let inside = (r0..r0 + 3).contains(&r) && (c0..c0 + 3).contains(&col);
                x.push(if inside { 1.0 } else { 0.0 } + rng.uniform(-0.4, 0.4));
            }
        }
        y.push(c);
    }
    Dataset::from_vecs(&[1, 6, 6], x, y, 4).unwrap()
}

fn model() -> Model {
    ModelSpec {
        input: vec![1, 6, 6],
        layers: vec![
            LayerSpec::conv2d(4, 3).named("conv").padding(1),
            LayerSpec::batch_norm2d().named("bn"),
            LayerSpec::Relu,
            LayerSpec::Dropout2d { p: 0.2 },
            LayerSpec::max_pool2d(2),
            LayerSpec::AdaptiveAvgPool2d {
                output: Pair::One(1),
            },
            LayerSpec::Flatten,
            LayerSpec::linear(4).named("fc"),
        ],
    }
    .build()
    .unwrap()
}

#[test]
fn a_cnn_with_batchnorm_resumes_bit_identically() {
    let (train, test) = (blobs(400, 1), blobs(100, 2));
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            ..SgdConfig::default()
        }),
        batch_size: 16,
        epochs: 8,
        log_every: 0,
        threads: 2,
        eval_batch: 50,
        ..TrainConfig::default()
    };
    let mut whole = Trainer::new(model(), &cfg).unwrap();
    let s = whole.run_split(&train, None, &test, |_| {}).unwrap();
    assert!(s.test.acc > 90.0, "{s:?}");
    let tracked = whole.net().layout().get("bn.num_batches_tracked").unwrap();
    assert_eq!(
        whole.params()[tracked.offset],
        200.0,
        "8 epochs of 25 batches"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.safetensors");
    let flag = Arc::new(AtomicBool::new(false));
    let mut first = Trainer::new(model(), &cfg).unwrap();
    first.set_interrupt(flag.clone());
    let stop = first
        .run_split(&train, None, &test, |e| {
            if let Event::Progress {
                epoch: 5, batch: 7, ..
            } = e
            {
                flag.store(true, Ordering::SeqCst);
            }
        })
        .unwrap()
        .stop;
    assert_eq!(stop, StopReason::Interrupted { epoch: 5, batch: 7 });
    first.save_checkpoint(&path).unwrap();
    let mut second = Trainer::new(model(), &cfg).unwrap();
    second.load_checkpoint(&path).unwrap();
    second.run_split(&train, None, &test, |_| {}).unwrap();
    assert_eq!(whole.params(), second.params());
    assert_eq!(whole.optimizer().state(), second.optimizer().state());
}
