//! A batch larger than the workspace runs in chunks of its capacity: the gradient of the
//! whole batch's mean loss (against the same batch in one pass), the same loss counts, and a
//! refusal where chunks would change the result (BatchNorm, class weights).

use descent_nn::{GptSize, Loss, Model, ModelSpec, NnError, Targets, Workspace};
use descent_tensor::{Pool, Rng};
use serde_json::json;

/// The gradient and loss of `batch` rows in one pass and in chunks of `cap` rows.
fn one_pass_and_chunks(
    model: &Model,
    x: &[f32],
    targets: Targets<'_>,
    loss: &Loss,
    batch: usize,
    cap: usize,
    threads: usize,
) -> [(Vec<f32>, descent_nn::LossStats); 2] {
    let pool = Pool::new(threads).unwrap();
    let values = model.init_params(&mut Rng::new(3));
    [batch, cap].map(|c| {
        let mut v = values.clone();
        let mut ws = Workspace::new(model, c, threads);
        ws.set_dropout_seed(9);
        let mut g = vec![f32::NAN; model.param_count()];
        // Twice: the second step finds the first one's chunk buffer and must not add it in.
        let mut stats = Default::default();
        for _ in 0..2 {
            stats = model
                .train_step_grads(&mut v, x, targets, loss, &mut g, &mut ws, &pool)
                .unwrap();
        }
        (g, stats)
    })
}

fn relative_l2(a: &[f32], b: &[f32]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let n: f64 = b.iter().map(|b| (*b as f64).powi(2)).sum();
    (d / n).sqrt()
}

/// A small GPT (tokens per position, a tied head): 7 windows in chunks of 3, 3 and 1.
#[test]
fn a_gpt_batch_in_chunks_has_the_whole_batchs_gradient() {
    let size = GptSize {
        layers: 2,
        heads: 2,
        width: 16,
        block: 8,
    };
    let vocab = 11;
    let model = ModelSpec::gpt(vocab, size).build().unwrap();
    let (batch, block) = (7, size.block);
    let mut rng = Rng::new(5);
    let x: Vec<f32> = (0..batch * block)
        .map(|_| rng.below(vocab as u64) as f32)
        .collect();
    let y: Vec<u32> = (0..batch * block)
        .map(|_| rng.below(vocab as u64) as u32)
        .collect();
    for threads in [1, 2] {
        let loss = Loss::default();
        let [(whole, s1), (chunked, s2)] =
            one_pass_and_chunks(&model, &x, Targets::Classes(&y), &loss, batch, 3, threads);
        assert!(whole.iter().all(|g| g.is_finite()));
        let err = relative_l2(&chunked, &whole);
        assert!(err < 1e-5, "{threads} threads: relative L2 {err:e}");
        assert_eq!(s1.count, s2.count);
        assert_eq!(s1.correct, s2.correct);
        assert!((s1.loss_sum - s2.loss_sum).abs() < 1e-4 * s1.loss_sum.abs());
    }
}

/// An MLP on regression targets (one vector of values per row), in chunks of 4, 4 and 2.
#[test]
fn an_mlp_batch_in_chunks_matches_on_values_targets() {
    let model = Model::mlp(6, &[9, 5], 3, descent_nn::Activation::Tanh, 0.0).unwrap();
    let batch = 10;
    let mut rng = Rng::new(8);
    let x: Vec<f32> = (0..batch * 6).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let t: Vec<f32> = (0..batch * 3).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let [(whole, s1), (chunked, s2)] =
        one_pass_and_chunks(&model, &x, Targets::Values(&t), &Loss::Mse, batch, 4, 1);
    let err = relative_l2(&chunked, &whole);
    assert!(err < 1e-6, "relative L2 {err:e}");
    assert_eq!(s1.count, s2.count);
    assert!((s1.loss_sum - s2.loss_sum).abs() < 1e-5 * s1.loss_sum.abs());
}

/// BatchNorm's statistics and a class-weighted mean depend on the whole batch: a batch
/// larger than the workspace is refused as before.
#[test]
fn chunks_are_refused_where_they_would_change_the_result() {
    let bn = ModelSpec::from_value(json!({
        "input": [4],
        "layers": [
            {"type": "linear", "out_features": 5},
            {"type": "batch_norm1d"},
            {"type": "relu"},
            {"type": "linear", "out_features": 3}
        ]
    }))
    .unwrap()
    .build()
    .unwrap();
    let plain = Model::mlp(4, &[5], 3, descent_nn::Activation::Relu, 0.0).unwrap();
    let weighted = Loss::CrossEntropy {
        label_smoothing: 0.0,
        weights: Some(vec![1.0, 2.0, 3.0]),
    };
    let pool = Pool::new(1).unwrap();
    let x = vec![0.5; 6 * 4];
    let y = vec![1u32; 6];
    for (model, loss) in [(&bn, Loss::default()), (&plain, weighted)] {
        assert!(!model.chunks_batches(&loss));
        let mut v = model.init_params(&mut Rng::new(1));
        let mut ws = Workspace::new(model, 2, 1);
        let mut g = vec![0.0; model.param_count()];
        let r = model.train_step_grads(
            &mut v,
            &x,
            Targets::Classes(&y),
            &loss,
            &mut g,
            &mut ws,
            &pool,
        );
        assert!(
            matches!(
                r,
                Err(NnError::BatchTooLarge {
                    batch: 6,
                    capacity: 2
                })
            ),
            "{r:?}"
        );
    }
    assert!(plain.chunks_batches(&Loss::default()));
}
