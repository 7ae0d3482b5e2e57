//! The charts as a new user saw them go wrong, each drawn again and checked: in the SVG (what
//! is drawn where) and in the PNG resvg renders from it (what can be seen).

use descent_chart::{text_width, Axis, Bar, Chart, Dash, Figure, Label, Markers, Series, PALETTE};

/// The values of attribute `name` on every element `tag` of `svg`, in order.
fn attrs<'a>(svg: &'a str, tag: &str, name: &str) -> Vec<&'a str> {
    let open = format!("<{tag} ");
    let key = format!(" {name}=\"");
    let mut out = Vec::new();
    let mut rest = svg;
    while let Some(i) = rest.find(&open) {
        let el = &rest[i..i + rest[i..].find('>').unwrap()];
        if let Some(j) = el.find(&key) {
            let v = &el[j + key.len()..];
            out.push(&v[..v.find('"').unwrap()]);
        } else {
            out.push("");
        }
        rest = &rest[i + 1..];
    }
    out
}

/// Every `<text>` element's content.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text ")
        .skip(1)
        .map(|t| {
            let a = t.find('>').unwrap() + 1;
            t[a..t.find("</text>").unwrap()].to_string()
        })
        .collect()
}

/// RGB pixels of a PNG.
fn pixels(png: &[u8]) -> (u32, u32, Vec<[u8; 3]>) {
    let mut dec = png::Decoder::new(std::io::Cursor::new(png))
        .read_info()
        .unwrap();
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    let info = dec.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, info.height, px)
}

fn near(a: [u8; 3], b: (u8, u8, u8)) -> bool {
    let d = |x: u8, y: u8| (i32::from(x) - i32::from(y)).abs();
    d(a[0], b.0) + d(a[1], b.1) + d(a[2], b.2) < 30
}

/// `report` after 2 epochs showed one x tick and no point markers.
#[test]
fn two_epochs_show_two_ticks_and_their_points() {
    let c = Chart::lines(
        "accuracy per epoch",
        "epoch",
        "accuracy (%)",
        vec![
            Series::new("train", vec![(1.0, 91.0), (2.0, 93.0)]),
            Series::new("test", vec![(1.0, 92.0), (2.0, 94.0)]),
        ],
    );
    let svg = c.svg();
    let t = texts(&svg);
    assert!(
        t.contains(&"1".to_string()) && t.contains(&"2".to_string()),
        "{t:?}"
    );
    assert!(!t.iter().any(|l| l == "1.5"), "whole epochs only: {t:?}");
    // Two markers per curve (plus one in each legend entry).
    assert_eq!(attrs(&svg, "circle", "cx").len(), 2 * 2 + 2);
}

/// `compare` after 1 epoch drew each optimizer as an invisible 2-pixel dot.
#[test]
fn a_curve_of_one_point_is_a_visible_marker() {
    let c = Chart::lines(
        "validation accuracy",
        "epoch",
        "%",
        vec![
            Series::new("sgd", vec![(1.0, 90.0)]),
            Series::new("adam", vec![(1.0, 96.0)]),
        ],
    );
    let (_, _, px) = pixels(&c.png().unwrap());
    for (i, name) in ["sgd", "adam"].iter().enumerate() {
        let n = px.iter().filter(|p| near(**p, PALETTE[i])).count();
        // A disc of radius 4 and the legend's swatch: well over 2 pixels.
        assert!(n >= 60, "{name}: {n} pixels of its colour");
    }
}

/// `tune show` with 3 trials wrote an empty importances frame with no word why.
#[test]
fn an_empty_chart_says_why_and_shows_no_scale() {
    let c = Chart::new("Parameter importances", Axis::new("share"), Axis::new(""))
        .note("none yet: a parameter needs 4 complete trials that drew it, and the study has 3 complete trials");
    assert!(c.is_empty());
    let svg = c.svg();
    let t = texts(&svg);
    let note: Vec<&String> = t.iter().filter(|l| l.contains("trials")).collect();
    assert!(note.len() >= 2, "wrapped onto lines that fit: {t:?}");
    let width: f64 = attrs(&svg, "svg", "width")[0].parse().unwrap();
    assert!(note.iter().all(|l| text_width(l, 13.0) < width - 40.0));
    assert!(!t.iter().any(|l| l == "0.5" || l == "1"), "no ticks: {t:?}");
}

/// `tune show` with 8 trials drew bars as thick round-capped strokes that dipped below 0.
#[test]
fn bars_are_rectangles_from_zero() {
    let bars = vec![
        Bar {
            name: "lr".into(),
            value: 0.7,
            text: "0.70".into(),
        },
        Bar {
            name: "batch-size".into(),
            value: 0.3,
            text: "0.30".into(),
        },
        Bar {
            name: "dropout".into(),
            value: 0.0,
            text: "0.00".into(),
        },
    ];
    let mut c = Chart::bar("Parameter importances", "share of variance", bars);
    c.x.range = Some((0.0, 1.0));
    let svg = c.svg();
    let num = |v: &str| v.parse::<f64>().unwrap_or(f64::NAN);
    let (xs, ws) = (attrs(&svg, "rect", "x"), attrs(&svg, "rect", "width"));
    let bars: Vec<(f64, f64)> = attrs(&svg, "rect", "class")
        .iter()
        .enumerate()
        .filter(|(_, c)| **c == "bar")
        .map(|(i, _)| (num(xs[i]), num(ws[i])))
        .collect();
    assert_eq!(bars.len(), 3);
    for b in &bars {
        assert!((b.0 - bars[0].0).abs() < 0.05, "every bar starts at 0");
    }
    assert!(
        (bars[0].1 / bars[1].1 - 0.7 / 0.3).abs() < 0.01,
        "lengths in proportion"
    );
    assert_eq!(bars[2].1, 0.0);
    assert!(!svg.contains("stroke-linecap=\"round\""));
    for name in ["lr", "batch-size", "dropout", "0.70"] {
        assert!(texts(&svg).iter().any(|t| t == name), "{name}");
    }
}

/// Parallel coordinates drew the momentum axis through trials that have no momentum: a
/// missing value breaks the line instead.
#[test]
fn a_missing_value_breaks_the_line() {
    let trial = Series::lines(
        "trials",
        vec![vec![
            (0.0, 0.2),
            (f64::NAN, f64::NAN),
            (2.0, 0.9),
            (3.0, 0.4),
        ]],
    )
    .markers(Markers::Never);
    let mut c = Chart::new(
        "Parallel coordinates",
        Axis::new("").names(vec![
            "lr".into(),
            "momentum".into(),
            "optimizer".into(),
            "objective".into(),
        ]),
        Axis::new("").names(Vec::new()).range(0.0, 1.0),
    );
    c.series = vec![trial];
    c.labels.push(Label {
        at: (2.0, 0.0),
        text: "sgd".into(),
    });
    c.labels.push(Label {
        at: (2.0, 1.0),
        text: "adam".into(),
    });
    let svg = c.svg();
    let d = attrs(&svg, "path", "d");
    let line = d
        .iter()
        .find(|d| d.matches('M').count() == 2 && d.matches('L').count() == 1);
    assert!(line.is_some(), "the trial's line is two pieces: {d:?}");
    let t = texts(&svg);
    for want in ["momentum", "objective", "sgd", "adam"] {
        assert!(t.iter().any(|l| l == want), "{want} in {t:?}");
    }
}

/// `viz` with all 14 optimizers repeated colours (sgd/nadam, ...) and cut off the legend
/// entry "lion (lr 0.033333335)".
#[test]
fn fourteen_curves_look_different_and_the_legend_fits() {
    let names = [
        "sgd",
        "sgd-momentum",
        "nesterov",
        "momentum",
        "adagrad",
        "rmsprop",
        "adadelta",
        "adam",
        "adamw",
        "adamax",
        "nadam",
        "radam",
        "lion (lr 0.033333335): within 1e-3 in 661 steps",
        "lamb",
    ];
    let series = names
        .iter()
        .enumerate()
        .map(|(i, n)| Series::new(*n, vec![(0.0, i as f64), (1.0, i as f64 + 0.5)]))
        .collect();
    let svg = Chart::lines("Rosenbrock", "x", "y", series).svg();
    let mut looks = Vec::new();
    for g in svg.split("<g class=\"series\"").skip(1) {
        let stroke = attrs(g, "path", "stroke")[0].to_string();
        let dash = attrs(g, "path", "stroke-dasharray")[0].to_string();
        looks.push((stroke, dash));
    }
    assert_eq!(looks.len(), 14);
    for i in 0..14 {
        for j in 0..i {
            assert_ne!(
                looks[i], looks[j],
                "{} and {} look alike",
                names[i], names[j]
            );
        }
    }
    // The legend sits right of the plot, and its longest entry ends inside the image.
    let width: f64 = attrs(&svg, "svg", "width")[0].parse().unwrap();
    let legend = &svg[svg.find("<g class=\"legend\">").unwrap()..];
    let xs: Vec<f64> = attrs(legend, "text", "x")
        .iter()
        .map(|v| v.parse().unwrap())
        .collect();
    let frame: Vec<f64> = attrs(&svg, "rect", "width")
        .iter()
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(xs.iter().all(|&x| x > frame[1]), "legend beside the plot");
    assert!(
        xs[12] + text_width(names[12], 12.0) <= width,
        "lion's entry is cut off"
    );
    assert_eq!(Dash::ALL.len() * PALETTE.len(), 40);
}

/// Values spanning decades (learning rates, losses) get a log axis with decade ticks.
#[test]
fn decades_get_a_log_axis() {
    let c = Chart::new("loss", Axis::new("step"), Axis::new("loss").auto()).with(Series::new(
        "adam",
        (0..100).map(|i| (i as f64, 2.0 * 0.9f64.powi(i))).collect(),
    ));
    let t = texts(&c.svg());
    for want in ["1e-4", "1e-2", "1e0"] {
        assert!(t.iter().any(|l| l == want), "{want} in {t:?}");
    }
}

/// The PNG is anti-aliased and has its text: blended shades along the curves, dark glyphs in
/// the title's band.
#[test]
fn the_png_is_antialiased_and_has_text() {
    let c = Chart::lines(
        "validation loss",
        "step",
        "loss",
        vec![Series::new(
            "adam",
            (0..200)
                .map(|i| (i as f64, (i as f64 * 0.1).sin()))
                .collect(),
        )],
    );
    let (w, h, px) = pixels(&c.png().unwrap());
    let svg = c.svg();
    assert_eq!(w, attrs(&svg, "svg", "width")[0].parse::<u32>().unwrap());
    assert_eq!(h, attrs(&svg, "svg", "height")[0].parse::<u32>().unwrap());
    let mut shades: Vec<[u8; 3]> = px.clone();
    shades.sort();
    shades.dedup();
    assert!(
        shades.len() > 100,
        "only {} colours: not anti-aliased",
        shades.len()
    );
    let title_band = &px[(12 * w) as usize..(30 * w) as usize];
    assert!(
        title_band.iter().filter(|p| p[0] < 80).count() > 50,
        "no title text"
    );
    let big = c.png_scaled(2.0).unwrap();
    assert_eq!(pixels(&big).0, 2 * w);
}

/// Charts inline in a page: no XML namespace needed, and each chart clips to its own plot.
#[test]
fn inline_charts_and_figures() {
    let a = Chart::lines(
        "a",
        "x",
        "y",
        vec![Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])],
    );
    let b = Chart::lines(
        "b",
        "x",
        "y",
        vec![Series::new("s", vec![(0.0, 1.0), (1.0, 2.0)])],
    );
    let (ia, ib) = (a.svg_inline(), b.svg_inline());
    assert!(!ia.contains("xmlns") && a.svg().contains("xmlns"));
    let id = |s: &str| attrs(s, "clipPath", "id")[0].to_string();
    assert_ne!(id(&ia), id(&ib));
    let fig = Figure::row(vec![a.clone(), b.clone()]);
    let width = |s: &str| attrs(s, "svg", "width")[0].parse::<f64>().unwrap();
    assert_eq!(width(&fig.svg()), width(&a.svg()) + width(&b.svg()));
    let (_, _, px) = pixels(&fig.png().unwrap());
    assert!(px.iter().filter(|p| near(**p, PALETTE[0])).count() > 200);
}

/// Every kind of chart descent draws, from fixed data: its PNG has the size its SVG declares
/// and rendered glyphs in the title's band (dark pixels where the title is written).
#[test]
fn every_chart_kind_renders_at_its_size_with_its_title() {
    use descent_chart::{Mark, Shape};
    let line = Chart::lines(
        "loss per epoch",
        "epoch",
        "loss",
        vec![Series::new(
            "train",
            vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.3)],
        )],
    );
    let mut log = Chart::new("training loss", Axis::new("step"), Axis::new("loss").log());
    log.series = vec![Series::new(
        "adam",
        (1..200).map(|i| (i as f64, 1.0 / i as f64)).collect(),
    )];
    let mut scatter = Chart::new(
        "Optimization history",
        Axis::new("trial"),
        Axis::new("value"),
    );
    scatter.series = vec![
        Series::new("complete", vec![(0.0, 90.0), (1.0, 93.0), (2.0, 91.0)]).markers(Markers::Only),
        Series::new("best so far", vec![(0.0, 90.0), (1.0, 93.0), (2.0, 93.0)]),
    ];
    let bars = Chart::bar(
        "Parameter importances",
        "share",
        vec![Bar {
            name: "lr".into(),
            value: 0.8,
            text: "0.80".into(),
        }],
    );
    let mut parallel = Chart::new(
        "Parallel coordinates",
        Axis::new("").names(vec!["lr".into(), "objective".into()]),
        Axis::new("").names(Vec::new()).range(0.0, 1.0),
    );
    parallel.series = vec![Series::lines("trials", vec![vec![(0.0, 0.1), (1.0, 0.9)]])];
    let mut paths = Chart::lines(
        "Rosenbrock",
        "x",
        "y",
        vec![Series::new(
            "sgd",
            vec![(-1.0, 2.0), (0.0, 0.5), (1.0, 1.0)],
        )],
    );
    paths.background = vec![vec![(-1.5, 0.0), (1.5, 0.0)]];
    paths.marks = vec![Mark {
        at: (1.0, 1.0),
        shape: Shape::Star,
        color: (255, 200, 0),
        label: Some("minimum".into()),
    }];
    let empty = Chart::new("Intermediate values", Axis::new("step"), Axis::new("value"))
        .note("no trial has reported a value yet");
    for chart in [line, log, scatter, bars, parallel, paths, empty] {
        let svg = chart.svg();
        let want: Vec<u32> = ["width", "height"]
            .iter()
            .map(|a| attrs(&svg, "svg", a)[0].parse().unwrap())
            .collect();
        let (w, h, px) = pixels(&chart.png().unwrap());
        assert_eq!(vec![w, h], want, "{}", chart.title);
        let title_w = text_width(&chart.title, 15.0);
        assert!(title_w > 40.0);
        let dark = px[(12 * w) as usize..(30 * w) as usize]
            .iter()
            .filter(|p| p.iter().all(|&c| c < 110))
            .count();
        // A 15-pixel title: its strokes cover well over a pixel per point of width.
        assert!(
            dark as f64 > title_w,
            "{}: {dark} dark pixels in the title band",
            chart.title
        );
    }
    let fig = Figure::row(vec![
        Chart::lines(
            "left",
            "x",
            "y",
            vec![Series::new("a", vec![(0.0, 0.0), (1.0, 1.0)])],
        ),
        Chart::lines(
            "right",
            "x",
            "y",
            vec![Series::new("b", vec![(0.0, 1.0), (1.0, 0.0)])],
        ),
    ]);
    let (w, _, _) = pixels(&fig.png().unwrap());
    assert_eq!(
        w as f64,
        attrs(&fig.svg(), "svg", "width")[0].parse::<f64>().unwrap()
    );
}
