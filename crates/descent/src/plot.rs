//! Line charts as SVG and PNG, with labelled axes, ticks and a legend: the curves of
//! `descent report` and `descent compare`.
//!
//! One drawing routine renders onto either target. SVG leaves text to the viewer; PNG draws
//! it with the public-domain 8x8 bitmap font (`font8x8`), so no system fonts are needed.
//! (`plotters`, the usual crate, needs a system font library for bitmap text.)

use std::fmt::Write as _;

/// One named curve.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

/// A chart of several curves on shared axes.
pub struct Chart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    /// Fixed axis ranges (else fitted to the data).
    pub x_range: Option<(f64, f64)>,
    pub y_range: Option<(f64, f64)>,
    /// Thin grey lines drawn under the curves (contour lines), in data coordinates.
    pub background: Vec<Vec<(f64, f64)>>,
    /// Sets of lines or markers sharing one colour and one legend entry (many trials).
    pub groups: Vec<Group>,
    /// Names for the x ticks at 0, 1, 2, ... (parallel coordinates), instead of numbers.
    pub x_names: Option<Vec<String>>,
}

/// Lines (or markers) drawn alike under one legend entry.
pub struct Group {
    pub name: String,
    pub lines: Vec<Vec<(f64, f64)>>,
    /// Draw each point as a small cross instead of joining them.
    pub markers: bool,
    /// Line width in pixels.
    pub width: f64,
    /// An RGB colour (`None`: the next palette colour).
    pub rgb: Option<(u8, u8, u8)>,
}

impl Group {
    /// Lines `width` pixels wide.
    pub fn lines(
        name: impl Into<String>,
        lines: Vec<Vec<(f64, f64)>>,
        width: f64,
        rgb: Option<(u8, u8, u8)>,
    ) -> Self {
        Group {
            name: name.into(),
            lines,
            markers: false,
            width,
            rgb,
        }
    }

    /// A cross at each point.
    pub fn markers(name: impl Into<String>, points: Vec<(f64, f64)>, rgb: (u8, u8, u8)) -> Self {
        Group {
            name: name.into(),
            lines: vec![points],
            markers: true,
            width: 1.5,
            rgb: Some(rgb),
        }
    }
}

impl Chart {
    /// A chart of `series` with axes fitted to them.
    pub fn lines(title: impl Into<String>, x: &str, y: &str, series: Vec<Series>) -> Self {
        Self {
            title: title.into(),
            x_label: x.into(),
            y_label: y.into(),
            series,
            x_range: None,
            y_range: None,
            background: Vec::new(),
            groups: Vec::new(),
            x_names: None,
        }
    }
}

/// Tableau's ten colours: distinguishable, also in grey.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

const W: f64 = 800.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 210.0;
const TOP: f64 = 45.0;
const BOTTOM: f64 = 60.0;

#[derive(Clone, Copy, PartialEq)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// What the chart is drawn with.
trait Canvas {
    fn line(&mut self, pts: &[(f64, f64)], rgb: (u8, u8, u8), width: f64);
    fn text(&mut self, x: f64, y: f64, s: &str, anchor: Anchor, vertical: bool);
}

/// Round tick positions covering [lo, hi]: steps of 1, 2 or 5 times a power of ten.
fn ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = (hi - lo).max(1e-12);
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 7.0)
        .unwrap_or(10.0 * mag);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

fn label(v: f64) -> String {
    if v != 0.0 && (v.abs() < 1e-3 || v.abs() >= 1e5) {
        format!("{v:.0e}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

impl Chart {
    fn draw(&self, c: &mut dyn Canvas) {
        let pts = self
            .series
            .iter()
            .flat_map(|s| s.points.iter())
            .chain(self.groups.iter().flat_map(|g| g.lines.iter().flatten()));
        let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in pts.filter(|p| p.0.is_finite() && p.1.is_finite()) {
            (x0, x1, y0, y1) = (x0.min(x), x1.max(x), y0.min(y), y1.max(y));
        }
        if x0 > x1 {
            (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
        }
        if x1 - x0 < 1e-12 {
            (x0, x1) = (x0 - 0.5, x1 + 0.5);
        }
        let pad = ((y1 - y0) * 0.05).max(1e-9);
        (y0, y1) = (y0 - pad, y1 + pad);
        if let Some(r) = self.x_range {
            (x0, x1) = r;
        }
        if let Some(r) = self.y_range {
            (y0, y1) = r;
        }
        let (pw, ph) = (W - LEFT - RIGHT, H - TOP - BOTTOM);
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * pw;
        let sy = |y: f64| TOP + ph - (y - y0) / (y1 - y0) * ph;
        let grey = (200, 200, 200);
        let black = (0, 0, 0);
        // Whole-number data (epochs) gets whole-number ticks.
        let whole = self
            .series
            .iter()
            .flat_map(|s| &s.points)
            .all(|p| p.0.fract() == 0.0);
        match &self.x_names {
            Some(names) => {
                for (i, n) in names.iter().enumerate() {
                    let t = i as f64;
                    c.line(&[(sx(t), TOP), (sx(t), TOP + ph)], grey, 1.0);
                    let y = TOP + ph + 14.0 + 12.0 * (i % 2) as f64;
                    c.text(sx(t), y, n, Anchor::Middle, false);
                }
            }
            None => {
                for t in ticks(x0, x1)
                    .into_iter()
                    .filter(|t| !whole || t.fract() == 0.0)
                {
                    c.line(&[(sx(t), TOP), (sx(t), TOP + ph)], grey, 1.0);
                    c.text(sx(t), TOP + ph + 18.0, &label(t), Anchor::Middle, false);
                }
            }
        }
        for t in ticks(y0, y1) {
            c.line(&[(LEFT, sy(t)), (LEFT + pw, sy(t))], grey, 1.0);
            c.text(LEFT - 8.0, sy(t) + 4.0, &label(t), Anchor::End, false);
        }
        c.line(
            &[
                (LEFT, TOP),
                (LEFT, TOP + ph),
                (LEFT + pw, TOP + ph),
                (LEFT + pw, TOP),
                (LEFT, TOP),
            ],
            black,
            1.5,
        );
        let inside = |&(x, y): &(f64, f64)| x >= x0 && x <= x1 && y >= y0 && y <= y1;
        for line in &self.background {
            let pts: Vec<(f64, f64)> = line
                .iter()
                .filter(|p| inside(p))
                .map(|&(x, y)| (sx(x), sy(y)))
                .collect();
            c.line(&pts, (170, 170, 170), 1.0);
        }
        c.text(LEFT + pw / 2.0, 25.0, &self.title, Anchor::Middle, false);
        c.text(
            LEFT + pw / 2.0,
            H - 15.0,
            &self.x_label,
            Anchor::Middle,
            false,
        );
        c.text(22.0, TOP + ph / 2.0, &self.y_label, Anchor::Middle, true);
        let mut legend = 0usize;
        for g in &self.groups {
            let rgb = g.rgb.unwrap_or(PALETTE[legend % PALETTE.len()]);
            for line in &g.lines {
                let pts: Vec<(f64, f64)> = line
                    .iter()
                    .filter(|p| p.0.is_finite() && p.1.is_finite() && inside(p))
                    .map(|&(x, y)| (sx(x), sy(y)))
                    .collect();
                if g.markers || pts.len() == 1 {
                    for &(x, y) in &pts {
                        c.line(&[(x - 3.0, y - 3.0), (x + 3.0, y + 3.0)], rgb, g.width);
                        c.line(&[(x - 3.0, y + 3.0), (x + 3.0, y - 3.0)], rgb, g.width);
                    }
                } else {
                    c.line(&pts, rgb, g.width);
                }
            }
            let ly = TOP + 10.0 + 22.0 * legend as f64;
            let lx = LEFT + pw + 15.0;
            c.line(&[(lx, ly), (lx + 25.0, ly)], rgb, 4.0);
            c.text(lx + 32.0, ly + 4.0, &g.name, Anchor::Start, false);
            legend += 1;
        }
        for (j, s) in self.series.iter().enumerate() {
            let i = legend + j;
            let rgb = PALETTE[i % PALETTE.len()];
            let path: Vec<(f64, f64)> = s
                .points
                .iter()
                .filter(|p| p.0.is_finite() && p.1.is_finite())
                .take_while(|p| self.x_range.is_none() || inside(p))
                .map(|&(x, y)| (sx(x), sy(y)))
                .collect();
            c.line(&path, rgb, 2.5);
            // Legend: a swatch and the name.
            let ly = TOP + 10.0 + 22.0 * i as f64;
            let lx = LEFT + pw + 15.0;
            c.line(&[(lx, ly), (lx + 25.0, ly)], rgb, 4.0);
            c.text(lx + 32.0, ly + 4.0, &s.name, Anchor::Start, false);
        }
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> String {
        let mut svg = Svg(String::new());
        let _ = write!(
            svg.0,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="13"><rect width="100%" height="100%" fill="white"/>"#
        );
        self.draw(&mut svg);
        svg.0.push_str("</svg>\n");
        svg.0
    }

    /// The chart as a PNG image.
    pub fn png(&self) -> Vec<u8> {
        let mut img = Raster {
            w: W as usize,
            h: H as usize,
            rgb: vec![255; (W * H) as usize * 3],
        };
        self.draw(&mut img);
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, img.w as u32, img.h as u32);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().expect("writing to memory");
        writer
            .write_image_data(&img.rgb)
            .expect("writing to memory");
        drop(writer);
        out
    }
}

struct Svg(String);

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

impl Canvas for Svg {
    fn line(&mut self, pts: &[(f64, f64)], (r, g, b): (u8, u8, u8), width: f64) {
        if pts.len() < 2 {
            return;
        }
        let d: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
        let _ = write!(
            self.0,
            r#"<polyline fill="none" stroke="rgb({r},{g},{b})" stroke-width="{width}" stroke-linejoin="round" points="{}"/>"#,
            d.join(" ")
        );
    }

    fn text(&mut self, x: f64, y: f64, s: &str, anchor: Anchor, vertical: bool) {
        let a = match anchor {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        };
        let rot = if vertical {
            format!(r#" transform="rotate(-90 {x:.1} {y:.1})""#)
        } else {
            String::new()
        };
        let _ = write!(
            self.0,
            r#"<text x="{x:.1}" y="{y:.1}" text-anchor="{a}"{rot}>{}</text>"#,
            escape(s)
        );
    }
}

struct Raster {
    w: usize,
    h: usize,
    rgb: Vec<u8>,
}

impl Raster {
    fn dot(&mut self, x: f64, y: f64, r: f64, rgb: (u8, u8, u8)) {
        let (xi0, xi1) = ((x - r).floor() as i64, (x + r).ceil() as i64);
        let (yi0, yi1) = ((y - r).floor() as i64, (y + r).ceil() as i64);
        for yi in yi0..=yi1 {
            for xi in xi0..=xi1 {
                let (dx, dy) = (xi as f64 - x, yi as f64 - y);
                if dx * dx + dy * dy <= r * r && xi >= 0 && yi >= 0 {
                    self.set(xi as usize, yi as usize, rgb);
                }
            }
        }
    }

    fn set(&mut self, x: usize, y: usize, (r, g, b): (u8, u8, u8)) {
        if x < self.w && y < self.h {
            let i = 3 * (y * self.w + x);
            self.rgb[i..i + 3].copy_from_slice(&[r, g, b]);
        }
    }
}

impl Canvas for Raster {
    fn line(&mut self, pts: &[(f64, f64)], rgb: (u8, u8, u8), width: f64) {
        let r = (width / 2.0).max(0.5);
        for seg in pts.windows(2) {
            let ((xa, ya), (xb, yb)) = (seg[0], seg[1]);
            let n = ((xb - xa).abs().max((yb - ya).abs()) * 2.0).ceil().max(1.0) as usize;
            for k in 0..=n {
                let t = k as f64 / n as f64;
                self.dot(xa + (xb - xa) * t, ya + (yb - ya) * t, r, rgb);
            }
        }
        if pts.len() == 1 {
            self.dot(pts[0].0, pts[0].1, r * 1.5, rgb);
        }
    }

    fn text(&mut self, x: f64, y: f64, s: &str, anchor: Anchor, vertical: bool) {
        // 8x8 glyphs drawn at 8x8 (each glyph cell 8 px; letters are ~7 px wide).
        let len = 8.0 * s.chars().count() as f64;
        let start = match anchor {
            Anchor::Start => 0.0,
            Anchor::Middle => -len / 2.0,
            Anchor::End => -len,
        };
        for (i, ch) in s.chars().enumerate() {
            let glyph = font8x8::legacy::BASIC_LEGACY[(ch as usize).min(127)];
            for (row, bits) in glyph.iter().enumerate() {
                for col in 0..8 {
                    if bits & (1 << col) != 0 {
                        let (u, v) = (start + 8.0 * i as f64 + col as f64, row as f64 - 7.0);
                        let (px, py) = if vertical {
                            (x + v, y - u)
                        } else {
                            (x + u, y + v)
                        };
                        if px >= 0.0 && py >= 0.0 {
                            self.set(px as usize, py as usize, (0, 0, 0));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart() -> Chart {
        Chart::lines(
            "validation accuracy",
            "epoch",
            "accuracy (%)",
            vec![
                Series {
                    name: "sgd".into(),
                    points: vec![(1.0, 91.0), (2.0, 93.0), (3.0, 94.5)],
                },
                Series {
                    name: "adam <lr>".into(),
                    points: vec![(1.0, 96.0), (2.0, 97.2), (3.0, f64::NAN)],
                },
            ],
        )
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(91.3, 97.9);
        assert!(t.len() >= 3 && t[0] >= 91.3 && *t.last().unwrap() <= 97.9);
        assert_eq!(label(0.00001), "1e-5");
        assert_eq!(label(92.5), "92.5");
    }

    #[test]
    fn svg_has_the_labels_legend_and_curves() {
        let s = chart().svg();
        for want in [
            "validation accuracy",
            "epoch",
            "accuracy (%)",
            ">sgd<",
            "adam &lt;lr&gt;",
        ] {
            assert!(s.contains(want), "{want} missing");
        }
        assert!(s.matches("<polyline").count() >= 2 + 2);
    }

    #[test]
    fn png_is_a_png_with_coloured_curves() {
        let p = chart().png();
        assert_eq!(&p[1..4], b"PNG");
        let mut dec = png::Decoder::new(std::io::Cursor::new(&p))
            .read_info()
            .unwrap();
        let mut buf = vec![0; dec.output_buffer_size().unwrap()];
        dec.next_frame(&mut buf).unwrap();
        // The first series' colour is on the image.
        let (r, g, b) = PALETTE[0];
        assert!(buf.chunks(3).any(|px| px == [r, g, b]));
        assert!(buf.chunks(3).any(|px| px == [0, 0, 0]), "text and axes");
    }
}
