//! A small GPT (the `gpt` preset's layout) trained 20 steps of AdamW as torch_gpt.py trains
//! (betas 0.9/0.99, weight decay 0.1 on tensors of 2 or more dimensions only, clipping at
//! norm 1) from PyTorch's own initial weights, on windows of a token stream a formula gives
//! (`tools/nn_reference.py gpt` recorded PyTorch's run): every loss within 1e-4 of PyTorch's,
//! and the final weights within 1e-4 relative L2.

use descent_nn::{GptSize, Loss, ModelSpec, Targets, Workspace};
use descent_optim::{
    clip_grad_norm, HyperValue, Optimizer, OptimizerConfig, ParamGroup, ParamSpec,
};
use descent_tensor::Pool;
use serde_json::Value;

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn twenty_adamw_steps_of_a_gpt_match_pytorch() {
    let fixture: Value =
        serde_json::from_str(include_str!("fixtures/torch_gpt_adamw.json")).unwrap();
    let spec = ModelSpec::from_value(fixture["model"].clone()).unwrap();
    let size = GptSize {
        layers: 2,
        heads: 2,
        width: 16,
        block: 10,
    };
    let vocab = 13;
    assert_eq!(spec, ModelSpec::gpt(vocab, size), "the preset's layout");
    let model = spec.build().unwrap();
    let mut values = model.init_params(&mut descent_tensor::Rng::new(0));
    let init = fixture["init"].as_object().unwrap();
    assert_eq!(init.len(), model.layout().views().len());
    for v in model.layout().views() {
        values[v.range()].copy_from_slice(&floats(&init[&v.name]));
    }
    let specs: Vec<ParamSpec> = model
        .layout()
        .params()
        .map(|v| ParamSpec::new(v.name.clone(), &v.shape))
        .collect();
    let mut config = OptimizerConfig::default_for("adamw").unwrap();
    for (k, v) in [("lr", 3e-3), ("beta2", 0.99), ("weight_decay", 0.1)] {
        config.set(k, HyperValue::Num(v)).unwrap();
    }
    let no_decay = ParamGroup {
        params: model
            .layout()
            .params()
            .filter(|v| v.shape.len() < 2)
            .map(|v| v.name.clone())
            .collect(),
        lr: None,
        weight_decay: Some(0.0),
    };
    let mut opt = Optimizer::with_groups(config, &specs, &[no_decay]).unwrap();
    let (steps, batch) = (
        fixture["steps"].as_u64().unwrap() as usize,
        fixture["batch"].as_u64().unwrap() as usize,
    );
    let block = size.block;
    let tokens: Vec<u32> = (0..500)
        .map(|i| ((7 * i + 3 * (i / 5)) % vocab) as u32)
        .collect();
    let want_losses = floats(&fixture["losses"]);
    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(&model, batch, 2);
    let t = model.param_count();
    let mut grads = vec![0.0; t];
    for (s, &want) in want_losses.iter().enumerate().take(steps) {
        let starts: Vec<usize> = (0..batch).map(|w| (37 * s + 11 * w) % 400).collect();
        let x: Vec<f32> = starts
            .iter()
            .flat_map(|&a| tokens[a..a + block].iter().map(|&t| t as f32))
            .collect();
        let y: Vec<u32> = starts
            .iter()
            .flat_map(|&a| tokens[a + 1..a + block + 1].iter().copied())
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
            (loss - want as f64).abs() <= 1e-4 * want as f64,
            "step {s}: loss {loss} vs PyTorch's {want}"
        );
        clip_grad_norm(&mut grads, 1.0, false).unwrap();
        opt.step(&mut values[..t], &grads).unwrap();
    }
    let want = floats(&fixture["weights"]);
    assert_eq!(want.len(), t);
    // The keys' bias has no gradient: q·(k + b) shifts a query's every score by q·b, which
    // the softmax ignores. Its gradient is rounding noise on both sides, which Adam turns
    // into steps of about lr of either sign; those weights are left out (they wander by
    // 1e-3 from PyTorch's, which alone would make the distance 2e-4).
    let width = size.width;
    let noise: Vec<std::ops::Range<usize>> = model
        .layout()
        .params()
        .filter(|v| v.name.ends_with("qkv.bias"))
        .map(|v| v.offset + width..v.offset + 2 * width)
        .collect();
    let kept = |i: usize| !noise.iter().any(|r| r.contains(&i));
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (_, (a, b)) in values[..t]
        .iter()
        .zip(&want)
        .enumerate()
        .filter(|(i, _)| kept(*i))
    {
        diff += ((a - b) as f64).powi(2);
        norm += (*b as f64).powi(2);
    }
    let rel = (diff / norm).sqrt();
    eprintln!("20 AdamW steps: relative L2 distance to PyTorch's weights {rel:.2e}");
    assert!(rel <= 1e-4, "relative L2 distance {rel:.2e}");
}
