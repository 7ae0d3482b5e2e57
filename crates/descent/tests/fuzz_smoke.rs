//! The fuzz targets of `fuzz/` on stable: every corpus file, then seeded mutations of each
//! (bit flips, extreme bytes, truncations, repeats, insertions), through every reader of
//! outside bytes. None may panic. `cargo +nightly fuzz run NAME` runs the same targets under
//! libFuzzer for millions of executions (docs/robustness.md); this is the seconds-long smoke.
//! `DESCENT_FUZZ_SMOKE_RUNS` sets the mutations per corpus file (default 200).

#[path = "../../../fuzz/src/lib.rs"]
mod targets;

use std::path::Path;

/// A small seeded generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// One mutation of `seed`, of the kinds libFuzzer starts with.
fn mutate(seed: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut d = seed.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(d.len());
        match rng.below(6) {
            0 if !d.is_empty() => d[at] ^= 1 << rng.below(8),
            1 if !d.is_empty() => d[at] = [0, 0xff, 0x7f, 0x80, b'9', b','][rng.below(6)],
            2 => d.truncate(at),
            3 if !d.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(d.len());
                let piece = d[at..end].to_vec();
                d.splice(at..at, piece);
            }
            4 => {
                let n = rng.below(8) + 1;
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                d.splice(at.min(d.len())..at.min(d.len()), bytes);
            }
            _ if d.len() >= 4 => {
                // A 32-bit field set to an extreme: sizes and counts in headers.
                let at = at.min(d.len() - 4);
                let v = [0u32, 1, u32::MAX, 0x7fff_ffff, 1 << 20][rng.below(5)];
                d[at..at + 4].copy_from_slice(&v.to_be_bytes());
            }
            _ => {}
        }
    }
    d
}

#[test]
fn every_reader_survives_its_corpus_and_mutations_of_it() {
    let runs: usize = std::env::var("DESCENT_FUZZ_SMOKE_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    for (name, target) in targets::TARGETS {
        let dir = corpus.join(name);
        let mut seeds: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
            .collect();
        seeds.sort();
        assert!(!seeds.is_empty(), "no corpus for {name}");
        target(&[]);
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for (path, seed) in &seeds {
            target(seed);
            for i in 0..runs {
                let input = mutate(seed, &mut rng);
                let caught = std::panic::catch_unwind(|| target(&input));
                assert!(
                    caught.is_ok(),
                    "{name} panicked on mutation {i} of {path}: {:?}",
                    input
                );
            }
        }
    }
}
