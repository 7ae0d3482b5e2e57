//! Every layer through whole models: gradients against central differences (odd shapes,
//! strides, padding, dilation, groups, batch 1 and 3), the fast convolution against its
//! naive twin, threads against one thread, the fused SGD step against gradients + SGD.

use descent_nn::{
    conv2d_backward_naive, conv2d_naive, Activation, Loss, Model, ModelSpec, NnError, Targets,
    Window, Workspace,
};
use descent_tensor::{Pool, Rng};
use serde_json::json;

fn spec(v: serde_json::Value) -> ModelSpec {
    ModelSpec::from_value(v).unwrap()
}

fn data(rng: &mut Rng, batch: usize, features: usize, classes: usize) -> (Vec<f32>, Vec<u32>) {
    let x = (0..batch * features)
        .map(|_| rng.uniform(-1.5, 1.5))
        .collect();
    let y = (0..batch)
        .map(|_| rng.below(classes as u64) as u32)
        .collect();
    (x, y)
}

/// Every trainable parameter's gradient against central differences of the training loss
/// (training mode: BatchNorm's batch statistics, a fixed dropout seed).
fn check_gradients(model: &Model, batch: usize, seed: u64, what: &str) {
    check_gradients_with(model, batch, seed, what, &Loss::default());
}

fn check_gradients_with(model: &Model, batch: usize, seed: u64, what: &str, loss_fn: &Loss) {
    let mut rng = Rng::new(seed);
    let mut values = model.init_params(&mut rng);
    // Move BatchNorm's γ and β off 1 and 0 so that their gradients are not special.
    for v in model.layout().params() {
        if v.name.contains("bn") || v.name.contains("norm") {
            for p in &mut values[v.range()] {
                *p += rng.uniform(-0.3, 0.3);
            }
        }
    }
    let classes = model.output_features();
    let (x, y) = data(&mut rng, batch, model.input_features(), classes);
    check_gradients_on(model, values, &x, &y, batch, what, loss_fn);
}

/// [`check_gradients_with`] on given values, inputs and class targets.
fn check_gradients_on(
    model: &Model,
    mut values: Vec<f32>,
    x: &[f32],
    y: &[u32],
    batch: usize,
    what: &str,
    loss_fn: &Loss,
) {
    let pool = Pool::new(1).unwrap();
    let mut ws = Workspace::new(model, batch, 1);
    let n = model.param_count();
    let mut grads = vec![0.0; n];
    ws.set_dropout_seed(7);
    model
        .train_step_grads(
            &mut values,
            x,
            Targets::Classes(y),
            loss_fn,
            &mut grads,
            &mut ws,
            &pool,
        )
        .unwrap();
    let mut scratch = vec![0.0; n];
    let mut loss = |v: &mut Vec<f32>| {
        ws.set_dropout_seed(7);
        model
            .train_step_grads(
                v,
                x,
                Targets::Classes(y),
                loss_fn,
                &mut scratch,
                &mut ws,
                &pool,
            )
            .unwrap()
            .mean_loss()
    };
    // Small steps: a larger one crosses the kinks of ReLU and max pooling too often (a
    // convolution weight moves many values at once).
    let mut worst = 0.0f64;
    for k in 0..n {
        let g = grads[k] as f64;
        let mut central = |eps: f32| {
            let mut p = values.clone();
            p[k] = values[k] + eps;
            let lp = loss(&mut p);
            let mut p = values.clone();
            p[k] = values[k] - eps;
            let lm = loss(&mut p);
            let num = (lp - lm) / (2.0 * eps as f64);
            (num, (num - g).abs() / (1e-3 + 2e-2 * g.abs()))
        };
        // Where a step of 1e-3 crosses a kink, a quarter of it mostly does not; a wrong
        // gradient is wrong at both.
        let (mut num, mut err) = central(1e-3);
        if err > 1.0 {
            (num, err) = central(2.5e-4);
        }
        worst = worst.max(err);
        assert!(
            err <= 1.0,
            "{what}: param {k} ({}): analytic {g} numeric {num}",
            model
                .layout()
                .views()
                .iter()
                .find(|v| v.range().contains(&k))
                .unwrap()
                .name
        );
    }
    assert!(worst.is_finite());
}

#[test]
fn mlp_gradients_for_every_fused_activation() {
    for act in [
        Activation::Relu,
        Activation::Tanh,
        Activation::Sigmoid,
        Activation::LeakyRelu(0.1),
    ] {
        let m = Model::mlp(6, &[7, 5], 4, act, 0.0).unwrap();
        check_gradients(&m, 5, 11, act.name());
        let d = Model::mlp(6, &[7, 5], 4, act, 0.4).unwrap();
        check_gradients(&d, 5, 12, &format!("{} + dropout", act.name()));
    }
}

/// Every loss through a model, log_softmax with NLL.
#[test]
fn gradients_for_every_loss() {
    let plain = Model::mlp(5, &[6], 4, Activation::Tanh, 0.0).unwrap();
    let logp = spec(json!({"input": [5], "layers": [
        {"type": "linear", "out_features": 6}, {"type": "tanh"},
        {"type": "linear", "out_features": 4}, {"type": "log_softmax"}]}))
    .build()
    .unwrap();
    let losses = [
        Loss::CrossEntropy {
            label_smoothing: 0.2,
            weights: Some(vec![1.0, 0.5, 2.0, 1.5]),
        },
        Loss::Mse,
        Loss::L1,
        Loss::Huber { delta: 0.3 },
        Loss::BceWithLogits { pos_weight: None },
    ];
    for loss in &losses {
        check_gradients_with(&plain, 3, 61, loss.name(), loss);
    }
    for loss in [Loss::Nll { weights: None }, Loss::Mse] {
        check_gradients_with(
            &logp,
            3,
            62,
            &format!("log_softmax + {}", loss.name()),
            &loss,
        );
    }
}

#[test]
fn conv_gradients_with_stride_padding_dilation_and_groups() {
    let m = spec(json!({
        "input": [2, 7, 6],
        "layers": [
            {"type": "conv2d", "name": "c1", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1},
            {"type": "relu"},
            {"type": "conv2d", "name": "c2", "out_channels": 4, "kernel": [2, 1], "dilation": 2, "groups": 2},
            {"type": "tanh"},
            {"type": "conv2d", "name": "c3", "out_channels": 2, "kernel": 1, "bias": false},
            {"type": "flatten"},
            {"type": "linear", "name": "fc", "out_features": 3},
        ]
    }))
    .build()
    .unwrap();
    assert_eq!(m.layers().len(), 5, "relu and tanh fused");
    for batch in [1, 3] {
        check_gradients(&m, batch, 21, &format!("conv, batch {batch}"));
    }
}

#[test]
fn pooling_gradients() {
    let m = spec(json!({
        "input": [2, 6, 5],
        "layers": [
            {"type": "conv2d", "name": "c", "out_channels": 3, "kernel": 3, "padding": 1},
            {"type": "max_pool2d", "kernel": 2, "stride": 1},
            {"type": "avg_pool2d", "kernel": 3, "stride": 2, "padding": 1},
            {"type": "adaptive_avg_pool2d", "output": [2, 1]},
            {"type": "flatten"},
            {"type": "linear", "name": "fc", "out_features": 3},
        ]
    }))
    .build()
    .unwrap();
    check_gradients(&m, 3, 31, "pooling");
}

#[test]
fn normalization_and_unfused_activation_gradients() {
    let m = spec(json!({
        "input": [3, 4, 5],
        "layers": [
            {"type": "conv2d", "name": "c", "out_channels": 4, "kernel": 3},
            {"type": "batch_norm2d", "name": "bn"},
            {"type": "gelu"},
            {"type": "dropout2d", "p": 0.3},
            {"type": "flatten"},
            {"type": "linear", "name": "fc1", "out_features": 6},
            {"type": "batch_norm1d", "name": "bn1"},
            {"type": "silu"},
            {"type": "linear", "name": "fc2", "out_features": 6},
            {"type": "layer_norm", "name": "norm"},
            {"type": "gelu", "approximate": "tanh"},
            {"type": "leaky_relu", "negative_slope": -0.2},
            {"type": "linear", "name": "fc3", "out_features": 3},
        ]
    }))
    .build()
    .unwrap();
    check_gradients(&m, 3, 41, "normalization");
}

#[test]
fn residual_gradients_with_identity_and_projection_shortcuts() {
    let m = spec(json!({
        "input": [2, 5, 5],
        "layers": [
            {"type": "conv2d", "name": "stem", "out_channels": 3, "kernel": 3, "padding": 1},
            {"type": "relu"},
            {"type": "residual", "name": "block1", "body": [
                {"type": "conv2d", "name": "conv1", "out_channels": 3, "kernel": 3, "padding": 1},
                {"type": "relu"},
                {"type": "conv2d", "name": "conv2", "out_channels": 3, "kernel": 3, "padding": 1},
            ]},
            {"type": "relu"},
            {"type": "residual", "name": "block2", "body": [
                {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1, "stride": 2},
                {"type": "batch_norm2d", "name": "bn1"},
                {"type": "relu"},
            ], "shortcut": [
                {"type": "conv2d", "out_channels": 4, "kernel": 1, "stride": 2, "bias": false},
                {"type": "batch_norm2d"},
            ]},
            {"type": "adaptive_avg_pool2d"},
            {"type": "flatten"},
            {"type": "linear", "name": "fc", "out_features": 3},
        ]
    }))
    .build()
    .unwrap();
    let names: Vec<&str> = m.layout().views().iter().map(|v| v.name.as_str()).collect();
    for n in [
        "block1.conv1.weight",
        "block2.bn1.running_var",
        "block2.shortcut.0.weight",
        "block2.shortcut.1.num_batches_tracked",
    ] {
        assert!(names.contains(&n), "{n} in {names:?}");
    }
    check_gradients(&m, 3, 51, "residual");
}

fn random(rng: &mut Rng, n: usize) -> Vec<f32> {
    (0..n).map(|_| rng.uniform(-1.0, 1.0)).collect()
}

/// The im2col + GEMM convolution against the direct loops, forward and backward, on odd
/// shapes and thread counts.
#[test]
fn fast_convolution_matches_the_naive_twin() {
    let cases = [
        // (c, h, w, o, kernel, stride, padding, dilation, groups)
        (1, 28, 28, 32, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (3, 9, 7, 4, (3, 2), (2, 1), (1, 0), (1, 2), 1),
        (4, 8, 8, 6, (3, 3), (1, 2), (2, 1), (2, 1), 2),
        (2, 5, 6, 2, (1, 1), (2, 2), (0, 0), (1, 1), 2),
    ];
    let mut rng = Rng::new(3);
    for (c, h, w, o, k, s, p, d, g) in cases {
        let win = Window {
            kernel: k,
            stride: s,
            padding: p,
            dilation: d,
        };
        let m = spec(json!({
            "input": [c, h, w],
            "layers": [{"type": "conv2d", "name": "conv", "out_channels": o,
                        "kernel": [k.0, k.1], "stride": [s.0, s.1], "padding": [p.0, p.1],
                        "dilation": [d.0, d.1], "groups": g}]
        }))
        .build()
        .unwrap();
        for (batch, threads) in [(1, 1), (3, 1), (3, 2), (5, 3)] {
            let values = m.init_params(&mut rng);
            let x = random(&mut rng, batch * c * h * w);
            let wv = &values[m.layout().get("conv.weight").unwrap().range()];
            let bv = &values[m.layout().get("conv.bias").unwrap().range()];
            let want = conv2d_naive(&x, batch, (c, h, w), wv, Some(bv), o, win, g);
            let pool = Pool::new(threads).unwrap();
            let mut ws = Workspace::new(&m, batch, threads);
            let got = m.forward(&values, &x, &mut ws, &pool).unwrap().to_vec();
            assert_eq!(got.len(), want.len());
            for (a, b) in got.iter().zip(&want) {
                assert!(
                    (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
                    "forward {a} vs {b}"
                );
            }
            // The gradient of sum(y · r) w.r.t. the weights is the backward of dy = r; a
            // softmax loss gives the layer some dy: compare through the model's own grads.
            let labels: Vec<u32> = (0..batch).map(|i| (i % 2) as u32).collect();
            let mut v2 = values.clone();
            let mut grads = vec![0.0; m.param_count()];
            let mut ws2 = Workspace::new(&m, batch, threads);
            m.train_step_grads(
                &mut v2,
                &x,
                Targets::Classes(&labels),
                &Loss::default(),
                &mut grads,
                &mut ws2,
                &pool,
            )
            .unwrap();
            // Recompute dy of the mean cross-entropy over the flattened outputs.
            let classes = m.output_features();
            let mut dy = vec![0.0; want.len()];
            descent_nn::softmax_cross_entropy(&got, &labels, classes, Some(&mut dy)).unwrap();
            let (_, dw, db) = conv2d_backward_naive(&x, &dy, batch, (c, h, w), wv, o, win, g);
            let gw = &grads[m.layout().get("conv.weight").unwrap().range()];
            let gb = &grads[m.layout().get("conv.bias").unwrap().range()];
            for (a, b) in gw.iter().zip(&dw).chain(gb.iter().zip(&db)) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "grad {a} vs {b}");
            }
        }
    }
}

/// The input gradient of the fast path against the naive one, through a first layer that
/// needs it.
#[test]
fn convolution_input_gradient_matches_the_naive_twin() {
    let (c, h, w, o) = (4, 7, 6, 6);
    let win = Window {
        kernel: (3, 2),
        stride: (2, 1),
        padding: (1, 1),
        dilation: (1, 2),
    };
    let m = spec(json!({
        "input": [c, h, w],
        "layers": [
            {"type": "batch_norm2d", "name": "bn", "affine": true},
            {"type": "conv2d", "name": "conv", "out_channels": o, "kernel": [3, 2],
             "stride": [2, 1], "padding": 1, "dilation": [1, 2], "groups": 2},
        ]
    }))
    .build()
    .unwrap();
    let mut rng = Rng::new(9);
    let batch = 3;
    let mut values = m.init_params(&mut rng);
    let x = random(&mut rng, batch * c * h * w);
    let labels = [0u32, 5, 2];
    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(&m, batch, 2);
    let mut grads = vec![0.0; m.param_count()];
    m.train_step_grads(
        &mut values,
        &x,
        Targets::Classes(&labels),
        &Loss::default(),
        &mut grads,
        &mut ws,
        &pool,
    )
    .unwrap();
    // BatchNorm with γ = 1, β = 0: dγ = Σ dx̂·x̂, dβ = Σ dx̂, where dx̂ is the conv's input
    // gradient; check dβ per channel against the naive input gradient.
    let bn_out: Vec<f32> = {
        let mut out = vec![0.0; x.len()];
        let s = h * w;
        for ch in 0..c {
            let vals: Vec<f64> = (0..batch)
                .flat_map(|n| {
                    x[(n * c + ch) * s..(n * c + ch + 1) * s]
                        .iter()
                        .map(|&v| v as f64)
                })
                .collect();
            let mu = vals.iter().sum::<f64>() / vals.len() as f64;
            let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / vals.len() as f64;
            for n in 0..batch {
                for i in 0..s {
                    let k = (n * c + ch) * s + i;
                    out[k] = ((x[k] as f64 - mu) / (var + 1e-5).sqrt()) as f32;
                }
            }
        }
        out
    };
    let wv = values[m.layout().get("conv.weight").unwrap().range()].to_vec();
    let bv = values[m.layout().get("conv.bias").unwrap().range()].to_vec();
    let y = conv2d_naive(&bn_out, batch, (c, h, w), &wv, Some(&bv), o, win, 2);
    let mut dy = vec![0.0; y.len()];
    descent_nn::softmax_cross_entropy(&y, &labels, m.output_features(), Some(&mut dy)).unwrap();
    let (dx, _, _) = conv2d_backward_naive(&bn_out, &dy, batch, (c, h, w), &wv, o, win, 2);
    let dbeta = &grads[m.layout().get("bn.bias").unwrap().range()];
    for ch in 0..c {
        let s = h * w;
        let want: f32 = (0..batch)
            .map(|n| {
                dx[(n * c + ch) * s..(n * c + ch + 1) * s]
                    .iter()
                    .sum::<f32>()
            })
            .sum();
        assert!((dbeta[ch] - want).abs() < 1e-4, "{} vs {want}", dbeta[ch]);
    }
}

fn cnn_like() -> Model {
    spec(json!({
        "input": [1, 12, 12],
        "layers": [
            {"type": "conv2d", "name": "conv1", "out_channels": 8, "kernel": 3},
            {"type": "relu"},
            {"type": "conv2d", "name": "conv2", "out_channels": 16, "kernel": 3},
            {"type": "batch_norm2d", "name": "bn"},
            {"type": "relu"},
            {"type": "max_pool2d", "kernel": 2},
            {"type": "dropout", "p": 0.25},
            {"type": "flatten"},
            {"type": "linear", "name": "fc1", "out_features": 32},
            {"type": "relu"},
            {"type": "linear", "name": "fc2", "out_features": 10},
        ]
    }))
    .build()
    .unwrap()
}

/// One thread and several give the same gradients (up to the order of sums).
#[test]
fn threads_agree() {
    for m in [
        Model::mlp(784, &[512], 10, Activation::Relu, 0.0).unwrap(),
        cnn_like(),
    ] {
        let mut rng = Rng::new(3);
        let params = m.init_params(&mut rng);
        let (x, y) = data(&mut rng, 64, m.input_features(), 10);
        let run = |threads| {
            let pool = Pool::new(threads).unwrap();
            let mut ws = Workspace::new(&m, 64, threads);
            let mut grads = vec![0.0; m.param_count()];
            let mut v = params.clone();
            ws.set_dropout_seed(1);
            let s = m
                .train_step_grads(
                    &mut v,
                    &x,
                    Targets::Classes(&y),
                    &Loss::default(),
                    &mut grads,
                    &mut ws,
                    &pool,
                )
                .unwrap();
            (s.loss_sum, grads, v)
        };
        let (l1, g1, v1) = run(1);
        let (l2, g2, v2) = run(2);
        assert!((l1 - l2).abs() < 1e-4 * l1.abs());
        for (a, b) in g1.iter().zip(&g2).chain(v1.iter().zip(&v2)) {
            assert!((a - b).abs() <= 1e-5 + 1e-4 * a.abs(), "{a} vs {b}");
        }
        assert_eq!(run(2).1, g2, "the same threads give the same bits");
    }
}

/// The fused SGD step gives the parameters of gradients followed by `p -= lr * g`.
#[test]
fn fused_sgd_matches_gradients_then_sgd() {
    for m in [
        Model::mlp(784, &[512], 10, Activation::Relu, 0.0).unwrap(),
        Model::mlp(784, &[32, 16], 10, Activation::Tanh, 0.2).unwrap(),
        cnn_like(),
    ] {
        let mut rng = Rng::new(4);
        let start = m.init_params(&mut rng);
        let (x, y) = data(&mut rng, 64, m.input_features(), 10);
        let pool = Pool::new(2).unwrap();
        let mut ws = Workspace::new(&m, 64, 2);
        let lr = 0.05;
        let t = m.param_count();
        let mut unfused = start.clone();
        let mut grads = vec![0.0; t];
        for step in 0..3 {
            ws.set_dropout_seed(step);
            m.train_step_grads(
                &mut unfused,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut grads,
                &mut ws,
                &pool,
            )
            .unwrap();
            unfused[..t]
                .iter_mut()
                .zip(&grads)
                .for_each(|(p, g)| *p -= lr * g);
        }
        let mut fused = start.clone();
        for step in 0..3 {
            ws.set_dropout_seed(step);
            m.train_step_sgd(
                &mut fused,
                lr,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut ws,
                &pool,
            )
            .unwrap();
        }
        for (k, (a, b)) in fused.iter().zip(&unfused).enumerate() {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "param {k}: {a} vs {b}"
            );
        }
        assert_ne!(fused, start);
    }
}

#[test]
fn batchnorm_running_statistics_and_eval_mode() {
    let m = spec(json!({
        "input": [2, 3, 3],
        "layers": [{"type": "batch_norm2d", "name": "bn", "momentum": 0.25}]
    }))
    .build()
    .unwrap();
    let mut rng = Rng::new(1);
    let mut values = m.init_params(&mut rng);
    let x: Vec<f32> = (0..2 * 18)
        .map(|i| (i as f32 * 0.37).sin() * 2.0 + 0.5)
        .collect();
    let pool = Pool::new(1).unwrap();
    let mut ws = Workspace::new(&m, 2, 1);
    let mut g = vec![0.0; m.param_count()];
    m.train_step_grads(
        &mut values,
        &x,
        Targets::Classes(&[0, 1]),
        &Loss::default(),
        &mut g,
        &mut ws,
        &pool,
    )
    .unwrap();
    let l = m.layout();
    let rm = &values[l.get("bn.running_mean").unwrap().range()];
    let rv = &values[l.get("bn.running_var").unwrap().range()];
    for ch in 0..2 {
        let vals: Vec<f64> = (0..2)
            .flat_map(|n| {
                x[(n * 2 + ch) * 9..(n * 2 + ch + 1) * 9]
                    .iter()
                    .map(|&v| v as f64)
            })
            .collect();
        let mu = vals.iter().sum::<f64>() / 18.0;
        let var = vals.iter().map(|v| (v - mu).powi(2)).sum::<f64>() / 17.0;
        assert!((rm[ch] as f64 - 0.25 * mu).abs() < 1e-6);
        assert!((rv[ch] as f64 - (0.75 + 0.25 * var)).abs() < 1e-5);
    }
    assert_eq!(values[l.get("bn.num_batches_tracked").unwrap().offset], 1.0);
    assert_eq!(l.trainable_len(), 4, "running statistics are not trainable");
    // Evaluation uses the running statistics: y = (x - rm) / sqrt(rv + eps).
    let y = m.forward(&values, &x, &mut ws, &pool).unwrap().to_vec();
    let want = (x[0] - rm[0]) / (rv[0] + 1e-5).sqrt();
    assert!((y[0] - want).abs() < 1e-6);
}

#[test]
fn dropout_drops_by_seed_in_training_only() {
    let with = Model::mlp(20, &[400], 3, Activation::Relu, 0.3).unwrap();
    let without = Model::mlp(20, &[400], 3, Activation::Relu, 0.0).unwrap();
    let mut rng = Rng::new(5);
    let params = with.init_params(&mut rng);
    let (x, y) = data(&mut rng, 50, 20, 3);
    let pool = Pool::new(2).unwrap();
    let mut ws = Workspace::new(&with, 50, 2);
    let mut grads = vec![0.0; with.param_count()];
    let mut losses = Vec::new();
    for seed in [1, 1, 2] {
        ws.set_dropout_seed(seed);
        let mut v = params.clone();
        losses.push(
            with.train_step_grads(
                &mut v,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut grads,
                &mut ws,
                &pool,
            )
            .unwrap()
            .loss_sum,
        );
    }
    assert_eq!(losses[0], losses[1]);
    assert_ne!(losses[0], losses[2]);
    let mut ws2 = Workspace::new(&without, 50, 2);
    let a = with
        .evaluate(
            &params,
            &x,
            Targets::Classes(&y),
            &Loss::default(),
            &mut ws,
            &pool,
        )
        .unwrap();
    let b = without
        .evaluate(
            &params,
            &x,
            Targets::Classes(&y),
            &Loss::default(),
            &mut ws2,
            &pool,
        )
        .unwrap();
    assert_eq!(a, b, "evaluation ignores dropout");
}

#[test]
fn names_and_shapes_follow_pytorch() {
    let net = Model::mlp(784, &[256, 128], 10, Activation::Tanh, 0.0).unwrap();
    let names: Vec<_> = net
        .layout()
        .views()
        .iter()
        .map(|v| (v.name.as_str(), v.shape.clone()))
        .collect();
    assert_eq!(
        names,
        vec![
            ("fc1.weight", vec![256, 784]),
            ("fc1.bias", vec![256]),
            ("fc2.weight", vec![128, 256]),
            ("fc2.bias", vec![128]),
            ("fc3.weight", vec![10, 128]),
            ("fc3.bias", vec![10]),
        ]
    );
    let seed = Model::mlp(784, &[512], 10, Activation::Relu, 0.0).unwrap();
    assert_eq!(seed.layout().len(), 407_050);
    let c = cnn_like();
    let conv = c.layout().get("conv2.weight").unwrap();
    assert_eq!(conv.shape, vec![16, 8, 3, 3]);
    // Unnamed layers take their position, as in nn.Sequential.
    let s = spec(json!({"input": [4], "layers": [
        {"type": "linear", "out_features": 3}, {"type": "relu"},
        {"type": "linear", "out_features": 2}]}))
    .build()
    .unwrap();
    let names: Vec<_> = s.layout().views().iter().map(|v| v.name.clone()).collect();
    assert_eq!(names, ["0.weight", "0.bias", "2.weight", "2.bias"]);
}

#[test]
fn init_is_bounded_by_fan_in() {
    let net = cnn_like();
    let p = net.init_params(&mut Rng::new(0));
    let conv2 = net.layout().get("conv2.weight").unwrap();
    let b = 1.0 / (8.0f32 * 9.0).sqrt();
    assert!(p[conv2.range()].iter().all(|v| v.abs() <= b));
    let max = p[conv2.range()].iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max > 0.95 * b, "uniform fills the range: {max} vs {b}");
    let var = net.layout().get("bn.running_var").unwrap();
    assert!(p[var.range()].iter().all(|&v| v == 1.0));
}

fn err(v: serde_json::Value) -> String {
    match ModelSpec::from_value(v) {
        Err(e) => e.to_string(),
        Ok(s) => s.build().unwrap_err().to_string(),
    }
}

/// A model file with an error is refused before any work, naming the layer and what was
/// expected.
#[test]
fn bad_descriptions_name_the_layer_and_the_fix() {
    let cases = [
        (
            json!({"input": [1, 28, 28], "layers": [{"type": "conv3d"}]}),
            "layer 1: unknown layer type `conv3d`",
        ),
        (
            json!({"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 4, "kernal": 3}]}),
            "layer 1: conv2d: unknown field `kernal`",
        ),
        (
            json!({"input": [1, 28, 28], "layers": [{"type": "conv2d", "out_channels": 4}]}),
            "missing field `kernel`",
        ),
        (
            json!({"input": [1, 28, 28], "layers": [
                {"type": "conv2d", "out_channels": 4, "kernel": 3},
                {"type": "linear", "in_features": 2704, "out_features": 10}]}),
            "layer 2 (linear): it expects 2704 input features, but the layer before gives (4, 26, 26); add a flatten before it",
        ),
        (
            json!({"input": [784], "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3}]}),
            "layer 1 (conv2d): it takes (channels, height, width) inputs, but gets (784)",
        ),
        (
            json!({"input": [3, 4, 4], "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 5}]}),
            "layer 1 (conv2d): its window (5x5",
        ),
        (
            json!({"input": [3, 8, 8], "layers": [{"type": "conv2d", "out_channels": 4, "kernel": 3, "groups": 2}]}),
            "groups 2 must divide both its 3 input channels",
        ),
        (
            json!({"input": [2, 4, 4], "layers": [{"type": "residual", "body": [
                {"type": "conv2d", "out_channels": 3, "kernel": 1}]}]}),
            "layer 1 (residual): its body gives (3, 4, 4) but its shortcut gives (2, 4, 4)",
        ),
        (
            json!({"input": [2, 4, 4], "layers": [{"type": "residual", "name": "b", "body": [
                {"type": "dropout", "p": 1.5}]}]}),
            "layer 1 (residual `b`) body layer 1 (dropout): p = 1.5",
        ),
        (
            json!({"input": [4], "layers": [
                {"type": "linear", "name": "fc", "out_features": 3},
                {"type": "linear", "name": "fc", "out_features": 2}]}),
            "layer 2 (linear): the name `fc` is used twice",
        ),
        (json!({"input": [4], "layers": []}), "a model needs at least one layer"),
        (json!({"layers": []}), "it has no `input`"),
        (
            json!({"input": [4], "layers": [{"type": "batch_norm2d"}]}),
            "layer 1 (batch_norm2d): it takes (C, H, W) inputs, but gets (4)",
        ),
    ];
    for (v, want) in cases {
        let e = err(v);
        assert!(e.contains(want), "{e:?} should contain {want:?}");
    }
    assert!(matches!(
        ModelSpec::from_value(json!([])),
        Err(NnError::Spec { .. })
    ));
}

#[test]
fn descriptions_round_trip_through_json() {
    let m = cnn_like();
    let text = m.spec().to_json();
    let back = ModelSpec::from_json(&text).unwrap();
    assert_eq!(&back, m.spec());
    assert_eq!(back.build().unwrap().layout(), m.layout());
}

#[test]
fn bad_inputs_are_errors() {
    let net = Model::mlp(4, &[3], 2, Activation::Relu, 0.0).unwrap();
    let mut p = net.init_params(&mut Rng::new(0));
    let mut ws = Workspace::new(&net, 2, 1);
    let pool = Pool::new(1).unwrap();
    let mut g = vec![0.0; net.param_count()];
    // The fused SGD step cannot split a batch (it updates the weights as it goes); a step
    // with gradients out runs a larger batch in chunks (tests/chunks.rs).
    assert!(matches!(
        net.train_step_sgd(
            &mut p,
            0.1,
            &[0.0; 12],
            Targets::Classes(&[0, 1, 0]),
            &Loss::default(),
            &mut ws,
            &pool
        ),
        Err(NnError::BatchTooLarge { .. })
    ));
    assert!(matches!(
        net.train_step_grads(
            &mut p,
            &[0.0; 7],
            Targets::Classes(&[0, 1]),
            &Loss::default(),
            &mut g,
            &mut ws,
            &pool
        ),
        Err(NnError::Shape { .. })
    ));
    assert!(matches!(
        net.train_step_grads(
            &mut p,
            &[0.0; 8],
            Targets::Classes(&[0, 5]),
            &Loss::default(),
            &mut g,
            &mut ws,
            &pool
        ),
        Err(NnError::LabelOutOfRange { .. })
    ));
    let other = Model::mlp(4, &[5], 2, Activation::Relu, 0.0).unwrap();
    let mut ws_other = Workspace::new(&other, 2, 1);
    assert!(matches!(
        net.train_step_grads(
            &mut p,
            &[0.0; 8],
            Targets::Classes(&[0, 1]),
            &Loss::default(),
            &mut g,
            &mut ws_other,
            &pool
        ),
        Err(NnError::Shape { .. })
    ));
}

/// A model's width is set by layer name, in nested blocks too; a bad setting is refused with
/// the layer names.
#[test]
fn settings_change_a_described_model() {
    let resnet = ModelSpec::preset("resnet", &[1, 28, 28], 10).unwrap();
    let nested = resnet
        .with_setting("layer2.0.bn1.momentum", json!(0.2))
        .unwrap();
    let descent_nn::LayerSpec::Residual { body, .. } = &nested.layers[5] else {
        panic!("layer2.0 is a residual block")
    };
    assert!(
        matches!(body[1], descent_nn::LayerSpec::BatchNorm2d { momentum, .. } if momentum == 0.2)
    );
    // A wider stem no longer fits the identity shortcut of the first block: refused.
    let e = resnet
        .with_setting("conv1.out_channels", json!(8))
        .unwrap()
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("its body gives (16, 28, 28) but its shortcut gives (8, 28, 28)"),
        "{e}"
    );
    let cnn = ModelSpec::preset("cnn", &[1, 28, 28], 10).unwrap();
    let wide = cnn
        .with_setting("conv1.out_channels", json!(8))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(
        wide.layout().get("conv2.weight").unwrap().shape,
        vec![64, 8, 3, 3]
    );
    let m = cnn
        .with_setting("fc1.out_features", json!(64))
        .unwrap()
        .build()
        .unwrap();
    assert_eq!(m.layout().get("fc2.weight").unwrap().shape, vec![10, 64]);
    let m = cnn.with_setting("5.p", json!(0.1)).unwrap();
    assert_eq!(m.layers[5], descent_nn::LayerSpec::Dropout { p: 0.1 });
    let e = cnn
        .with_setting("conv9.out_channels", json!(8))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no layer is named `conv9`: the layers are conv1, 1, conv2"),
        "{e}"
    );
    let e = cnn
        .with_setting("conv1.kernal", json!(5))
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown field `kernal`"), "{e}");
}

/// Flatten as a chain's first layer, last layer, and twice in a row in the middle (where it
/// runs as no copy at all): the gradients still match finite differences.
#[test]
fn flatten_anywhere_in_a_chain() {
    for layers in [
        json!([{"type": "flatten"}, {"type": "linear", "name": "fc", "out_features": 3}]),
        json!([{"type": "conv2d", "name": "c", "out_channels": 2, "kernel": 2},
               {"type": "relu"}, {"type": "flatten"}, {"type": "flatten"},
               {"type": "linear", "name": "fc", "out_features": 3}]),
        json!([{"type": "conv2d", "name": "c", "out_channels": 3, "kernel": 3},
               {"type": "flatten"}]),
    ] {
        let m = spec(json!({"input": [2, 3, 3], "layers": layers}))
            .build()
            .unwrap();
        check_gradients(&m, 3, 21, &format!("{layers}"));
    }
}

fn tiny_gpt(vocab: usize, block: usize, width: usize, heads: usize) -> serde_json::Value {
    json!({
        "input": [block],
        "layers": [
            {"type": "embedding", "name": "wte", "num_embeddings": vocab, "embedding_dim": width},
            {"type": "position_embedding", "name": "wpe", "num_embeddings": block + 2},
            {"type": "residual", "name": "blocks.0", "body": [
                {"type": "layer_norm", "name": "ln1"},
                {"type": "linear", "name": "qkv", "out_features": 3 * width},
                {"type": "causal_self_attention", "heads": heads},
                {"type": "linear", "name": "proj", "out_features": width}]},
            {"type": "residual", "name": "blocks.0", "body": [
                {"type": "layer_norm", "name": "ln2"},
                {"type": "linear", "name": "fc", "out_features": 4 * width},
                {"type": "gelu"},
                {"type": "linear", "name": "fc_proj", "out_features": width}]},
            {"type": "layer_norm", "name": "ln_f"},
            {"type": "linear", "name": "head", "out_features": vocab, "bias": false, "tie": "wte"},
        ]
    })
}

/// A small GPT (token and position embeddings, causal attention, a tied head): every
/// gradient against finite differences, the tied table's the sum of its two uses; names
/// as PyTorch's; a target per position.
#[test]
fn gpt_gradients_and_names() {
    let m = spec(tiny_gpt(7, 5, 6, 2)).build().unwrap();
    let names: Vec<&str> = m.layout().views().iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names[..4],
        [
            "wte.weight",
            "wpe.weight",
            "blocks.0.ln1.weight",
            "blocks.0.ln1.bias"
        ]
    );
    assert!(
        !names.iter().any(|n| n.starts_with("head")),
        "the head shares wte: {names:?}"
    );
    assert_eq!((m.classes(), m.targets_per_example()), (7, 5));
    let mut rng = Rng::new(3);
    let values = m.init_params(&mut rng);
    let batch = 2;
    let x: Vec<f32> = (0..batch * 5).map(|_| rng.below(7) as f32).collect();
    let y: Vec<u32> = (0..batch * 5).map(|_| rng.below(7) as u32).collect();
    check_gradients_on(&m, values, &x, &y, batch, "gpt", &Loss::default());
}

/// Token ids outside the vocabulary, a tie to nothing, heads that do not divide the width,
/// a sequence longer than the position table: each refused with what was wrong.
#[test]
fn bad_sequence_models_and_inputs_are_errors() {
    let mut v = tiny_gpt(7, 5, 6, 4);
    assert!(
        err(v.clone()).contains("heads 4 must divide the width 6"),
        "{}",
        err(v.clone())
    );
    v = tiny_gpt(7, 5, 6, 2);
    v["layers"][1]["num_embeddings"] = json!(3);
    assert!(err(v).contains("the sequence has 5 positions but the table holds 3"));
    let mut v = tiny_gpt(7, 5, 6, 2);
    v["layers"][5]["tie"] = json!("nothing");
    assert!(err(v).contains("tie: there is no `nothing.weight`"));
    let mut v = tiny_gpt(7, 5, 6, 2);
    v["layers"][5]["out_features"] = json!(8);
    let e = err(v);
    assert!(
        e.contains("tie: `wte.weight` is (7, 6) but this layer's weight would be (8, 6)"),
        "{e}"
    );
    let m = spec(tiny_gpt(7, 5, 6, 2)).build().unwrap();
    let values = m.init_params(&mut Rng::new(0));
    let pool = Pool::new(1).unwrap();
    let mut ws = Workspace::new(&m, 1, 1);
    let e = m
        .forward(&values, &[0.0, 1.0, 7.0, 2.0, 3.0], &mut ws, &pool)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input value 2 is 7, not a token id: ids are whole numbers in 0..7"),
        "{e}"
    );
    let e = m
        .forward(&values, &[0.0, 1.5, 1.0, 2.0, 3.0], &mut ws, &pool)
        .unwrap_err()
        .to_string();
    assert!(e.contains("input value 1 is 1.5"), "{e}");
}

/// One training step's gradients, updated buffers and loss, with recomputation on or off.
fn step_with(
    m: &Model,
    x: &[f32],
    y: &[u32],
    batch: usize,
    threads: usize,
) -> (Vec<f32>, Vec<f32>, f64, usize) {
    let pool = Pool::new(threads).unwrap();
    let mut values = m.init_params(&mut Rng::new(5));
    let mut grads = vec![0.0; m.param_count()];
    let mut ws = Workspace::new(m, batch, threads);
    ws.set_dropout_seed(77);
    let stats = m
        .train_step_grads(
            &mut values,
            x,
            Targets::Classes(y),
            &Loss::default(),
            &mut grads,
            &mut ws,
            &pool,
        )
        .unwrap();
    (grads, values, stats.loss_sum, ws.len())
}

/// Recomputing each residual block's body in the backward pass gives the same gradients,
/// running statistics and loss bit for bit (dropout masks and BatchNorm's batch statistics
/// drawn again as they were), holds fewer activations, and a workspace made before the switch
/// is refused.
#[test]
fn recomputation_gives_the_same_step_with_fewer_activations() {
    let mut resnet = spec(json!({
        "input": [2, 6, 6],
        "layers": [
            {"type": "conv2d", "name": "stem", "out_channels": 4, "kernel": 3, "padding": 1},
            {"type": "relu"},
            {"type": "residual", "name": "b1", "body": [
                {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3, "padding": 1},
                {"type": "batch_norm2d", "name": "bn1"},
                {"type": "relu"},
                {"type": "dropout", "p": 0.3},
                {"type": "conv2d", "name": "conv2", "out_channels": 4, "kernel": 3, "padding": 1},
            ]},
            {"type": "residual", "name": "b2", "body": [
                {"type": "conv2d", "name": "conv1", "out_channels": 6, "kernel": 3, "padding": 1, "stride": 2},
                {"type": "batch_norm2d", "name": "bn1"},
                {"type": "relu"},
            ], "shortcut": [
                {"type": "conv2d", "out_channels": 6, "kernel": 1, "stride": 2, "bias": false},
                {"type": "batch_norm2d"},
            ]},
            {"type": "adaptive_avg_pool2d"},
            {"type": "flatten"},
            {"type": "linear", "name": "fc", "out_features": 3},
        ]
    }))
    .build()
    .unwrap();
    let mut rng = Rng::new(9);
    let (x, y) = data(&mut rng, 4, resnet.input_features(), 3);
    let mut gpt = spec(tiny_gpt(7, 5, 8, 2)).build().unwrap();
    let ids: Vec<f32> = (0..3 * 5).map(|_| rng.below(7) as f32).collect();
    let next: Vec<u32> = (0..3 * 5).map(|_| rng.below(7) as u32).collect();
    for (m, x, y, batch, blocks) in [
        (&mut resnet, &x[..], &y[..], 4, 2),
        (&mut gpt, &ids[..], &next[..], 3, 2),
    ] {
        for threads in [1, 2] {
            let (g0, v0, l0, kept) = step_with(m, x, y, batch, threads);
            assert_eq!(m.set_recompute(true), blocks);
            let (g1, v1, l1, less) = step_with(m, x, y, batch, threads);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&g0), bits(&g1), "gradients");
            assert_eq!(bits(&v0), bits(&v1), "parameters and running statistics");
            assert_eq!(l0.to_bits(), l1.to_bits(), "loss");
            assert!(less < kept, "{less} values held against {kept}");
            assert_eq!(m.set_recompute(true), 0, "already on");
            // A workspace sized for the other setting does not fit.
            let old = Workspace::new(m, batch, threads);
            assert_eq!(m.set_recompute(false), blocks);
            let pool = Pool::new(threads).unwrap();
            let values = m.init_params(&mut Rng::new(5));
            let mut old = old;
            let e = m.forward(&values, x, &mut old, &pool).unwrap_err();
            assert!(matches!(e, NnError::Shape { .. }), "{e}");
        }
    }
}

/// Mixed precision: with bf16 products a GPT's step stays close to the f32 step (the
/// gradients within 2% relative L2, the loss within 0.5%) but is not the same step; every
/// linear layer takes the setting, and f32 again gives the f32 step bit for bit.
#[test]
fn bf16_products_give_a_step_close_to_the_f32_step() {
    let mut gpt = spec(tiny_gpt(11, 16, 32, 2)).build().unwrap();
    let mut rng = Rng::new(3);
    let ids: Vec<f32> = (0..4 * 16).map(|_| rng.below(11) as f32).collect();
    let next: Vec<u32> = (0..4 * 16).map(|_| rng.below(11) as u32).collect();
    let (g0, _, l0, _) = step_with(&gpt, &ids, &next, 4, 2);
    // The block's four linear layers (qkv, proj, fc, fc_proj) and the tied head.
    assert_eq!(gpt.set_precision(descent_tensor::Precision::Bf16), 5);
    let (g1, _, l1, _) = step_with(&gpt, &ids, &next, 4, 2);
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let diff: Vec<f32> = g0.iter().zip(&g1).map(|(a, b)| a - b).collect();
    let rel = norm(&diff) / norm(&g0);
    assert!(rel > 1e-5 && rel < 2e-2, "gradients {rel:e} apart");
    assert!(((l1 - l0) / l0).abs() < 5e-3, "loss {l1} against {l0}");
    gpt.set_precision(descent_tensor::Precision::F32);
    let (g2, _, l2, _) = step_with(&gpt, &ids, &next, 4, 2);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!((bits(&g0), l0.to_bits()), (bits(&g2), l2.to_bits()));
}
