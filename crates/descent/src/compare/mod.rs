//! `descent compare`: one model trained with several optimizers from the same initial
//! weights, data order and validation split; a ranked table, a CSV and curves on shared axes.
//! On MNIST the runs are ranked by validation accuracy per epoch; on a text
//! (`--data text:FILE`, a GPT with its recipe) by validation loss every `eval_every` steps.

mod text;

use std::fmt::Write as _;

use anyhow::{anyhow, bail, Context, Result};
use descent_nn::Model;
use descent_optim::{HyperValue, OptimizerConfig};
use descent_train::checkpoint::write_atomic;
use descent_train::{Event, TrainConfig, Trainer};

use crate::cli::{CompareArgs, TrainArgs};
use crate::progress::Lines as _;
use crate::report::write_chart;
use descent_chart::{Chart, Scale, Series};

/// The names `compare` and `viz` take: the optimizers of `train --optimizer` (`momentum` is
/// the seed's averaging form there too) and SGD with momentum 0.9, plain and Nesterov.
pub const RACE_NAMES: &[&str] = &[
    "sgd",
    "sgd-momentum",
    "nesterov",
    "momentum",
    "adagrad",
    "rmsprop",
    "adadelta",
    "adam",
    "adamw",
    "adamax",
    "nadam",
    "radam",
    "lion",
    "lamb",
];

/// The optimizer `name` (one of [`RACE_NAMES`]) is built on, and the settings it adds to that
/// optimizer's defaults. `ema`, the old name of the seed's momentum, says what it is now.
pub fn race_base(name: &str) -> Result<(&'static str, &'static [(&'static str, HyperValue)])> {
    Ok(match name {
        "sgd" => ("sgd", &[]),
        "sgd-momentum" => ("sgd", &[("momentum", HyperValue::Num(0.9))]),
        "nesterov" => (
            "sgd",
            &[
                ("momentum", HyperValue::Num(0.9)),
                ("nesterov", HyperValue::Flag(true)),
            ],
        ),
        "ema" => bail!(
            "invalid --optimizers ema: the seed's momentum is called `momentum`, as in `descent \
             train --optimizer momentum`; SGD with momentum 0.9 is `sgd-momentum`"
        ),
        other => match RACE_NAMES.iter().find(|n| **n == other) {
            Some(n) => (*n, &[]),
            None => bail!(
                "invalid --optimizers {other}: known: {}",
                RACE_NAMES.join(", ")
            ),
        },
    })
}

/// The optimizers `descent compare` knows, with the settings it races them at: each
/// optimizer's defaults, RMSprop at lr 0.001 (its default 0.01 spikes the loss first).
fn preset(name: &str) -> Result<OptimizerConfig> {
    let (base, sets) = race_base(name)?;
    let mut c = OptimizerConfig::default_for(base).expect("a known optimizer");
    for &(k, v) in sets {
        c.set(k, v)?;
    }
    if base == "rmsprop" {
        c.set("lr", HyperValue::Num(1e-3))?;
    }
    Ok(c)
}

/// `compare --help`'s list of the names and the learning rate each races at.
pub fn race_help() -> String {
    let rates: Vec<String> = RACE_NAMES
        .iter()
        .map(|n| {
            let lr = preset(n).map(|c| c.lr()).unwrap_or(f32::NAN);
            let what = match *n {
                "sgd-momentum" => " (momentum 0.9)",
                "nesterov" => " (momentum 0.9, Nesterov)",
                "momentum" => " (the seed's averaging form)",
                _ => "",
            };
            format!("{n}{what} lr {lr}")
        })
        .collect();
    format!(
        "Optimizers to race, each at its default settings: {}",
        rates.join(", ")
    )
}

/// Runs listed in a TOML file: `[[run]]` tables with `name`, `optimizer` and hyperparameters
/// in PyTorch's names.
fn runs_from_file(path: &std::path::Path) -> Result<Vec<(String, OptimizerConfig)>> {
    let bad = |why: String| anyhow!("invalid --runs {}: {why}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
    let Some(toml::Value::Array(runs)) = table.get("run") else {
        return Err(bad("it lists no [[run]] tables".into()));
    };
    let mut out = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let toml::Value::Table(t) = run else {
            return Err(bad(format!("run {} is not a table", i + 1)));
        };
        let optimizer = t
            .get("optimizer")
            .and_then(toml::Value::as_str)
            .ok_or_else(|| bad(format!("run {} has no `optimizer = \"...\"`", i + 1)))?;
        let mut cfg = OptimizerConfig::default_for(optimizer)
            .ok_or_else(|| bad(format!("run {}: unknown optimizer `{optimizer}`", i + 1)))?;
        let name = t
            .get("name")
            .and_then(toml::Value::as_str)
            .unwrap_or(optimizer)
            .to_string();
        for (k, v) in t {
            if k == "name" || k == "optimizer" {
                continue;
            }
            let value = match v {
                toml::Value::Boolean(b) => HyperValue::Flag(*b),
                toml::Value::Integer(n) => HyperValue::Num(*n as f64),
                toml::Value::Float(x) => HyperValue::Num(*x),
                other => {
                    return Err(bad(format!(
                        "run `{name}`: `{k}` = {other:?} is not a number or switch"
                    )))
                }
            };
            cfg.set(k, value)
                .map_err(|e| bad(format!("run `{name}`: {e}")))?;
        }
        cfg.validate()
            .map_err(|e| bad(format!("run `{name}`: {e}")))?;
        out.push((name, cfg));
    }
    Ok(out)
}

/// Train settings `descent compare` sets itself or per run.
const RESERVED: [&str; 13] = [
    "optimizer",
    "lr",
    "epochs",
    "seed",
    "threads",
    "quiet",
    "data",
    "config",
    "resume",
    "run-dir",
    "from-study",
    "save",
    "val-only",
];

/// The `descent train` settings every run shares: the model, the data, the batch, epochs and
/// steps, `--fixed` settings, and the model's recipe (`--model gpt`'s) where one goes with it.
fn base_args(args: &CompareArgs, text: bool) -> Result<TrainArgs> {
    let mut flags: Vec<String> = Vec::new();
    let mut push = |f: &str, v: String| {
        flags.push(f.to_string());
        flags.push(v);
    };
    match (&args.model, text) {
        (Some(m), _) => push("--model", m.clone()),
        (None, true) => push("--model", "gpt".into()),
        (None, false) => {}
    }
    if let Some(h) = &args.hidden {
        let h: Vec<String> = h.iter().map(usize::to_string).collect();
        push("--hidden", h.join(","));
    }
    if let Some(d) = &args.data {
        push("--data", d.clone());
    }
    push("--epochs", args.epochs.to_string());
    push("--seed", args.seed.to_string());
    push("--device", args.device.to_string());
    if let Some(b) = args.batch_size {
        push("--batch-size", b.to_string());
    }
    if let Some(m) = args.max_steps {
        push("--max-steps", m.to_string());
    }
    for kv in &args.fixed {
        let f = crate::tune::fixed_flag(kv);
        let name = f.first().map_or("", |f| f.trim_start_matches("--"));
        if RESERVED.contains(&name) || crate::tune::is_hyper(name) {
            bail!(
                "invalid --fixed {kv}: `{name}` is set by descent compare or per run; give \
                 optimizers and their settings with --optimizers or --runs, the rest with \
                 compare's own flags"
            );
        }
        flags.extend(f);
    }
    crate::tune::train_args(&crate::recipe::with_recipe(flags)).context("invalid --fixed flags")
}

/// A run's configuration: the shared settings with `optimizer` (its learning rate sizing the
/// schedule's floor), on `threads` threads, evaluated on the validation set only.
fn run_config(
    base: &TrainArgs,
    optimizer: OptimizerConfig,
    train_len: usize,
    model: &Model,
    threads: usize,
) -> Result<TrainConfig> {
    let mut a = base.clone();
    a.lr = Some(optimizer.lr() as f64);
    let mut cfg = crate::train::config(&a, train_len, model)?;
    cfg.optimizer = optimizer;
    cfg.val_only = true;
    cfg.threads = threads;
    cfg.log_every = 0;
    cfg.validate().map_err(crate::train::cli_error)?;
    Ok(cfg)
}

/// Runs `one` for every configuration, `jobs` at a time, in the order given.
fn race<T: Send>(
    configs: &[(String, OptimizerConfig)],
    jobs: usize,
    one: impl Fn(&str, OptimizerConfig) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let mut outcomes = Vec::new();
    for batch in configs.chunks(jobs.max(1)) {
        let results: Vec<Result<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = batch
                .iter()
                .map(|(name, cfg)| {
                    let one = &one;
                    scope.spawn(move || one(name, *cfg))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(anyhow!("a run panicked"))))
                .collect()
        });
        for r in results {
            outcomes.push(r?);
        }
    }
    Ok(outcomes)
}

/// Engine threads per run when `jobs` run at a time.
/// The width of a results table's name column: the longest name (`sgd-momentum`), at least
/// 10, so that the columns line up.
fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max(10)
}

fn threads_per_run(args: &CompareArgs, runs: usize) -> (usize, usize) {
    let jobs = args.jobs.clamp(1, runs.max(1));
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    (jobs, (args.threads.unwrap_or(cores) / jobs).max(1))
}

pub fn run(args: CompareArgs) -> Result<()> {
    if args.optimizers.is_empty() {
        bail!("invalid --optimizers: name at least one");
    }
    if args.epochs == 0 {
        bail!("invalid --epochs 0: train for at least 1 epoch");
    }
    let text = match crate::data::DataSource::parse(args.data.as_deref())? {
        crate::data::DataSource::Text(p) => Some(p),
        _ => None,
    };
    if text.is_none() {
        // Checked now, before any work; counted again once the data is loaded.
        crate::train::val_split_count(args.val_split, crate::train::MNIST_TRAIN)?;
    }
    let configs = match &args.runs {
        Some(path) => runs_from_file(path)?,
        None => args
            .optimizers
            .iter()
            .map(|n| preset(n).map(|c| (n.clone(), c)))
            .collect::<Result<Vec<_>>>()?,
    };
    if configs.is_empty() {
        bail!("nothing to compare: name at least one optimizer or run");
    }
    let base = base_args(&args, text.is_some())?;
    match text {
        Some(path) => text::run(&args, &base, &path, &configs),
        None => mnist(&args, &base, &configs),
    }
}

/// Creates `--out`.
fn create_out(args: &CompareArgs) -> Result<()> {
    std::fs::create_dir_all(&args.out).map_err(|e| {
        anyhow!(
            "invalid --out {}: cannot create it: {e}",
            args.out.display()
        )
    })
}

struct Outcome {
    name: String,
    lr: f32,
    val_acc: Vec<(usize, f64)>,
    train_loss: Vec<(usize, f64)>,
    /// Training seconds at the end of each epoch, accumulated.
    elapsed: Vec<f64>,
    test_acc: f64,
}

fn mnist(
    args: &CompareArgs,
    base: &TrainArgs,
    configs: &[(String, OptimizerConfig)],
) -> Result<()> {
    if base.model.as_deref() == Some("gpt") {
        bail!("invalid --model gpt: it is a language model; give it a text with --data text:FILE");
    }
    // Any source of classes: MNIST, Fashion-MNIST, IDX files, a table, arrays, pictures.
    let source = crate::data::DataSource::parse(base.data.as_deref())?;
    let val_of = |n: usize| crate::train::val_split_count(args.val_split, n);
    let data = crate::data::load_train(
        &source,
        &crate::data::LoadOptions {
            data_dir: args.data_dir.as_deref(),
            no_fetch: args.no_fetch,
            quiet: false,
            val_count: &val_of,
            seed: args.seed,
            table: &base.table,
        },
    )?;
    if data.train.is_regression() {
        bail!(
            "invalid --data {}: compare ranks optimizers by validation accuracy, and a \
             regression has none; race them with `descent tune` or one `descent train` each",
            source.name()
        );
    }
    let val = data.val.expect("compare holds out a validation set");
    let all = data.train.len() + val.len();
    create_out(args)?;
    // `--jobs` runs at a time, the threads shared among them; each run's result does not
    // depend on how many run beside it.
    let (jobs, threads) = threads_per_run(args, configs.len());
    let mut base = base.clone();
    base.val_split = Some(args.val_split);
    let spec = crate::train::model_spec_for(&base, data.train.shape(), data.train.outputs())?;
    let model_name = crate::models::describe(base.model.as_deref(), &crate::models::build(&spec)?);
    // Progress on a terminal: epochs of all runs, and which run is where.
    let bar = crate::progress::CountBar::new("epochs", (configs.len() * args.epochs) as u64);
    let done = std::sync::atomic::AtomicUsize::new(0);
    let runs = configs.len();
    let train_one = |name: &str, optimizer: OptimizerConfig| -> Result<Outcome> {
        let model = crate::models::build(&spec)?;
        let cfg = run_config(&base, optimizer, all, &model, threads)?;
        let mut trainer = Trainer::new(model, &cfg).map_err(crate::train::cli_error)?;
        crate::device::attach(&mut trainer, base.device)?;
        let mut total = 0.0;
        let mut o = Outcome {
            name: name.to_string(),
            lr: cfg.lr(),
            val_acc: vec![],
            train_loss: vec![],
            elapsed: vec![],
            test_acc: 0.0,
        };
        let summary = trainer.run_split(&data.train, Some(&val), &data.test, |e| {
            if let Event::EpochEnd(r) = e {
                total += r.seconds;
                let v = r.val.expect("validating");
                bar.eprintln(&format!(
                    "{name:>9} epoch {}: train_loss {:.4} val_acc {:.2}% time {:.2}s",
                    r.epoch, r.train_loss, v.acc, r.seconds
                ));
                bar.advance(format!(
                    "({} of {runs} runs done; {name} at epoch {})",
                    done.load(std::sync::atomic::Ordering::Relaxed),
                    r.epoch
                ));
                o.val_acc.push((r.epoch, v.acc));
                o.train_loss.push((r.epoch, r.train_loss));
                o.elapsed.push(total);
            }
        })?;
        o.test_acc = summary.test.acc;
        done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(o)
    };
    let outcomes = race(configs, jobs, train_one);
    bar.finish();
    let mut outcomes = outcomes?;
    // Ranked by the best validation accuracy.
    let best = |o: &Outcome| {
        o.val_acc
            .iter()
            .copied()
            .fold((0, f64::MIN), |b, x| if x.1 > b.1 { x } else { b })
    };
    outcomes.sort_by(|a, b| best(b).1.total_cmp(&best(a).1));
    let reach = |o: &Outcome| {
        o.val_acc
            .iter()
            .position(|&(_, a)| a >= args.target_acc)
            .map(|i| o.elapsed[i])
    };
    let target = format!("time to {}%", args.target_acc);
    let nw = name_width(outcomes.iter().map(|o| o.name.as_str()));
    out!(
        "{:<nw$} {:>8} {:>9} {:>13} {:>10} {:>8} {:>8} {:>16}",
        "optimizer",
        "lr",
        "final val",
        "best val (ep)",
        "train_loss",
        "test",
        "time",
        target
    );
    let mut csv = String::from(
        "optimizer,lr,final_val_acc,best_val_acc,best_epoch,final_train_loss,test_acc,train_seconds,seconds_to_target\n",
    );
    for o in &outcomes {
        let (be, bv) = best(o);
        let (final_val, final_loss) = (o.val_acc.last().unwrap().1, o.train_loss.last().unwrap().1);
        let time = *o.elapsed.last().unwrap();
        let to = reach(o);
        out!(
            "{:<nw$} {:>8} {:>8.2}% {:>8.2}% ({:>2}) {:>10.4} {:>7.2}% {:>7.1}s {:>16}",
            o.name,
            o.lr,
            final_val,
            bv,
            be,
            final_loss,
            o.test_acc,
            time,
            to.map_or("-".into(), |t| format!("{t:.1}s"))
        );
        let _ = writeln!(
            csv,
            "{},{},{final_val:.4},{bv:.4},{be},{final_loss:.6},{:.4},{time:.3},{}",
            o.name,
            o.lr,
            o.test_acc,
            to.map_or(String::new(), |t| format!("{t:.3}"))
        );
    }
    let to_series = |pick: fn(&Outcome) -> &Vec<(usize, f64)>| -> Vec<Series> {
        outcomes
            .iter()
            .map(|o| {
                Series::new(
                    format!("{} (lr {})", o.name, o.lr),
                    pick(o).iter().map(|&(e, v)| (e as f64, v)).collect(),
                )
            })
            .collect()
    };
    let acc = Chart::lines(
        format!("validation accuracy, {model_name}, seed {}", args.seed),
        "epoch",
        "validation accuracy (%)",
        to_series(|o| &o.val_acc),
    );
    let mut loss = Chart::lines(
        "training loss (mean over each epoch)",
        "epoch",
        "cross-entropy",
        to_series(|o| &o.train_loss),
    );
    loss.y.scale = Scale::Auto;
    write_chart(&args.out, "compare", &acc)?;
    write_chart(&args.out, "compare_loss", &loss)?;
    write_atomic(&args.out.join("compare.csv"), csv.as_bytes())?;
    out!(
        "wrote {0}/compare.png, {0}/compare.svg, {0}/compare_loss.png, {0}/compare_loss.svg, {0}/compare.csv",
        args.out.display()
    );
    Ok(())
}
