//! `descent tune`: a hyperparameter search over `descent train`'s flags, stored in a SQLite
//! study; `descent tune show`: its results and charts; `descent train --from-study`: the
//! best configuration, retrained.
//!
//! A search-space parameter is named after a `descent train` flag (`lr`, `batch-size`,
//! `hidden`, `momentum`, ...). Optimizer hyperparameters are suggested only for optimizers
//! that take them (define-by-run: `momentum` for SGD, `beta1` for Adam). Each trial trains
//! for `--epochs` on the training set less a validation split (the same split for every
//! trial), reports validation accuracy after each epoch, and is pruned when the pruner says
//! so; its value is its best validation accuracy. A study of a language model
//! (`--fixed data=text:FILE`, `--model gpt` and its recipe implied) minimizes instead: each
//! trial reports its validation loss every `eval-every` optimizer steps, is pruned on it, and
//! its value is its lowest validation loss.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use clap::Parser;
use descent_data::Normalize;
use descent_optim::{HyperValue, OptimizerConfig};
use descent_train::checkpoint::write_atomic;
use descent_train::{Event, Trainer};
use descent_tune::importance::importances;
use descent_tune::{
    redact_url, trials_rows, trials_table, Distribution, FrozenTrial, HyperbandPruner, NopPruner,
    OptimizeOptions, ParamValue, PercentilePruner, Pruner, RandomSampler, Sampler, Storage, Study,
    SuccessiveHalvingPruner, TpeSampler, TrialError, TrialState,
};

use crate::cli::{Cli, Command, TuneArgs, TuneShowArgs};
use crate::progress::Lines as _;
use crate::report::write_chart;

/// The running trials' interrupt flags, so that Ctrl-C stops them mid-epoch.
static RUNNING: Mutex<Vec<Arc<AtomicBool>>> = Mutex::new(Vec::new());

/// One parameter of the search space.
#[derive(Clone, Debug)]
struct SpaceParam {
    /// The train flag without dashes (`batch-size`).
    flag: String,
    distribution: Distribution,
}

/// Opens the storage of `--storage`: `sqlite:PATH` or `postgresql://USER@HOST:PORT/DB`.
pub fn open_storage(spec: &str) -> Result<Arc<dyn Storage>> {
    if spec == "memory:" {
        bail!("invalid --storage memory:: a study in memory ends with the process; give sqlite:PATH or postgresql://...");
    }
    Ok(descent_tune::storage::open(spec)?)
}

/// Opens the storage of `spec` for reading results: unlike [`open_storage`], a missing
/// SQLite file is an error (`flag` names the setting) rather than a new, empty study file.
fn open_existing_storage(spec: &str, flag: &str) -> Result<Arc<dyn Storage>> {
    if let Some(path) = spec.strip_prefix("sqlite:") {
        let path = path.strip_prefix("///").unwrap_or(path);
        if !Path::new(path).exists() {
            bail!("invalid {flag} {spec}: {path} does not exist");
        }
    }
    open_storage(spec)
}

/// A value as a flag's text.
fn flag_value(v: &ParamValue) -> String {
    match v {
        ParamValue::Float(x) => format!("{x}"),
        other => other.to_string(),
    }
}

/// A parameter's name as written (`batch_size` or `batch-size`: the flag `batch-size`;
/// `model.conv1.out_channels`: a model setting, kept as written).
fn param_name(name: &str) -> String {
    let name = name.trim().trim_start_matches("--");
    match name.starts_with("model.") {
        true => name.to_string(),
        false => name.replace('_', "-"),
    }
}

/// Appends the train flags that give parameter `name` the value `v`: `--name v`, a switch,
/// or `--model-set KEY=v` for `model.KEY`.
fn push_flag(flags: &mut Vec<String>, name: &str, v: &ParamValue) {
    if let Some(key) = name.strip_prefix("model.") {
        flags.push("--model-set".into());
        flags.push(format!("{key}={}", flag_value(v)));
        return;
    }
    match v {
        ParamValue::Bool(true) => flags.push(format!("--{name}")),
        ParamValue::Bool(false) => {}
        v => {
            flags.push(format!("--{name}"));
            flags.push(flag_value(v));
        }
    }
}

/// A `cat:` or TOML choice: integer, float, switch or string.
fn parse_choice(s: &str) -> ParamValue {
    if let Ok(i) = s.parse::<i64>() {
        ParamValue::Int(i)
    } else if let Ok(x) = s.parse::<f64>() {
        ParamValue::Float(x)
    } else if let Ok(b) = s.parse::<bool>() {
        ParamValue::Bool(b)
    } else {
        ParamValue::Str(s.to_string())
    }
}

/// `NAME=float:LOW:HIGH[:log|:step=S]`, `NAME=int:LOW:HIGH[:log|:step=S]` or
/// `NAME=cat:A,B,C`.
fn parse_param(spec: &str) -> Result<SpaceParam> {
    let bad = |why: &str| {
        anyhow!(
            "invalid --param {spec}: {why}; write NAME=float:LOW:HIGH[:log|:step=S], \
             NAME=int:LOW:HIGH[:log|:step=S] or NAME=cat:A,B,C"
        )
    };
    let (name, rest) = spec.split_once('=').ok_or_else(|| bad("no `=`"))?;
    let flag = param_name(name);
    let (kind, args) = rest.split_once(':').ok_or_else(|| bad("no kind"))?;
    let distribution = match kind {
        "cat" | "categorical" => Distribution::categorical(
            args.split(',')
                .filter(|c| !c.trim().is_empty())
                .map(parse_choice),
        ),
        "float" | "int" => {
            let parts: Vec<&str> = args.split(':').collect();
            if parts.len() < 2 {
                return Err(bad("give LOW:HIGH"));
            }
            let mut log = false;
            let mut step = None;
            for opt in &parts[2..] {
                match opt.strip_prefix("step=") {
                    Some(s) => step = Some(s.parse::<f64>().map_err(|_| bad("bad step"))?),
                    None if *opt == "log" => log = true,
                    None => return Err(bad(&format!("unknown option `{opt}`"))),
                }
            }
            if kind == "float" {
                let lo = parts[0].parse().map_err(|_| bad("LOW is not a number"))?;
                let hi = parts[1].parse().map_err(|_| bad("HIGH is not a number"))?;
                Distribution::Float {
                    low: lo,
                    high: hi,
                    log,
                    step,
                }
            } else {
                let lo = parts[0].parse().map_err(|_| bad("LOW is not an integer"))?;
                let hi = parts[1]
                    .parse()
                    .map_err(|_| bad("HIGH is not an integer"))?;
                Distribution::Int {
                    low: lo,
                    high: hi,
                    log,
                    step: step.map_or(1, |s| s as i64),
                }
            }
        }
        other => return Err(bad(&format!("unknown kind `{other}`"))),
    };
    Ok(SpaceParam {
        distribution: distribution
            .validated(&flag)
            .map_err(|e| anyhow!("invalid --param {spec}: {e}"))?,
        flag,
    })
}

/// `[params.NAME]` tables (type, low, high, log, step, choices) and a `[fixed]` table of
/// train flags.
fn parse_space_file(path: &Path) -> Result<(Vec<SpaceParam>, Vec<String>)> {
    let bad = |why: String| anyhow!("invalid --space {}: {why}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| bad(format!("cannot read it: {e}")))?;
    let table: toml::Table = text.parse().map_err(|e| bad(format!("{e}")))?;
    let mut params = Vec::new();
    if let Some(p) = table.get("params") {
        let p = p
            .as_table()
            .ok_or_else(|| bad("`params` is not a table".into()))?;
        for (name, def) in p {
            let t = def
                .as_table()
                .ok_or_else(|| bad(format!("params.{name} is not a table")))?;
            let kind = t.get("type").and_then(|v| v.as_str()).unwrap_or("float");
            let num = |k: &str| -> Result<f64> {
                t.get(k)
                    .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)))
                    .ok_or_else(|| bad(format!("params.{name} needs a number `{k}`")))
            };
            let log = t.get("log").and_then(|v| v.as_bool()).unwrap_or(false);
            let step = t
                .get("step")
                .and_then(|v| v.as_float().or(v.as_integer().map(|i| i as f64)));
            let flag = param_name(name);
            let distribution = match kind {
                "float" => Distribution::Float {
                    low: num("low")?,
                    high: num("high")?,
                    log,
                    step,
                },
                "int" => Distribution::Int {
                    low: num("low")? as i64,
                    high: num("high")? as i64,
                    log,
                    step: step.map_or(1, |s| s as i64),
                },
                "categorical" | "cat" => {
                    let choices = t
                        .get("choices")
                        .and_then(|v| v.as_array())
                        .ok_or_else(|| bad(format!("params.{name} needs `choices = [...]`")))?;
                    Distribution::categorical(choices.iter().map(|c| match c {
                        toml::Value::String(s) => parse_choice(s),
                        toml::Value::Integer(i) => ParamValue::Int(*i),
                        toml::Value::Float(x) => ParamValue::Float(*x),
                        toml::Value::Boolean(b) => ParamValue::Bool(*b),
                        other => ParamValue::Str(format!("{other:?}")),
                    }))
                }
                other => {
                    return Err(bad(format!(
                        "params.{name}: unknown type `{other}` (float, int or categorical)"
                    )))
                }
            };
            params.push(SpaceParam {
                distribution: distribution
                    .validated(&flag)
                    .map_err(|e| bad(e.to_string()))?,
                flag,
            });
        }
    }
    let fixed = match table.get("fixed") {
        Some(toml::Value::Table(f)) => {
            crate::config_file::table_flags(f, &format!("--space {} [fixed]", path.display()))?
        }
        Some(_) => return Err(bad("`fixed` is not a table".into())),
        None => Vec::new(),
    };
    Ok((params, fixed))
}

/// `--fixed KEY=VALUE` as train flags (`true` gives a bare switch).
pub(crate) fn fixed_flag(kv: &str) -> Vec<String> {
    let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
    let flag = format!("--{}", k.trim().trim_start_matches("--").replace('_', "-"));
    match v {
        "true" => vec![flag],
        "false" => vec![],
        v => vec![flag, v.to_string()],
    }
}

/// The search space `descent tune` uses when none is given: the seed's knobs.
fn default_space() -> Vec<SpaceParam> {
    [
        "optimizer=cat:sgd,adam",
        "lr=float:0.0001:0.3:log",
        "momentum=float:0.0:0.99",
        "batch-size=cat:32,64,128,256",
        "hidden=int:64:1024:log",
        "dropout=float:0.0:0.4",
        "schedule=cat:constant,cosine",
    ]
    .iter()
    .map(|s| parse_param(s).expect("the default space is valid"))
    .collect()
}

/// What the trials train on.
enum Workload {
    /// MNIST, with the validation split every trial shares (boxed: three data sets).
    Mnist(Box<MnistSplit>),
    /// A text's tokens.
    Text(descent_data::TextCorpus),
}

/// MNIST's training set less a validation split, the split, and the test set.
struct MnistSplit {
    train: descent_data::Dataset,
    val: descent_data::Dataset,
    test: descent_data::Dataset,
}

/// `flags` without the named ones (and their values).
fn drop_flags(flags: Vec<String>, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = flags.into_iter().peekable();
    while let Some(f) = it.next() {
        if names.contains(&f.as_str()) {
            if it.peek().is_some_and(|v| !v.starts_with("--")) {
                it.next();
            }
            continue;
        }
        out.push(f);
    }
    out
}

/// The search space of a language model when none is given: the recipe's rate, warmup and
/// weight decay.
fn text_space() -> Vec<SpaceParam> {
    [
        "lr=float:0.0001:0.003:log",
        "warmup-steps=int:0:300",
        "weight-decay=float:0.0:0.3",
    ]
    .iter()
    .map(|s| parse_param(s).expect("the default space is valid"))
    .collect()
}

/// How a trial's value reads: validation accuracy (maximized) or loss (minimized).
fn metric(d: descent_tune::Direction, v: f64) -> String {
    match d {
        descent_tune::Direction::Maximize => format!("val_acc {v:.2}%"),
        descent_tune::Direction::Minimize => format!("val_loss {v:.4}"),
    }
}

/// Whether `flag` names an optimizer hyperparameter (then it applies only to optimizers that
/// take it).
pub(crate) fn is_hyper(flag: &str) -> bool {
    let name = flag.replace('-', "_");
    descent_optim::catalog()
        .iter()
        .filter_map(|i| OptimizerConfig::default_for(i.name))
        .any(|c| c.clone().set(&name, HyperValue::Num(0.5)).is_ok())
        || matches!(name.as_str(), "beta1" | "beta2" | "nesterov" | "amsgrad")
}

/// Whether optimizer `opt` takes hyperparameter `flag`.
fn takes(opt: &str, flag: &str) -> bool {
    let name = flag.replace('-', "_");
    OptimizerConfig::default_for(opt).is_some_and(|mut c| {
        c.set(&name, HyperValue::Num(0.5)).is_ok() || c.set(&name, HyperValue::Flag(true)).is_ok()
    })
}

/// The `descent train` arguments of a trial: `base` (the fixed flags, serialized once) with
/// each suggested value set on it as a typed value, no flag text parsed. A parameter is a
/// train setting by its flag's name (`batch-size` sets `batch_size`); `model.LAYER.FIELD`
/// adds a model setting; a list setting (`hidden`, `milestones`) takes one value as a
/// one-element list, or a text of comma-separated numbers (`"256,128"`) as the list.
fn with_params(
    base: &serde_json::Value,
    params: &[(&str, &ParamValue)],
) -> Result<crate::cli::TrainArgs> {
    let mut json = base.clone();
    let obj = json
        .as_object_mut()
        .expect("arguments serialize as a table");
    for &(name, v) in params {
        let value = match v {
            ParamValue::Int(i) => serde_json::json!(i),
            ParamValue::Float(x) => serde_json::json!(x),
            ParamValue::Bool(b) => serde_json::json!(b),
            ParamValue::Str(s) => serde_json::json!(s),
        };
        if let Some(key) = name.strip_prefix("model.") {
            let set = obj
                .get_mut("model_set")
                .and_then(|s| s.as_array_mut())
                .expect("model settings are a list");
            set.push(serde_json::json!(format!("{key}={}", flag_value(v))));
            continue;
        }
        let field = name.replace('-', "_");
        let Some(slot) = obj.get_mut(&field) else {
            bail!("`{name}` is not a `descent train` setting (`descent train --help` lists them)");
        };
        *slot = match (field.as_str(), v) {
            ("hidden" | "milestones" | "class_weights", ParamValue::Str(text)) => {
                let items: Vec<serde_json::Value> = text
                    .split(',')
                    .map(|t| match parse_choice(t.trim()) {
                        ParamValue::Int(i) => Ok(serde_json::json!(i)),
                        ParamValue::Float(x) => Ok(serde_json::json!(x)),
                        _ => Err(anyhow!(
                            "`{name}` = {text:?}: give numbers, e.g. \"256,128\""
                        )),
                    })
                    .collect::<Result<_>>()?;
                serde_json::Value::Array(items)
            }
            ("hidden" | "milestones" | "class_weights", _) => serde_json::json!([value]),
            _ => value,
        };
    }
    serde_json::from_value(json).map_err(|e| anyhow!("{e}"))
}

/// Parses `descent train` flags into its arguments.
pub(crate) fn train_args(flags: &[String]) -> Result<crate::cli::TrainArgs> {
    let argv = ["descent", "train"]
        .iter()
        .map(|s| s.to_string())
        .chain(flags.iter().cloned());
    match Cli::try_parse_from(argv) {
        Ok(Cli {
            command: Command::Train(a),
        }) => Ok(*a),
        Ok(_) => bail!("not a train command"),
        Err(e) => bail!("{}", e.to_string().lines().next().unwrap_or("bad flags")),
    }
}

pub fn run(args: TuneArgs) -> Result<()> {
    if let Some(crate::cli::TuneCommand::Show(show)) = args.command {
        return run_show(show);
    }
    if args.trials == 0 {
        bail!("invalid --trials 0: run at least 1 trial");
    }
    if args.epochs == 0 {
        bail!("invalid --epochs 0: train each trial for at least 1 epoch");
    }
    // Checked now, before any work; counted again once the data is loaded.
    crate::train::val_split_count(args.val_split, crate::train::MNIST_TRAIN)?;
    let (mut space, mut fixed) = match &args.space {
        Some(p) => parse_space_file(p)?,
        None => (Vec::new(), Vec::new()),
    };
    for p in &args.param {
        let p = parse_param(p)?;
        space.retain(|q| q.flag != p.flag);
        space.push(p);
    }
    for f in &args.fixed {
        fixed.extend(fixed_flag(f));
    }
    // A text implies the GPT; the GPT brings its recipe (under the flags given).
    let text_path = crate::data::text_source(
        train_args(&fixed).ok().and_then(|a| a.data).as_deref(),
        "tune",
    )?;
    if text_path.is_some()
        && !fixed
            .iter()
            .any(|f| f == "--model" || f.starts_with("--model="))
    {
        fixed.extend(["--model".to_string(), "gpt".to_string()]);
    }
    // The recipe's AdamW settings would go to every optimizer searched, its cosine floor to
    // every schedule: a search of either leaves them out (the user's own --fixed stay).
    let searches = |name: &str| space.iter().any(|p| p.flag == name);
    let mut skip: Vec<&str> = Vec::new();
    if searches("optimizer") {
        skip.extend(crate::recipe::OPTIMIZER_FLAGS);
    }
    if searches("schedule") {
        skip.extend(crate::recipe::SCHEDULE_FLAGS);
    }
    fixed = crate::recipe::with_recipe_except(fixed, &skip);
    if space.is_empty() && text_path.is_some() {
        // What --fixed sets is not searched.
        space = text_space();
        space.retain(|p| {
            !args
                .fixed
                .iter()
                .any(|f| fixed_flag(f).first() == Some(&format!("--{}", p.flag)))
        });
    } else if space.is_empty() {
        space = default_space();
        // The MLP's widths and dropout shape only --model mlp: another model keeps its own.
        let other_model = train_args(&fixed)
            .ok()
            .and_then(|a| a.model)
            .is_some_and(|m| m != "mlp");
        if other_model {
            space.retain(|p| p.flag != "hidden" && p.flag != "dropout");
        }
    }
    // Flags `descent tune` sets itself, or that make no sense per trial.
    for p in &space {
        if matches!(p.flag.as_str(), "data" | "tokens" | "model") && text_path.is_some() {
            bail!(
                "`{}` cannot be searched in a study of a text: fix it with --fixed {}=...",
                p.flag,
                p.flag
            );
        }
    }
    const RESERVED: [&str; 13] = [
        "epochs",
        "quiet",
        "threads",
        "data-dir",
        "no-fetch",
        "resume",
        "run-dir",
        "config",
        "from-study",
        "save",
        "val-split",
        "val-size",
        "val-only",
    ];
    let named = space.iter().map(|p| p.flag.clone()).chain(
        fixed
            .iter()
            .filter_map(|f| f.strip_prefix("--").map(str::to_string)),
    );
    for name in named {
        if RESERVED.contains(&name.as_str()) {
            bail!(
                "`{name}` cannot be searched or fixed: descent tune sets it (use `descent tune \
                 --{}` where there is such a flag)",
                if name == "val-size" || name == "val-only" {
                    "val-split"
                } else {
                    name.as_str()
                }
            );
        }
    }
    // The optimizer first: what else is suggested depends on it.
    space.sort_by_key(|p| p.flag != "optimizer");
    let mut base = train_args(&fixed).context("invalid --fixed flags")?;
    base.device = args.device;
    let base_json = serde_json::to_value(&base)?;
    // Every flag must be one `descent train` knows, with values it accepts: check each
    // parameter at its low end now rather than in every trial.
    for p in &space {
        let probe = p.distribution.to_external(p.distribution.from_unit(0.0));
        let parsed = with_params(&base_json, &[(p.flag.as_str(), &probe)]).map_err(|e| {
            anyhow!(
                "search-space parameter `{}` is not a usable `descent train` setting: {e}",
                p.flag
            )
        })?;
        // The model the trials train must take it (a model setting must name a layer and a
        // field; the MLP's widths go with --model mlp only).
        match &text_path {
            // The vocabulary is not read yet: any size shows whether the GPT can be built.
            Some(_) => crate::train::model_spec_for(
                &parsed,
                &[parsed
                    .block_size
                    .unwrap_or(descent_nn::GptSize::default().block)],
                2,
            ),
            None => crate::train::model_spec(&parsed),
        }
        .map_err(|e| anyhow!("search-space parameter `{}`: {e:#}", p.flag))?;
    }
    let storage = open_storage(&args.storage)?;
    let sampler: Box<dyn Sampler> = match args.sampler.as_str() {
        "tpe" => Box::new(TpeSampler::new(args.seed)),
        "random" => Box::new(RandomSampler::new(args.seed)),
        other => bail!("invalid --sampler {other}: tpe or random"),
    };
    let pruner: Box<dyn Pruner> = match args.pruner.as_str() {
        "median" => Box::new(PercentilePruner::median()),
        "none" => Box::new(NopPruner),
        "sh" | "successive-halving" => Box::new(SuccessiveHalvingPruner::new(1, 3, 0)?),
        "hyperband" => Box::new(match (&text_path, base.max_steps) {
            // A text's trials report every eval_every steps, up to max_steps.
            (Some(_), Some(max)) => {
                HyperbandPruner::new(base.eval_every.unwrap_or(1).min(max), max, 3)?
            }
            _ => HyperbandPruner::new(1, args.epochs as u64, 3)?,
        }),
        other => match other.strip_prefix("percentile:").map(str::parse::<f64>) {
            Some(Ok(p)) => Box::new(PercentilePruner::new(p)?),
            _ => bail!("invalid --pruner {other}: median, percentile:P, sh, hyperband or none"),
        },
    };
    let direction = match text_path {
        Some(_) => descent_tune::Direction::Minimize,
        None => descent_tune::Direction::Maximize,
    };
    if !(args.heartbeat.is_finite() && args.heartbeat >= 0.0) {
        bail!(
            "invalid --heartbeat {}: give seconds between heartbeats (0 turns them off)",
            args.heartbeat
        );
    }
    let mut builder = Study::builder(&args.study)
        .direction(direction)
        .storage(storage.clone())
        .sampler(sampler)
        .pruner(pruner)
        .retry_failed(args.retry_failed)
        .load_if_exists(true);
    if args.heartbeat > 0.0 {
        builder = builder.heartbeat(std::time::Duration::from_secs_f64(args.heartbeat));
    }
    let study = builder.build()?;
    let board = match &args.tensorboard {
        Some(dir) => {
            let searched: Vec<(String, Distribution)> = space
                .iter()
                .map(|p| (p.flag.clone(), p.distribution.clone()))
                .collect();
            Some(crate::board::StudyBoard::create(
                dir,
                &args.study,
                &searched,
            )?)
        }
        None => None,
    };
    for n in study.fail_stale_trials()? {
        eprintln!(
            "trial {n} was left running by a worker that is gone (its process ended, or its \
             heartbeat stopped): marked failed{}",
            if args.retry_failed > 0 {
                ", and enqueued again"
            } else {
                ""
            }
        );
    }
    let before = study.trials()?;
    if before.is_empty() {
        // The seed's settings run first, so the study shows what tuning gained.
        // (The recipe's, for a text.)
        let defaults: Vec<(&str, ParamValue)> = if text_path.is_some() {
            vec![
                ("optimizer", ParamValue::from("adamw")),
                ("lr", ParamValue::Float(1e-3)),
                ("warmup-steps", ParamValue::Int(100)),
                ("weight-decay", ParamValue::Float(0.1)),
            ]
        } else {
            vec![
                ("optimizer", ParamValue::from("sgd")),
                ("lr", ParamValue::Float(0.01)),
                ("momentum", ParamValue::Float(0.0)),
                ("batch-size", ParamValue::Int(64)),
                ("hidden", ParamValue::Int(512)),
                ("dropout", ParamValue::Float(0.0)),
                ("schedule", ParamValue::from("constant")),
            ]
        };
        let mut fixed_params = BTreeMap::new();
        for (name, v) in defaults {
            if let Some(p) = space.iter().find(|p| p.flag == name) {
                if p.distribution.to_internal(&v).is_some() {
                    fixed_params.insert(name.to_string(), v);
                }
            }
        }
        if !fixed_params.is_empty() {
            study.enqueue(fixed_params)?;
        }
    }
    let started = before
        .iter()
        .filter(|t| t.state != TrialState::Waiting)
        .count() as u64;
    if started >= args.trials {
        eprintln!(
            "study `{}` in {} already has {started} trials (--trials {}); raise --trials to run more",
            args.study, redact_url(&args.storage), args.trials
        );
        return Ok(());
    }
    // MNIST with its validation split, the same for every trial; or a text, whose windows
    // each trial cuts to its own context length (views, not copies).
    let workload = match &text_path {
        Some(path) => Workload::Text(crate::data::read_text(path, base.tokens.into())?),
        None => {
            let (mut data, _) = crate::data::mnist(
                args.data_dir.as_deref(),
                args.no_fetch,
                Normalize::default(),
                false,
            )?;
            let n_val = crate::train::val_split_count(args.val_split, data.train.len())?;
            let val = data.train.split_off_random(n_val, base.seed)?;
            Workload::Mnist(Box::new(MnistSplit {
                train: data.train,
                val,
                test: data.test,
            }))
        }
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.threads.unwrap_or((cores / args.jobs.max(1)).max(1));
    eprintln!(
        "study `{}` in {}: {started} trials so far, running until {}; {} per trial, {} \
         sampler, {} pruner, {} job(s) x {threads} thread(s)",
        args.study,
        redact_url(&args.storage),
        args.trials,
        match (&workload, base.max_steps) {
            (Workload::Text(_), Some(m)) => format!(
                "{m} steps (validation loss every {})",
                base.eval_every.map_or("-".into(), |e| e.to_string())
            ),
            _ => format!("{} epochs", args.epochs),
        },
        args.sampler,
        args.pruner,
        args.jobs
    );
    // Ctrl-C: no new trial starts, and the running ones stop mid-epoch.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        let _ = ctrlc::set_handler(move || {
            stop.store(true, Ordering::SeqCst);
            for f in RUNNING.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                f.store(true, Ordering::SeqCst);
            }
        });
    }
    let stopped = || stop.load(Ordering::SeqCst);
    let opts = OptimizeOptions {
        max_study_trials: Some(args.trials),
        timeout: args.timeout.map(std::time::Duration::from_secs_f64),
        n_jobs: args.jobs.max(1),
        stop: Some(stop.clone()),
        ..Default::default()
    };
    let epochs = args.epochs;
    let seed = base.seed;
    // Progress on a terminal: trials done of this run's, the study's best, what was cut short.
    let bar = crate::progress::CountBar::new("trials", args.trials - started);
    let tally = std::sync::Mutex::new((
        before
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter_map(|t| Some((t.number, t.value?)))
            .fold(None, |b: Option<(u64, f64)>, (n, v)| match b {
                Some((_, bv)) if !direction.better(v, bv) => b,
                _ => Some((n, v)),
            }),
        0u64,
        0u64,
    ));
    let on_trial = |t: &FrozenTrial| {
        bar.println(&trial_line(t, direction));
        let mut g = tally.lock().unwrap_or_else(|e| e.into_inner());
        match (t.state, t.value) {
            (TrialState::Complete, Some(v)) if g.0.is_none_or(|(_, b)| direction.better(v, b)) => {
                g.0 = Some((t.number, v));
            }
            (TrialState::Pruned, _) => g.1 += 1,
            (TrialState::Fail, _) => g.2 += 1,
            _ => {}
        }
        let best = g.0.map(|(n, v)| (n, metric(direction, v)));
        bar.advance(crate::progress::study_status(best, g.1, g.2));
    };
    let summary = study.optimize_with_callback(
        |trial| {
            // A searched setting's value replaces any fixed one (the recipe's --lr).
            let searched: Vec<String> = space.iter().map(|p| format!("--{}", p.flag)).collect();
            let searched: Vec<&str> = searched.iter().map(String::as_str).collect();
            let mut flags = drop_flags(fixed.clone(), &searched);
            let mut optimizer = base.optimizer.clone();
            let mut suggested = Vec::new();
            for p in &space {
                if p.flag != "optimizer" && is_hyper(&p.flag) && !takes(&optimizer, &p.flag) {
                    continue;
                }
                let v = trial.suggest(&p.flag, p.distribution.clone())?;
                if p.flag == "optimizer" {
                    optimizer = v.to_string();
                }
                // The flags only record the trial (shown, and replayed by --from-study).
                push_flag(&mut flags, &p.flag, &v);
                suggested.push((p.flag.as_str(), v));
            }
            trial.set_user_attr("train_flags", &flags)?;
            let params: Vec<(&str, &ParamValue)> = suggested.iter().map(|(n, v)| (*n, v)).collect();
            let mut targs = with_params(&base_json, &params).map_err(TrialError::msg)?;
            (targs.quiet, targs.epochs, targs.threads) = (true, epochs, Some(threads));
            let text;
            let (spec, train, val, test) = match &workload {
                Workload::Mnist(m) => (
                    crate::train::model_spec(&targs).map_err(TrialError::msg)?,
                    &m.train,
                    &m.val,
                    &m.test,
                ),
                Workload::Text(corpus) => {
                    let (t, spec) =
                        crate::data::text_run(&targs, corpus).map_err(TrialError::msg)?;
                    text = t;
                    (spec, &text.train, &text.val, &text.val)
                }
            };
            if let Workload::Text(_) = &workload {
                // Steps, not epochs, end a text's trials.
                targs.epochs = crate::data::epochs_for_steps(&targs, train.len());
            }
            let model = crate::models::build(&spec).map_err(TrialError::msg)?;
            let mut cfg =
                crate::train::config(&targs, train.len(), &model).map_err(TrialError::msg)?;
            cfg.val_only = true;
            cfg.seed = seed;
            // The typed record of what the trial trains.
            trial.set_user_attr("model", &spec)?;
            trial.set_user_attr("config", &cfg)?;
            let mut trainer = Trainer::new(model, &cfg)
                .map_err(|e| TrialError::msg(crate::train::cli_error(e)))?;
            crate::device::attach(&mut trainer, targs.device).map_err(TrialError::msg)?;
            let flag = Arc::new(AtomicBool::new(false));
            RUNNING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(flag.clone());
            if stopped() {
                // Ctrl-C came before this trial registered its flag.
                flag.store(true, Ordering::SeqCst);
            }
            trainer.set_interrupt(flag.clone());
            let log = match &board {
                Some(b) => {
                    trainer.measure_grad_norm(true);
                    trainer.snapshot_tensors(true);
                    let params = suggested.iter().map(|(n, v)| (n.to_string(), v.clone()));
                    Some(
                        b.trial(trial.number(), &params.collect())
                            .map_err(TrialError::msg)?,
                    )
                }
                None => None,
            };
            let mut last_step = 0;
            let mut best = f64::NAN;
            let mut pruned = false;
            let mut failure: Option<TrialError> = None;
            let result = trainer.run_split(train, Some(val), test, |e| {
                if let Some(log) = &log {
                    log.record(&e);
                }
                if let Event::Step { step, .. } = &e {
                    last_step = *step;
                }
                // MNIST reports validation accuracy each epoch; a text its validation loss
                // every eval_every steps.
                let (value, step) = match (&e, &workload) {
                    (Event::EpochEnd(r), Workload::Mnist(_)) => {
                        (r.val.map_or(f64::NAN, |m| m.acc), r.epoch as u64)
                    }
                    (Event::StepEval { step, eval, .. }, Workload::Text(_)) => (eval.loss, *step),
                    _ => return,
                };
                {
                    if best.is_nan() || direction.better(value, best) {
                        best = value;
                    }
                    let report = trial.report(value, step);
                    match report.and_then(|()| trial.should_prune()) {
                        Ok(true) => {
                            pruned = true;
                            flag.store(true, Ordering::SeqCst);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            failure = Some(e.into());
                            flag.store(true, Ordering::SeqCst);
                        }
                    }
                }
            });
            RUNNING
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .retain(|f| !Arc::ptr_eq(f, &flag));
            let finished = result.is_ok() && failure.is_none() && !pruned && !stopped();
            if best.is_nan() && matches!(workload, Workload::Text(_)) {
                // No step evaluation came (fewer steps than eval_every): the final one.
                if let Ok(summary) = &result {
                    best = summary.test.loss;
                }
            }
            if let Some(log) = log {
                // Written however the trial ended: the log shows how it went.
                log.end_session(last_step, finished.then_some(best), finished);
                if let Err(e) = log.close() {
                    eprintln!("warning: trial {}: {e:#}", trial.number());
                }
            }
            let summary = result.map_err(TrialError::msg)?;
            if let Some(f) = failure {
                return Err(f);
            }
            if pruned {
                return Err(TrialError::Pruned);
            }
            if stopped() {
                return Err(TrialError::msg("interrupted by Ctrl-C"));
            }
            trial.set_user_attr("epochs", summary.epochs.len())?;
            Ok(best)
        },
        &opts,
        on_trial,
    )?;
    bar.finish();
    let best = study.best_trial()?;
    if summary.stopped || stopped() {
        eprintln!(
            "interrupted: study `{}` in {} keeps its finished trials; run the same command to \
             continue",
            args.study,
            redact_url(&args.storage)
        );
        std::process::exit(130);
    }
    out!(
        "{} complete, {} pruned, {} failed in this run",
        summary.complete,
        summary.pruned,
        summary.failed
    );
    if let Some(b) = best {
        out!(
            "best: trial {} {} with {}",
            b.number,
            metric(direction, b.value.unwrap_or(f64::NAN)),
            flags_of(&b).join(" ")
        );
        out!(
            "retrain it: descent train --from-study {}:{}",
            redact_url(&args.storage),
            args.study
        );
    }
    Ok(())
}

fn flags_of(t: &FrozenTrial) -> Vec<String> {
    t.user_attrs
        .get("train_flags")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn trial_line(t: &FrozenTrial, d: descent_tune::Direction) -> String {
    let value = match t.state {
        TrialState::Complete => metric(d, t.value.unwrap_or(f64::NAN)),
        TrialState::Pruned => format!(
            "pruned after {} {} at {}",
            match d {
                descent_tune::Direction::Maximize => "epoch",
                descent_tune::Direction::Minimize => "step",
            },
            t.last_step().map_or(0, |s| s.0),
            metric(d, t.value.unwrap_or(f64::NAN))
        ),
        _ => format!("failed: {}", t.message.as_deref().unwrap_or("no message")),
    };
    format!(
        "trial {:3} {value} ({:.1}s): {}",
        t.number,
        t.duration().unwrap_or(0.0),
        flags_of(t).join(" ")
    )
}

/// `descent train --from-study STORAGE:NAME`: the flags of the study's best trial go before
/// the command line's (which win).
pub fn expand_from_study(argv: Vec<String>) -> Result<Vec<String>> {
    let Some(i) = argv
        .iter()
        .position(|a| a == "--from-study" || a.starts_with("--from-study="))
    else {
        return Ok(argv);
    };
    if argv.get(1).map(String::as_str) != Some("train") {
        bail!("--from-study is a setting of `descent train`");
    }
    let (spec, used) = match argv[i].strip_prefix("--from-study=") {
        Some(s) => (s.to_string(), 1),
        None => (
            argv.get(i + 1).cloned().ok_or_else(|| {
                anyhow!("--from-study needs STORAGE:STUDY (e.g. sqlite:tune.db:mnist)")
            })?,
            2,
        ),
    };
    let (storage, name) = spec
        .rsplit_once(':')
        .filter(|(s, n)| (s.starts_with("sqlite:") || s.starts_with("postgres")) && !n.is_empty())
        .ok_or_else(|| {
            anyhow!(
                "invalid --from-study {}: give sqlite:PATH:STUDY (e.g. sqlite:tune.db:mnist) or \
                 postgresql://USER@HOST:PORT/DB:STUDY",
                descent_tune::redact_url(&spec)
            )
        })?;
    let study = Study::load(name, open_existing_storage(storage, "--from-study")?)?;
    let best = study
        .best_trial()?
        .ok_or_else(|| anyhow!("study `{name}` has no complete trial yet"))?;
    let flags = flags_of(&best);
    eprintln!(
        "training trial {} of study `{name}` ({}): {}",
        best.number,
        metric(study.direction(), best.value.unwrap_or(f64::NAN)),
        flags.join(" ")
    );
    let mut out: Vec<String> = argv[..2].to_vec();
    out.extend(flags);
    out.extend(argv[2..i].iter().cloned());
    out.extend(argv[i + used..].iter().cloned());
    Ok(out)
}

fn run_show(args: TuneShowArgs) -> Result<()> {
    let study = Study::load(
        &args.study,
        open_existing_storage(&args.storage, "--storage")?,
    )?;
    let trials = study.trials()?;
    let count = |s: TrialState| trials.iter().filter(|t| t.state == s).count();
    out!(
        "study `{}` ({}): {} trials: {} complete, {} pruned, {} failed, {} running",
        args.study,
        study.direction(),
        trials.len(),
        count(TrialState::Complete),
        count(TrialState::Pruned),
        count(TrialState::Fail),
        count(TrialState::Running)
    );
    let Some(best) = study.best_trial()? else {
        out!("no complete trial yet");
        return Ok(());
    };
    out!(
        "best: trial {} value {:.4}: {}",
        best.number,
        best.value.unwrap_or(f64::NAN),
        flags_of(&best).join(" ")
    );
    let mut ranked: Vec<Arc<FrozenTrial>> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .cloned()
        .collect();
    let d = study.direction();
    ranked.sort_by(|a, b| {
        d.loss(a.value.unwrap_or(f64::NAN))
            .total_cmp(&d.loss(b.value.unwrap_or(f64::NAN)))
    });
    ranked.truncate(args.top);
    out!("\ntop {}:\n{}", ranked.len(), trials_table(&ranked));
    let imp = importances(&trials);
    if imp.is_empty() {
        out!(
            "parameter importances: {}",
            crate::tune_charts::no_importances(&trials)
        );
    } else {
        out!("parameter importances (share of variance explained, main effects):");
        for (n, v) in &imp {
            out!("  {n:<14} {v:.3}");
        }
    }
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("tune-{}", args.study)));
    std::fs::create_dir_all(&out_dir)
        .map_err(|e| anyhow!("invalid --out {}: cannot create it: {e}", out_dir.display()))?;
    for (name, chart) in crate::tune_charts::charts(&trials, d, &imp) {
        write_chart(&out_dir, name, &chart)?;
    }
    write_atomic(
        &out_dir.join("trials.txt"),
        trials_table(&trials).as_bytes(),
    )
    .map_err(|e| anyhow!("writing trials.txt: {e}"))?;
    if let Some(path) = &args.html {
        let mut page = crate::html::Page::new(
            format!("descent study `{}`", args.study),
            format!(
                "{} ({d}): {} trials, {} complete, {} pruned, {} failed",
                redact_url(&args.storage),
                trials.len(),
                count(TrialState::Complete),
                count(TrialState::Pruned),
                count(TrialState::Fail)
            ),
        );
        for (_, chart) in crate::tune_charts::charts(&trials, d, &imp) {
            page.chart(&chart);
        }
        page.text(
            "Best trial",
            &format!(
                "trial {} value {:.6}: descent train {}",
                best.number,
                best.value.unwrap_or(f64::NAN),
                flags_of(&best).join(" ")
            ),
        );
        page.table(&format!("Top {}", ranked.len()), &trials_rows(&ranked));
        if imp.is_empty() {
            page.text(
                "Parameter importances",
                &crate::tune_charts::no_importances(&trials),
            );
        } else {
            let mut rows = vec![vec![
                "parameter".to_string(),
                "share of variance".to_string(),
            ]];
            rows.extend(imp.iter().map(|(n, v)| vec![n.clone(), format!("{v:.3}")]));
            page.table("Parameter importances (main effects)", &rows);
        }
        page.table("Every trial", &trials_rows(&trials));
        page.write(path)?;
        out!("wrote {}", path.display());
    }
    out!(
        "wrote history, intermediate, importances and parallel (PNG and SVG) and trials.txt to {}",
        out_dir.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A trial's values are set on the arguments as typed values: numbers, switches, names,
    /// one-element lists and model settings; unknown settings and wrong types are refused.
    #[test]
    fn trial_values_are_set_as_typed_values() {
        let base =
            serde_json::to_value(train_args(&["--optimizer".into(), "adam".into()]).unwrap())
                .unwrap();
        let values = [
            ("lr", ParamValue::Float(0.003)),
            ("batch-size", ParamValue::Int(32)),
            ("hidden", ParamValue::Int(96)),
            ("amsgrad", ParamValue::Bool(true)),
            ("schedule", ParamValue::Str("cosine-restarts".into())),
            ("model.fc1.out_features", ParamValue::Int(64)),
        ];
        let params: Vec<(&str, &ParamValue)> = values.iter().map(|(n, v)| (*n, v)).collect();
        let a = with_params(&base, &params).unwrap();
        assert_eq!(a.optimizer, "adam");
        assert_eq!((a.lr, a.batch_size), (Some(0.003), 32));
        assert_eq!(a.hidden, Some(vec![96]));
        assert!(a.hyper.amsgrad);
        assert_eq!(
            a.schedule.schedule,
            crate::cli::ScheduleName::CosineRestarts
        );
        assert_eq!(a.model_set, ["fc1.out_features=64"]);
        let deep = ParamValue::Str("256,128".into());
        let a = with_params(&base, &[("hidden", &deep)]).unwrap();
        assert_eq!(a.hidden, Some(vec![256, 128]));
        let e = with_params(&base, &[("foo", &ParamValue::Int(1))]).unwrap_err();
        assert!(
            e.to_string()
                .contains("`foo` is not a `descent train` setting"),
            "{e}"
        );
        assert!(with_params(&base, &[("batch-size", &ParamValue::Float(0.5))]).is_err());
        assert!(with_params(&base, &[("schedule", &ParamValue::Str("warp".into()))]).is_err());
    }
}
