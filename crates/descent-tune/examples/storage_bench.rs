//! What a storage costs per trial, as a study grows, and how many trials per second several
//! worker processes get from one database (`tools/storage_bench.py` runs it beside Optuna):
//!
//! `cargo run --release -p descent-tune --example storage_bench STORAGE STUDY TRIALS [WORKERS]`
//!
//! The objective is free: a random sampler suggests a log float, an int and a categorical and
//! the trial returns 0, so all the time is the storage's (start, three parameters, finish,
//! and the read of the study that every start makes). With one worker it prints the
//! milliseconds per trial over the thousand trials up to 1000, 2000, 5000, 10 000, ...; with WORKERS > 1 it starts that many
//! processes of itself on one study of TRIALS trials and prints trials per second.

use std::sync::Arc;
use std::time::Instant;

use descent_tune::{storage, OptimizeOptions, RandomSampler, Study};

fn objective(t: &mut descent_tune::Trial) -> Result<f64, descent_tune::TrialError> {
    t.suggest_float_log("lr", 1e-5, 1.0)?;
    t.suggest_int("width", 16, 1024)?;
    t.suggest_categorical("opt", &["sgd", "adam", "lion"])?;
    Ok(0.0)
}

fn study(url: &str, name: &str, seed: u64) -> Result<Study, Box<dyn std::error::Error>> {
    Ok(Study::builder(name)
        .storage(Arc::clone(&storage::open(url)?))
        .sampler(RandomSampler::new(seed))
        .load_if_exists(true)
        .build()?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, name, trials, rest @ ..] = args.as_slice() else {
        return Err("usage: storage_bench STORAGE STUDY TRIALS [WORKERS]".into());
    };
    let trials: u64 = trials.parse()?;
    let workers: u64 = rest.first().map_or(Ok(1), |w| w.parse())?;
    if let Ok(seed) = std::env::var("STORAGE_BENCH_CHILD") {
        let s = study(url, name, seed.parse()?)?;
        let opts = OptimizeOptions {
            max_study_trials: Some(trials),
            ..Default::default()
        };
        s.optimize(objective, &opts)?;
        return Ok(());
    }
    if workers > 1 {
        // Create the study once, so that the workers only load it.
        drop(study(url, name, 0)?);
        let exe = std::env::current_exe()?;
        let start = Instant::now();
        let children: Vec<_> = (0..workers)
            .map(|i| {
                std::process::Command::new(&exe)
                    .args(&args[..3])
                    .env("STORAGE_BENCH_CHILD", (i + 1).to_string())
                    .spawn()
            })
            .collect::<Result<_, _>>()?;
        for mut c in children {
            if !c.wait()?.success() {
                return Err("a worker failed".into());
            }
        }
        let secs = start.elapsed().as_secs_f64();
        let n = study(url, name, 0)?.trials()?.len();
        println!(
            "{workers} workers: {n} trials in {secs:.2} s: {:.0} trials/s",
            n as f64 / secs
        );
        return Ok(());
    }
    // Windows of 1000 trials; the one ending at 1000, 2000, 5000, 10 000, ... is printed.
    let s = study(url, name, 0)?;
    let mut done = s.trials()?.len() as u64;
    let mut mark = 1000;
    while done < trials {
        let n = 1000.min(trials - done);
        let start = Instant::now();
        let opts = OptimizeOptions {
            n_trials: Some(n),
            ..Default::default()
        };
        s.optimize(objective, &opts)?;
        let ms = start.elapsed().as_secs_f64() * 1e3 / n as f64;
        done += n;
        if done >= mark || done == trials {
            println!(
                "trials {:>7} to {:>7}: {ms:.3} ms per trial",
                done - n,
                done
            );
            while mark <= done {
                mark = next_mark(mark);
            }
        }
    }
    Ok(())
}

/// 1000, 2000, 5000, 10 000, 20 000, ...
fn next_mark(m: u64) -> u64 {
    let decade = 10u64.pow(m.ilog10());
    match m / decade {
        1 => 2 * decade,
        2 => 5 * decade,
        _ => 10 * decade,
    }
}
