//! Every optimizer against PyTorch's own numbers: the gradients PyTorch saw at each step are
//! replayed through descent's optimizer, and the parameters after every step must agree to
//! 1e-5 relative (1e-6 absolute near zero). The fixtures come from `tools/optim_reference.py` (which records the
//! PyTorch version it ran); CI does not need PyTorch.

use descent_optim::{Optimizer, Sgd, SgdConfig};
use serde_json::{Map, Value};

fn num(hp: &Map<String, Value>, key: &str, default: f32) -> f32 {
    hp.get(key)
        .and_then(Value::as_f64)
        .map_or(default, |v| v as f32)
}

fn flag(hp: &Map<String, Value>, key: &str) -> bool {
    hp.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// descent's optimizer for a fixture's name and PyTorch hyperparameters.
fn build(optimizer: &str, hp: &Map<String, Value>) -> Box<dyn Optimizer> {
    match optimizer {
        "sgd" => {
            let d = SgdConfig::default();
            Box::new(
                Sgd::new(SgdConfig {
                    lr: num(hp, "lr", d.lr),
                    momentum: num(hp, "momentum", d.momentum),
                    dampening: num(hp, "dampening", d.dampening),
                    weight_decay: num(hp, "weight_decay", d.weight_decay),
                    nesterov: flag(hp, "nesterov"),
                    maximize: flag(hp, "maximize"),
                })
                .unwrap(),
            )
        }
        other => panic!("no optimizer `{other}` in descent for this fixture"),
    }
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check_fixture(json: &str) {
    let root: Value = serde_json::from_str(json).unwrap();
    let optimizer = root["optimizer"].as_str().unwrap();
    let cases = root["cases"].as_array().unwrap();
    assert!(!cases.is_empty());
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let mut opt = build(optimizer, case["hyperparameters"].as_object().unwrap());
        let mut params = floats(&case["start"]);
        let grads = case["grads"].as_array().unwrap();
        let want = case["params"].as_array().unwrap();
        assert!(grads.len() >= 50, "{name}: at least 50 steps");
        for (step, (g, w)) in grads.iter().zip(want).enumerate() {
            opt.step(&mut params, &floats(g)).unwrap();
            for (k, (p, w)) in params.iter().zip(floats(w)).enumerate() {
                // 1e-5 relative, with an absolute floor of 1e-6 for values near zero (PyTorch
                // rounds `p + alpha * g` once with FMA, descent twice; over tens of steps
                // with momentum that leaves ~1e-7 where a parameter crosses zero).
                let tol = 1e-5 * w.abs() + 1e-6;
                assert!(
                    (p - w).abs() <= tol,
                    "{optimizer}/{name}: step {} param {k}: descent {p}, PyTorch {w}",
                    step + 1
                );
            }
        }
    }
}

#[test]
fn sgd_matches_pytorch() {
    check_fixture(include_str!("fixtures/torch_sgd.json"));
}
