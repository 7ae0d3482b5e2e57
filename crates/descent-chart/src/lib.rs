//! Charts for descent: curves, scatter marks and bars on labelled axes, written as SVG and
//! rendered to PNG from that same SVG by `resvg` with an embedded DejaVu Sans, so a PNG, an
//! SVG file and a chart inline in an HTML page are one drawing.
//!
//! A [`Chart`] says what to draw; the layout is worked out when it is drawn: margins from the
//! measured width of every tick label and legend entry (the legend sits beside the plot and
//! never covers data), tick steps chosen so labels do not collide, log axes where values span
//! decades ([`Scale::Auto`]), categorical axes labelled with their names, markers where a curve
//! has few points, and a distinct colour and dash pattern for every curve.
//!
//! ```
//! use descent_chart::{Axis, Chart, Series};
//! let chart = Chart::new("validation loss", Axis::new("epoch"), Axis::new("loss").auto())
//!     .with(Series::new("adam", vec![(1.0, 0.9), (2.0, 0.3), (3.0, 0.1)]));
//! assert!(chart.svg().contains("adam"));
//! let png = chart.png().unwrap();
//! assert_eq!(&png[1..4], b"PNG");
//! ```

mod layout;
mod svg;

pub use layout::text_width;

/// An RGB colour.
pub type Rgb = (u8, u8, u8);

/// Tableau's ten colours: distinguishable, also in grey.
pub const PALETTE: [Rgb; 10] = [
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

/// The colours `n` curves without colours of their own get, in order (after the palette's
/// ten, the colours repeat with the next dash pattern).
pub fn colors(n: usize) -> Vec<Rgb> {
    (0..n).map(|k| PALETTE[k % PALETTE.len()]).collect()
}

/// How an axis maps values to positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scale {
    /// Evenly.
    Linear,
    /// By decades (values must be > 0; others are left out).
    Log,
    /// Log where every value is > 0 and they span a decade or more, else linear.
    Auto,
}

/// One axis: its label, scale, range and (for a categorical axis) the names of its
/// positions 0, 1, 2, ...
#[derive(Clone, Debug)]
pub struct Axis {
    /// Written along the axis.
    pub label: String,
    /// Linear, log, or chosen from the data.
    pub scale: Scale,
    /// Fixed ends (else fitted to the data).
    pub range: Option<(f64, f64)>,
    /// Names at 0, 1, 2, ... instead of numeric ticks.
    pub names: Option<Vec<String>>,
}

impl Axis {
    /// A linear axis fitted to the data.
    pub fn new(label: impl Into<String>) -> Self {
        Axis {
            label: label.into(),
            scale: Scale::Linear,
            range: None,
            names: None,
        }
    }

    /// A log axis.
    pub fn log(mut self) -> Self {
        self.scale = Scale::Log;
        self
    }

    /// Log where the data spans decades, else linear.
    pub fn auto(mut self) -> Self {
        self.scale = Scale::Auto;
        self
    }

    /// Fixed ends.
    pub fn range(mut self, lo: f64, hi: f64) -> Self {
        self.range = Some((lo, hi));
        self
    }

    /// A categorical axis: `names` at positions 0, 1, 2, ...
    pub fn names(mut self, names: Vec<String>) -> Self {
        self.names = Some(names);
        self
    }
}

/// A line's dash pattern.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dash {
    /// Unbroken.
    Solid,
    /// Long dashes.
    Dashed,
    /// Dots.
    Dotted,
    /// Dashes and dots.
    DashDot,
}

impl Dash {
    /// The patterns, in the order curves get them after the palette's colours run out.
    pub const ALL: [Dash; 4] = [Dash::Solid, Dash::Dashed, Dash::Dotted, Dash::DashDot];
}

/// When a curve's points are drawn as markers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Markers {
    /// Where the curve has few points (40 or fewer), and always at a point with no
    /// neighbour to join.
    Auto,
    /// At every point, joined.
    Always,
    /// Markers only, not joined (a scatter).
    Only,
    /// A line only (an isolated point still gets a marker).
    Never,
}

/// A marker's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    /// A filled disc.
    Circle,
    /// A ring (a start).
    Ring,
    /// A filled square (an end).
    Square,
    /// A filled diamond.
    Diamond,
    /// A five-pointed star (a minimum).
    Star,
    /// A cross.
    Cross,
}

/// A named curve. Non-finite points break it into pieces ([`Series::lines`]).
#[derive(Clone, Debug)]
pub struct Series {
    /// Its legend entry.
    pub name: String,
    /// Its points in data coordinates.
    pub points: Vec<(f64, f64)>,
    /// Its colour (else the next of the palette).
    pub color: Option<Rgb>,
    /// Its dash pattern (else the next once the palette's colours are used up).
    pub dash: Option<Dash>,
    /// Line width in pixels.
    pub width: f64,
    /// Markers at its points.
    pub markers: Markers,
    /// 1 opaque, 0 invisible.
    pub opacity: f64,
    /// Listed in the legend.
    pub in_legend: bool,
}

impl Series {
    /// A curve through `points`.
    pub fn new(name: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Series {
            name: name.into(),
            points,
            color: None,
            dash: None,
            width: 2.0,
            markers: Markers::Auto,
            opacity: 1.0,
            in_legend: true,
        }
    }

    /// Several curves drawn alike under one legend entry (many trials).
    pub fn lines(name: impl Into<String>, lines: Vec<Vec<(f64, f64)>>) -> Self {
        let mut points = Vec::new();
        for (i, l) in lines.into_iter().enumerate() {
            if i > 0 {
                points.push((f64::NAN, f64::NAN));
            }
            points.extend(l);
        }
        Series::new(name, points)
    }

    /// In this colour.
    pub fn color(mut self, rgb: Rgb) -> Self {
        self.color = Some(rgb);
        self
    }

    /// With this dash pattern.
    pub fn dash(mut self, dash: Dash) -> Self {
        self.dash = Some(dash);
        self
    }

    /// This many pixels wide.
    pub fn width(mut self, width: f64) -> Self {
        self.width = width;
        self
    }

    /// With these markers.
    pub fn markers(mut self, markers: Markers) -> Self {
        self.markers = markers;
        self
    }

    /// This opaque.
    pub fn opacity(mut self, opacity: f64) -> Self {
        self.opacity = opacity;
        self
    }

    /// Left out of the legend.
    pub fn unlisted(mut self) -> Self {
        self.in_legend = false;
        self
    }
}

/// A marker at one point (an optimizer's start, its end, the minimum).
#[derive(Clone, Debug)]
pub struct Mark {
    /// Where, in data coordinates.
    pub at: (f64, f64),
    /// Its shape.
    pub shape: Shape,
    /// Its colour.
    pub color: Rgb,
    /// Its legend entry (marks with the same label share one).
    pub label: Option<String>,
}

/// Text at a point in data coordinates (the categories along a parallel axis).
#[derive(Clone, Debug)]
pub struct Label {
    /// Where, in data coordinates; the text starts a few pixels right of it.
    pub at: (f64, f64),
    /// What.
    pub text: String,
}

/// One bar of a bar chart ([`Chart::bars`]): its name, length and the text at its end.
#[derive(Clone, Debug)]
pub struct Bar {
    /// Written beside it.
    pub name: String,
    /// Its length (from 0).
    pub value: f64,
    /// Written at its end.
    pub text: String,
}

/// A chart: curves, marks, labels and contour lines on two axes, or horizontal bars.
#[derive(Clone, Debug)]
pub struct Chart {
    /// Written above the plot.
    pub title: String,
    /// The horizontal axis.
    pub x: Axis,
    /// The vertical axis.
    pub y: Axis,
    /// Curves, in legend order.
    pub series: Vec<Series>,
    /// Thin grey lines under everything (contour lines), in data coordinates.
    pub background: Vec<Vec<(f64, f64)>>,
    /// Markers over the curves.
    pub marks: Vec<Mark>,
    /// Text in the plot.
    pub labels: Vec<Label>,
    /// Horizontal bars, top to bottom; a chart with bars draws no curves and its y axis
    /// names the bars.
    pub bars: Vec<Bar>,
    /// Said in the middle of the plot (why a chart is empty).
    pub note: Option<String>,
}

impl Chart {
    /// An empty chart on these axes.
    pub fn new(title: impl Into<String>, x: Axis, y: Axis) -> Self {
        Chart {
            title: title.into(),
            x,
            y,
            series: Vec::new(),
            background: Vec::new(),
            marks: Vec::new(),
            labels: Vec::new(),
            bars: Vec::new(),
            note: None,
        }
    }

    /// Curves `series` on linear axes labelled `x` and `y`.
    pub fn lines(title: impl Into<String>, x: &str, y: &str, series: Vec<Series>) -> Self {
        let mut c = Chart::new(title, Axis::new(x), Axis::new(y));
        c.series = series;
        c
    }

    /// A horizontal bar chart: `bars` top to bottom along a value axis labelled `value`.
    pub fn bar(title: impl Into<String>, value: &str, bars: Vec<Bar>) -> Self {
        let mut c = Chart::new(title, Axis::new(value), Axis::new(""));
        c.bars = bars;
        c
    }

    /// With one more curve.
    pub fn with(mut self, series: Series) -> Self {
        self.series.push(series);
        self
    }

    /// With a note in the middle of the plot.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = Some(note.into());
        self
    }

    /// Whether it has nothing to draw but a note.
    pub fn is_empty(&self) -> bool {
        self.bars.is_empty()
            && self.marks.is_empty()
            && self
                .series
                .iter()
                .all(|s| !s.points.iter().any(|p| p.0.is_finite() && p.1.is_finite()))
    }

    /// The chart as a standalone SVG document.
    pub fn svg(&self) -> String {
        svg::render(self, true)
    }

    /// The chart as an `<svg>` element to put inside an HTML page.
    pub fn svg_inline(&self) -> String {
        svg::render(self, false)
    }

    /// The chart as a PNG image (its SVG rendered by resvg, text in DejaVu Sans).
    pub fn png(&self) -> Result<Vec<u8>, ChartError> {
        self.png_scaled(1.0)
    }

    /// The PNG at `scale` times the SVG's size (2.0 for high-density screens).
    pub fn png_scaled(&self, scale: f32) -> Result<Vec<u8>, ChartError> {
        // The SVG paints a white background first, so every pixel is opaque.
        self.pixmap(scale)?
            .encode_png()
            .map_err(|e| ChartError::Render(e.to_string()))
    }

    /// The chart rendered into RGBA pixels: (width, height, premultiplied RGBA bytes).
    pub fn rgba(&self, scale: f32) -> Result<(u32, u32, Vec<u8>), ChartError> {
        let pix = self.pixmap(scale)?;
        Ok((pix.width(), pix.height(), pix.data().to_vec()))
    }

    fn pixmap(&self, scale: f32) -> Result<resvg::tiny_skia::Pixmap, ChartError> {
        pixmap(&self.svg(), scale)
    }
}

/// Charts side by side (a path and the loss along it).
#[derive(Clone, Debug, Default)]
pub struct Figure {
    /// Left to right.
    pub charts: Vec<Chart>,
}

impl Figure {
    /// These charts in a row.
    pub fn row(charts: Vec<Chart>) -> Self {
        Figure { charts }
    }

    /// The figure as a standalone SVG document.
    pub fn svg(&self) -> String {
        svg::render_row(&self.charts, true)
    }

    /// The figure as an `<svg>` element for an HTML page.
    pub fn svg_inline(&self) -> String {
        svg::render_row(&self.charts, false)
    }

    /// The figure as a PNG image.
    pub fn png(&self) -> Result<Vec<u8>, ChartError> {
        pixmap(&self.svg(), 1.0)?
            .encode_png()
            .map_err(|e| ChartError::Render(e.to_string()))
    }

    /// The figure rendered into RGBA pixels: (width, height, premultiplied RGBA bytes).
    pub fn rgba(&self, scale: f32) -> Result<(u32, u32, Vec<u8>), ChartError> {
        let pix = pixmap(&self.svg(), scale)?;
        Ok((pix.width(), pix.height(), pix.data().to_vec()))
    }
}

fn pixmap(svg: &str, scale: f32) -> Result<resvg::tiny_skia::Pixmap, ChartError> {
    {
        if !(scale.is_finite() && scale > 0.0 && scale <= 8.0) {
            return Err(ChartError::Scale(scale));
        }
        let tree = resvg::usvg::Tree::from_str(svg, layout::options())
            .map_err(|e| ChartError::Render(e.to_string()))?;
        let size = tree
            .size()
            .to_int_size()
            .scale_by(scale)
            .ok_or(ChartError::Scale(scale))?;
        let mut pix = resvg::tiny_skia::Pixmap::new(size.width(), size.height())
            .ok_or(ChartError::Scale(scale))?;
        resvg::render(
            &tree,
            resvg::tiny_skia::Transform::from_scale(scale, scale),
            &mut pix.as_mut(),
        );
        Ok(pix)
    }
}

/// Why a chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// A scale outside (0, 8].
    #[error("invalid scale {0}: render at more than 0 and at most 8 times the chart's size")]
    Scale(f32),
    /// resvg refused the drawing (a bug in descent-chart: please report it).
    #[error("the chart could not be rendered: {0}")]
    Render(String),
}
