//! `descent train`.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use descent_data::Normalize;
use descent_nn::{Loss, Model, ModelSpec, NnError};
use descent_optim::schedule::{Anneal, PlateauConfig, PlateauMode, Schedule};
use descent_optim::{HyperValue, OptimizerConfig, ParamGroup, OPTIMIZER_NAMES};
use descent_train::checkpoint::{load_weights, read_metadata, save_weights, write_atomic};
use descent_train::{
    EarlyStop, Event, Monitor, RunDir, StopReason, TrainConfig, TrainError, Trainer,
};

use crate::cli::{
    AnnealArg, LossArg, MonitorArg, ScheduleArgs, ScheduleName, ThresholdMode, TrainArgs,
};
use crate::progress::{Bar, Lines as _};

/// MNIST's training set, for sizing schedules before the data is loaded.
pub const MNIST_TRAIN: usize = 60_000;

/// The optimizer named by `--optimizer` with every hyperparameter flag applied; a flag the
/// optimizer does not take is an error that lists the ones it does.
pub fn optimizer(args: &TrainArgs) -> Result<OptimizerConfig> {
    let mut c = OptimizerConfig::default_for(&args.optimizer).ok_or_else(|| {
        anyhow!(
            "invalid --optimizer {}: known optimizers: {} (`descent optimizers` describes them)",
            args.optimizer,
            OPTIMIZER_NAMES.join(", ")
        )
    })?;
    let h = &args.hyper;
    let nums = [
        ("--lr", "lr", args.lr),
        ("--momentum", "momentum", h.momentum),
        ("--dampening", "dampening", h.dampening),
        ("--weight-decay", "weight_decay", h.weight_decay),
        ("--beta", "beta", h.beta),
        ("--beta1", "beta1", h.beta1),
        ("--beta2", "beta2", h.beta2),
        ("--eps", "eps", h.eps),
        ("--alpha", "alpha", h.alpha),
        ("--rho", "rho", h.rho),
        ("--lr-decay", "lr_decay", h.lr_decay),
        (
            "--initial-accumulator-value",
            "initial_accumulator_value",
            h.initial_accumulator_value,
        ),
        ("--momentum-decay", "momentum_decay", h.momentum_decay),
    ];
    let flags = [
        ("--nesterov", "nesterov", h.nesterov),
        (
            "--decoupled-weight-decay",
            "decoupled_weight_decay",
            h.decoupled_weight_decay,
        ),
        ("--maximize", "maximize", h.maximize),
        ("--amsgrad", "amsgrad", h.amsgrad),
        ("--centered", "centered", h.centered),
        ("--eps-inside-sqrt", "eps_inside_sqrt", h.eps_inside_sqrt),
    ];
    let given = nums
        .iter()
        .filter_map(|&(f, n, v)| v.map(|v| (f, n, HyperValue::Num(v))))
        .chain(
            flags
                .iter()
                .filter(|&&(_, _, on)| on)
                .map(|&(f, n, _)| (f, n, HyperValue::Flag(true))),
        );
    for (flag, name, value) in given {
        if c.set(name, value).is_err() {
            let settings: Vec<String> = c
                .hyperparameters()
                .iter()
                .map(|(n, _)| format!("--{}", n.replace('_', "-")))
                .collect();
            bail!(
                "invalid {flag}: {} does not take it (it takes {}; see `descent optimizers {}`)",
                c.name(),
                settings.join(", "),
                c.name()
            );
        }
    }
    Ok(c)
}

/// The schedule and plateau settings from the flags, for a run of `total_steps` steps. A
/// schedule flag that the chosen schedule does not use is an error.
pub fn schedule(
    a: &ScheduleArgs,
    total_steps: u64,
    lr: f64,
) -> Result<(Schedule, Option<PlateauConfig>)> {
    use ScheduleName::*;
    let uses: &[(&str, bool, &[ScheduleName])] = &[
        ("--step-size", a.step_size.is_some(), &[Step]),
        (
            "--gamma",
            a.gamma.is_some(),
            &[Step, Multistep, Exponential],
        ),
        ("--milestones", a.milestones.is_some(), &[Multistep]),
        ("--t-max", a.t_max.is_some(), &[Cosine]),
        ("--eta-min", a.eta_min.is_some(), &[Cosine, CosineRestarts]),
        (
            "--eta-min-factor",
            a.eta_min_factor.is_some(),
            &[Cosine, CosineRestarts],
        ),
        ("--t0", a.t0.is_some(), &[CosineRestarts]),
        ("--t-mult", a.t_mult.is_some(), &[CosineRestarts]),
        ("--start-factor", a.start_factor.is_some(), &[Linear]),
        ("--end-factor", a.end_factor.is_some(), &[Linear]),
        (
            "--total-iters",
            a.total_iters.is_some(),
            &[Linear, Polynomial],
        ),
        ("--power", a.power.is_some(), &[Polynomial]),
        ("--pct-start", a.pct_start.is_some(), &[Onecycle]),
        ("--anneal", a.anneal.is_some(), &[Onecycle]),
        ("--div-factor", a.div_factor.is_some(), &[Onecycle]),
        (
            "--final-div-factor",
            a.final_div_factor.is_some(),
            &[Onecycle],
        ),
        ("--three-phase", a.three_phase, &[Onecycle]),
        ("--no-cycle-momentum", a.no_cycle_momentum, &[Onecycle]),
        ("--base-momentum", a.base_momentum.is_some(), &[Onecycle]),
        ("--max-momentum", a.max_momentum.is_some(), &[Onecycle]),
        ("--patience", a.patience.is_some(), &[Plateau]),
        ("--factor", a.factor.is_some(), &[Plateau]),
        ("--threshold", a.threshold.is_some(), &[Plateau]),
        ("--threshold-mode", a.threshold_mode.is_some(), &[Plateau]),
        ("--cooldown", a.cooldown.is_some(), &[Plateau]),
        ("--min-lr", a.min_lr.is_some(), &[Plateau]),
    ];
    let name = |s: ScheduleName| {
        use clap::ValueEnum;
        s.to_possible_value().unwrap().get_name().to_string()
    };
    for (flag, given, for_) in uses {
        if *given && !for_.contains(&a.schedule) {
            let list: Vec<String> = for_.iter().map(|&s| name(s)).collect();
            bail!(
                "invalid {flag}: it is a setting of --schedule {}, not {}",
                list.join(" | "),
                name(a.schedule)
            );
        }
    }
    if a.warmup_steps > 0 && matches!(a.schedule, Onecycle | Plateau) {
        bail!(
            "invalid --warmup-steps {}: --schedule {} does not follow a warmup{}",
            a.warmup_steps,
            name(a.schedule),
            if a.schedule == Onecycle {
                " (it rises over --pct-start of the run itself)"
            } else {
                ""
            }
        );
    }
    let rest = total_steps.saturating_sub(a.warmup_steps).max(1);
    if let Some(f) = a.eta_min_factor {
        if !(0.0..=1.0).contains(&f) {
            bail!("invalid --eta-min-factor {f}: give a fraction of --lr from 0 to 1");
        }
    }
    let eta_min = a
        .eta_min
        .or(a.eta_min_factor.map(|f| f * lr))
        .unwrap_or(0.0);
    let need = |what: &str, flag: &str| anyhow!("invalid --schedule {what}: it needs {flag}");
    let main = match a.schedule {
        Constant | Plateau => Schedule::Constant,
        Step => Schedule::Step {
            step_size: a.step_size.ok_or_else(|| need("step", "--step-size N"))?,
            gamma: a.gamma.unwrap_or(0.1),
        },
        Multistep => Schedule::MultiStep {
            milestones: a
                .milestones
                .clone()
                .ok_or_else(|| need("multistep", "--milestones N,N,..."))?,
            gamma: a.gamma.unwrap_or(0.1),
        },
        Exponential => Schedule::Exponential {
            gamma: a.gamma.ok_or_else(|| need("exponential", "--gamma G"))?,
        },
        Cosine => Schedule::Cosine {
            t_max: a.t_max.unwrap_or(rest),
            eta_min,
        },
        CosineRestarts => Schedule::CosineWarmRestarts {
            t_0: a.t0.ok_or_else(|| need("cosine-restarts", "--t0 N"))?,
            t_mult: a.t_mult.unwrap_or(1),
            eta_min,
        },
        Linear => Schedule::Linear {
            start_factor: a.start_factor.unwrap_or(1.0 / 3.0),
            end_factor: a.end_factor.unwrap_or(1.0),
            total_iters: a.total_iters.unwrap_or(rest),
        },
        Polynomial => Schedule::Polynomial {
            total_iters: a.total_iters.unwrap_or(rest),
            power: a.power.unwrap_or(1.0),
        },
        Onecycle => Schedule::OneCycle {
            total_steps: rest,
            pct_start: a.pct_start.unwrap_or(0.3),
            anneal: match a.anneal {
                Some(AnnealArg::Linear) => Anneal::Linear,
                _ => Anneal::Cos,
            },
            div_factor: a.div_factor.unwrap_or(25.0),
            final_div_factor: a.final_div_factor.unwrap_or(1e4),
            three_phase: a.three_phase,
            momentum: (!a.no_cycle_momentum).then(|| {
                (
                    a.base_momentum.unwrap_or(0.85),
                    a.max_momentum.unwrap_or(0.95),
                )
            }),
        },
    };
    let plateau = (a.schedule == Plateau).then(|| {
        let d = PlateauConfig::default();
        PlateauConfig {
            mode: PlateauMode::Min,
            factor: a.factor.unwrap_or(d.factor),
            patience: a.patience.unwrap_or(d.patience),
            threshold: a.threshold.unwrap_or(d.threshold),
            relative: a.threshold_mode != Some(ThresholdMode::Abs),
            cooldown: a.cooldown.unwrap_or(d.cooldown),
            min_lr: a.min_lr.unwrap_or(d.min_lr),
            eps: d.eps,
        }
    });
    Ok((Schedule::warmup_then(a.warmup_steps, main), plateau))
}

/// How many training examples `--val-split` or `--val-size` holds out of `len`.
/// How many of `len` examples a `--val-split` fraction holds out; refuses fractions outside
/// (0, 1) and ones that round to none or all of them.
pub fn val_split_count(f: f64, len: usize) -> Result<usize> {
    if !(f > 0.0 && f < 1.0) {
        bail!("invalid --val-split {f}: give the fraction to hold out, in (0, 1), e.g. 0.1");
    }
    let n = (f * len as f64).round() as usize;
    if n == 0 || n >= len {
        bail!("invalid --val-split {f}: it holds out {n} of {len} examples");
    }
    Ok(n)
}

pub fn val_count(args: &TrainArgs, len: usize) -> Result<usize> {
    if let Some(f) = args.val_split {
        return val_split_count(f, len);
    }
    match args.val_size {
        Some(n) if n == 0 || n >= len => bail!(
            "invalid --val-size {n}: hold out between 1 and {} of the {len} training examples",
            len - 1
        ),
        Some(n) => Ok(n),
        None => Ok(0),
    }
}

/// The command-line flag that sets a `TrainConfig` setting or an optimizer hyperparameter.
fn flag_of(name: &str) -> String {
    match name {
        "early_stop.min_delta" => "--min-delta".into(),
        "normalize.std" => "--std".into(),
        other => format!("--{}", other.replace('_', "-")),
    }
}

/// A library error in the command line's terms: the setting and the settings its message
/// names (in backticks) become flags.
pub fn cli_error(e: descent_train::TrainError) -> anyhow::Error {
    match e {
        descent_train::TrainError::Setting { name, value, why } => {
            let mut text = String::new();
            for (i, part) in why.split('`').enumerate() {
                match i % 2 {
                    1 => text += &flag_of(part),
                    _ => text += part,
                }
            }
            anyhow!("invalid {} {value}: {text}", flag_of(&name))
        }
        e @ descent_train::TrainError::OutOfMemory { .. } => anyhow!(
            "{e} (--hidden or --model-set for the model, --batch-size for the batches; the \
             optimizer's state is 0-3 copies of the parameters: sgd keeps none, adam two)"
        ),
        other => other.into(),
    }
}

/// The model the flags name, for MNIST-shaped data (a weights file's own model when
/// starting from one without --model).
pub fn model_spec(args: &TrainArgs) -> Result<ModelSpec> {
    model_spec_for(args, &crate::models::MNIST_SHAPE, 10)
}

/// [`model_spec`] for examples of `input` shape and `classes` classes.
pub fn model_spec_for(args: &TrainArgs, input: &[usize], classes: usize) -> Result<ModelSpec> {
    let margs = crate::models::ModelArgs {
        model: args.model.as_deref(),
        hidden: args.hidden.as_deref(),
        activation: args.activation,
        dropout: args.dropout,
        set: &args.model_set,
        gpt: crate::models::GptArgs {
            layers: args.layers,
            heads: args.heads,
            embd: args.embd,
            block: args.block_size,
        },
    };
    if let (Some(path), None, None, None) =
        (&args.init_from, &args.model, &args.hidden, &args.activation)
    {
        let meta = read_metadata(path)?;
        if meta.contains_key("model") && args.dropout.is_none() && args.model_set.is_empty() {
            return crate::models::recorded(path, &meta, None, None);
        }
    }
    crate::models::spec(margs, input, classes)
}

/// The loss the flags name, checked against a model of `outputs` outputs.
pub fn loss(args: &TrainArgs, outputs: usize) -> Result<Loss> {
    use crate::cli::LossArg;
    let takes = |flag: &str, given: bool, ok: &[LossArg], names: &str| {
        if given && !ok.contains(&args.loss) {
            bail!("invalid {flag}: it is a setting of --loss {names}");
        }
        Ok(())
    };
    takes(
        "--label-smoothing",
        args.label_smoothing.is_some(),
        &[LossArg::CrossEntropy],
        "cross-entropy",
    )?;
    takes(
        "--class-weights",
        args.class_weights.is_some(),
        &[LossArg::CrossEntropy, LossArg::Nll],
        "cross-entropy | nll",
    )?;
    takes(
        "--huber-delta",
        args.huber_delta.is_some(),
        &[LossArg::Huber],
        "huber",
    )?;
    let weights = args.class_weights.clone();
    let loss = match args.loss {
        LossArg::CrossEntropy => Loss::CrossEntropy {
            label_smoothing: args.label_smoothing.unwrap_or(0.0),
            weights,
        },
        LossArg::Nll => Loss::Nll { weights },
        LossArg::Mse => Loss::Mse,
        LossArg::L1 => Loss::L1,
        LossArg::Huber => Loss::Huber {
            delta: args.huber_delta.unwrap_or(1.0),
        },
        LossArg::BceWithLogits => Loss::BceWithLogits { pos_weight: None },
    };
    loss.validate(outputs).map_err(|e| {
        let flag = match &e {
            NnError::BadLoss { why, .. } if why.contains("label_smoothing") => "--label-smoothing",
            NnError::BadLoss { why, .. } if why.contains("delta") => "--huber-delta",
            _ => "--class-weights",
        };
        anyhow!("invalid {flag}: {e}")
    })?;
    Ok(loss)
}

/// The whole training configuration for a training set of `train_len` examples (before any
/// validation split), for `model`.
pub fn config(args: &TrainArgs, train_len: usize, model: &Model) -> Result<TrainConfig> {
    let layout = model.layout();
    let train_len = train_len - val_count(args, train_len)?;
    let optimizer = optimizer(args)?;
    let batches = if args.drop_last {
        train_len / args.batch_size.max(1)
    } else {
        train_len.div_ceil(args.batch_size.max(1))
    };
    let per_epoch = if matches!(optimizer, OptimizerConfig::Gd(_)) {
        1
    } else {
        batches.div_ceil(args.grad_accum.max(1))
    };
    // A schedule spans the run: its epochs, or its step limit when that comes first (a
    // resumed run's, those it started with).
    let (epochs, max_steps) = match args.schedule_epochs {
        Some(epochs) => (epochs, args.schedule_max_steps),
        None => (args.epochs, args.max_steps),
    };
    let total = ((per_epoch * epochs) as u64).min(max_steps.unwrap_or(u64::MAX));
    let lr = args.lr.unwrap_or(optimizer.lr() as f64);
    let (schedule, plateau) = schedule(&args.schedule, total, lr)?;
    if args.schedule.warmup_steps >= total && !args.quiet {
        eprintln!(
            "warning: --warmup-steps {} is not shorter than the run ({total} steps): the rate \
             never reaches --lr",
            args.schedule.warmup_steps
        );
    }
    let mut groups = Vec::new();
    if args.no_bias_decay {
        // The model's bias tensors (and normalization weights, which are not matrices).
        groups.push(ParamGroup {
            params: layout
                .params()
                .filter(|v| v.name.ends_with(".bias") || v.shape.len() == 1)
                .map(|v| v.name.clone())
                .collect(),
            lr: None,
            weight_decay: Some(0.0),
        });
    }
    if args.micro_batch == Some(0) {
        bail!(
            "invalid --micro-batch 0: give 1 or more rows per pass (leave it out to let descent \
             choose)"
        );
    }
    let cfg = TrainConfig {
        loss: loss(args, model.output_features())?,
        l1: args.l1,
        optimizer,
        groups,
        schedule,
        plateau,
        clip_norm: args.clip_norm,
        clip_value: args.clip_value,
        clip_error_nonfinite: args.clip_error_nonfinite,
        divergence: args.divergence.into(),
        grad_tol: args.grad_tol,
        max_steps: args.max_steps,
        target_loss: args.target_loss,
        early_stop: args.early_stop.map(|m| EarlyStop {
            monitor: match m {
                MonitorArg::ValLoss => Monitor::ValLoss,
                MonitorArg::ValAcc => Monitor::ValAcc,
                MonitorArg::TrainLoss => Monitor::TrainLoss,
            },
            patience: args.early_stop_patience,
            min_delta: args.min_delta,
        }),
        val_only: args.val_only,
        batch_size: args.batch_size,
        epochs: args.epochs,
        seed: args.seed,
        threads: args.threads.unwrap_or(0),
        log_every: args.log_every,
        shuffle: !args.no_shuffle,
        drop_last: args.drop_last,
        normalize: Normalize::default(),
        grad_accum: args.grad_accum,
        micro_batch: args.micro_batch.unwrap_or(0),
        eval_every: args.eval_every,
        recompute: args.recompute,
        loader: args.loader.into(),
        bf16: args.bf16,
        ..TrainConfig::default()
    };
    cfg.validate().map_err(cli_error)?;
    let has_val = args.val_split.is_some() || args.val_size.is_some();
    if let Some(e) = cfg.early_stop {
        if e.monitor.needs_validation() && !has_val {
            bail!(
                "invalid --early-stop {}: it watches the validation set; add --val-split 0.1 \
                 (or --early-stop train-loss)",
                e.monitor.name().replace('_', "-")
            );
        }
    }
    if cfg.val_only && !has_val {
        bail!("invalid --val-only: there is no validation set; add --val-split 0.1");
    }
    Ok(cfg)
}

/// The command line a run directory was started with, plus this invocation's data, thread
/// and output options.
fn resumed_args(dir: &Path, now: &TrainArgs) -> Result<TrainArgs> {
    let file = dir.join(ARGS_FILE);
    let text = std::fs::read_to_string(&file).map_err(|e| {
        anyhow!(
            "invalid --resume {}: cannot read {} ({e}); is it a run directory (--run-dir)?",
            dir.display(),
            file.display()
        )
    })?;
    let argv: Vec<String> =
        serde_json::from_str(&text).map_err(|e| anyhow!("{} is damaged ({e})", file.display()))?;
    let cli = crate::cli::Cli::try_parse_from(
        ["descent".to_string(), "train".to_string()]
            .into_iter()
            .chain(argv.iter().cloned()),
    )
    .map_err(|e| {
        anyhow!(
            "{} holds a command line this version cannot read: {e}",
            file.display()
        )
    })?;
    let crate::cli::Command::Train(mut args) = cli.command else {
        bail!("{} does not hold a `train` command line", file.display());
    };
    let given = flags_given();
    let changed: Vec<String> = given
        .iter()
        .filter(|id| !RESUME_MAY_CHANGE.contains(&id.as_str()))
        .map(|id| format!("--{}", id.replace('_', "-")))
        .collect();
    if !changed.is_empty() {
        bail!(
            "invalid --resume {}: a resumed run goes on as it was started, and {} would change \
             it; what may change: --epochs and --max-steps (where it stops; its schedule keeps \
             the span it started with), --threads, --data-dir, --quiet, --no-fetch. To go on \
             with other settings, start a new run from its weights (--init-from)",
            dir.display(),
            changed.join(", ")
        );
    }
    let mut more = Vec::new();
    if args.schedule_epochs.is_none() && given.iter().any(|g| g == "epochs" || g == "max_steps") {
        args.schedule_epochs = Some(args.epochs);
        args.schedule_max_steps = args.max_steps;
        more.extend(["--schedule-epochs".to_string(), args.epochs.to_string()]);
        if let Some(n) = args.max_steps {
            more.extend(["--schedule-max-steps".to_string(), n.to_string()]);
        }
    }
    if given.iter().any(|g| g == "epochs") {
        args.epochs = now.epochs;
        more.extend(["--epochs".to_string(), now.epochs.to_string()]);
    }
    if let (true, Some(n)) = (given.iter().any(|g| g == "max_steps"), now.max_steps) {
        args.max_steps = Some(n);
        more.extend(["--max-steps".to_string(), n.to_string()]);
    }
    if !more.is_empty() {
        // The next resume goes on to the new end, with the schedule it started with.
        let argv: Vec<String> = argv.into_iter().chain(more).collect();
        write_atomic(&file, serde_json::to_string(&argv)?.as_bytes())?;
    }
    args.run_dir = None;
    args.resume = Some(dir.to_path_buf());
    args.data_dir = now.data_dir.clone().or(args.data_dir);
    args.threads = now.threads.or(args.threads);
    args.quiet = now.quiet;
    args.no_fetch = now.no_fetch;
    Ok(*args)
}

const ARGS_FILE: &str = "args.json";

/// The `train` flags a `--resume` may give (their ids): where the run stops, and how this
/// process runs it.
const RESUME_MAY_CHANGE: &[&str] = &[
    "resume",
    "epochs",
    "max_steps",
    "threads",
    "data_dir",
    "quiet",
    "no_fetch",
];

/// The ids of the `train` flags this process's command line gave.
fn flags_given() -> Vec<String> {
    use clap::CommandFactory;
    let Ok(matches) = crate::cli::Cli::command().try_get_matches_from(std::env::args_os()) else {
        return Vec::new();
    };
    let Some(("train", sub)) = matches.subcommand() else {
        return Vec::new();
    };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(clap::parser::ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}

/// Refuses a run directory that already holds a run, or that cannot be created or written.
fn check_run_dir(dir: &Path) -> Result<()> {
    let taken = || {
        anyhow!(
            "invalid --run-dir {}: it already holds a run; continue it with --resume {}, or pick another directory",
            dir.display(),
            dir.display()
        )
    };
    if dir.join(ARGS_FILE).exists() {
        return Err(taken());
    }
    RunDir::check_new(dir).map_err(|e| match e {
        TrainError::RunDir { why, .. } if why.contains("already holds a run") => taken(),
        TrainError::RunDir { why, .. } => anyhow!("invalid --run-dir {}: {why}", dir.display()),
        other => other.into(),
    })
}

/// The CPU's model name, where the system says.
fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Starts the run directory: run.json (the model, the configuration, the command line and
/// the machine) and, for `--resume`, the command line in args.json.
fn start_run_dir(
    dir: &Path,
    model: &ModelSpec,
    cfg: &TrainConfig,
    threads: usize,
) -> Result<RunDir> {
    // The command line with --config expanded: the run does not depend on the file later.
    let argv: Vec<String> = crate::argv().into_iter().skip(2).collect();
    let extra = serde_json::json!({
        "command": format!("descent train {}", argv.join(" ")),
        "machine": {
            "cpu": cpu_model(),
            "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
            "threads_used": threads,
            "os": std::env::consts::OS,
            "arch": std::env::consts::ARCH,
        },
    });
    let run = RunDir::create(dir, model, cfg, extra)
        .map_err(|e| anyhow!("invalid --run-dir {}: {e}", dir.display()))?;
    write_atomic(
        &dir.join(ARGS_FILE),
        serde_json::to_string(&argv)?.as_bytes(),
    )?;
    Ok(run)
}

pub fn run(args: TrainArgs) -> Result<()> {
    let args = match &args.resume {
        Some(dir) => resumed_args(dir, &args)?,
        None => args,
    };
    let run_dir = args.resume.clone().or(args.run_dir.clone());
    if !args.device.is_cpu() && run_dir.is_some() {
        bail!(
            "--device {}: a run on a GPU keeps no checkpoints yet; drop --run-dir and --resume \
             (--save still writes the weights), or train with --device cpu",
            args.device
        );
    }
    // The device is opened first: a missing GPU is said before any data is fetched.
    let backend = crate::device::open(args.device)?;
    // Every setting is checked before the data is fetched; schedules are sized again from
    // the data once it is loaded. A resumed run rebuilds the model its checkpoint records.
    let resumed = match &args.resume {
        Some(dir) => Some(RunDir::open(dir).map_err(|e| match e {
            TrainError::RunDir { why, .. } => anyhow!("invalid --resume {}: {why}", dir.display()),
            other => other.into(),
        })?),
        None => None,
    };
    let source = crate::data::DataSource::parse(args.data.as_deref())?;
    // A text is read first: its vocabulary sizes the model.
    let text_path = match &source {
        crate::data::DataSource::Text(p) => Some(p.clone()),
        _ => None,
    };
    let corpus = match &text_path {
        Some(path) => {
            args.table.only_for_tables("text:FILE")?;
            Some(crate::data::read_text(path, args.tokens.into())?)
        }
        None => None,
    };
    if corpus.is_none() && args.model.as_deref() == Some("gpt") {
        bail!("invalid --model gpt: it is a language model; give it a text with --data text:FILE");
    }
    // A table or a directory of IDX files is read next: its shape sizes the model. A
    // benchmark set's shape is known, so the settings are checked before it is fetched.
    let val_of = |n: usize| val_count(&args, n);
    let load = crate::data::LoadOptions {
        data_dir: args.data_dir.as_deref(),
        no_fetch: args.no_fetch,
        quiet: args.quiet,
        val_count: &val_of,
        seed: args.seed,
        table: &args.table,
    };
    let mut early = match (&source, &corpus) {
        (_, Some(_)) | (crate::data::DataSource::Set(_), _) => None,
        _ => Some(crate::data::load_train(&source, &load)?),
    };
    let (shape, outputs) = early
        .as_ref()
        .map(|d| (d.train.shape().to_vec(), d.train.outputs()))
        .or_else(|| source.known_shape())
        .unwrap_or_else(|| (crate::models::MNIST_SHAPE.to_vec(), 10));
    let regression = early.as_ref().is_some_and(|d| d.train.is_regression());
    let mut args = args.clone();
    if regression && matches!(args.loss, LossArg::CrossEntropy | LossArg::Nll) {
        if !args.quiet {
            eprintln!("regression: the loss is mse (--loss l1 or huber to change it)");
        }
        args.loss = LossArg::Mse;
    }
    let block = args
        .block_size
        .unwrap_or(descent_nn::GptSize::default().block);
    let spec = match (&resumed, &corpus) {
        (Some(run), _) => run.model().map_err(|e| anyhow!("{e}"))?,
        (None, Some(c)) => model_spec_for(&args, &[block], c.vocab.len())?,
        (None, None) => model_spec_for(&args, &shape, outputs)?,
    };
    let model = crate::models::build(&spec)?;
    config(&args, MNIST_TRAIN, &model)?; // every setting, before any fetch
    crate::data::augment(&args.table, None, 1)?;
    if args.checkpoint_every == 0 {
        bail!("invalid --checkpoint-every 0: write a checkpoint every 1 or more epochs");
    }
    if let (None, Some(dir)) = (&resumed, &run_dir) {
        check_run_dir(dir)?;
    }
    if let Some(path) = &args.init_from {
        read_metadata(path)?; // exists and is a safetensors file; names and shapes come later
    }
    if let Some(path) = &args.save {
        check_writable(path)?; // fail now, not after training
    }
    let mut data_meta = None;
    let (train, val, test, vocab) = match &corpus {
        Some(c) => {
            if args.val_split.is_some() || args.val_size.is_some() {
                bail!(
                    "invalid --val-split/--val-size: a text validates on windows of its last \
                     10% (--val-windows)"
                );
            }
            let t = crate::data::text_windows(
                c,
                descent_nn::numel(&spec.input),
                args.val_windows,
                args.seed,
            )?;
            if !args.quiet {
                eprintln!(
                    "text {}: {} tokens, a vocabulary of {}, {} training windows of {} and {} \
                     validation windows",
                    text_path.as_ref().expect("a text").display(),
                    c.ids.len(),
                    t.vocab.len(),
                    t.train.len(),
                    descent_nn::numel(&spec.input),
                    t.val.len()
                );
            }
            (t.train, Some(t.val.clone()), t.val, Some(t.vocab))
        }
        None => {
            let d = match early.take() {
                Some(d) => d,
                None => crate::data::load_train(&source, &load)?,
            };
            data_meta = Some(d.meta);
            (d.train, d.val, d.test, None)
        }
    };
    crate::models::fits(&spec, train.shape(), train.outputs())?;
    // The schedule is sized from the training set before the validation split (`config`
    // holds the split out itself); a text's validation windows are not taken from training.
    let before_split = train.len()
        + val
            .as_ref()
            .filter(|_| vocab.is_none())
            .map_or(0, |v| v.len());
    let mut cfg = config(&args, before_split, &model)?;
    if args.table.augment.is_some() {
        if train.shape().len() != 3 {
            bail!(
                "invalid --augment: it transforms pictures; the examples of {} have shape {:?}",
                source.name(),
                train.shape()
            );
        }
        cfg.augment = crate::data::augment(&args.table, data_meta.as_ref(), train.shape()[0])?;
    }
    if vocab.is_some() {
        // The validation windows are the text's only held-out set: evaluated after each
        // epoch (and every --eval-every steps), not a second time as a test set.
        cfg.val_only = true;
    }
    let mut trainer = Trainer::new(model, &cfg).map_err(cli_error)?;
    if let Some(path) = &args.init_from {
        let (weights, _) = load_weights(path, trainer.net().layout())?;
        trainer.set_params(&weights)?;
        if !args.quiet {
            eprintln!("starting from the weights in {}", path.display());
        }
    }
    if let Some(be) = backend {
        trainer.set_backend(be).map_err(cli_error)?;
    }
    let run = match (&run_dir, resumed) {
        (_, Some(run)) => Some(run),
        (Some(dir), None) => Some(start_run_dir(dir, &spec, &cfg, trainer.threads())?),
        (None, None) => None,
    };
    let interrupt = Arc::new(AtomicBool::new(false));
    {
        let flag = interrupt.clone();
        // A second Ctrl-C while the checkpoint is written is ignored: nothing is lost.
        let _ = ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst));
    }
    trainer.set_interrupt(interrupt);
    let mut metrics = None;
    if let Some(run) = &run {
        let dir = run.path();
        if args.resume.is_some() {
            trainer.load_checkpoint(&run.checkpoint())?;
            let pos = trainer.loop_state();
            if pos.epoch > cfg.epochs {
                eprintln!(
                    "the run in {} already finished its {} epochs; its weights are in {}",
                    dir.display(),
                    cfg.epochs,
                    run.weights().display()
                );
                return Ok(());
            }
            let damaged = run.trim_metrics(pos.epoch, pos.batch)?;
            if !damaged.is_empty() {
                eprintln!(
                    "note: {} had damaged lines ({}: a run killed while writing leaves part of a \
                     line); they were dropped before going on",
                    dir.join(descent_train::run_dir::METRICS_FILE).display(),
                    damaged
                        .iter()
                        .map(|l| format!("line {l}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            if !args.quiet {
                eprintln!(
                    "resuming {} at epoch {} after batch {}",
                    dir.display(),
                    pos.epoch,
                    pos.batch
                );
            }
        }
        trainer.checkpoint_every(&run.checkpoint(), args.checkpoint_every);
        metrics = Some(std::cell::RefCell::new(run.metrics()?));
    }
    let record = |e: &Event| {
        if let Some(m) = &metrics {
            m.borrow_mut().record(e);
        }
    };
    if !args.quiet {
        eprintln!(
            "model {} ({} parameters), {} lr {}{}, batch {}, {}, seed {}, {} threads",
            crate::models::describe(args.model.as_deref(), trainer.net()),
            trainer.net().param_count(),
            cfg.optimizer.name(),
            cfg.lr(),
            match (&cfg.schedule, &cfg.plateau) {
                (_, Some(_)) => " (reduce on plateau)".to_string(),
                (Schedule::Constant, None) => String::new(),
                _ => format!(" ({} schedule)", args.schedule_label()),
            },
            cfg.batch_size,
            match cfg.max_steps {
                Some(m) if vocab.is_some() => format!("{m} steps"),
                Some(m) => format!("{} epochs (at most {m} steps)", cfg.epochs),
                None => format!("{} epochs", cfg.epochs),
            },
            cfg.seed,
            trainer.threads()
        );
    }
    if !args.quiet {
        eprintln!("{}", memory_line(&trainer, &cfg));
        if cfg.bf16 && !descent_tensor::bf16_native() {
            eprintln!(
                "note: this CPU has no AVX512-BF16 (or another instruction set was chosen): bf16 \
                 products are emulated, slower than f32"
            );
        }
    }
    let board_dir = args.tensorboard.clone().or_else(|| {
        run.as_ref()
            .map(|r| r.path().join(descent_train::run_dir::TENSORBOARD_DIR))
    });
    let board = match &board_dir {
        Some(dir) => {
            trainer.measure_grad_norm(true);
            trainer.snapshot_tensors(true);
            let b = crate::board::Board::create(dir, regression)?;
            if args.resume.is_some() {
                b.resume_after(trainer.steps());
            }
            Some(b)
        }
        None => None,
    };
    let bar = Bar::new(!args.quiet);
    let quiet = args.quiet;
    let result = trainer.run_split(&train, val.as_ref(), &test, |e| {
        record(&e);
        if let Some(b) = &board {
            b.record(&e);
        }
        on_event(e, &bar, quiet, regression)
    });
    bar.finish();
    if let Some(b) = board {
        // Logs are written even when training failed: they show how it went wrong.
        let closed = b.close();
        if let (Err(e), Ok(_)) = (&closed, &result) {
            eprintln!("warning: {e:#}");
        }
    }
    let summary = result?;
    if let StopReason::Interrupted { epoch, batch } = summary.stop {
        match &run {
            Some(run) => {
                trainer.save_checkpoint(&run.checkpoint())?;
                eprintln!(
                    "interrupted in epoch {epoch} after batch {batch}; saved a checkpoint: continue with `descent train --resume {}`",
                    run.path().display()
                );
            }
            None => eprintln!(
                "interrupted in epoch {epoch} after batch {batch}; nothing saved (no --run-dir)"
            ),
        }
        std::process::exit(130);
    }
    let mut meta = model_metadata(trainer.net(), &cfg, &summary);
    if let Some(v) = &vocab {
        meta.insert("vocab".into(), serde_json::to_string(v)?);
    }
    if let Some(d) = &data_meta {
        meta.insert(crate::data::META_KEY.into(), serde_json::to_string(d)?);
    }
    if let Some(run) = &run {
        run.save_weights(trainer.net(), trainer.params(), &meta)?;
    }
    if let Some(path) = &args.save {
        save_weights(path, trainer.net().layout(), trainer.params(), &meta)?;
        if !args.quiet {
            eprintln!(
                "saved the weights of epoch {} to {}",
                summary.kept_epoch,
                path.display()
            );
        }
    }
    let last = summary.epochs.last().map_or(0, |r| r.epoch);
    if vocab.is_some() {
        out!(
            "stopped: {}; val_loss {:.4} (perplexity {:.2}) val_acc {:.2}% after {} steps",
            summary.stop,
            summary.test.loss,
            summary.test.loss.exp(),
            summary.test.acc,
            trainer.steps()
        );
    } else if regression {
        out!(
            "stopped: {}; test_loss {:.6} (rmse {:.6}) with the weights of epoch {}",
            summary.stop,
            summary.test.loss,
            summary.test.loss.max(0.0).sqrt(),
            summary.kept_epoch
        );
    } else if summary.stop != StopReason::MaxEpochs || summary.kept_epoch != last || val.is_some() {
        out!(
            "stopped: {}; test_loss {:.4} test_acc {:.2}% with the weights of epoch {}",
            summary.stop,
            summary.test.loss,
            summary.test.acc,
            summary.kept_epoch
        );
    }
    Ok(())
}

/// The memory report a run prints before it starts: what the parameters, gradients,
/// optimizer state and activations take.
pub fn memory_line(trainer: &Trainer, cfg: &TrainConfig) -> String {
    let m = trainer.memory();
    let mb = |b: usize| {
        let v = b as f64 / 1e6;
        match v < 10.0 {
            true => format!("{v:.2} MB"),
            false => format!("{v:.0} MB"),
        }
    };
    format!(
        "memory: parameters {}, gradients {}, {} state {}, activations {} (batch {}{}{}), \
         evaluation {}; {} in all",
        mb(m.params),
        mb(m.grads),
        cfg.optimizer.name(),
        mb(m.optimizer),
        mb(m.activations),
        cfg.batch_size,
        match trainer.rows_per_pass() {
            r if r < cfg.batch_size => format!(" in passes of {r}"),
            _ => String::new(),
        },
        if cfg.recompute { ", recomputed" } else { "" },
        mb(m.eval),
        mb(m.total())
    )
}

/// Prints an event: the seed's log line, the progress bar, the epoch's line (losses only for a
/// regression, whose accuracy means nothing).
fn on_event(e: Event, bar: &Bar, quiet: bool, regression: bool) {
    match e {
        Event::Log { epoch, batch, loss } => {
            if !quiet {
                bar.println(&format!("[{}, {:5}] loss: {:.3}", epoch, batch, loss))
            }
        }
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
        Event::EpochEnd(r) => {
            let mut line = format!("epoch {}: train_loss {:.4}", r.epoch, r.train_loss);
            if regression {
                if let Some(v) = r.val {
                    line += &format!(" val_loss {:.4}", v.loss);
                }
                if let Some(l) = r.test_loss {
                    line += &format!(" test_loss {l:.4}");
                }
                bar.println(&format!("{line} time {:.2}s", r.seconds));
                return;
            }
            if let Some(v) = r.val {
                line += &format!(
                    " train_acc {:.2}% val_loss {:.4} val_acc {:.2}%",
                    r.train_acc, v.loss, v.acc
                );
            }
            if let Some(acc) = r.test_acc {
                line += &format!(" test_acc {acc:.2}%");
            }
            line += &format!(" time {:.2}s", r.seconds);
            bar.println(&line);
        }
        Event::StepEval {
            step,
            train_loss,
            eval,
        } => bar.println(&format!(
            "step {step} train_loss {train_loss:.4} val_loss {:.4}",
            eval.loss
        )),
        Event::Diverging { diagnosis } => bar.eprintln(&format!("warning: {diagnosis}")),
        Event::Step { .. } | Event::Tensors { .. } => {}
    }
}

/// What a weights file records about the model and the run that made it (safetensors
/// metadata is strings).
pub fn model_metadata(
    model: &descent_nn::Model,
    cfg: &TrainConfig,
    summary: &descent_train::RunSummary,
) -> std::collections::BTreeMap<String, String> {
    [
        ("format", "pt".to_string()),
        ("producer", format!("descent {}", env!("CARGO_PKG_VERSION"))),
        ("model", model.spec().to_json()),
        ("optimizer", cfg.optimizer.name().to_string()),
        ("epoch", summary.kept_epoch.to_string()),
        ("seed", cfg.seed.to_string()),
        ("test_acc", format!("{:.2}", summary.test.acc)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Fails when a file cannot be created next to `path` (missing or read-only folder).
fn check_writable(path: &std::path::Path) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".descent-write-check.")
        .tempfile_in(dir)
        .map(drop)
        .map_err(|e| {
            anyhow!(
                "invalid --save {}: cannot write in {}: {e}",
                path.display(),
                dir.display()
            )
        })
}
