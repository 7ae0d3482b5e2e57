//! `descent bench`: GEMM throughput on the seed model's shapes, and whole epochs.
//!
//! Reports medians of several runs; compare against a reference run on the same machine in
//! the same session (`../shared/bench/torch_fast.py`).

use std::time::Instant;

use anyhow::{bail, ensure, Result};
use descent_nn::{Activation, Loss, Model, Targets, Workspace};
use descent_optim::{HyperValue, Optimizer, OptimizerConfig, ParamSpec, OPTIMIZER_NAMES};
use descent_tensor::{
    matmul, matmul_gemm, matmul_naive, matmul_path, matmul_serial, set_isa, Isa, MatMut, MatRef,
    Pool, Rng,
};
use descent_train::{Event, OnPool, TrainConfig, Trainer};

use crate::cli::{BenchArgs, BenchWhat};

/// The `--model` of a benchmark, for MNIST-shaped inputs.
fn model(args: &BenchArgs) -> Result<descent_nn::Model> {
    let margs = crate::models::ModelArgs {
        model: args.model.as_deref(),
        ..Default::default()
    };
    crate::models::build(&crate::models::spec(
        margs,
        &crate::models::MNIST_SHAPE,
        10,
    )?)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    match args.what {
        BenchWhat::Gemm => gemm(&args),
        BenchWhat::Optim => optim(&args),
        BenchWhat::Epoch => epoch(&args),
        BenchWhat::Layers => layers(&args),
    }
}

/// One product of a training step: `dst (m x n) = a · b` with the operands stored as the
/// engine stores them.
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
}

const fn shape(
    name: &'static str,
    (m, n, k): (usize, usize, usize),
    a_t: bool,
    b_t: bool,
) -> Shape {
    Shape {
        name,
        m,
        n,
        k,
        a_t,
        b_t,
    }
}

/// The seed MLP's five products, then the cnn preset's (one image of its second convolution,
/// and its 9216 -> 128 layer).
const SHAPES: [Shape; 11] = [
    shape("fc1 forward   x·W1ᵀ", (64, 512, 784), false, true),
    shape("fc1 weight grad dZᵀ·x", (512, 784, 64), true, false),
    shape("fc2 forward   h·W2ᵀ", (64, 10, 512), false, true),
    shape("fc2 weight grad dZᵀ·h", (10, 512, 64), true, false),
    shape("fc2 input grad dZ·W2", (64, 512, 10), false, false),
    shape("cnn conv2 fwd  W·cols", (64, 576, 288), false, false),
    shape("cnn conv2 dW   dY·colsᵀ", (64, 288, 576), false, true),
    shape("cnn conv2 dcols Wᵀ·dY", (288, 576, 64), true, false),
    shape("cnn fc1 fwd    x·Wᵀ", (64, 128, 9216), false, true),
    shape("cnn fc1 dW     dZᵀ·x", (128, 9216, 64), true, false),
    shape("cnn fc1 dx     dZ·W", (64, 9216, 128), false, false),
];

/// The f32 products of one step of the GPT preset (batch 32 of 128 tokens: 4096 rows, 128
/// wide, the MLP 512 wide), in each block's order: forward, weight gradient, input gradient.
const GPT_SHAPES: [Shape; 15] = [
    shape("qkv fwd    x·Wᵀ", (4096, 384, 128), false, true),
    shape("qkv dW     dYᵀ·x", (384, 128, 4096), true, false),
    shape("qkv dx     dY·W", (4096, 128, 384), false, false),
    shape("proj fwd   x·Wᵀ", (4096, 128, 128), false, true),
    shape("proj dW    dYᵀ·x", (128, 128, 4096), true, false),
    shape("proj dx    dY·W", (4096, 128, 128), false, false),
    shape("fc fwd     x·Wᵀ", (4096, 512, 128), false, true),
    shape("fc dW      dYᵀ·x", (512, 128, 4096), true, false),
    shape("fc dx      dY·W", (4096, 128, 512), false, false),
    shape("fc_proj fwd x·Wᵀ", (4096, 128, 512), false, true),
    shape("fc_proj dW dYᵀ·x", (128, 512, 4096), true, false),
    shape("fc_proj dx dY·W", (4096, 512, 128), false, false),
    shape("head fwd   x·Wᵀ", (4096, 65, 128), false, true),
    shape("head dW    dYᵀ·x", (65, 128, 4096), true, false),
    shape("head dx    dY·W", (4096, 128, 65), false, false),
];

fn gemm(args: &BenchArgs) -> Result<()> {
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let t = pool.threads();
    let best = descent_tensor::isa();
    let isas: Vec<Isa> = [Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|i| i.supported())
        .collect();
    let mut rng = Rng::new(0);
    let (shapes, batch): (&[Shape], _) = match args.model.as_deref() {
        None | Some("mlp") | Some("cnn") => (&SHAPES, "batch 64"),
        Some("gpt") => (&GPT_SHAPES, "the GPT preset, 32 windows of 128 tokens"),
        Some(other) => bail!(
            "bench gemm: no product list for --model {other}; it has the seed's and the cnn's \
             (the default) and the GPT preset's (--model gpt)"
        ),
    };
    out!(
        "GEMM on a training step's shapes ({batch}), GFLOP/s, median of {} runs; the \
         instruction sets' kernels on 1 thread, 'engine' is descent ({}) on {} threads",
        args.runs,
        best.name(),
        t
    );
    let mut head = format!(
        "{:<24} {:>5} {:>5} {:>5} {:>7} {:>10}",
        "product", "m", "n", "k", "naive", "gemm crate"
    );
    for isa in &isas {
        head += &format!(" {:>8}", isa.name());
    }
    out!("{head} {:>8}  kernel", "engine");
    for s in shapes {
        let a: Vec<f32> = (0..s.m * s.k).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let b: Vec<f32> = (0..s.k * s.n).map(|_| rng.uniform(-1.0, 1.0)).collect();
        let av = if s.a_t {
            MatRef::new(&a, s.k, s.m)?.t()
        } else {
            MatRef::new(&a, s.m, s.k)?
        };
        let bv = if s.b_t {
            MatRef::new(&b, s.n, s.k)?.t()
        } else {
            MatRef::new(&b, s.k, s.n)?
        };
        let mut c = vec![0.0f32; s.m * s.n];
        let flop = 2.0 * (s.m * s.n * s.k) as f64;
        let reps = ((5e9 / flop) as usize / args.runs).max(2);
        let time = |f: &mut dyn FnMut(), reps: usize| {
            f(); // warm up: caches, pool threads, page faults
            let runs: Vec<f64> = (0..args.runs)
                .map(|_| {
                    let t0 = Instant::now();
                    for _ in 0..reps {
                        f();
                    }
                    t0.elapsed().as_secs_f64() / reps as f64
                })
                .collect();
            flop / median(runs) / 1e9
        };
        let naive = time(
            &mut || matmul_naive(MatMut::new(&mut c, s.m, s.n).unwrap(), av, bv, 1.0, 0.0),
            1,
        );
        let mut want = c.clone();
        matmul_naive(MatMut::new(&mut want, s.m, s.n)?, av, bv, 1.0, 0.0);
        let check = |c: &[f32], what: &str| {
            let worst = c
                .iter()
                .zip(&want)
                .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
                .fold(0f32, f32::max);
            ensure!(
                worst < 1e-3,
                "{} ({what}): fast and naive disagree by {worst}",
                s.name
            );
            Ok(())
        };
        let krate = time(
            &mut || matmul_gemm(MatMut::new(&mut c, s.m, s.n).unwrap(), av, bv, 1.0, 0.0),
            reps,
        );
        let mut row = format!(
            "{:<24} {:>5} {:>5} {:>5} {:>7.1} {:>10.1}",
            s.name, s.m, s.n, s.k, naive, krate
        );
        for &isa in &isas {
            set_isa(isa)?;
            let g = time(
                &mut || matmul_serial(MatMut::new(&mut c, s.m, s.n).unwrap(), av, bv, 1.0, 0.0),
                reps,
            );
            check(&c, isa.name())?;
            row += &format!(" {g:>8.1}");
        }
        set_isa(best)?;
        let engine = time(
            &mut || {
                matmul(
                    MatMut::new(&mut c, s.m, s.n).unwrap(),
                    av,
                    bv,
                    1.0,
                    0.0,
                    &pool,
                )
            },
            reps,
        );
        check(&c, "engine")?;
        out!("{row} {engine:>8.1}  {}", matmul_path(av, bv));
    }
    Ok(())
}

/// Every optimizer's step on the seed model's parameters, against the training step it
/// follows (forward and backward of a batch of 64, gradients out) timed in the same run.
fn optim(args: &BenchArgs) -> Result<()> {
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let net = Model::mlp(784, &[512], 10, Activation::Relu, 0.0)?;
    let mut rng = Rng::new(1);
    let mut params = net.init_params(&mut rng);
    let n = params.len();
    let specs: Vec<ParamSpec> = net
        .layout()
        .params()
        .map(|v| ParamSpec::new(v.name.clone(), &v.shape))
        .collect();
    let batch = 64;
    let x: Vec<f32> = (0..batch * 784).map(|_| rng.uniform(-0.5, 2.5)).collect();
    let y: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
    let mut ws = Workspace::new(&net, batch, pool.threads());
    let mut grads = vec![0.0f32; n];
    let reps = 200;
    // Median over runs of the mean over `reps` calls, in microseconds.
    let time = |f: &mut dyn FnMut()| {
        for _ in 0..10 {
            f(); // warm up: caches, pool threads, page faults, lazily made state
        }
        let runs: Vec<f64> = (0..args.runs)
            .map(|_| {
                let t0 = Instant::now();
                for _ in 0..reps {
                    f();
                }
                t0.elapsed().as_secs_f64() / reps as f64 * 1e6
            })
            .collect();
        median(runs)
    };
    let step = time(&mut || {
        net.train_step_grads(
            &mut params,
            &x,
            Targets::Classes(&y),
            &Loss::default(),
            &mut grads,
            &mut ws,
            &pool,
        )
        .expect("shapes fit");
    });
    // Gradients of a real step keep the updates realistic (and finite).
    for g in &mut grads {
        *g *= 1e-3;
    }
    out!(
        "optimizer step on the seed model ({n} parameters), {} threads, median of {} runs x {reps} steps",
        pool.threads(),
        args.runs
    );
    out!("training step (batch 64, forward + backward): {step:.1} µs");
    out!(
        "{:<18} {:>10} {:>12} {:>9}",
        "optimizer",
        "µs/step",
        "GB/s moved",
        "% of step"
    );
    let mut rows: Vec<(String, OptimizerConfig)> = OPTIMIZER_NAMES
        .iter()
        .filter(|&&o| o != "gd")
        .map(|&o| {
            (
                o.to_string(),
                OptimizerConfig::default_for(o).expect("listed"),
            )
        })
        .collect();
    let mut sgd_m = OptimizerConfig::default_for("sgd").expect("listed");
    sgd_m.set("momentum", HyperValue::Num(0.9))?;
    rows.insert(1, ("sgd momentum".into(), sgd_m));
    let mut ams = OptimizerConfig::default_for("adam").expect("listed");
    ams.set("amsgrad", HyperValue::Flag(true))?;
    rows.push(("adam amsgrad".into(), ams));
    for (label, cfg) in rows {
        let mut opt = Optimizer::new(cfg, &specs)?;
        let mut p = params.clone();
        let us = time(&mut || {
            opt.step_on(&OnPool(&pool), &mut p, &grads)
                .expect("lengths fit");
        });
        // Bytes each step must read and write: params (r+w), grads (r), each buffer (r+w).
        let buffers = cfg.buffer_names().iter().filter(|b| !b.is_empty()).count();
        let bytes = (4 * n * (3 + 2 * buffers)) as f64;
        out!(
            "{:<18} {:>10.1} {:>12.1} {:>8.1}%",
            label,
            us,
            bytes / us / 1e3,
            100.0 * us / step
        );
    }
    Ok(())
}

/// Each layer's share of a training step of `--model` on random MNIST-shaped inputs: the
/// median over `--runs` runs of 20 steps each, in milliseconds per step, and GFLOP/s of its
/// matrix products (backward: weight and input gradients, the latter only where needed).
fn layers(args: &BenchArgs) -> Result<()> {
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let net = model(args)?;
    let batch = args.batch_size.max(1);
    let mut rng = Rng::new(1);
    let mut values = net.init_params(&mut rng);
    let x: Vec<f32> = (0..batch * net.input_features())
        .map(|_| rng.uniform(-0.5, 2.5))
        .collect();
    let y: Vec<u32> = (0..batch).map(|_| rng.below(10) as u32).collect();
    let mut ws = Workspace::new(&net, batch, pool.threads());
    let mut grads = vec![0.0f32; net.param_count()];
    let n = net.layers().len();
    let reps = 20;
    let mut step = |f: &mut [f64], b: &mut [f64]| -> Result<()> {
        net.profile_step(
            &mut values,
            &x,
            Targets::Classes(&y),
            &Loss::default(),
            &mut grads,
            &mut ws,
            &pool,
            (f, b),
        )?;
        Ok(())
    };
    let (mut f, mut b) = (vec![0.0; n], vec![0.0; n]);
    for _ in 0..3 {
        step(&mut f, &mut b)?; // warm up
    }
    let mut runs: Vec<(Vec<f64>, Vec<f64>)> = Vec::new();
    for _ in 0..args.runs {
        let (mut f, mut b) = (vec![0.0; n], vec![0.0; n]);
        for _ in 0..reps {
            step(&mut f, &mut b)?;
        }
        runs.push((f, b));
    }
    let med = |i: usize, fwd: bool| {
        median(
            runs.iter()
                .map(|(f, b)| 1e3 * if fwd { f[i] } else { b[i] } / reps as f64)
                .collect(),
        )
    };
    out!(
        "layers of {} (batch {batch}, {} threads): ms per training step, median of {} runs x {reps} steps",
        crate::models::describe(args.model.as_deref(), &net),
        pool.threads(),
        args.runs
    );
    out!(
        "{:<3} {:<18} {:<16} {:>9} {:>9} {:>10} {:>10}",
        "#",
        "layer",
        "output",
        "fwd ms",
        "bwd ms",
        "fwd GF/s",
        "bwd GF/s"
    );
    let (mut total_f, mut total_b, mut flops) = (0.0, 0.0, 0.0);
    for (i, l) in net.layers().iter().enumerate() {
        let (tf, tb) = (med(i, true), med(i, false));
        let fl = (l.flops() * batch as u64) as f64;
        let bl = (net.backward_flops(i) * batch as u64) as f64;
        let rate = |flop: f64, ms: f64| match flop > 0.0 {
            true => format!("{:.1}", flop / ms / 1e6),
            false => "-".into(),
        };
        let shape: Vec<String> = l.output_shape().iter().map(|d| d.to_string()).collect();
        out!(
            "{:<3} {:<18} {:<16} {:>9.3} {:>9.3} {:>10} {:>10}",
            i + 1,
            l.kind(),
            shape.join("x"),
            tf,
            tb,
            rate(fl, tf),
            rate(bl, tb)
        );
        total_f += tf;
        total_b += tb;
        flops += fl + bl;
    }
    out!(
        "total: forward {total_f:.2} ms, backward {total_b:.2} ms, {:.1} GFLOP/s; an epoch of \
         60 000 images is about {:.1} s",
        flops / (total_f + total_b) / 1e6,
        (total_f + total_b) / 1e3 * 60_000.0 / batch as f64
    );
    Ok(())
}

fn epoch(args: &BenchArgs) -> Result<()> {
    let optimizer = OptimizerConfig::default_for(&args.optimizer).ok_or_else(|| {
        anyhow::anyhow!(
            "invalid --optimizer {}: known optimizers: {}",
            args.optimizer,
            OPTIMIZER_NAMES.join(", ")
        )
    })?;
    let source = crate::data::DataSource::parse(args.data.as_deref())?;
    if let crate::data::DataSource::Text(_) = source {
        anyhow::bail!("invalid --data: `bench epoch` times the sources of images and tables");
    }
    let none = |_: usize| Ok(0);
    let data = crate::data::load_train(
        &source,
        &crate::data::LoadOptions {
            data_dir: args.data_dir.as_deref(),
            no_fetch: false,
            quiet: true,
            val_count: &none,
            seed: 0,
            table: &args.source,
        },
    )?;
    let regression = data.train.is_regression();
    let cfg = TrainConfig {
        optimizer,
        epochs: args.runs,
        threads: args.threads.unwrap_or(0),
        log_every: 0,
        batch_size: args.batch_size,
        loss: match regression {
            true => Loss::Mse,
            false => Loss::default(),
        },
        loader: args.loader.into(),
        ..TrainConfig::default()
    };
    let margs = crate::models::ModelArgs {
        model: args.model.as_deref(),
        ..Default::default()
    };
    let spec = crate::models::spec(margs, data.train.shape(), data.train.outputs())?;
    let model = crate::models::build(&spec)?;
    let gflop = model.step_flops() as f64 * data.train.len() as f64 / 1e9;
    let name = crate::models::describe(args.model.as_deref(), &model);
    let mut trainer = Trainer::new(model, &cfg).map_err(crate::train::cli_error)?;
    crate::device::attach(&mut trainer, args.device)?;
    out!(
        "model {name}, {} lr {}, batch {} on {} ({} examples{}), {}, {} threads, {} epochs",
        cfg.optimizer.name(),
        cfg.lr(),
        cfg.batch_size,
        source.name(),
        data.train.len(),
        if data.train.is_streamed() {
            ", streamed"
        } else {
            ""
        },
        trainer.device(),
        trainer.threads(),
        cfg.epochs
    );
    let (mut times, mut waits) = (Vec::new(), Vec::new());
    trainer.run(&data.train, &data.test, |e| {
        if let Event::EpochEnd(r) = e {
            let metric = match regression {
                true => format!("test_loss {:.4}", r.test_loss.unwrap_or(f64::NAN)),
                false => format!("test_acc {:.2}%", r.test_acc.unwrap_or(f64::NAN)),
            };
            out!(
                "epoch {} time {:.3}s (waiting for batches {:.4}s, {:.2}%) {metric}",
                r.epoch,
                r.seconds,
                r.data_wait,
                100.0 * r.data_wait / r.seconds.max(1e-9)
            );
            times.push(r.seconds);
            waits.push(100.0 * r.data_wait / r.seconds.max(1e-9));
        }
    })?;
    let med = median(times);
    out!(
        "median epoch {:.3}s ({:.0} GFLOP/s on ~{gflop:.0} GFLOP per epoch); waiting for \
         batches: median {:.2}% of the epoch",
        med,
        gflop / med,
        median(waits)
    );
    Ok(())
}
