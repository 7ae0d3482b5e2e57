//! Every optimizer and schedule against PyTorch's own numbers.
//!
//! Optimizers: the gradients PyTorch saw at each step are replayed through descent's optimizer
//! (with the same clipping and parameter groups), and the parameters after every step must
//! agree to 1e-5 relative (1e-6 absolute near zero). Schedules: the learning rate (and
//! momentum) of every step must agree to 1e-9 relative. The fixtures come from
//! `tools/optim_reference.py`, which records the PyTorch version it ran; CI does not need
//! PyTorch.

use descent_optim::schedule::{Anneal, PlateauConfig, PlateauMode, ReduceOnPlateau, Schedule};
use descent_optim::{
    clip_grad_norm, HyperValue, Optimizer, OptimizerConfig, ParamGroup, ParamSpec, OPTIMIZER_NAMES,
};
use serde_json::{Map, Value};

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

/// descent's settings for a fixture's optimizer and PyTorch keyword arguments.
fn config(optimizer: &str, hp: &Map<String, Value>) -> OptimizerConfig {
    let name = if optimizer == "seed_adaptive" {
        "rmsprop"
    } else {
        optimizer
    };
    let mut cfg = OptimizerConfig::default_for(name).unwrap();
    if optimizer == "seed_adaptive" {
        cfg.set("eps_inside_sqrt", HyperValue::Flag(true)).unwrap();
    }
    for (key, value) in hp {
        match (key.as_str(), value) {
            ("betas", Value::Array(b)) => {
                cfg.set("beta1", HyperValue::Num(b[0].as_f64().unwrap()))
                    .unwrap();
                cfg.set("beta2", HyperValue::Num(b[1].as_f64().unwrap()))
                    .unwrap();
            }
            (k, Value::Bool(b)) => cfg.set(k, HyperValue::Flag(*b)).unwrap(),
            (k, v) => cfg.set(k, HyperValue::Num(v.as_f64().unwrap())).unwrap(),
        }
    }
    cfg.validate().unwrap();
    cfg
}

#[test]
fn every_optimizer_matches_pytorch_step_by_step() {
    let root: Value = serde_json::from_str(include_str!("fixtures/torch_optimizers.json")).unwrap();
    let specs: Vec<ParamSpec> = root["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let shape: Vec<usize> = t[1]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            ParamSpec::new(t[0].as_str().unwrap(), &shape)
        })
        .collect();
    let cases = root["cases"].as_array().unwrap();
    let mut covered = std::collections::BTreeSet::new();
    for case in cases {
        let optimizer = case["optimizer"].as_str().unwrap();
        let name = format!("{optimizer}/{}", case["name"].as_str().unwrap());
        let cfg = config(optimizer, case["hyperparameters"].as_object().unwrap());
        covered.insert(cfg.name());
        let groups: Vec<ParamGroup> = match case.get("groups") {
            Some(g) => vec![ParamGroup {
                params: vec!["bias".into()],
                lr: g.get("lr").and_then(Value::as_f64).map(|v| v as f32),
                weight_decay: g
                    .get("weight_decay")
                    .and_then(Value::as_f64)
                    .map(|v| v as f32),
            }],
            None => vec![],
        };
        let clip = case.get("clip_norm").and_then(Value::as_f64);
        let mut opt = Optimizer::with_groups(cfg, &specs, &groups).unwrap();
        let mut params = floats(&case["start"]);
        let grads = case["grads"].as_array().unwrap();
        let want = case["params"].as_array().unwrap();
        assert!(grads.len() >= 50, "{name}: at least 50 steps");
        for (step, (g, w)) in grads.iter().zip(want).enumerate() {
            let mut g = floats(g);
            if let Some(max) = clip {
                clip_grad_norm(&mut g, max as f32, true).unwrap();
            }
            opt.step(&mut params, &g).unwrap();
            for (k, (p, w)) in params.iter().zip(floats(w)).enumerate() {
                // 1e-5 relative, with an absolute floor of 1e-6 for values near zero (PyTorch
                // rounds some products once with FMA, descent twice; over tens of steps that
                // leaves ~1e-7 where a parameter crosses zero).
                let tol = 1e-5 * w.abs() + 1e-6;
                assert!(
                    (p - w).abs() <= tol,
                    "{name}: step {} param {k}: descent {p}, PyTorch {w}",
                    step + 1
                );
            }
        }
    }
    for name in OPTIMIZER_NAMES {
        if name != "gd" {
            assert!(covered.contains(name), "no PyTorch fixture for {name}");
        }
    }
}

fn u(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap()
}

fn f(v: &Value, key: &str) -> f64 {
    v[key].as_f64().unwrap()
}

fn schedule(name: &str, p: &Value) -> Schedule {
    match name {
        "step" => Schedule::Step {
            step_size: u(p, "step_size"),
            gamma: f(p, "gamma"),
        },
        "multistep" => Schedule::MultiStep {
            milestones: p["milestones"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| m.as_u64().unwrap())
                .collect(),
            gamma: f(p, "gamma"),
        },
        "exponential" => Schedule::Exponential {
            gamma: f(p, "gamma"),
        },
        "cosine" => Schedule::Cosine {
            t_max: u(p, "T_max"),
            eta_min: f(p, "eta_min"),
        },
        "cosine_restarts" => Schedule::CosineWarmRestarts {
            t_0: u(p, "T_0"),
            t_mult: u(p, "T_mult"),
            eta_min: f(p, "eta_min"),
        },
        "linear" => Schedule::Linear {
            start_factor: f(p, "start_factor"),
            end_factor: f(p, "end_factor"),
            total_iters: u(p, "total_iters"),
        },
        "polynomial" => Schedule::Polynomial {
            total_iters: u(p, "total_iters"),
            power: f(p, "power"),
        },
        "onecycle" => Schedule::one_cycle(u(p, "total_steps")),
        "onecycle_three_phase_linear" => Schedule::OneCycle {
            total_steps: u(p, "total_steps"),
            pct_start: f(p, "pct_start"),
            anneal: Anneal::Linear,
            div_factor: f(p, "div_factor"),
            final_div_factor: f(p, "final_div_factor"),
            three_phase: true,
            momentum: Some((f(p, "base_momentum"), f(p, "max_momentum"))),
        },
        "warmup_cosine" => Schedule::warmup_then(
            u(p, "warmup"),
            Schedule::Cosine {
                t_max: u(p, "T_max"),
                eta_min: 0.0,
            },
        ),
        other => panic!("no schedule `{other}` in descent for this fixture"),
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * b.abs() + 1e-15
}

#[test]
fn every_schedule_matches_pytorch_step_by_step() {
    let root: Value = serde_json::from_str(include_str!("fixtures/torch_schedules.json")).unwrap();
    for case in root["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let s = schedule(name, &case["parameters"]);
        s.validate().unwrap();
        let base = f(case, "base_lr");
        let lrs = case["lrs"].as_array().unwrap();
        assert!(lrs.len() >= 50, "{name}: at least 50 steps");
        for (t, want) in lrs.iter().enumerate() {
            let (got, want) = (s.lr(t as u64, base), want.as_f64().unwrap());
            assert!(
                close(got, want),
                "{name}: step {t}: descent {got}, PyTorch {want}"
            );
        }
        if let Some(moms) = case.get("momenta") {
            for (t, want) in moms.as_array().unwrap().iter().enumerate() {
                let (got, want) = (s.momentum(t as u64).unwrap(), want.as_f64().unwrap());
                assert!(
                    close(got, want),
                    "{name} momentum: step {t}: {got} vs {want}"
                );
            }
        }
    }
    for case in root["plateau"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let p = &case["parameters"];
        let get = |k: &str, d: f64| p.get(k).and_then(Value::as_f64).unwrap_or(d);
        let d = PlateauConfig::default();
        let cfg = PlateauConfig {
            mode: PlateauMode::Min,
            factor: get("factor", d.factor),
            patience: get("patience", d.patience as f64) as u64,
            threshold: get("threshold", d.threshold),
            relative: p.get("threshold_mode").and_then(Value::as_str) != Some("abs"),
            cooldown: get("cooldown", d.cooldown as f64) as u64,
            min_lr: get("min_lr", d.min_lr),
            eps: d.eps,
        };
        let mut plateau = ReduceOnPlateau::new(cfg, f(case, "base_lr")).unwrap();
        let metrics = case["metrics"].as_array().unwrap();
        let lrs = case["lrs"].as_array().unwrap();
        for (t, (m, want)) in metrics.iter().zip(lrs).enumerate() {
            let got = plateau.observe(m.as_f64().unwrap());
            let want = want.as_f64().unwrap();
            assert!(
                close(got, want),
                "{name}: step {t}: descent {got}, PyTorch {want}"
            );
        }
        assert!(lrs.last().unwrap().as_f64().unwrap() < f(case, "base_lr"));
    }
}
