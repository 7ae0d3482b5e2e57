//! A small seeded generator (xoshiro256**) so that a study is reproducible without a
//! dependency on the engine or on `rand`.

/// xoshiro256** seeded through splitmix64.
#[derive(Clone, Debug)]
pub struct Rng {
    s: [u64; 4],
}

/// One step of splitmix64: a good 64-bit mix of `x`.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A stable hash of a string (FNV-1a), for seeding by parameter name.
pub(crate) fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Rng {
    /// A generator whose stream depends only on `seed`.
    pub fn new(seed: u64) -> Self {
        let a = mix(seed);
        let b = mix(a);
        let c = mix(b);
        let d = mix(c);
        Rng {
            s: [a, b, c, d | 1],
        }
    }

    /// The generator for one decision of one trial: the same seed, trial and key always give
    /// the same stream, whichever thread or process runs the trial.
    pub fn for_trial(seed: u64, number: u64, key: &str) -> Self {
        Rng::new(mix(seed ^ mix(number.wrapping_add(0x5151)) ^ hash_str(key)))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let out = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        out
    }

    /// Uniform in `[0, 1)` with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform integer in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// An index drawn with probability proportional to `weights` (non-negative, not all 0).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut u = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if u < *w {
                return i;
            }
            u -= w;
        }
        weights.iter().rposition(|w| *w > 0.0).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_depend_on_seed_trial_and_key_only() {
        let a: Vec<u64> = (0..4)
            .map(|_| Rng::for_trial(1, 2, "x").next_u64())
            .collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(
            Rng::for_trial(1, 2, "x").next_u64(),
            Rng::for_trial(1, 3, "x").next_u64()
        );
        assert_ne!(
            Rng::for_trial(1, 2, "x").next_u64(),
            Rng::for_trial(1, 2, "y").next_u64()
        );
        let mut r = Rng::new(7);
        let mut counts = [0usize; 4];
        for _ in 0..40_000 {
            let u = r.unit();
            assert!((0.0..1.0).contains(&u));
            counts[r.weighted(&[1.0, 0.0, 2.0, 1.0])] += 1;
        }
        assert_eq!(counts[1], 0);
        assert!(
            (counts[2] as f64 / 20_000.0 - 1.0).abs() < 0.05,
            "{counts:?}"
        );
    }
}
