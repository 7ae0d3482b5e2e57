//! Every layer's forward and backward against PyTorch: the fixtures
//! (`tests/fixtures/torch_layers.json`, written by `tools/nn_reference.py layers`) hold
//! PyTorch's parameters, inputs, labels, training-mode loss, gradients, running statistics
//! after the step and evaluation-mode outputs for small models around each layer kind (odd
//! shapes: stride 2, padding, dilation 2, groups 2, non-square images, batch 1 and 3).

use std::collections::BTreeMap;

use descent_nn::{Loss, Model, ModelSpec, Targets, Workspace};
use descent_tensor::{Pool, Rng};
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("a list of numbers")
        .iter()
        .map(|x| x.as_f64().expect("a number") as f32)
        .collect()
}

fn named(v: &Value) -> BTreeMap<String, Vec<f32>> {
    v.as_object()
        .expect("a table of tensors")
        .iter()
        .map(|(k, v)| (k.clone(), floats(v)))
        .collect()
}

/// Relative L2 error `|a - b| / |b|`; a tensor whose norm is under 1e-2 counts as 1e-2 (a
/// bias before BatchNorm has a gradient of zero up to rounding on both sides).
fn rel_err(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let norm: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    diff.sqrt() / norm.sqrt().max(1e-2)
}

fn values_for(model: &Model, params: &BTreeMap<String, Vec<f32>>) -> Vec<f32> {
    let mut values = model.init_params(&mut Rng::new(0));
    for v in model.layout().views() {
        let p = params
            .get(&v.name)
            .unwrap_or_else(|| panic!("PyTorch has no `{}`", v.name));
        values[v.range()].copy_from_slice(p);
    }
    assert_eq!(
        params.len(),
        model.layout().views().len(),
        "the same tensors on both sides"
    );
    values
}

#[test]
fn every_layer_matches_pytorch() {
    let text = include_str!("fixtures/torch_layers.json");
    let fixture: Value = serde_json::from_str(text).unwrap();
    let cases = fixture["cases"].as_array().unwrap();
    assert!(cases.len() >= 7);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let model = ModelSpec::from_value(case["model"].clone())
            .unwrap()
            .build()
            .unwrap();
        let batch = case["batch"].as_u64().unwrap() as usize;
        let start = values_for(&model, &named(&case["params"]));
        let mut values = start.clone();
        let x = floats(&case["x"]);
        let labels: Vec<u32> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u32)
            .collect();
        let mut worst = 0.0f64;
        for threads in [1, 2] {
            let pool = Pool::new(threads).unwrap();
            let mut v = start.clone();
            let mut ws = Workspace::new(&model, batch, threads);
            let mut grads = vec![0.0; model.param_count()];
            let stats = model
                .train_step_grads(
                    &mut v,
                    &x,
                    Targets::Classes(&labels),
                    &Loss::default(),
                    &mut grads,
                    &mut ws,
                    &pool,
                )
                .unwrap();
            let want = case["loss"].as_f64().unwrap();
            assert!(
                (stats.mean_loss() - want).abs() <= 1e-5 * want.abs(),
                "{name}: loss {} vs PyTorch's {want}",
                stats.mean_loss()
            );
            for (tensor, g) in named(&case["grads"]) {
                let view = model.layout().get(&tensor).unwrap();
                let e = rel_err(&grads[view.range()], &g);
                worst = worst.max(e);
                assert!(
                    e <= 1e-5,
                    "{name}: gradient of {tensor}: relative error {e:.2e}"
                );
            }
            for (tensor, b) in named(&case["buffers_after"]) {
                let view = model.layout().get(&tensor).unwrap();
                let e = rel_err(&v[view.range()], &b);
                assert!(
                    e <= 1e-5,
                    "{name}: {tensor} after the step: relative error {e:.2e}"
                );
            }
            if threads == 1 {
                values = v;
            }
        }
        // Evaluation mode, with the running statistics the step left.
        let pool = Pool::new(1).unwrap();
        let mut ws = Workspace::new(&model, batch, 1);
        let out = model.forward(&values, &x, &mut ws, &pool).unwrap();
        let e = rel_err(out, &floats(&case["eval_output"]));
        assert!(
            e <= 1e-5,
            "{name}: evaluation output: relative error {e:.2e}"
        );
        eprintln!("{name}: worst gradient error {worst:.1e}, evaluation output {e:.1e}");
    }
}
