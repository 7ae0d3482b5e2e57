//! Augmentation of training pictures, seeded and reproducible: random crops of a padded
//! picture (random shifts), horizontal flips and small rotations. Each example's draw
//! depends only on the seed, the epoch and the example's index, so a resumed run and a
//! run with another batch order see the same pictures.

use descent_tensor::Rng;
use serde::{Deserialize, Serialize};

use crate::DataError;

/// What to do to each training picture (`channels x height x width` values).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Augment {
    /// Pad by this many pixels on every side, then crop back to the picture's size at a
    /// random place (torchvision's `RandomCrop(size, padding)`): shifts of up to this much.
    pub crop_pad: usize,
    /// Mirror left to right with probability 1/2 (`RandomHorizontalFlip`).
    pub flip: bool,
    /// Rotate by an angle drawn uniformly in `[-rotate, rotate]` degrees about the centre,
    /// bilinear (`RandomRotation`).
    pub rotate: f32,
    /// The value of a padded or uncovered pixel in each channel (a black pixel, as the
    /// inputs are normalized).
    pub fill: Vec<f32>,
}

impl Augment {
    /// Whether it changes anything.
    pub fn is_identity(&self) -> bool {
        self.crop_pad == 0 && !self.flip && self.rotate == 0.0
    }

    /// Checks it against pictures of `shape`.
    pub fn check(&self, shape: &[usize]) -> Result<(), DataError> {
        let [c, h, w] = shape else {
            return Err(DataError::Loader(format!(
                "augmentation transforms pictures (channels x height x width); these examples \
                 have shape {shape:?}"
            )));
        };
        if self.fill.len() != *c {
            return Err(DataError::Loader(format!(
                "{} fill values for pictures of {c} channels",
                self.fill.len()
            )));
        }
        if self.crop_pad >= (*h).min(*w) {
            return Err(DataError::Loader(format!(
                "a crop padding of {} is not smaller than the {h}x{w} pictures",
                self.crop_pad
            )));
        }
        if !(self.rotate.is_finite() && (0.0..=180.0).contains(&self.rotate)) {
            return Err(DataError::Loader(format!(
                "rotation by up to {} degrees: give 0 to 180",
                self.rotate
            )));
        }
        Ok(())
    }

    /// The generator of example `index`'s draw in `epoch`.
    pub fn rng(seed: u64, epoch: u64, index: u64) -> Rng {
        Rng::new(
            seed ^ 0xA116_3E47_0000_0000
                ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                ^ index.wrapping_mul(0xC2B2_AE3D_27D4_EB4F),
        )
    }

    /// Transforms one picture of `shape` in place; `scratch` holds a copy (any length).
    pub fn apply(&self, x: &mut [f32], shape: &[usize], rng: &mut Rng, scratch: &mut Vec<f32>) {
        let (dy, dx) = match self.crop_pad {
            0 => (0, 0),
            p => {
                let r = 2 * p as u64 + 1;
                (
                    rng.below(r) as isize - p as isize,
                    rng.below(r) as isize - p as isize,
                )
            }
        };
        let flip = self.flip && rng.below(2) == 1;
        let angle = match self.rotate {
            0.0 => 0.0,
            r => rng.uniform(-r, r).to_radians(),
        };
        self.transform(x, shape, (dy, dx, flip, angle), scratch);
    }

    /// Shifts by `(dy, dx)` pixels, mirrors when `flip`, rotates by `angle` radians.
    fn transform(
        &self,
        x: &mut [f32],
        shape: &[usize],
        (dy, dx, flip, angle): (isize, isize, bool, f32),
        scratch: &mut Vec<f32>,
    ) {
        let (c, h, w) = (shape[0], shape[1], shape[2]);
        if (dy, dx) == (0, 0) && !flip && angle == 0.0 {
            return;
        }
        scratch.clear();
        scratch.extend_from_slice(x);
        let (cos, sin) = (angle.cos(), angle.sin());
        let (cy, cx) = ((h as f32 - 1.0) / 2.0, (w as f32 - 1.0) / 2.0);
        for ch in 0..c {
            let src = &scratch[ch * h * w..(ch + 1) * h * w];
            let fill = self.fill[ch];
            let at = |y: isize, x: isize| {
                if y < 0 || x < 0 || y >= h as isize || x >= w as isize {
                    fill
                } else {
                    src[y as usize * w + x as usize]
                }
            };
            for y in 0..h {
                for xo in 0..w {
                    // Output pixel (y, x) of the crop at (dy, dx) of the flipped picture.
                    let xs = if flip { w - 1 - xo } else { xo };
                    let (sy, sx) = (y as isize + dy, xs as isize + if flip { -dx } else { dx });
                    let v = if angle == 0.0 {
                        at(sy, sx)
                    } else {
                        // Rotate about the centre: sample the source bilinearly.
                        let (ry, rx) = (sy as f32 - cy, sx as f32 - cx);
                        let (fy, fx) = (cos * ry - sin * rx + cy, sin * ry + cos * rx + cx);
                        let (y0, x0) = (fy.floor(), fx.floor());
                        let (ty, tx) = (fy - y0, fx - x0);
                        let (y0, x0) = (y0 as isize, x0 as isize);
                        (1.0 - ty) * ((1.0 - tx) * at(y0, x0) + tx * at(y0, x0 + 1))
                            + ty * ((1.0 - tx) * at(y0 + 1, x0) + tx * at(y0 + 1, x0 + 1))
                    };
                    x[ch * h * w + y * w + xo] = v;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picture() -> Vec<f32> {
        (0..12).map(|v| v as f32).collect() // 1 x 3 x 4
    }

    #[test]
    fn flips_and_shifts_move_pixels_and_fill_the_border() {
        let shape = [1, 3, 4];
        let flip = Augment {
            flip: true,
            fill: vec![-1.0],
            ..Default::default()
        };
        // Over seeds, a flip happens about half the time and is an exact mirror.
        let (mut flipped, mut scratch) = (0, Vec::new());
        for i in 0..200 {
            let mut x = picture();
            flip.apply(&mut x, &shape, &mut Augment::rng(7, 1, i), &mut scratch);
            if x != picture() {
                flipped += 1;
                assert_eq!(&x[..4], &[3.0, 2.0, 1.0, 0.0]);
            }
        }
        assert!((70..130).contains(&flipped), "{flipped}");
        let crop = Augment {
            crop_pad: 1,
            fill: vec![-1.0],
            ..Default::default()
        };
        let mut seen = std::collections::HashSet::new();
        for i in 0..300 {
            let mut x = picture();
            crop.apply(&mut x, &shape, &mut Augment::rng(1, 1, i), &mut scratch);
            // Every output pixel is the fill or a source pixel shifted by the same offset.
            let src: Vec<(usize, f32)> = x
                .iter()
                .copied()
                .enumerate()
                .filter(|p| p.1 >= 0.0)
                .collect();
            let (o, v) = src[0];
            let shift = v as isize - o as isize;
            assert!(
                src.iter().all(|&(o, v)| v as isize - o as isize == shift),
                "{x:?}"
            );
            seen.insert(shift);
        }
        // Shifts of -1, 0, 1 rows and columns: 9 offsets in all (rows move by 4).
        assert_eq!(seen.len(), 9, "{seen:?}");
        // The same seed, epoch and index draw the same picture.
        let (mut a, mut b) = (picture(), picture());
        crop.apply(&mut a, &shape, &mut Augment::rng(3, 2, 5), &mut scratch);
        crop.apply(&mut b, &shape, &mut Augment::rng(3, 2, 5), &mut scratch);
        assert_eq!(a, b);
    }

    #[test]
    fn a_half_turn_is_a_point_reflection_and_bad_settings_are_refused() {
        let shape = [1, 3, 4];
        let rot = Augment {
            rotate: 180.0,
            fill: vec![0.0],
            ..Default::default()
        };
        let mut scratch = Vec::new();
        let mut x = picture();
        rot.transform(
            &mut x,
            &shape,
            (0, 0, false, std::f32::consts::PI),
            &mut scratch,
        );
        let want: Vec<f32> = picture().into_iter().rev().collect();
        assert!(
            x.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-4),
            "{x:?}"
        );
        // A quarter turn of a square picture: the source's columns become rows.
        let sq: Vec<f32> = (0..9).map(|v| v as f32).collect();
        let mut x = sq.clone();
        rot.transform(
            &mut x,
            &[1, 3, 3],
            (0, 0, false, std::f32::consts::FRAC_PI_2),
            &mut scratch,
        );
        let mut y = sq.clone();
        rot.transform(
            &mut y,
            &[1, 3, 3],
            (0, 0, false, -std::f32::consts::FRAC_PI_2),
            &mut scratch,
        );
        rot.transform(
            &mut y,
            &[1, 3, 3],
            (0, 0, false, std::f32::consts::FRAC_PI_2),
            &mut scratch,
        );
        assert!(
            y.iter().zip(&sq).all(|(a, b)| (a - b).abs() < 1e-4),
            "{y:?}"
        );
        assert!((x[4] - 4.0).abs() < 1e-4 && x != sq, "{x:?}");
        let mut sorted = x.clone();
        sorted.sort_by(f32::total_cmp);
        assert!(
            sorted.iter().zip(&sq).all(|(a, b)| (a - b).abs() < 1e-4),
            "{x:?}"
        );
        let bad = Augment {
            crop_pad: 3,
            fill: vec![0.0],
            ..Default::default()
        };
        assert!(bad.check(&shape).is_err());
        assert!(Augment::default().check(&[5]).is_err());
        assert!(rot.check(&shape).is_ok());
    }
}
