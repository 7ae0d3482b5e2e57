//! What the drawing needs to know before it draws: text widths in the embedded font, axis
//! scales and their tick positions and labels.

use std::sync::OnceLock;

use skrifa::instance::{LocationRef, Size};
use skrifa::{FontRef, MetadataProvider};

use crate::Scale;

/// The font every chart is drawn in, named in the SVG.
pub const FONT: &str = "DejaVu Sans";

fn font_bytes() -> &'static [u8] {
    dejavu::sans::regular()
}

/// resvg's options with the embedded font as the only font (no system fonts are read).
pub(crate) fn options() -> &'static resvg::usvg::Options<'static> {
    static OPTIONS: OnceLock<resvg::usvg::Options<'static>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut o = resvg::usvg::Options {
            font_family: FONT.to_string(),
            ..Default::default()
        };
        o.fontdb_mut().load_font_data(font_bytes().to_vec());
        o
    })
}

/// The width in pixels of `text` set in the charts' font at `size` pixels (advance widths;
/// no kerning).
pub fn text_width(text: &str, size: f64) -> f64 {
    static WIDTHS: OnceLock<Option<Vec<f32>>> = OnceLock::new();
    // Advances of the first 256 code points at 1000 units per pixel size; the rest looked up.
    let font = FontRef::new(font_bytes()).ok();
    let table = WIDTHS.get_or_init(|| {
        let font = font.as_ref()?;
        let (map, m) = (
            font.charmap(),
            font.glyph_metrics(Size::new(1000.0), LocationRef::default()),
        );
        Some(
            (0u32..256)
                .map(|c| {
                    char::from_u32(c)
                        .and_then(|c| map.map(c))
                        .and_then(|g| m.advance_width(g))
                        .unwrap_or(600.0)
                })
                .collect(),
        )
    });
    let Some(table) = table else {
        return 0.6 * size * text.chars().count() as f64;
    };
    let per_px: f64 = text
        .chars()
        .map(|c| match table.get(c as usize) {
            Some(w) => f64::from(*w),
            None => font
                .as_ref()
                .and_then(|f| {
                    let g = f.charmap().map(c)?;
                    f.glyph_metrics(Size::new(1000.0), LocationRef::default())
                        .advance_width(g)
                })
                .map_or(600.0, f64::from),
        })
        .sum();
    per_px / 1000.0 * size
}

/// A fitted axis: where values go (0 at the low end, 1 at the high end) and its ticks.
#[derive(Clone, Debug)]
pub(crate) struct Mapped {
    pub lo: f64,
    pub hi: f64,
    pub log: bool,
}

impl Mapped {
    /// Fits `values` (non-finite ones, and non-positive ones on a log axis, left out).
    pub fn fit(values: &[f64], scale: Scale, range: Option<(f64, f64)>, pad: f64) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let positive = !finite.is_empty() && finite.iter().all(|&v| v > 0.0);
        let (mut lo, mut hi) = finite
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let log = match scale {
            Scale::Linear => false,
            Scale::Log => true,
            Scale::Auto => positive && hi / lo >= 10.0,
        };
        if log {
            let pos: Vec<f64> = finite.iter().copied().filter(|&v| v > 0.0).collect();
            (lo, hi) = pos
                .iter()
                .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
            if pos.is_empty() {
                (lo, hi) = (1.0, 10.0);
            }
            if let Some((a, b)) = range.filter(|r| r.0 > 0.0 && r.1 > r.0) {
                return Mapped { lo: a, hi: b, log };
            }
            let (a, b) = (lo.log10(), hi.log10());
            let (a, b) = if b - a < 1e-9 {
                (a - 0.5, b + 0.5)
            } else {
                (a, b)
            };
            let p = (b - a) * pad;
            return Mapped {
                lo: 10f64.powf(a - p),
                hi: 10f64.powf(b + p),
                log,
            };
        }
        if let Some((a, b)) = range.filter(|r| r.1 > r.0) {
            return Mapped { lo: a, hi: b, log };
        }
        if finite.is_empty() {
            (lo, hi) = (0.0, 1.0);
        } else if hi - lo < 1e-12 * lo.abs().max(1.0) {
            // One value: a unit around it (an integer in the middle of two ticks' span).
            (lo, hi) = (lo - 1.0, hi + 1.0);
        }
        let p = (hi - lo) * pad;
        Mapped {
            lo: lo - p,
            hi: hi + p,
            log,
        }
    }

    /// Where `v` falls: 0 at `lo`, 1 at `hi` (non-finite where it cannot be placed).
    pub fn unit(&self, v: f64) -> f64 {
        if self.log {
            if v <= 0.0 {
                return f64::NAN;
            }
            (v.log10() - self.lo.log10()) / (self.hi.log10() - self.lo.log10())
        } else {
            (v - self.lo) / (self.hi - self.lo)
        }
    }

    /// Tick positions and their labels, at most one per `room(label)` of `length` pixels:
    /// `room` is the space one label needs along the axis.
    pub fn ticks(
        &self,
        length: f64,
        whole: bool,
        room: &dyn Fn(&str) -> f64,
    ) -> Vec<(f64, String)> {
        if self.log {
            return self.log_ticks(length, room);
        }
        let span = self.hi - self.lo;
        let mut step = 10f64.powf((span / 12.0).log10().floor());
        for _ in 0..40 {
            for m in [1.0, 2.0, 2.5, 5.0] {
                let s = step * m;
                if whole && (s < 1.0 || s.fract() != 0.0) {
                    continue;
                }
                let ticks = linear_ticks(self.lo, self.hi, s);
                if fits(&ticks, length, span, self.lo, room) {
                    return ticks;
                }
            }
            step *= 10.0;
        }
        Vec::new()
    }

    fn log_ticks(&self, length: f64, room: &dyn Fn(&str) -> f64) -> Vec<(f64, String)> {
        let (a, b) = (self.lo.log10(), self.hi.log10());
        // Plain numbers where every tick is short that way, else all with exponents.
        let plain = a.floor() >= -3.0 && b.ceil() <= 5.0;
        let log_label = |m: f64, k: i32| log_label(m, k, plain);
        let decades: Vec<i32> = ((a.ceil() as i32)..=(b.floor() as i32)).collect();
        let within = |v: f64| v >= self.lo * (1.0 - 1e-9) && v <= self.hi * (1.0 + 1e-9);
        let unit = |t: &[(f64, String)]| -> Vec<(f64, String)> {
            t.iter().map(|(v, l)| (self.unit(*v), l.clone())).collect()
        };
        // Under three decades, 2x and 5x ticks as well; else every decade, or every k-th.
        if decades.len() < 3 {
            let mut t = Vec::new();
            for k in (a.floor() as i32)..=(b.ceil() as i32) {
                for m in [1.0, 2.0, 5.0] {
                    let v = m * 10f64.powi(k);
                    if within(v) {
                        t.push((v, log_label(m, k)));
                    }
                }
            }
            let u = unit(&t);
            if fits_units(&u, length, room) {
                return t;
            }
        }
        for every in 1..=decades.len().max(1) {
            let t: Vec<(f64, String)> = decades
                .iter()
                .filter(|k| k.rem_euclid(every as i32) == 0)
                .map(|&k| (10f64.powi(k), log_label(1.0, k)))
                .collect();
            if fits_units(&unit(&t), length, room) {
                return t;
            }
        }
        Vec::new()
    }
}

fn linear_ticks(lo: f64, hi: f64, step: f64) -> Vec<(f64, String)> {
    let decimals = decimals_of(step);
    let mut out = Vec::new();
    let mut k = (lo / step - 1e-9).ceil();
    while k * step <= hi + step * 1e-9 {
        let v = k * step;
        let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
        out.push((v, number_label(v, decimals)));
        k += 1.0;
        if out.len() > 1000 {
            break;
        }
    }
    out
}

fn fits(
    ticks: &[(f64, String)],
    length: f64,
    span: f64,
    lo: f64,
    room: &dyn Fn(&str) -> f64,
) -> bool {
    let u: Vec<(f64, String)> = ticks
        .iter()
        .map(|(v, l)| ((v - lo) / span, l.clone()))
        .collect();
    fits_units(&u, length, room)
}

/// Whether labels at these unit positions along `length` pixels leave each its room.
fn fits_units(ticks: &[(f64, String)], length: f64, room: &dyn Fn(&str) -> f64) -> bool {
    ticks.len() <= 15
        && ticks.windows(2).all(|w| {
            let gap = (w[1].0 - w[0].0) * length;
            gap >= (room(&w[0].1) + room(&w[1].1)) / 2.0
        })
}

/// The decimals a tick step needs: 0.25 needs 2, 5 needs none.
fn decimals_of(step: f64) -> usize {
    (0..10)
        .find(|&d| {
            let s = step * 10f64.powi(d as i32);
            (s - s.round()).abs() < 1e-6 * s.max(1.0)
        })
        .unwrap_or(10)
}

/// A tick's number: fixed with the step's decimals, or with an exponent where that is long.
pub(crate) fn number_label(v: f64, decimals: usize) -> String {
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-4) {
        let s = format!("{v:e}");
        return s.replace("e0", "").replace(".0e", "e");
    }
    format!("{v:.decimals$}")
}

fn log_label(m: f64, k: i32, plain: bool) -> String {
    if plain {
        let v = m * 10f64.powi(k);
        let d = (-k).max(0) as usize;
        format!("{v:.d$}")
    } else if m == 1.0 {
        format!("1e{k}")
    } else {
        format!("{m}e{k}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(s: &str) -> f64 {
        text_width(s, 12.0) + 10.0
    }

    fn labels(t: &[(f64, String)]) -> Vec<&str> {
        t.iter().map(|(_, l)| l.as_str()).collect()
    }

    #[test]
    fn the_embedded_font_measures_text() {
        let (i, m) = (text_width("i", 12.0), text_width("M", 12.0));
        assert!(i > 2.0 && m > 2.0 * i, "i {i}, M {m}");
        assert!((text_width("MM", 24.0) - 4.0 * m).abs() < 1e-6);
        assert!(text_width("é", 12.0) > 0.0 && text_width("学", 12.0) > 0.0);
    }

    #[test]
    fn two_epochs_get_two_ticks() {
        // `report` after 2 epochs showed one x tick.
        let m = Mapped::fit(&[1.0, 2.0], Scale::Linear, None, 0.03);
        let t = m.ticks(560.0, true, &room);
        assert_eq!(labels(&t), ["1", "2"]);
        let one = Mapped::fit(&[1.0], Scale::Linear, None, 0.03);
        assert!(labels(&one.ticks(560.0, true, &room)).contains(&"1"));
    }

    #[test]
    fn ticks_are_round_and_never_collide() {
        for (lo, hi, len) in [
            (0.0, 1.0, 560.0),
            (91.3, 97.9, 380.0),
            (0.0, 18760.0, 560.0),
            (-3.0, 1e-4, 200.0),
            (0.0, 1e7, 300.0),
        ] {
            let m = Mapped::fit(&[lo, hi], Scale::Linear, None, 0.0);
            let t = m.ticks(len, false, &room);
            assert!(t.len() >= 2, "{lo}..{hi}: {t:?}");
            for w in t.windows(2) {
                let gap = (m.unit(w[1].0) - m.unit(w[0].0)) * len;
                assert!(
                    gap >= (room(&w[0].1) + room(&w[1].1)) / 2.0,
                    "{t:?} collide"
                );
            }
        }
        let t = Mapped::fit(&[0.0, 1.0], Scale::Linear, None, 0.0).ticks(560.0, false, &room);
        assert_eq!(
            labels(&t),
            ["0.0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9", "1.0"]
        );
    }

    #[test]
    fn decades_get_a_log_axis_with_decade_ticks() {
        let m = Mapped::fit(&[1e-4, 3e-3, 0.3], Scale::Auto, None, 0.0);
        assert!(m.log);
        let t = m.ticks(380.0, false, &room);
        assert_eq!(labels(&t), ["1e-4", "1e-3", "1e-2", "1e-1"]);
        assert_eq!(t.first().unwrap().0, 1e-4);
        assert!(
            !Mapped::fit(&[1.0, 8.0], Scale::Auto, None, 0.0).log,
            "under a decade"
        );
        assert!(
            !Mapped::fit(&[-1.0, 500.0], Scale::Auto, None, 0.0).log,
            "a value <= 0"
        );
        let narrow = Mapped::fit(&[0.02, 0.5], Scale::Log, None, 0.0).ticks(380.0, false, &room);
        assert_eq!(labels(&narrow), ["0.02", "0.05", "0.1", "0.2", "0.5"]);
    }
}
