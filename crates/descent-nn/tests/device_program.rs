//! A model's device program (each layer's `device_forward` / `device_backward`, the softmax
//! cross-entropy) on the reference backend gives the CPU engine's loss, accuracy count and
//! gradients; models with layers that have no device program are refused by name.

use descent_nn::{DeviceProgram, Loss, Model, ModelSpec, NnError, Targets, Workspace};
use descent_tensor::backend::{Backend, HostBackend, Region, Span};
use descent_tensor::{Pool, Rng};
use serde_json::json;

fn model(v: serde_json::Value) -> Model {
    ModelSpec::from_value(v).unwrap().build().unwrap()
}

fn close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let num: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    let den: f64 = b.iter().map(|y| (*y as f64).powi(2)).sum();
    let rel = (num / den.max(1e-30)).sqrt();
    assert!(rel < 1e-5, "{what}: relative L2 difference {rel}");
}

fn same_step(m: &Model, batch: usize, cap: usize, seed: u64, what: &str) {
    let mut rng = Rng::new(seed);
    let params = m.init_params(&mut rng);
    let features = m.input_features();
    let x: Vec<f32> = (0..batch * features)
        .map(|_| rng.uniform(-1.5, 1.5))
        .collect();
    let labels: Vec<u32> = (0..batch)
        .map(|_| rng.below(m.classes() as u64) as u32)
        .collect();
    let loss = Loss::default();

    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(m, cap, 2);
    let mut values = params.clone();
    let mut grads = vec![0.0; m.layout().trainable_len()];
    let stats = m
        .train_step_grads(
            &mut values,
            &x,
            Targets::Classes(&labels),
            &loss,
            &mut grads,
            &mut ws,
            &pool,
        )
        .unwrap();

    let prog = DeviceProgram::new(m, &loss, cap, "cpu").unwrap();
    let mut be = HostBackend::new();
    be.resize(Region::Params, params.len()).unwrap();
    be.resize(Region::Grads, params.len()).unwrap();
    be.resize(Region::Acts, prog.acts_len()).unwrap();
    be.resize(Region::Batch, prog.batch_len()).unwrap();
    be.resize(Region::Hyper, 2).unwrap();
    be.write(Span::new(Region::Params, 0, params.len()), &params)
        .unwrap();
    // NaN in the gradients: every gradient must be written, none accumulated onto.
    be.fill(Span::new(Region::Grads, 0, params.len()), f32::NAN)
        .unwrap();
    be.write(prog.inputs(batch), &x).unwrap();
    let ids: Vec<f32> = labels.iter().map(|&l| l as f32).collect();
    be.write(prog.labels(batch), &ids).unwrap();
    let st = Span::new(Region::Hyper, 0, 2);
    prog.train_step(m, &mut be, batch, st).unwrap();

    let dev_grads = be.read(Span::new(Region::Grads, 0, params.len())).unwrap();
    close(&dev_grads, &grads, &format!("{what}: gradients"));
    let s = be.read(st).unwrap();
    let rel = (s[0] as f64 - stats.loss_sum).abs() / stats.loss_sum;
    assert!(
        rel < 1e-5,
        "{what}: loss {} against {}",
        s[0],
        stats.loss_sum
    );
    assert_eq!(s[1] as usize, stats.correct, "{what}: correct");
    // The parameters are not touched by the step.
    let p = be.read(Span::new(Region::Params, 0, params.len())).unwrap();
    assert_eq!(p, params, "{what}: parameters");
}

#[test]
fn device_programs_give_the_cpu_engines_gradients() {
    let mlp = Model::mlp(20, &[16], 7, descent_nn::Activation::Relu, 0.0).unwrap();
    same_step(&mlp, 5, 8, 1, "mlp 20-16-7");
    same_step(&mlp, 8, 8, 2, "mlp, a full batch");
    let acts = model(json!({"input": [2, 3, 2], "layers": [
        {"type": "flatten"},
        {"type": "linear", "name": "a", "out_features": 9},
        {"type": "tanh"},
        {"type": "relu"},
        {"type": "linear", "name": "b", "out_features": 6, "bias": false},
        {"type": "sigmoid"},
        {"type": "linear", "name": "c", "out_features": 8},
        {"type": "leaky_relu"},
        {"type": "linear", "name": "d", "out_features": 4},
    ]}));
    // tanh, sigmoid and leaky ReLU fuse onto the Linear before them; the ReLU after tanh
    // runs as a layer of its own.
    let kinds: Vec<_> = acts.layers().iter().map(|l| l.kind()).collect();
    assert_eq!(
        kinds,
        ["Flatten", "Linear", "ReLU", "Linear", "Linear", "Linear"]
    );
    same_step(
        &acts,
        3,
        4,
        3,
        "flatten, tanh + relu, sigmoid, leaky relu, no bias",
    );
}

#[test]
fn layers_without_a_device_program_are_named() {
    let m = model(json!({"input": [6], "layers": [
        {"type": "linear", "name": "a", "out_features": 5},
        {"type": "gelu"},
        {"type": "linear", "name": "b", "out_features": 3},
    ]}));
    let e = DeviceProgram::new(&m, &Loss::default(), 4, "cuda:0").unwrap_err();
    assert!(matches!(e, NnError::NotOnDevice { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(
        msg.contains("cuda:0") && msg.contains("layer 1") && msg.contains("GELU"),
        "{msg}"
    );
    let mlp = Model::mlp(6, &[5], 3, descent_nn::Activation::Relu, 0.0).unwrap();
    let smooth = Loss::CrossEntropy {
        label_smoothing: 0.1,
        weights: None,
    };
    let e = DeviceProgram::new(&mlp, &smooth, 4, "cuda:0").unwrap_err();
    assert!(e.to_string().contains("plain cross-entropy"), "{e}");
}
