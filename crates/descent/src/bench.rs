//! `descent bench`: GEMM throughput on the seed model's shapes, and whole epochs.
//!
//! Reports medians of several runs; compare against a reference run on the same machine in
//! the same session (`../shared/bench/torch_fast.py`).

use std::time::Instant;

use anyhow::{ensure, Result};
use descent_tensor::{
    matmul, matmul_gemm, matmul_naive, matmul_path, matmul_serial, MatMut, MatRef, Pool, Rng,
};
use descent_train::{Event, TrainConfig, Trainer};

use crate::cli::{BenchArgs, BenchWhat};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(args: BenchArgs) -> Result<()> {
    ensure!(args.runs > 0, "--runs must be at least 1");
    match args.what {
        BenchWhat::Gemm => gemm(&args),
        BenchWhat::Epoch => epoch(&args),
    }
}

/// One product of the seed's training step: `dst (m x n) = a · b` with the operands stored
/// as the engine stores them.
struct Shape {
    name: &'static str,
    m: usize,
    n: usize,
    k: usize,
    a_t: bool,
    b_t: bool,
}

const SHAPES: [Shape; 5] = [
    Shape {
        name: "fc1 forward   x·W1ᵀ",
        m: 64,
        n: 512,
        k: 784,
        a_t: false,
        b_t: true,
    },
    Shape {
        name: "fc1 weight grad dZᵀ·x",
        m: 512,
        n: 784,
        k: 64,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "fc2 forward   h·W2ᵀ",
        m: 64,
        n: 10,
        k: 512,
        a_t: false,
        b_t: true,
    },
    Shape {
        name: "fc2 weight grad dZᵀ·h",
        m: 10,
        n: 512,
        k: 64,
        a_t: true,
        b_t: false,
    },
    Shape {
        name: "fc2 input grad dZ·W2",
        m: 64,
        n: 512,
        k: 10,
        a_t: false,
        b_t: false,
    },
];

fn gemm(args: &BenchArgs) -> Result<()> {
    let pool = Pool::new(args.threads.unwrap_or(0))?;
    let t = pool.threads();
    let mut rng = Rng::new(0);
    out!(
        "GEMM on the seed model's shapes (batch 64), GFLOP/s, median of {} runs; \
         'gemm crate' and 'descent' on 1 thread, 'engine' is descent on {} threads",
        args.runs,
        t
    );
    out!(
        "{:<24} {:>5} {:>5} {:>5} {:>7} {:>10} {:>8} {:>8}  kernel",
        "product",
        "m",
        "n",
        "k",
        "naive",
        "gemm crate",
        "descent",
        "engine"
    );
    for s in &SHAPES {
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
        let krate = time(
            &mut || matmul_gemm(MatMut::new(&mut c, s.m, s.n).unwrap(), av, bv, 1.0, 0.0),
            reps,
        );
        let serial = time(
            &mut || matmul_serial(MatMut::new(&mut c, s.m, s.n).unwrap(), av, bv, 1.0, 0.0),
            reps,
        );
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
        let worst = c
            .iter()
            .zip(&want)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0f32, f32::max);
        ensure!(
            worst < 1e-3,
            "{}: fast and naive disagree by {worst}",
            s.name
        );
        out!(
            "{:<24} {:>5} {:>5} {:>5} {:>7.1} {:>10.1} {:>8.1} {:>8.1}  {}",
            s.name,
            s.m,
            s.n,
            s.k,
            naive,
            krate,
            serial,
            engine,
            matmul_path(av, bv)
        );
    }
    Ok(())
}

fn epoch(args: &BenchArgs) -> Result<()> {
    let cfg = TrainConfig {
        epochs: args.runs,
        threads: args.threads.unwrap_or(0),
        log_every: 0,
        ..TrainConfig::default()
    };
    let (data, dir) = crate::data::mnist(args.data_dir.as_deref(), false, cfg.normalize, true)?;
    let mut trainer = Trainer::new(&cfg, data.train.features(), data.train.classes())?;
    out!(
        "seed workload (MLP 784-512-10, SGD lr 0.01, batch 64) on {}, {} threads, {} epochs",
        dir.display(),
        trainer.threads(),
        cfg.epochs
    );
    let mut times = Vec::new();
    trainer.run(&data.train, &data.test, |e| {
        if let Event::EpochEnd(r) = e {
            out!(
                "epoch {} time {:.3}s test_acc {:.2}%",
                r.epoch,
                r.seconds,
                r.test_acc
            );
            times.push(r.seconds);
        }
    })?;
    let gflop = 98.5;
    let med = median(times);
    out!(
        "median epoch {:.3}s ({:.0} GFLOP/s on ~{gflop} GFLOP per epoch)",
        med,
        gflop / med
    );
    Ok(())
}
