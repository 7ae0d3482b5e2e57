//! Saving after step k and loading into a fresh process continues bit-identically, for every
//! optimizer: this test runs its own binary again as the second process.

use std::path::Path;
use std::process::Command;

use descent_optim::{HyperValue, Optimizer, OptimizerConfig, OptimizerState, ParamSpec};

/// Every optimizer, with the settings that give it the most state.
fn configs() -> Vec<(String, OptimizerConfig)> {
    let mut out = Vec::new();
    for name in descent_optim::OPTIMIZER_NAMES {
        let mut c = OptimizerConfig::default_for(name).unwrap();
        for (k, v) in [
            ("momentum", HyperValue::Num(0.9)),
            ("weight_decay", HyperValue::Num(0.01)),
            ("amsgrad", HyperValue::Flag(true)),
            ("centered", HyperValue::Flag(true)),
        ] {
            let _ = c.set(k, v); // not every optimizer has every setting
        }
        c.validate().unwrap();
        out.push((name.to_string(), c));
    }
    out
}

fn specs() -> Vec<ParamSpec> {
    vec![
        ParamSpec::new("fc1.weight", &[400, 100]),
        ParamSpec::new("fc1.bias", &[400]),
    ]
}

fn grads(step: u64, params: &[f32]) -> Vec<f32> {
    params
        .iter()
        .enumerate()
        .map(|(i, &p)| ((i as u64 * 31 + step * 17) % 101) as f32 * 1e-3 - 0.05 + 0.1 * p)
        .collect()
}

fn run(opt: &mut Optimizer, params: &mut [f32], steps: std::ops::Range<u64>) {
    for t in steps {
        let g = grads(t, params);
        opt.step(params, &g).unwrap();
    }
}

fn f32s_to_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_to_f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// The second process: loads each optimizer's state and parameters from `dir`, takes the
/// remaining steps, and writes the parameters back.
fn resume(dir: &Path) {
    for (name, cfg) in configs() {
        let state: OptimizerState =
            serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.state.json"))).unwrap())
                .unwrap();
        let mut params = bytes_to_f32s(&std::fs::read(dir.join(format!("{name}.params"))).unwrap());
        let mut opt = Optimizer::new(cfg, &specs()).unwrap();
        opt.load_state(&state).unwrap();
        run(&mut opt, &mut params, 7..15);
        std::fs::write(dir.join(format!("{name}.resumed")), f32s_to_bytes(&params)).unwrap();
    }
}

#[test]
fn a_saved_state_continues_bit_identically_in_a_fresh_process() {
    if let Some(dir) = std::env::var_os("DESCENT_RESUME_DIR") {
        return resume(Path::new(&dir));
    }
    let dir = tempfile::tempdir().unwrap();
    let n: usize = specs().iter().map(ParamSpec::len).sum();
    let mut expected = Vec::new();
    for (name, cfg) in configs() {
        let mut opt = Optimizer::new(cfg, &specs()).unwrap();
        let mut params: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.05 - 0.3).collect();
        run(&mut opt, &mut params, 0..7);
        let state = serde_json::to_vec(&opt.state()).unwrap();
        std::fs::write(dir.path().join(format!("{name}.state.json")), state).unwrap();
        std::fs::write(
            dir.path().join(format!("{name}.params")),
            f32s_to_bytes(&params),
        )
        .unwrap();
        run(&mut opt, &mut params, 7..15);
        expected.push((name, params));
    }
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_saved_state_continues_bit_identically_in_a_fresh_process",
            "--test-threads",
            "1",
        ])
        .env("DESCENT_RESUME_DIR", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "the second process failed: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    for (name, want) in expected {
        let got =
            bytes_to_f32s(&std::fs::read(dir.path().join(format!("{name}.resumed"))).unwrap());
        assert_eq!(got.len(), want.len(), "{name}");
        assert!(
            got.iter()
                .zip(&want)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{name}: the resumed process differs"
        );
    }
}
