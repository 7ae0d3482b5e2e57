//! A study worker on any storage, for the interoperability and load tools
//! (`tools/optuna_interop.py`):
//!
//! `cargo run --release -p descent-tune --example study_worker STORAGE STUDY TRIALS [SEED]`
//!
//! Opens (or creates, to minimize) the study, runs TRIALS more trials of a small objective
//! with a mixed space (log float, stepped int, categorical, a conditional parameter,
//! intermediate values, user attributes; every 7th trial fails, every 5th is pruned) under
//! TPE, then prints every trial of the study as one JSON line each, as descent reads them.

use std::sync::Arc;

use descent_tune::{storage, OptimizeOptions, Study, TpeSampler, TrialError};

fn objective(t: &mut descent_tune::Trial) -> Result<f64, TrialError> {
    let x = t.suggest_float_log("x", 1e-3, 10.0)?;
    let n = t.suggest_int_step("n", 2, 20, 2)?;
    let kind = t.suggest_categorical("kind", &["a", "b", "c"])?;
    let extra = if kind == "a" {
        t.suggest_float("extra", -1.0, 1.0)?
    } else {
        0.0
    };
    let value = x.ln().powi(2) + (n as f64 - 8.0).powi(2) / 10.0 + extra.abs();
    for step in 0..3 {
        t.report(value + (2 - step) as f64, step)?;
    }
    t.set_user_attr("kind", kind.to_string())?;
    if t.number() % 7 == 6 {
        return Err(TrialError::msg("every 7th trial fails"));
    }
    if t.number() % 5 == 4 {
        return Err(TrialError::Pruned);
    }
    Ok(value)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, name, trials, rest @ ..] = args.as_slice() else {
        return Err("usage: study_worker STORAGE STUDY TRIALS [SEED]".into());
    };
    let seed = rest.first().map_or(Ok(0), |s| s.parse())?;
    let storage = storage::open(url)?;
    let study = Study::builder(name.as_str())
        .minimize()
        .storage(Arc::clone(&storage))
        .sampler(TpeSampler::new(seed))
        .load_if_exists(true)
        .build()?;
    let opts = OptimizeOptions {
        n_trials: Some(trials.parse()?),
        ..Default::default()
    };
    study.optimize(objective, &opts)?;
    for t in study.trials()?.iter() {
        let params: serde_json::Map<String, serde_json::Value> = t
            .params
            .iter()
            .map(|(k, p)| (k.clone(), serde_json::to_value(p.value()).unwrap()))
            .collect();
        let line = serde_json::json!({
            "number": t.number,
            "state": t.state.as_str(),
            "value": t.value,
            "params": params,
            "intermediate": t.intermediate.iter().map(|(s, v)| (s.to_string(), serde_json::Value::from(*v))).collect::<serde_json::Map<_, _>>(),
            "user_attrs": t.user_attrs,
            "fixed": t.fixed,
        });
        println!("{line}");
    }
    Ok(())
}
