//! The command line refuses bad input with a clear message and a non-zero exit, and never
//! panics. These run the real binary.

use std::path::Path;
use std::process::{Command, Output};

fn descent(args: &[&str], data: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_descent"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        // No network and no npm: a fetch that is attempted fails fast and says so.
        .env("DESCENT_MNIST_MIRRORS", "http://127.0.0.1:9/")
        .env("DESCENT_NPM", "none")
        .output()
        .expect("the binary runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_clean_failure(o: &Output, needle: &str) {
    let err = stderr(o);
    assert!(!o.status.success(), "should fail: {err}");
    assert!(!err.contains("panicked"), "must not panic: {err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walk(dir);
    v.sort();
    v
}

fn walk(dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return vec![];
    };
    rd.flat_map(|e| {
        let p = e.unwrap().path();
        let mut v = vec![p.display().to_string()];
        if p.is_dir() {
            v.extend(walk(&p));
        }
        v
    })
    .collect()
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["train", "--lr", "0"], "--lr"),
        (&["train", "--lr", "-0.1"], "--lr"),
        (&["train", "--lr", "NaN"], "--lr"),
        (&["train", "--lr", "inf"], "--lr"),
        (&["train", "--batch-size", "0"], "--batch-size"),
        (&["train", "--epochs", "0"], "--epochs"),
        (&["train", "--hidden", "256,0"], "--hidden"),
        (&["train", "--optimizer", "adamx"], "--optimizer"),
        (
            &["train", "--amsgrad"],
            "invalid --amsgrad: sgd does not take it",
        ),
        (
            &["train", "--optimizer", "momentum", "--momentum", "0.9"],
            "--beta",
        ),
        (&["train", "--nesterov"], "nesterov needs momentum > 0"),
        (
            &[
                "train",
                "--nesterov",
                "--momentum",
                "0.9",
                "--dampening",
                "0.1",
            ],
            "dampening = 0",
        ),
        (&["train", "--optimizer", "adam", "--beta1", "1"], "--beta1"),
        (
            &["train", "--optimizer", "adamw", "--beta2", "-0.1"],
            "--beta2",
        ),
        (&["train", "--optimizer", "rmsprop", "--eps", "-1"], "--eps"),
        (&["train", "--weight-decay", "-0.1"], "--weight-decay"),
        (&["train", "--schedule", "step"], "--step-size"),
        (
            &["train", "--schedule", "cosine", "--gamma", "0.5"],
            "--gamma",
        ),
        (
            &["train", "--schedule", "onecycle", "--warmup-steps", "10"],
            "--warmup-steps",
        ),
        (
            &["train", "--schedule", "onecycle", "--optimizer", "adagrad"],
            "--no-cycle-momentum",
        ),
        (&["train", "--grad-tol", "0.001"], "--optimizer gd"),
        (&["train", "--clip-norm", "0"], "--clip-norm"),
        (&["train", "--clip-error-nonfinite"], "--clip-norm"),
        (&["train", "--val-split", "1.5"], "--val-split"),
        (&["train", "--val-split", "0"], "--val-split"),
        (&["train", "--val-size", "60000"], "--val-size"),
        (
            &["train", "--val-split", "0.1", "--val-size", "10"],
            "--val-size",
        ),
        (&["train", "--early-stop", "val-loss"], "--val-split 0.1"),
        (&["train", "--val-only"], "--val-split 0.1"),
        (&["train", "--max-steps", "0"], "--max-steps"),
        (&["train", "--dropout", "1"], "--dropout"),
        (&["train", "--dropout", "-0.1"], "--dropout"),
        (&["train", "--l1", "-1"], "--l1"),
        (&["train", "--target-loss", "-1"], "--target-loss"),
        (
            &["train", "--early-stop", "train-loss", "--min-delta", "-1"],
            "--min-delta",
        ),
        (&["train", "--activation", "swish"], "--activation"),
        (
            &["train", "--model", "vgg"],
            "invalid --model vgg: not a preset",
        ),
        (
            &["train", "--model-set", "fc9.out_features=3"],
            "no layer is named `fc9`: the layers are fc1, 1, fc2",
        ),
        (&["train", "--model-set", "fc1"], "write LAYER.FIELD=VALUE"),
        (
            &[
                "train",
                "--model",
                "cnn",
                "--model-set",
                "fc2.out_features=7",
            ],
            "the model gives 7 outputs",
        ),
        (
            &["train", "--model", "cnn", "--hidden", "128"],
            "invalid --hidden: it shapes --model mlp, not --model cnn",
        ),
        (&["train", "--lr", "fast"], "--lr"),
    ];
    for (args, flag) in cases {
        let o = descent(args, dir.path());
        assert_clean_failure(&o, flag);
        assert!(
            !stderr(&o).contains("fetching"),
            "{args:?} must fail before fetching: {}",
            stderr(&o)
        );
    }
    assert!(
        entries(dir.path()).is_empty(),
        "nothing was written: {:?}",
        entries(dir.path())
    );
}

#[test]
fn missing_data_without_fetch_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let o = descent(&["train", "--no-fetch"], dir.path());
    assert_clean_failure(&o, "descent data fetch mnist");
}

#[test]
fn missing_data_with_no_source_fails_and_leaves_no_partial_files() {
    let dir = tempfile::tempdir().unwrap();
    let o = descent(&["train", "--epochs", "1"], dir.path());
    assert_clean_failure(&o, "could not fetch");
    let err = stderr(&o);
    assert!(
        err.contains("127.0.0.1:9") && err.contains("DESCENT_NPM=none"),
        "{err}"
    );
    let files: Vec<_> = entries(dir.path())
        .into_iter()
        .filter(|p| !p.ends_with("mnist"))
        .collect();
    assert!(files.is_empty(), "partial files left: {files:?}");
    let o = descent(&["data", "fetch", "mnist"], dir.path());
    assert_clean_failure(&o, "could not fetch");
}

fn write_idx(path: &Path, dims: &[u32], fill: u8) {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend(d.to_be_bytes());
    }
    b.resize(b.len() + dims.iter().product::<u32>() as usize, fill);
    std::fs::write(path, b).unwrap();
}

fn fake_mnist(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    write_idx(&dir.join("train-images-idx3-ubyte"), &[60_000, 28, 28], 0);
    write_idx(&dir.join("train-labels-idx1-ubyte"), &[60_000], 1);
    write_idx(&dir.join("t10k-images-idx3-ubyte"), &[10_000, 28, 28], 0);
    write_idx(&dir.join("t10k-labels-idx1-ubyte"), &[10_000], 1);
}

#[test]
fn a_checksum_mismatch_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    fake_mnist(&dir.path().join("mnist"));
    let o = descent(&["train", "--epochs", "1"], dir.path());
    assert_clean_failure(&o, "checksum mismatch for train-images-idx3-ubyte");
}

#[test]
fn truncated_and_corrupted_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mnist = dir.path().join("mnist");
    fake_mnist(&mnist);
    let p = mnist.join("train-images-idx3-ubyte");
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..1000]).unwrap();
    let o = descent(&["train", "--no-fetch"], dir.path());
    assert_clean_failure(&o, "is truncated");
    std::fs::write(&p, b"<html>not found</html>").unwrap();
    let o = descent(&["train", "--no-fetch"], dir.path());
    assert_clean_failure(&o, "is not an IDX file");
    std::fs::write(&p, [0x1f, 0x8b, 8, 0, 1, 2, 3]).unwrap();
    let o = descent(&["train", "--no-fetch"], dir.path());
    assert_clean_failure(&o, "not a valid gzip file");
}

#[test]
fn help_lists_the_commands() {
    let o = Command::new(env!("CARGO_BIN_EXE_descent"))
        .arg("--help")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success());
    for cmd in ["train", "data", "bench"] {
        assert!(out.contains(cmd), "{out}");
    }
}

/// `descent ... | head` must end quietly when the reader goes away, not panic.
#[test]
fn a_closed_stdout_ends_the_program_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_descent"))
        .args(["bench", "gemm", "--runs", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(141), "{err}");
}

#[test]
fn optimizers_lists_every_optimizer_with_defaults_and_formula() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_descent"))
            .args(args)
            .env("DESCENT_DATA", dir.path())
            .output()
            .unwrap()
    };
    let o = run(&["optimizers"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for name in [
        "gd", "sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam", "adamw", "adamax",
        "nadam", "radam", "lion", "lamb",
    ] {
        assert!(
            out.contains(&format!("\n{name}: ")) || out.starts_with(&format!("{name}: ")),
            "{name} missing:\n{out}"
        );
    }
    let o = run(&["optimizers", "adamw"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("--weight-decay 0.01") && out.contains("--lr 0.001"),
        "{out}"
    );
    assert!(out.contains("Loshchilov & Hutter"), "{out}");
    assert!(
        !out.contains("--decoupled-weight-decay"),
        "AdamW always decouples: {out}"
    );
    assert_clean_failure(&run(&["optimizers", "adamx"]), "known optimizers");
}

#[test]
fn weights_files_that_cannot_be_read_or_written_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("none.safetensors");
    let o = descent(
        &["train", "--init-from", missing.to_str().unwrap()],
        dir.path(),
    );
    assert_clean_failure(&o, "reading");
    let junk = dir.path().join("junk.safetensors");
    std::fs::write(&junk, b"{not safetensors").unwrap();
    let o = descent(
        &["train", "--init-from", junk.to_str().unwrap()],
        dir.path(),
    );
    assert_clean_failure(&o, "is not a readable safetensors file");
    let nowhere = dir.path().join("no/such/dir/w.safetensors");
    let o = descent(&["train", "--save", nowhere.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "invalid --save");
    let o = descent(&["eval", junk.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "is not a readable safetensors file");
    let mut left = entries(dir.path());
    left.retain(|e| !e.ends_with("junk.safetensors"));
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[test]
fn run_directories_that_cannot_start_or_resume_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let taken = dir.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("args.json"), "[]").unwrap();
    let o = descent(&["train", "--run-dir", taken.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "already holds a run; continue it with --resume");
    let o = descent(
        &["train", "--resume", dir.path().to_str().unwrap()],
        dir.path(),
    );
    assert_clean_failure(&o, "is it a run directory");
    // A run directory whose checkpoint is damaged.
    std::fs::write(taken.join("checkpoint.safetensors"), b"\x10\0\0\0\0\0\0\0{").unwrap();
    let o = descent(&["train", "--resume", taken.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "is not a readable safetensors file");
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let o = descent(
        &["train", "--run-dir", file.join("run").to_str().unwrap()],
        dir.path(),
    );
    assert_clean_failure(&o, "is not a directory");
    let o = descent(&["train", "--checkpoint-every", "0"], dir.path());
    assert_clean_failure(&o, "--checkpoint-every");
    let mut left = entries(dir.path());
    left.retain(|e| !e.contains("taken") && !e.ends_with("a-file"));
    assert!(left.is_empty(), "nothing written: {left:?}");
}

#[test]
fn a_config_file_sets_flags_and_bad_ones_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("run.toml");
    std::fs::write(&f, "optimizer = \"adam\"\nbeta1 = 1.5\n").unwrap();
    // The file's value is checked like a flag's, before any work.
    let o = descent(&["train", "--config", f.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "invalid --beta1 1.5");
    std::fs::write(&f, "optimiser = \"adam\"\n").unwrap();
    let o = descent(&["train", "--config", f.to_str().unwrap()], dir.path());
    assert_clean_failure(&o, "flags were read from the --config file");
    let o = descent(&["train", "--config", "/no/such/run.toml"], dir.path());
    assert_clean_failure(&o, "cannot read it");
}

#[test]
fn report_and_compare_refuse_bad_input_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let report = |d: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_descent"))
            .args(["report", d.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let o = report(dir.path());
    assert_clean_failure(&o, "a run directory (descent train --run-dir)");
    let run = dir.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"type\":\"log\",\"epoch\":1,\"batch\":100,\"loss\":1.0}\n{broken\n",
    )
    .unwrap();
    let o = report(&run);
    assert_clean_failure(&o, "metrics.jsonl line 2");
    // A whole run: report names the model its run.json records.
    let epoch = "{\"type\":\"epoch\",\"epoch\":1,\"steps\":10,\"lr\":0.1,\"train_loss\":1.0,\"train_acc\":50.0,\"val\":null,\"test_loss\":1.0,\"test_acc\":60.0,\"seconds\":1.0}\n";
    std::fs::write(run.join("metrics.jsonl"), epoch).unwrap();
    let model = r#"{"input":[1,28,28],"layers":[{"type":"flatten"},{"type":"linear","name":"fc","out_features":10}]}"#;
    std::fs::write(run.join("run.json"), format!("{{\"model\": {model}}}")).unwrap();
    let o = report(&run);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        text.contains("model: Flatten Linear (7850 parameters)"),
        "{text}"
    );
    let out = dir.path().join("out");
    for (args, want) in [
        (
            vec!["compare", "--optimizers", "sgd,adamx"],
            "invalid --optimizers adamx",
        ),
        (vec!["compare", "--epochs", "0"], "--epochs"),
        (vec!["compare", "--val-split", "1"], "--val-split"),
        (
            vec!["compare", "--optimizers", "gd"],
            "invalid --optimizers gd",
        ),
    ] {
        let mut a = args.clone();
        a.extend(["--out", out.to_str().unwrap()]);
        assert_clean_failure(&descent(&a, dir.path()), want);
    }
    let runs = dir.path().join("runs.toml");
    for (text, want) in [
        ("[[run]]\nname = \"fast\"\n", "has no `optimizer"),
        (
            "[[run]]\noptimizer = \"sgd\"\namsgrad = true\n",
            "sgd has no setting `amsgrad`",
        ),
        (
            "[[run]]\noptimizer = \"adam\"\nbeta1 = 2.0\n",
            "invalid beta1",
        ),
        ("lr = 1\n", "no [[run]] tables"),
    ] {
        std::fs::write(&runs, text).unwrap();
        let o = descent(
            &[
                "compare",
                "--runs",
                runs.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ],
            dir.path(),
        );
        assert_clean_failure(&o, want);
    }
    assert!(!out.exists(), "no output folder before any work");
}

#[test]
fn viz_draws_png_and_svg_and_refuses_bad_names() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_descent"))
            .args(args)
            .output()
            .unwrap()
    };
    for ext in ["png", "svg"] {
        let out = dir.path().join(format!("q.{ext}"));
        let o = run(&[
            "viz",
            "--function",
            "quadratic",
            "--out",
            out.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        let bytes = std::fs::read(&out).unwrap();
        match ext {
            "png" => assert_eq!(&bytes[1..4], b"PNG"),
            _ => assert!(String::from_utf8(bytes).unwrap().contains("adam (lr 0.1)")),
        }
    }
    let bad = dir.path().join("x.jpg");
    assert_clean_failure(
        &run(&["viz", "--out", bad.to_str().unwrap()]),
        "name a .png or .svg",
    );
    let out = dir.path().join("y.png");
    assert_clean_failure(
        &run(&[
            "viz",
            "--optimizers",
            "adamx",
            "--out",
            out.to_str().unwrap(),
        ]),
        "invalid --optimizers adamx",
    );
    assert!(!bad.exists() && !out.exists());
}

/// `descent models` lists the presets with PyTorch's parameter counts and shows one layer by
/// layer; an unknown name is refused.
#[test]
fn models_lists_presets_and_shows_one() {
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_descent"))
            .args(args)
            .output()
            .unwrap()
    };
    let o = run(&["models", "gpt"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && text.contains("gpt: input 128, 824192 parameters"),
        "{text}{}",
        stderr(&o)
    );
    let o = run(&["models"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", stderr(&o));
    for want in [
        "cnn           1199882",
        "lenet5          61706",
        "resnet          77754",
        "gpt            824192",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let o = run(&["models", "cnn"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("Conv2d(32, 64, 3x3) + ReLU"), "{text}");
    assert!(text.contains("fc1.weight 128x9216"), "{text}");
    assert_clean_failure(
        &run(&["models", "vgg"]),
        "invalid --model vgg: not a preset",
    );
}

/// A model file with an error is refused before any data is read, naming the layer and
/// what was expected.
#[test]
fn model_files_are_checked_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_str().unwrap().to_string()
    };
    let cases = [
        (
            file("unknown.toml", "input = [1, 28, 28]\n[[layers]]\ntype = \"conv3d\"\n"),
            "layer 1: unknown layer type `conv3d`",
        ),
        (
            file(
                "mismatch.toml",
                "input = [1, 28, 28]\n[[layers]]\ntype = \"conv2d\"\nout_channels = 4\nkernel = 3\n\
                 [[layers]]\ntype = \"linear\"\nin_features = 2704\nout_features = 10\n",
            ),
            "layer 2 (linear): it expects 2704 input features, but the layer before gives (4, 26, 26); add a flatten",
        ),
        (
            file(
                "param.toml",
                "input = [1, 28, 28]\n[[layers]]\ntype = \"conv2d\"\nout_channels = 4\nkernal = 3\n",
            ),
            "unknown field `kernal`",
        ),
        (
            file(
                "classes.toml",
                "input = [784]\n[[layers]]\ntype = \"linear\"\nout_features = 7\n",
            ),
            "the model gives 7 outputs",
        ),
        (
            file(
                "input.toml",
                "input = [3, 32, 32]\n[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout_features = 10\n",
            ),
            "the model takes inputs of shape [3, 32, 32]",
        ),
    ];
    for (path, want) in &cases {
        let o = descent(&["train", "--model", path, "--no-fetch"], dir.path());
        assert_clean_failure(&o, want);
        assert!(
            !stderr(&o).contains("MNIST"),
            "refused before the data: {}",
            stderr(&o)
        );
    }
}

#[test]
fn predict_reads_a_png_and_refuses_other_sizes() {
    use descent_nn::{Activation, Model};
    let dir = tempfile::tempdir().unwrap();
    let net = Model::mlp(784, &[16], 10, Activation::Relu, 0.0).unwrap();
    let params = net.init_params(&mut descent_tensor::Rng::new(1));
    let weights = dir.path().join("w.safetensors");
    let meta = std::collections::BTreeMap::from([("hidden".to_string(), "16".to_string())]);
    descent_train::checkpoint::save_weights(&weights, net.layout(), &params, &meta).unwrap();
    let png_of = |w: u32, h: u32, path: &std::path::Path| {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        let pixels: Vec<u8> = (0..w * h).map(|i| (i % 251) as u8).collect();
        wr.write_image_data(&pixels).unwrap();
        drop(wr);
        std::fs::write(path, out).unwrap();
    };
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_descent"))
            .args(args)
            .output()
            .unwrap()
    };
    let good = dir.path().join("digit.png");
    png_of(28, 28, &good);
    let o = run(&[
        "predict",
        weights.to_str().unwrap(),
        good.to_str().unwrap(),
        "--top",
        "2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(
        text.starts_with("image 0: ") && text.matches('%').count() == 2,
        "{text}"
    );
    let small = dir.path().join("small.png");
    png_of(20, 20, &small);
    let o = run(&[
        "predict",
        weights.to_str().unwrap(),
        small.to_str().unwrap(),
    ]);
    assert_clean_failure(&o, "is 20x20 pixels");
    let junk = dir.path().join("junk.bin");
    std::fs::write(&junk, b"nothing").unwrap();
    let o = run(&["predict", weights.to_str().unwrap(), junk.to_str().unwrap()]);
    assert_clean_failure(&o, "junk.bin is neither a PNG picture nor an IDX file");
    assert!(
        !stderr(&o).contains("IDX file of unsigned bytes"),
        "{}",
        stderr(&o)
    );
    let jpeg = dir.path().join("photo.jpg");
    std::fs::write(&jpeg, [0xff, 0xd8, 0xff, 0xe0, 0, 0]).unwrap();
    let o = run(&["predict", weights.to_str().unwrap(), jpeg.to_str().unwrap()]);
    assert_clean_failure(&o, "photo.jpg is a JPEG picture");
    // A dark digit on white paper: a note suggests --invert, which silences it.
    assert!(!stderr(&run(&[
        "predict",
        weights.to_str().unwrap(),
        good.to_str().unwrap()
    ]))
    .contains("--invert"));
    let paper = dir.path().join("paper.png");
    {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 28, 28);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let mut wr = enc.write_header().unwrap();
        let pixels: Vec<u8> = (0..784)
            .map(|i| if i % 28 == 14 { 0 } else { 250 })
            .collect();
        wr.write_image_data(&pixels).unwrap();
        drop(wr);
        std::fs::write(&paper, out).unwrap();
    }
    let o = run(&[
        "predict",
        weights.to_str().unwrap(),
        paper.to_str().unwrap(),
    ]);
    assert!(
        o.status.success()
            && stderr(&o).contains("mostly light")
            && stderr(&o).contains("add --invert"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "predict",
        weights.to_str().unwrap(),
        paper.to_str().unwrap(),
        "--invert",
    ]);
    assert!(
        o.status.success() && !stderr(&o).contains("mostly light"),
        "{}",
        stderr(&o)
    );
    let o = run(&[
        "predict",
        weights.to_str().unwrap(),
        good.to_str().unwrap(),
        "--top",
        "0",
    ]);
    assert_clean_failure(&o, "--top");
}

#[test]
fn tune_refuses_bad_search_spaces_and_storage_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--param".into(), "lr=float:1:0:log".into()],
            "low 1 > high 0",
        ),
        (
            vec!["--param".into(), "lr=float:0:1:log".into()],
            "log scale needs low > 0",
        ),
        (
            vec!["--param".into(), "hidden=int:0:512:log".into()],
            "log scale needs low >= 1",
        ),
        (
            vec!["--param".into(), "optimizer=cat:".into()],
            "no choices",
        ),
        (
            vec![
                "--fixed".into(),
                "model=lenet5".into(),
                "--param".into(),
                "hidden=int:64:128".into(),
            ],
            "it shapes --model mlp, not --model lenet5",
        ),
        (
            vec!["--param".into(), "model.conv9.out_channels=int:8:16".into()],
            "no layer is named `conv9`",
        ),
        (
            vec!["--param".into(), "lr=gauss:0:1".into()],
            "unknown kind `gauss`",
        ),
        (
            vec!["--param".into(), "foo=float:0:1".into()],
            "`foo` is not a `descent train` setting",
        ),
        (
            vec!["--sampler".into(), "cmaes".into()],
            "invalid --sampler cmaes",
        ),
        (
            vec!["--fixed".into(), "epochs=5".into()],
            "`epochs` cannot be searched or fixed",
        ),
        (
            vec!["--pruner".into(), "percentile:x".into()],
            "invalid --pruner",
        ),
        (
            vec!["--storage".into(), "mysql://x".into()],
            "give sqlite:PATH",
        ),
        (
            vec![
                "--storage".into(),
                format!("sqlite:{}", dir.path().display()),
            ],
            "is a directory",
        ),
        (
            vec![
                "--storage".into(),
                format!("sqlite:{}/no/t.db", dir.path().display()),
            ],
            "does not exist",
        ),
    ];
    for (extra, needle) in cases {
        let mut args: Vec<String> = vec!["tune".into(), "--no-fetch".into()];
        if !extra.contains(&"--storage".to_string()) {
            args.extend(["--storage".into(), db.clone()]);
        }
        args.extend(extra);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_clean_failure(&descent(&refs, dir.path()), needle);
    }
    // A PostgreSQL server that is not there: said at once, the password never shown.
    let out = descent(
        &[
            "tune",
            "--no-fetch",
            "--storage",
            "postgresql://ann:hunter2@127.0.0.1:1/db",
        ],
        dir.path(),
    );
    assert_clean_failure(&out, "postgresql://ann@127.0.0.1:1/db: cannot connect");
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!all.contains("hunter2"), "{all}");
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![b'x'; 4096]).unwrap();
    let spec = format!("sqlite:{}", junk.display());
    assert_clean_failure(
        &descent(&["tune", "--storage", &spec, "--no-fetch"], dir.path()),
        "is not a SQLite database",
    );
    // A TOML space with a broken parameter.
    let space = dir.path().join("space.toml");
    std::fs::write(
        &space,
        "[params.lr]\ntype = \"float\"\nlow = 0.5\nhigh = 0.1\n",
    )
    .unwrap();
    let s = space.display().to_string();
    assert_clean_failure(
        &descent(
            &["tune", "--storage", &db, "--space", &s, "--no-fetch"],
            dir.path(),
        ),
        "low 0.5 > high 0.1",
    );
    // show and --from-study on a study that is not there.
    let show = Command::new(env!("CARGO_BIN_EXE_descent"))
        .args(["tune", "show", "--storage", &db, "--study", "nope"])
        .output()
        .unwrap();
    assert_clean_failure(&show, "no study named `nope`");
    let spec = format!("{db}:nope");
    assert_clean_failure(
        &descent(&["train", "--from-study", &spec, "--no-fetch"], dir.path()),
        "no study named `nope`",
    );
    assert_clean_failure(
        &descent(
            &["train", "--from-study", "tune.db", "--no-fetch"],
            dir.path(),
        ),
        "give sqlite:PATH:STUDY",
    );
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_descent"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// A short text of two sentences repeated, for tiny GPTs: `t.txt` in `dir`.
fn tiny_text(dir: &std::path::Path) -> std::path::PathBuf {
    let text = dir.join("t.txt");
    std::fs::write(
        &text,
        "the cat sat on the mat. the dog sat on the log.\n".repeat(60),
    )
    .unwrap();
    text
}

/// A small GPT on a text: trains from one command with step evaluations, saves its
/// vocabulary; `generate` continues a prompt reproducibly by seed and names a character the
/// vocabulary lacks; `eval` gives the text's perplexity; a GPT without a text is refused.
#[test]
fn a_gpt_trains_on_a_text_generates_and_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_text(dir.path());
    let weights = dir.path().join("gpt.safetensors");
    let data = format!("text:{}", text.display());
    let flags = [
        "train",
        "--model",
        "gpt",
        "--data",
        &data,
        "--layers",
        "1",
        "--heads",
        "2",
        "--embd",
        "16",
        "--block-size",
        "16",
        "--optimizer",
        "adamw",
        "--lr",
        "0.01",
        "--batch-size",
        "16",
        "--max-steps",
        "60",
        "--eval-every",
        "30",
        "--epochs",
        "1",
        "--log-every",
        "0",
    ];
    let o = run(&[&flags[..], &["--save", weights.to_str().unwrap()]].concat());
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &stderr(&o);
    assert!(o.status.success(), "{out}");
    // Mixed precision trains the same model to nearly the same loss.
    let val_loss = |out: &str| -> f64 {
        out.lines()
            .find_map(|l| l.strip_prefix("stopped: reached the step limit of 60 steps; val_loss "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .expect("a final validation loss")
    };
    let b = run(&[&flags[..], &["--bf16", "--quiet"]].concat());
    let bf16_out = String::from_utf8_lossy(&b.stdout).into_owned();
    assert!(b.status.success(), "{bf16_out}{}", stderr(&b));
    let (f, h) = (val_loss(&out), val_loss(&bf16_out));
    assert!((f - h).abs() < 0.05 * f, "f32 {f} against bf16 {h}");
    assert!(
        out.contains("step 30 train_loss") && out.contains("step 60 train_loss"),
        "{out}"
    );
    assert!(
        out.contains("stopped: reached the step limit of 60 steps; val_loss"),
        "{out}"
    );
    let w = weights.to_str().unwrap();
    let gen = |seed: &str| {
        let o = run(&[
            "generate", w, "--prompt", "the ", "--tokens", "40", "--seed", seed,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let (a, b) = (gen("3"), gen("3"));
    assert_eq!(a, b, "the same seed gives the same text");
    assert!(
        a.starts_with("the ") && a.trim_end().chars().count() >= 30,
        "{a:?}"
    );
    assert_clean_failure(
        &run(&["generate", w, "--prompt", "the zebra"]),
        "character 4 is 'z' (U+007A)",
    );
    let o = run(&["eval", w, "--data", &data]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success() && line.contains("perplexity"),
        "{line}{}",
        stderr(&o)
    );
    assert_clean_failure(
        &run(&["train", "--model", "gpt"]),
        "give it a text with --data text:FILE",
    );
    assert_clean_failure(
        &run(&["train", "--data", "tsv:x"]),
        "the sources are mnist, fashion-mnist, idx:DIR, csv:FILE",
    );
    let bad = dir.path().join("bad.txt");
    std::fs::write(&bad, b"abc\xffdef").unwrap();
    assert_clean_failure(
        &run(&[
            "train",
            "--model",
            "gpt",
            "--data",
            &format!("text:{}", bad.display()),
        ]),
        "offset 3",
    );
}

/// The value of a `descent tune` log's best trial.
fn best_value(log: &str) -> f64 {
    log.lines()
        .find_map(|l| l.strip_prefix("best: trial "))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
        .expect("a best trial")
}

/// `descent train --from-study SPEC` ends at the study's best validation loss.
fn assert_retrains_to(spec: &str, best: f64) {
    let o = run(&["train", "--from-study", spec, "--quiet"]);
    let line = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{line}{}", stderr(&o));
    assert!(
        line.contains(&format!("val_loss {best:.4}")),
        "{line} vs {best}"
    );
}

/// `compare` races optimizers on a GPT and ranks them by validation loss; `tune` searches
/// the recipe on it (minimizing validation loss, pruning on step evaluations), and
/// `--from-study` retrains the best trial to the same loss; the recipe comes with --model gpt.
#[test]
fn compare_and_tune_work_on_a_gpt() {
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_text(dir.path());
    let data = format!("text:{}", text.display());
    let out = dir.path().join("cmp");
    let small = [
        "--fixed",
        "layers=1",
        "--fixed",
        "heads=2",
        "--fixed",
        "embd=16",
        "--fixed",
        "block-size=16",
        "--fixed",
        "eval-every=10",
        "--fixed",
        "warmup-steps=5",
    ];
    let mut args = vec![
        "compare",
        "--data",
        &data,
        "--optimizers",
        "sgd,adamw",
        "--max-steps",
        "30",
        "--batch-size",
        "8",
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend(small);
    let o = run(&args);
    let table = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{table}{}", stderr(&o));
    // AdamW at 1e-3 beats SGD at 1e-2 here, and the table ranks by validation loss.
    let rows: Vec<&str> = table.lines().skip(1).take(2).collect();
    assert!(
        rows[0].starts_with("adamw") && rows[1].starts_with("sgd"),
        "{table}"
    );
    let csv = std::fs::read_to_string(out.join("compare.csv")).unwrap();
    let losses: Vec<f64> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(4).unwrap().parse().unwrap())
        .collect();
    assert!(losses[0] < losses[1], "{csv}");
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some("30")),
        "{csv}"
    );
    assert!(out.join("compare.png").exists() && out.join("compare_loss.svg").exists());
    assert_clean_failure(
        &run(&["compare", "--data", &data, "--fixed", "lr=0.1"]),
        "`lr` is set by descent compare or per run",
    );

    let db = format!("sqlite:{}", dir.path().join("t.db").display());
    let fixed_data = format!("data={data}");
    let mut args = vec![
        "tune",
        "--storage",
        &db,
        "--study",
        "gpt",
        "--trials",
        "3",
        "--fixed",
        &fixed_data,
        "--fixed",
        "max-steps=20",
        "--fixed",
        "batch-size=8",
    ];
    args.extend(small);
    let o = run(&args);
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{log}{}", stderr(&o));
    // The recipe's settings are the first trial; warmup is fixed, so only lr and decay vary.
    assert!(log.contains("trial   0 val_loss"), "{log}");
    assert!(log.contains("--lr 0.001 --weight-decay 0.1"), "{log}");
    assert!(!log.contains("--warmup-steps 1"), "{log}");
    let best = best_value(&log);
    let shown = dir.path().join("show");
    let show = run(&[
        "tune",
        "show",
        "--storage",
        &db,
        "--study",
        "gpt",
        "--out",
        shown.to_str().unwrap(),
    ]);
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("(minimize): 3 trials"),
        "{}",
        stderr(&show)
    );
    assert_retrains_to(&format!("{db}:gpt"), best);
    // Searching the optimizer leaves the recipe's AdamW settings out of every trial, and
    // the replay keeps them out: the retrained loss is the trial's.
    args[4] = "opt";
    args[6] = "2";
    args.extend(["--param", "optimizer=cat:sgd,adamw", "--sampler", "random"]);
    let o = run(&args);
    let log = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{log}{}", stderr(&o));
    assert!(!log.contains("--beta2"), "{log}");
    let best = best_value(&log);
    assert_retrains_to(&format!("{db}:opt"), best);
}

/// A fresh schema on the PostgreSQL server of `DESCENT_TEST_POSTGRES` (see descent-tune's
/// tests), as a storage URL with its password.
fn postgres_url(test: &str) -> Option<String> {
    let Ok(url) = std::env::var("DESCENT_TEST_POSTGRES") else {
        eprintln!("{test}: PostgreSQL skipped: set DESCENT_TEST_POSTGRES (tools/pg_local.sh)");
        return None;
    };
    let schema = format!("cli_{}", std::process::id());
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
        ))
        .unwrap();
    let sep = if url.contains('?') { '&' } else { '?' };
    Some(format!("{url}{sep}options=-csearch_path%3D{schema}"))
}

/// `descent tune` on PostgreSQL: two processes add trials to one study, `tune show` reads it,
/// `train --from-study` retrains its best; no output and no file written holds the password.
#[test]
fn tune_on_postgresql_never_shows_the_password() {
    let Some(url) = postgres_url("tune on PostgreSQL") else {
        return;
    };
    let password = url
        .split("://")
        .nth(1)
        .and_then(|r| r.split('@').next())
        .and_then(|u| u.split_once(':'))
        .map(|(_, p)| p.to_string())
        .expect("DESCENT_TEST_POSTGRES carries a password");
    let dir = tempfile::tempdir().unwrap();
    let text = tiny_text(dir.path());
    let fixed_data = format!("data=text:{}", text.display());
    let tune = |trials: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_descent"));
        c.args([
            "tune",
            "--storage",
            &url,
            "--study",
            "pg",
            "--trials",
            trials,
        ])
        .args([
            "--fixed",
            &fixed_data,
            "--fixed",
            "max-steps=6",
            "--fixed",
            "batch-size=4",
        ])
        .args([
            "--fixed", "layers=1", "--fixed", "heads=1", "--fixed", "embd=8",
        ])
        .args(["--fixed", "block-size=8", "--fixed", "eval-every=3"])
        .args(["--heartbeat", "1", "--retry-failed", "1"])
        .current_dir(dir.path());
        c
    };
    let first = tune("2").output().unwrap();
    let second = tune("4").output().unwrap();
    let show = Command::new(env!("CARGO_BIN_EXE_descent"))
        .args([
            "tune",
            "show",
            "--storage",
            &url,
            "--study",
            "pg",
            "--out",
            "shown",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let retrain = Command::new(env!("CARGO_BIN_EXE_descent"))
        .args([
            "train",
            "--from-study",
            &format!("{url}:pg"),
            "--run-dir",
            "again",
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let mut all = String::new();
    for o in [&first, &second, &show, &retrain] {
        assert!(
            o.status.success(),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            stderr(o)
        );
        all += &String::from_utf8_lossy(&o.stdout);
        all += &stderr(o);
    }
    assert!(
        String::from_utf8_lossy(&show.stdout).contains("(minimize): 4 trials"),
        "{all}"
    );
    assert!(
        all.contains(":***@"),
        "messages name the storage, redacted: {all}"
    );
    assert!(!all.contains(&password), "the password was printed: {all}");
    let files = walk(dir.path());
    assert!(files.iter().any(|f| f.ends_with("run.json")), "{files:?}");
    for f in files {
        if let Ok(bytes) = std::fs::read(&f) {
            let hit = bytes
                .windows(password.len())
                .any(|w| w == password.as_bytes());
            assert!(!hit, "{f} holds the password");
        }
    }
}

/// Without a GPU (or without its driver), `--device cuda` stops at once with one line that
/// names the library it could not load and where to put it; a bad device name is refused by
/// the parser. (On a machine with a GPU the first half does not apply and is skipped.)
#[test]
fn device_cuda_without_a_gpu_is_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    if Path::new("/proc/driver/nvidia").exists() {
        println!("skipped the no-GPU half: this machine has NVIDIA's driver");
    } else {
        let o = descent(
            &["train", "--device", "cuda:0", "--epochs", "1"],
            dir.path(),
        );
        let err = stderr(&o);
        assert_clean_failure(&o, "--device cuda:0: cannot load");
        assert!(err.contains("LD_LIBRARY_PATH"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        // Nothing was fetched before the device was refused.
        assert!(entries(dir.path()).is_empty(), "{:?}", entries(dir.path()));
    }
    let o = descent(&["train", "--device", "tpu"], dir.path());
    assert_clean_failure(&o, "unknown device `tpu`");
}
