//! A training step allocates nothing once its workspace exists: the allocator is counted
//! around steps of the seed model, on one thread and on two.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use descent_nn::{Activation, Loss, Model, ModelSpec, Targets, Workspace};
use descent_tensor::{Pool, Rng};

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator, counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::SeqCst);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn cnn() -> Model {
    let v = serde_json::json!({
        "input": [1, 12, 12],
        "layers": [
            {"type": "conv2d", "name": "conv1", "out_channels": 4, "kernel": 3},
            {"type": "relu"},
            {"type": "residual", "name": "block", "body": [
                {"type": "conv2d", "name": "conv", "out_channels": 4, "kernel": 3, "padding": 1},
                {"type": "batch_norm2d", "name": "bn"},
                {"type": "gelu"},
            ]},
            {"type": "max_pool2d", "kernel": 2},
            {"type": "dropout2d", "p": 0.25},
            {"type": "flatten"},
            {"type": "linear", "name": "fc1", "out_features": 16},
            {"type": "layer_norm", "name": "norm"},
            {"type": "relu"},
            {"type": "linear", "name": "fc2", "out_features": 10},
        ]
    });
    ModelSpec::from_value(v).unwrap().build().unwrap()
}

#[test]
fn training_steps_do_not_allocate() {
    for net in [
        Model::mlp(784, &[512], 10, Activation::Relu, 0.0).unwrap(),
        cnn(),
        gpt(),
    ] {
        steps_do_not_allocate(&net);
    }
}

/// A GPT of 10 positions and a vocabulary of 10 (so that the same inputs and one target per
/// example serve every model here).
fn gpt() -> Model {
    let v = serde_json::json!({
        "input": [10],
        "layers": [
            {"type": "embedding", "name": "wte", "num_embeddings": 10, "embedding_dim": 8},
            {"type": "position_embedding", "name": "wpe", "num_embeddings": 10},
            {"type": "residual", "name": "b", "body": [
                {"type": "layer_norm", "name": "ln1"},
                {"type": "linear", "name": "qkv", "out_features": 24},
                {"type": "causal_self_attention", "heads": 2},
                {"type": "linear", "name": "proj", "out_features": 8}]},
            {"type": "layer_norm", "name": "ln_f"},
            {"type": "linear", "name": "head", "out_features": 10, "bias": false, "tie": "wte"},
        ]
    });
    ModelSpec::from_value(v).unwrap().build().unwrap()
}

fn steps_do_not_allocate(net: &Model) {
    let mut rng = Rng::new(0);
    let mut params = net.init_params(&mut rng);
    let f = net.input_features();
    // Token ids for a model that starts with an embedding; values otherwise.
    let ids = net.layers()[0].kind() == "Embedding";
    let x: Vec<f32> = (0..64 * f)
        .map(|i| {
            if ids {
                (i % 10) as f32
            } else {
                rng.uniform(-1.0, 1.0)
            }
        })
        .collect();
    let y: Vec<u32> = (0..64).map(|i| (i % 10) as u32).collect();
    let mut grads = vec![0.0; net.param_count()];
    for threads in [1, 2] {
        let pool = Pool::new(threads).unwrap();
        let mut ws = Workspace::new(net, 64, threads);
        // Warm up: per-thread scratch grows to its size once.
        for _ in 0..3 {
            net.train_step_sgd(
                &mut params,
                0.01,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut ws,
                &pool,
            )
            .unwrap();
            net.train_step_grads(
                &mut params,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut grads,
                &mut ws,
                &pool,
            )
            .unwrap();
        }
        let before = ALLOCS.load(Ordering::SeqCst);
        for _ in 0..20 {
            net.train_step_sgd(
                &mut params,
                0.01,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut ws,
                &pool,
            )
            .unwrap();
            net.train_step_grads(
                &mut params,
                &x,
                Targets::Classes(&y),
                &Loss::default(),
                &mut grads,
                &mut ws,
                &pool,
            )
            .unwrap();
            // The last, partial batch of an epoch too.
            net.train_step_sgd(
                &mut params,
                0.01,
                &x[..32 * f],
                Targets::Classes(&y[..32]),
                &Loss::default(),
                &mut ws,
                &pool,
            )
            .unwrap();
        }
        let after = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            after - before,
            0,
            "{threads} threads: {} allocations in 60 steps",
            after - before
        );
    }
}
