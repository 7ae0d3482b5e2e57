//! Median regret and sampler time on Branin and Hartmann-6 (the numbers in docs/tuning.md):
//! `cargo run --release -p descent-tune --example regret [SEEDS] [TRIALS]`.

use descent_tune::benchmarks::{run, BRANIN, HARTMANN6};
use descent_tune::{RandomSampler, TpeConfig, TpeSampler};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> descent_tune::Result<()> {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seeds = args.first().copied().unwrap_or(10);
    let trials = args.get(1).copied().unwrap_or(100);
    println!(
        "{:<10} {:<16} {:>14} {:>16}",
        "function", "sampler", "median regret", "ms per trial"
    );
    for f in [BRANIN, HARTMANN6] {
        for name in ["random", "tpe", "tpe-univariate"] {
            let mut regrets = Vec::new();
            let mut times = Vec::new();
            for seed in 0..seeds {
                let (r, t) = match name {
                    "random" => run(&f, RandomSampler::new(seed), trials)?,
                    "tpe" => run(&f, TpeSampler::new(seed), trials)?,
                    _ => run(
                        &f,
                        TpeSampler::with_config(TpeConfig {
                            seed,
                            multivariate: false,
                            ..TpeConfig::default()
                        }),
                        trials,
                    )?,
                };
                regrets.push(r);
                times.push(t);
            }
            if std::env::var("REGRETS").is_ok() {
                eprintln!("{} {name} {regrets:?}", f.name);
            }
            println!(
                "{:<10} {:<16} {:>14.4} {:>16.3}",
                f.name,
                name,
                median(regrets),
                median(times) * 1e3
            );
        }
    }
    let (_, t) = run(&HARTMANN6, TpeSampler::new(0), 1000)?;
    println!(
        "hartmann6 tpe, one 1000-trial study: {:.3} ms per trial",
        t * 1e3
    );
    Ok(())
}
