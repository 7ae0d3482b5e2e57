//! One function per reader of outside bytes. Each takes any bytes and must return (an error
//! is fine) without panicking, hanging or allocating more than the input justifies. The
//! libFuzzer binaries in `fuzz_targets/` call them (`cargo +nightly fuzz run NAME`), and
//! `tests/smoke.rs` replays the corpus and seeded mutations of it on stable.

use std::io::Write;
use std::path::PathBuf;

/// A target: any bytes in, nothing out but a panic if a reader breaks.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz_targets/` and `corpus/` name them.
pub const TARGETS: &[(&str, Target)] = &[
    ("idx", idx),
    ("npy", npy),
    ("npz", npz),
    ("csv", csv),
    ("png", png),
    ("safetensors", safetensors),
    ("checkpoint", checkpoint),
    ("model_toml", model_toml),
];

/// `data` in a fresh file named `name` (the readers take paths); removed when dropped.
struct Scratch {
    _dir: tempfile_dir::Dir,
    path: PathBuf,
}

mod tempfile_dir {
    /// A directory under the system's temporary folder, removed when dropped.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn scratch(name: &str, data: &[u8]) -> Scratch {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "descent-fuzz-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("a temporary folder");
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(data))
        .expect("a temporary file");
    Scratch {
        _dir: tempfile_dir::Dir(dir),
        path,
    }
}

/// IDX files, raw or gzip (the first byte picks the name: `.gz` or not).
pub fn idx(data: &[u8]) {
    let name = match data.first() {
        Some(b) if b % 2 == 1 => "x-idx3-ubyte.gz",
        _ => "x-idx3-ubyte",
    };
    let f = scratch(name, data);
    let _ = descent_data::read_idx(&f.path);
}

/// A NumPy `.npy` array.
pub fn npy(data: &[u8]) {
    let _ = descent_data::parse_npy(data, "fuzz.npy");
}

/// A NumPy `.npz` archive (a zip of `.npy` entries, stored or deflated).
pub fn npz(data: &[u8]) {
    let f = scratch("a.npz", data);
    let _ = descent_data::read_npz(&f.path);
}

/// A CSV table with a header, every option at its default.
pub fn csv(data: &[u8]) {
    let f = scratch("t.csv", data);
    let _ = descent_data::read_csv(&f.path, &descent_data::CsvOptions::default());
}

/// A PNG or JPEG picture, decoded as one grey channel at 28 x 28.
pub fn png(data: &[u8]) {
    let f = scratch("p.png", data);
    let _ = descent_data::decode_image(&f.path, 1, Some((28, 28)));
}

/// The model every weights and checkpoint target reads into: an MLP 4-3-2.
fn small_model() -> descent_nn::Model {
    descent_nn::Model::mlp(4, &[3], 2, descent_nn::Activation::Relu, 0.0).expect("a model")
}

/// A safetensors weights file, and its metadata alone.
pub fn safetensors(data: &[u8]) {
    let f = scratch("w.safetensors", data);
    let net = small_model();
    let _ = descent_train::checkpoint::load_weights(&f.path, net.layout());
    let _ = descent_train::checkpoint::read_metadata(&f.path);
}

/// A training checkpoint (weights, optimizer state and loop position in its metadata).
pub fn checkpoint(data: &[u8]) {
    let f = scratch("c.safetensors", data);
    let cfg = descent_train::TrainConfig {
        threads: 1,
        ..Default::default()
    };
    let Ok(mut t) = descent_train::Trainer::new(small_model(), &cfg) else {
        return;
    };
    let _ = t.load_checkpoint(&f.path);
}

/// A TOML model file: parsed, described and built, as `--model FILE` does.
pub fn model_toml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(value) = toml::from_str::<toml::Value>(text) else {
        return;
    };
    let Ok(json) = serde_json::to_value(value) else {
        return;
    };
    if let Ok(spec) = descent_nn::ModelSpec::from_value(json) {
        let _ = spec.build();
    }
}
