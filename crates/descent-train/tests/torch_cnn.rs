//! The `cnn` preset (PyTorch's examples/mnist Net, dropout off) trained 50 steps of Adadelta
//! (lr 1) on 64-image batches in order ends within 1e-4 relative L2 of PyTorch's weights.
//! `tools/nn_reference.py cnn` recorded PyTorch's run; both sides compute the same initial
//! weights and inputs from a formula (the script's docstring), and the fixture holds every
//! 61st value of PyTorch's final weights.

use descent_nn::{Loss, ModelSpec, Targets, Workspace};
use descent_optim::{Optimizer, OptimizerConfig, ParamSpec};
use descent_tensor::Pool;
use serde_json::Value;

#[test]
fn fifty_adadelta_steps_of_the_cnn_match_pytorch() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/torch_cnn_adadelta.json")).unwrap();
    let spec = ModelSpec::from_value(fixture["model"].clone()).unwrap();
    // The fixture's model is the preset with its two dropouts at p = 0.
    let preset = ModelSpec::preset("cnn", &[1, 28, 28], 10).unwrap();
    assert_eq!(spec.layers.len(), preset.layers.len());
    let model = spec.build().unwrap();
    assert_eq!(model.layout(), preset.build().unwrap().layout());

    let fan_in = |name: &str| match name.split('.').next().unwrap() {
        "conv1" => 9.0,
        "conv2" => 288.0,
        "fc1" => 9216.0,
        _ => 128.0,
    };
    let mut values = vec![0.0f32; model.layout().len()];
    for (t, v) in model.layout().params().enumerate() {
        let f: f64 = fan_in(&v.name);
        for (k, p) in values[v.range()].iter_mut().enumerate() {
            *p = ((1.3 * k as f64 + 0.7 * t as f64 + 0.1).sin() / f.sqrt()) as f32;
        }
    }
    let steps = fixture["steps"].as_u64().unwrap() as usize;
    let batch = fixture["batch"].as_u64().unwrap() as usize;
    let per_step = batch * 784;
    let input = |i: usize| ((0.1 * i as f64 + 0.3).sin() * (0.013 * i as f64).cos() * 2.0) as f32;

    let specs: Vec<ParamSpec> = model
        .layout()
        .params()
        .map(|v| ParamSpec::new(v.name.clone(), &v.shape))
        .collect();
    let mut config = OptimizerConfig::default_for("adadelta").unwrap();
    assert_eq!(config.lr(), 1.0);
    config
        .set("lr", descent_optim::HyperValue::Num(1.0))
        .unwrap();
    let mut opt = Optimizer::new(config, &specs).unwrap();
    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(&model, batch, 2);
    let mut grads = vec![0.0; model.param_count()];
    let want_losses: Vec<f64> = fixture["losses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let mut x = vec![0.0f32; per_step];
    assert_eq!(want_losses.len(), steps);
    for (s, &want_loss) in want_losses.iter().enumerate() {
        for (j, v) in x.iter_mut().enumerate() {
            *v = input(s * per_step + j);
        }
        let y: Vec<u32> = (0..batch)
            .map(|i| ((7 * (s * batch + i) + 3) % 10) as u32)
            .collect();
        let loss = model
            .train_step_grads(
                &mut values,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut grads,
                &mut ws,
                &pool,
            )
            .unwrap()
            .mean_loss();
        assert!(
            (loss - want_loss).abs() <= 1e-4 * want_loss,
            "step {s}: loss {loss} vs PyTorch's {want_loss}"
        );
        let t = model.param_count();
        opt.step(&mut values[..t], &grads).unwrap();
    }
    let stride = fixture["stride"].as_u64().unwrap() as usize;
    assert_eq!(
        fixture["len"].as_u64().unwrap() as usize,
        model.param_count()
    );
    let want: Vec<f64> = fixture["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    let got: Vec<f64> = values[..model.param_count()]
        .iter()
        .step_by(stride)
        .map(|&v| v as f64)
        .collect();
    assert_eq!(got.len(), want.len());
    let diff: f64 = got.iter().zip(&want).map(|(a, b)| (a - b).powi(2)).sum();
    let norm: f64 = want.iter().map(|b| b * b).sum();
    let rel = (diff / norm).sqrt();
    eprintln!("50 Adadelta steps: relative L2 distance to PyTorch's weights {rel:.2e}");
    assert!(rel <= 1e-4, "relative L2 distance {rel:.2e}");
}
