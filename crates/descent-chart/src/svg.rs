//! The drawing: a chart laid out and written as SVG.

use std::fmt::Write as _;

use crate::layout::{text_width, Mapped, FONT};
use crate::{Chart, Dash, Markers, Rgb, Shape, PALETTE};

const TITLE: f64 = 15.0;
const TEXT: f64 = 13.0;
const TICK: f64 = 12.0;
const LEGEND_ROW: f64 = 20.0;
const PLOT_W: f64 = 560.0;
const PLOT_H: f64 = 380.0;
const GRID: &str = "#e6e6e6";
const INK: &str = "#222";
/// Curves with at most this many points get markers under [`Markers::Auto`].
const FEW: usize = 40;

fn rgb((r, g, b): Rgb) -> String {
    format!("#{r:02x}{g:02x}{b:02x}")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn dasharray(d: Dash, width: f64) -> String {
    let w = width.max(1.0);
    match d {
        Dash::Solid => String::new(),
        Dash::Dashed => format!(r#" stroke-dasharray="{:.1} {:.1}""#, 6.0 * w, 3.0 * w),
        Dash::Dotted => format!(
            r#" stroke-dasharray="{:.1} {:.1}" stroke-linecap="round""#,
            0.1,
            2.5 * w
        ),
        Dash::DashDot => format!(
            r#" stroke-dasharray="{:.1} {:.1} {:.1} {:.1}""#,
            6.0 * w,
            2.5 * w,
            1.2 * w,
            2.5 * w
        ),
    }
}

/// A legend entry: what its swatch shows.
enum Swatch {
    Line {
        color: Rgb,
        dash: Dash,
        width: f64,
        marker: bool,
        line: bool,
    },
    Mark(Shape, Rgb),
}

/// One curve's resolved style.
struct Style {
    color: Rgb,
    dash: Dash,
}

/// The styles of `chart`'s curves: the palette's colours in order, then again with the next
/// dash pattern, so that no two unstyled curves look alike (up to 40).
fn styles(chart: &Chart) -> Vec<Style> {
    let mut k = 0;
    chart
        .series
        .iter()
        .map(|s| {
            let auto = k;
            if s.color.is_none() {
                k += 1;
            }
            Style {
                color: s.color.unwrap_or(PALETTE[auto % PALETTE.len()]),
                dash: s
                    .dash
                    .unwrap_or(Dash::ALL[(auto / PALETTE.len()) % Dash::ALL.len()]),
            }
        })
        .collect()
}

fn marker(out: &mut String, shape: Shape, x: f64, y: f64, r: f64, color: Rgb) {
    let c = rgb(color);
    let _ = match shape {
        Shape::Circle => write!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="{c}" stroke="white" stroke-width="1"/>"#
        ),
        Shape::Ring => write!(
            out,
            r#"<circle cx="{x:.1}" cy="{y:.1}" r="{r:.1}" fill="white" stroke="{c}" stroke-width="2"/>"#
        ),
        Shape::Square => write!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{c}" stroke="white" stroke-width="1"/>"#,
            x - r,
            y - r,
            2.0 * r,
            2.0 * r
        ),
        Shape::Diamond => write!(
            out,
            r#"<path d="M{x:.1},{:.1}L{:.1},{y:.1}L{x:.1},{:.1}L{:.1},{y:.1}Z" fill="{c}" stroke="white" stroke-width="1"/>"#,
            y - 1.3 * r,
            x + 1.3 * r,
            y + 1.3 * r,
            x - 1.3 * r
        ),
        Shape::Star => {
            let mut d = String::new();
            for i in 0..10 {
                let a = std::f64::consts::PI * (i as f64 / 5.0 - 0.5);
                let rr = if i % 2 == 0 { 1.6 * r } else { 0.7 * r };
                let _ = write!(
                    d,
                    "{}{:.1},{:.1}",
                    if i == 0 { 'M' } else { 'L' },
                    x + rr * a.cos(),
                    y + rr * a.sin()
                );
            }
            write!(
                out,
                r#"<path d="{d}Z" fill="{c}" stroke="{INK}" stroke-width="0.8"/>"#
            )
        }
        Shape::Cross => write!(
            out,
            r#"<path d="M{:.1},{:.1}L{:.1},{:.1}M{:.1},{:.1}L{:.1},{:.1}" stroke="{c}" stroke-width="2.2" stroke-linecap="round"/>"#,
            x - r,
            y - r,
            x + r,
            y + r,
            x - r,
            y + r,
            x + r,
            y - r
        ),
    };
}

fn text(out: &mut String, x: f64, y: f64, s: &str, size: f64, anchor: &str, extra: &str) {
    let _ = write!(
        out,
        r#"<text x="{x:.1}" y="{y:.1}" font-size="{size}" text-anchor="{anchor}"{extra}>{}</text>"#,
        escape(s)
    );
}

/// A name for the chart's clip path that another chart on the same page does not use.
fn clip_id(chart: &Chart) -> String {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in chart
        .title
        .bytes()
        .chain(chart.x.label.bytes())
        .chain(chart.y.label.bytes())
        .chain((chart.series.len() as u64).to_le_bytes())
    {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    format!("plot-{h:016x}")
}

pub(crate) fn render(chart: &Chart, standalone: bool) -> String {
    render_at(chart, standalone, None)
}

/// The chart's SVG; `at` places it inside a figure (a nested `<svg>` at that x offset).
pub(crate) fn render_at(chart: &Chart, standalone: bool, at: Option<f64>) -> String {
    if !chart.bars.is_empty() {
        return render_bars(chart, standalone, at);
    }
    let styles = styles(chart);
    let finite = |p: &&(f64, f64)| p.0.is_finite() && p.1.is_finite();
    let mut xs: Vec<f64> = Vec::new();
    let mut ys: Vec<f64> = Vec::new();
    for s in &chart.series {
        for p in s.points.iter().filter(finite) {
            xs.push(p.0);
            ys.push(p.1);
        }
    }
    for m in &chart.marks {
        xs.push(m.at.0);
        ys.push(m.at.1);
    }
    let whole_x = xs.iter().all(|x| x.fract() == 0.0);
    let xm = match &chart.x.names {
        Some(n) => Mapped::fit(
            &[],
            crate::Scale::Linear,
            chart.x.range.or(Some((-0.5, n.len() as f64 - 0.5))),
            0.0,
        ),
        None => Mapped::fit(&xs, chart.x.scale, chart.x.range, 0.03),
    };
    let ym = match &chart.y.names {
        Some(n) => Mapped::fit(
            &[],
            crate::Scale::Linear,
            chart.y.range.or(Some((-0.5, n.len() as f64 - 0.5))),
            0.0,
        ),
        None => Mapped::fit(&ys, chart.y.scale, chart.y.range, 0.05),
    };

    // Legend entries: curves, then marks by label (once each).
    let mut legend: Vec<(String, Swatch)> = Vec::new();
    for (s, st) in chart.series.iter().zip(&styles) {
        if s.in_legend {
            let n = s.points.iter().filter(finite).count();
            legend.push((
                s.name.clone(),
                Swatch::Line {
                    color: st.color,
                    dash: st.dash,
                    width: s.width,
                    marker: s.markers != Markers::Never && (n <= FEW || s.markers != Markers::Auto),
                    line: s.markers != Markers::Only,
                },
            ));
        }
    }
    for m in &chart.marks {
        if let Some(l) = &m.label {
            if !legend.iter().any(|(n, _)| n == l) {
                legend.push((l.clone(), Swatch::Mark(m.shape, m.color)));
            }
        }
    }

    // Layout: margins from what they hold.
    let room_x = |s: &str| text_width(s, TICK) + 14.0;
    let room_y = |_: &str| TICK * 1.8;
    // An empty chart has no scale to show: its note says why.
    let scaleless = chart.is_empty() && chart.note.is_some();
    let yticks: Vec<(f64, String)> = match &chart.y.names {
        Some(n) => n
            .iter()
            .enumerate()
            .map(|(i, s)| (i as f64, s.clone()))
            .collect(),
        None if scaleless => Vec::new(),
        None => ym.ticks(PLOT_H, false, &room_y),
    };
    let ytick_w = yticks
        .iter()
        .map(|(_, l)| text_width(l, TICK))
        .fold(0.0, f64::max);
    let left =
        16.0 + if chart.y.label.is_empty() {
            0.0
        } else {
            TEXT + 8.0
        } + ytick_w
            + 8.0;
    let legend_w = legend
        .iter()
        .map(|(n, _)| text_width(n, TICK))
        .fold(0.0, f64::max);
    let right = if legend.is_empty() {
        24.0
    } else {
        24.0 + 40.0 + legend_w + 12.0
    };
    let top = 40.0;
    let ph = PLOT_H.max(legend.len() as f64 * LEGEND_ROW + 10.0);
    let pw = PLOT_W.max(text_width(&chart.title, TITLE) - left - right + 20.0);
    // Categorical names: one row, or two staggered where neighbours would touch.
    let names_rows = match &chart.x.names {
        Some(n) => {
            let gap = pw / (xm.hi - xm.lo);
            let crowded = n
                .windows(2)
                .any(|w| (text_width(&w[0], TICK) + text_width(&w[1], TICK)) / 2.0 + 10.0 > gap);
            if crowded {
                2.0
            } else {
                1.0
            }
        }
        None => 1.0,
    };
    let bottom = bottom_margin(chart, names_rows);
    let (w, h) = ((left + pw + right).ceil(), (top + ph + bottom).ceil());
    let sx = |x: f64| left + xm.unit(x) * pw;
    let sy = |y: f64| top + ph - ym.unit(y) * ph;

    let mut o = String::new();
    open_svg(&mut o, chart, standalone, at, w, h);
    let id = clip_id(chart);
    let _ = write!(
        o,
        r#"<defs><clipPath id="{id}"><rect x="{left:.1}" y="{top:.1}" width="{pw:.1}" height="{ph:.1}"/></clipPath></defs>"#
    );
    // Grid and ticks.
    o.push_str(r#"<g class="axes">"#);
    let mut grid = String::new();
    match &chart.x.names {
        Some(names) => {
            for (i, n) in names.iter().enumerate() {
                let x = sx(i as f64);
                let _ = write!(grid, "M{x:.1},{top:.1}V{:.1}", top + ph);
                let row = if names_rows > 1.0 {
                    (i % 2) as f64
                } else {
                    0.0
                };
                text(
                    &mut o,
                    x,
                    top + ph + 18.0 + row * TICK * 1.4,
                    n,
                    TICK,
                    "middle",
                    "",
                );
            }
        }
        None => {
            let xticks = if scaleless {
                Vec::new()
            } else {
                xm.ticks(pw, whole_x, &room_x)
            };
            for (v, l) in xticks {
                let x = sx(v);
                let _ = write!(grid, "M{x:.1},{top:.1}V{:.1}", top + ph);
                text(&mut o, x, top + ph + 18.0, &l, TICK, "middle", "");
            }
        }
    }
    for (v, l) in &yticks {
        let y = sy(*v);
        let _ = write!(grid, "M{left:.1},{y:.1}H{:.1}", left + pw);
        text(&mut o, left - 8.0, y + TICK * 0.35, l, TICK, "end", "");
    }
    let axis_ink = if chart.x.names.is_some() {
        "#999"
    } else {
        GRID
    };
    let _ = write!(
        o,
        r#"<path d="{grid}" stroke="{axis_ink}" stroke-width="1" fill="none"/>"#
    );
    let _ = write!(
        o,
        r##"<rect x="{left:.1}" y="{top:.1}" width="{pw:.1}" height="{ph:.1}" fill="none" stroke="#888" stroke-width="1"/>"##
    );
    title_and_x_label(&mut o, chart, left + pw / 2.0, h);
    if !chart.y.label.is_empty() {
        let (x, y) = (16.0 + TEXT * 0.8, top + ph / 2.0);
        let rot = format!(r#" transform="rotate(-90 {x:.1} {y:.1})""#);
        text(&mut o, x, y, &chart.y.label, TEXT, "middle", &rot);
    }
    o.push_str("</g>");

    // The data, clipped to the plot.
    let _ = write!(o, r#"<g clip-path="url(#{id})">"#);
    if !chart.background.is_empty() {
        let mut d = String::new();
        for line in &chart.background {
            path_of(&mut d, line.iter().map(|&(x, y)| (sx(x), sy(y))));
        }
        let _ = write!(
            o,
            r##"<path d="{d}" stroke="#b4b4b4" stroke-width="0.8" fill="none"/>"##
        );
    }
    for (s, st) in chart.series.iter().zip(&styles) {
        let pts: Vec<(f64, f64)> = s.points.iter().map(|&(x, y)| (sx(x), sy(y))).collect();
        let n = pts
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .count();
        let _ = write!(
            o,
            r#"<g class="series" data-name="{}" opacity="{}">"#,
            escape(&s.name),
            s.opacity
        );
        if s.markers != Markers::Only {
            let mut d = String::new();
            path_of(&mut d, pts.iter().copied());
            if !d.is_empty() {
                let _ = write!(
                    o,
                    r#"<path d="{d}" stroke="{}" stroke-width="{}" fill="none" stroke-linejoin="round"{}/>"#,
                    rgb(st.color),
                    s.width,
                    dasharray(st.dash, s.width)
                );
            }
        }
        let every = match s.markers {
            Markers::Always | Markers::Only => true,
            Markers::Auto => n <= FEW,
            Markers::Never => false,
        };
        let r = match s.markers {
            Markers::Only => 4.0,
            _ => (s.width * 1.3).clamp(2.5, 4.5),
        };
        for (i, p) in pts.iter().enumerate() {
            let ok = |q: Option<&(f64, f64)>| q.is_some_and(|q| q.0.is_finite() && q.1.is_finite());
            if !ok(Some(p)) {
                continue;
            }
            let alone = !ok(i.checked_sub(1).and_then(|j| pts.get(j))) && !ok(pts.get(i + 1));
            if every || alone {
                let r = if alone { r.max(4.0) } else { r };
                marker(&mut o, crate::Shape::Circle, p.0, p.1, r, st.color);
            }
        }
        o.push_str("</g>");
    }
    for m in &chart.marks {
        let (x, y) = (sx(m.at.0), sy(m.at.1));
        if x.is_finite() && y.is_finite() {
            marker(&mut o, m.shape, x, y, 5.0, m.color);
        }
    }
    for l in &chart.labels {
        let (x, y) = (sx(l.at.0), sy(l.at.1));
        if x.is_finite() && y.is_finite() {
            text(
                &mut o,
                x + 5.0,
                y + TICK * 0.35,
                &l.text,
                TICK - 1.0,
                "start",
                r#" class="label""#,
            );
        }
    }
    o.push_str("</g>");
    if let Some(note) = &chart.note {
        draw_note(&mut o, note, left + pw / 2.0, top + ph / 2.0, pw - 40.0);
    }
    draw_legend(&mut o, &legend, left + pw + 24.0, top + 12.0);
    o.push_str("</svg>\n");
    o
}

/// Appends `pts` to the path `d` as lines, breaking at non-finite points.
fn path_of(d: &mut String, pts: impl Iterator<Item = (f64, f64)>) {
    let mut pen = false;
    for (x, y) in pts {
        if !(x.is_finite() && y.is_finite()) {
            pen = false;
            continue;
        }
        // Far outside the plot, coordinates stay finite but are held to a sane size.
        let (x, y) = (x.clamp(-1e5, 1e5), y.clamp(-1e5, 1e5));
        let _ = write!(d, "{}{x:.1},{y:.1}", if pen { 'L' } else { 'M' });
        pen = true;
    }
}

fn draw_legend(o: &mut String, legend: &[(String, Swatch)], x: f64, y0: f64) {
    if legend.is_empty() {
        return;
    }
    o.push_str(r#"<g class="legend">"#);
    for (i, (name, sw)) in legend.iter().enumerate() {
        let y = y0 + LEGEND_ROW * i as f64;
        match *sw {
            Swatch::Line {
                color,
                dash,
                width,
                marker: m,
                line,
            } => {
                if line {
                    let _ = write!(
                        o,
                        r#"<path d="M{x:.1},{y:.1}H{:.1}" stroke="{}" stroke-width="{}"{}/>"#,
                        x + 30.0,
                        rgb(color),
                        width.max(2.0),
                        dasharray(dash, width.max(2.0))
                    );
                }
                if m || !line {
                    marker(o, Shape::Circle, x + 15.0, y, 3.5, color);
                }
            }
            Swatch::Mark(shape, color) => marker(o, shape, x + 15.0, y, 5.0, color),
        }
        text(o, x + 40.0, y + TICK * 0.35, name, TICK, "start", "");
    }
    o.push_str("</g>");
}

fn render_bars(chart: &Chart, standalone: bool, at: Option<f64>) -> String {
    let bars = &chart.bars;
    let name_w = bars
        .iter()
        .map(|b| text_width(&b.name, TICK))
        .fold(0.0, f64::max);
    let end_w = bars
        .iter()
        .map(|b| text_width(&b.text, TICK))
        .fold(0.0, f64::max);
    let hi = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let lo = bars
        .iter()
        .map(|b| b.value)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::min);
    let xm = Mapped::fit(&[lo, hi], crate::Scale::Linear, chart.x.range, 0.0);
    let band = 28.0;
    let (left, top) = (16.0 + name_w + 10.0, 40.0);
    let pw = PLOT_W.max(text_width(&chart.title, TITLE) - left + 20.0);
    let ph = band * bars.len() as f64 + 10.0;
    let right = 16.0 + end_w + 8.0;
    let bottom = bottom_margin(chart, 1.0);
    let (w, h) = ((left + pw + right).ceil(), (top + ph + bottom).ceil());
    let sx = |x: f64| left + xm.unit(x) * pw;
    let mut o = String::new();
    open_svg(&mut o, chart, standalone, at, w, h);
    let mut grid = String::new();
    let room = |s: &str| text_width(s, TICK) + 14.0;
    o.push_str(r#"<g class="axes">"#);
    for (v, l) in xm.ticks(pw, false, &room) {
        let x = sx(v);
        let _ = write!(grid, "M{x:.1},{top:.1}V{:.1}", top + ph);
        text(&mut o, x, top + ph + 18.0, &l, TICK, "middle", "");
    }
    let _ = write!(
        o,
        r#"<path d="{grid}" stroke="{GRID}" stroke-width="1" fill="none"/>"#
    );
    title_and_x_label(&mut o, chart, left + pw / 2.0, h);
    o.push_str("</g>");
    for (i, b) in bars.iter().enumerate() {
        let yc = top + 5.0 + band * (i as f64 + 0.5);
        let v = if b.value.is_finite() { b.value } else { 0.0 };
        let (x0, x1) = (sx(0.0), sx(v));
        let color = PALETTE[i % PALETTE.len()];
        let _ = write!(
            o,
            r#"<rect class="bar" data-name="{}" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{}"/>"#,
            escape(&b.name),
            x0.min(x1),
            yc - band * 0.32,
            (x1 - x0).abs(),
            band * 0.64,
            rgb(color)
        );
        text(
            &mut o,
            left - 8.0,
            yc + TICK * 0.35,
            &b.name,
            TICK,
            "end",
            "",
        );
        text(
            &mut o,
            x0.max(x1) + 6.0,
            yc + TICK * 0.35,
            &b.text,
            TICK,
            "start",
            "",
        );
    }
    let _ = write!(
        o,
        r##"<path d="M{:.1},{top:.1}V{:.1}" stroke="#888" stroke-width="1"/>"##,
        sx(0.0),
        top + ph
    );
    if let Some(note) = &chart.note {
        draw_note(&mut o, note, left + pw / 2.0, top + ph / 2.0, pw - 40.0);
    }
    o.push_str("</svg>\n");
    o
}

/// Charts side by side in one SVG, tops aligned.
pub(crate) fn render_row(charts: &[Chart], standalone: bool) -> String {
    let mut inner = String::new();
    let (mut w, mut h) = (0.0f64, 0.0f64);
    for c in charts {
        let svg = render_at(c, false, Some(w));
        let (cw, ch) = size_of(&svg);
        inner.push_str(&svg);
        w += cw;
        h = h.max(ch);
    }
    let ns = if standalone {
        r#" xmlns="http://www.w3.org/2000/svg""#
    } else {
        ""
    };
    format!(
        r#"<svg{ns} width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}, Verdana, sans-serif" role="img"><rect width="100%" height="100%" fill="white"/>{inner}</svg>
"#
    )
}

/// The width and height an `<svg ...>` element declares.
pub(crate) fn size_of(svg: &str) -> (f64, f64) {
    let attr = |name: &str| -> f64 {
        let key = format!(r#" {name}=""#);
        svg.find(&key)
            .and_then(|i| {
                let rest = &svg[i + key.len()..];
                rest[..rest.find('"')?].parse().ok()
            })
            .unwrap_or(0.0)
    };
    (attr("width"), attr("height"))
}

/// `note` in words wrapped to `width` pixels, centred on (x, y).
fn draw_note(o: &mut String, note: &str, x: f64, y: f64, width: f64) {
    let mut lines: Vec<String> = Vec::new();
    for word in note.split_whitespace() {
        match lines.last_mut() {
            Some(l) if text_width(&format!("{l} {word}"), TEXT) <= width => {
                l.push(' ');
                l.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    let y0 = y - (lines.len() as f64 - 1.0) * TEXT * 0.7;
    for (i, l) in lines.iter().enumerate() {
        text(
            o,
            x,
            y0 + i as f64 * TEXT * 1.4,
            l,
            TEXT,
            "middle",
            r##" fill="#555" class="note""##,
        );
    }
}

/// The `<svg>` element's start: its size (and where a figure places it), the chart's title
/// for screen readers, a white background.
fn open_svg(o: &mut String, chart: &Chart, standalone: bool, at: Option<f64>, w: f64, h: f64) {
    let ns = match at {
        Some(x) => format!(r#" x="{x:.1}" y="0""#),
        None if standalone => r#" xmlns="http://www.w3.org/2000/svg""#.to_string(),
        None => String::new(),
    };
    let _ = write!(
        o,
        r#"<svg{ns} width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="{FONT}, Verdana, sans-serif" fill="{INK}" role="img"><title>{}</title><rect width="100%" height="100%" fill="white"/>"#,
        escape(&chart.title)
    );
}

/// The title above the plot and the x axis's label at the bottom, both centred on `x`.
fn title_and_x_label(o: &mut String, chart: &Chart, x: f64, h: f64) {
    text(
        o,
        x,
        24.0,
        &chart.title,
        TITLE,
        "middle",
        r#" class="title""#,
    );
    if !chart.x.label.is_empty() {
        text(o, x, h - 12.0, &chart.x.label, TEXT, "middle", "");
    }
}

/// Room under the plot: tick labels in `rows` rows, then the x axis's label if any.
fn bottom_margin(chart: &Chart, rows: f64) -> f64 {
    let label = if chart.x.label.is_empty() {
        0.0
    } else {
        TEXT + 10.0
    };
    22.0 + TICK * 1.4 * rows + label
}
