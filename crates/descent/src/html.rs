//! Report pages: one self-contained HTML file (`report --html`, `tune show --html`) holding
//! every chart as inline SVG, the tables and the configuration, with no script, stylesheet,
//! font or image loaded from anywhere.
//!
//! The layout is fixed so that a check can find each chart on a screenshot: a header
//! [`HEADER`] pixels high, then the charts one under another, each [`GAP`] pixels below the
//! last, then the tables.

use std::path::Path;

use anyhow::{Context, Result};
use descent_chart::Chart;

/// The header's height in CSS pixels.
pub const HEADER: u32 = 72;
/// The space under each chart in CSS pixels.
pub const GAP: u32 = 16;

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A page being put together.
pub struct Page {
    title: String,
    subtitle: String,
    charts: Vec<String>,
    sections: Vec<String>,
}

impl Page {
    /// A page titled `title`, with a line under it.
    pub fn new(title: impl Into<String>, subtitle: impl Into<String>) -> Self {
        Page {
            title: title.into(),
            subtitle: subtitle.into(),
            charts: Vec::new(),
            sections: Vec::new(),
        }
    }

    /// Adds a chart (after the ones before).
    pub fn chart(&mut self, chart: &Chart) {
        self.charts.push(chart.svg_inline());
    }

    /// Adds a table under a heading: the first row is the header.
    pub fn table(&mut self, heading: &str, rows: &[Vec<String>]) {
        self.table_of("", heading, rows);
    }

    fn table_of(&mut self, class: &str, heading: &str, rows: &[Vec<String>]) {
        let mut s = format!(
            r#"<section><h2>{}</h2><table class="{class}">"#,
            escape(heading)
        );
        for (i, r) in rows.iter().enumerate() {
            let (open, close) = if i == 0 {
                ("<th>", "</th>")
            } else {
                ("<td>", "</td>")
            };
            s.push_str("<tr>");
            for c in r {
                s.push_str(open);
                s.push_str(&escape(c));
                s.push_str(close);
            }
            s.push_str("</tr>");
        }
        s.push_str("</table></section>");
        self.sections.push(s);
    }

    /// Adds a paragraph under a heading.
    pub fn text(&mut self, heading: &str, text: &str) {
        self.sections.push(format!(
            "<section><h2>{}</h2><p>{}</p></section>",
            escape(heading),
            escape(text)
        ));
    }

    /// Adds a JSON document as a table of its settings (`config.optimizer.lr  0.01`).
    pub fn settings(&mut self, heading: &str, value: &serde_json::Value) {
        let mut rows = vec![vec!["setting".to_string(), "value".to_string()]];
        flatten("", value, &mut rows);
        self.table_of("settings", heading, &rows);
    }

    /// The page.
    pub fn render(&self) -> String {
        let mut charts = String::new();
        for svg in &self.charts {
            charts.push_str(&format!(r#"<figure class="chart">{svg}</figure>"#));
        }
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="descent {version}">
<title>{title}</title>
<style>
body {{ margin: 0; font-family: "DejaVu Sans", Verdana, sans-serif; color: #222; background: white; }}
header {{ height: {HEADER}px; box-sizing: border-box; padding: 12px 16px; overflow: hidden; white-space: nowrap; border-bottom: 1px solid #ddd; }}
header h1 {{ margin: 0; font-size: 20px; font-weight: normal; }}
header p {{ margin: 6px 0 0; font-size: 13px; color: #555; }}
main {{ padding: 0 16px 24px; }}
figure.chart {{ margin: 0 0 {GAP}px; padding: 0; line-height: 0; }}
figure.chart svg {{ display: block; }}
h2 {{ font-size: 16px; font-weight: normal; margin: 20px 0 8px; }}
table {{ border-collapse: collapse; font-size: 13px; }}
th, td {{ border: 1px solid #ddd; padding: 3px 8px; text-align: right; }}
th {{ background: #f4f4f4; }}
td:first-child, th:first-child, table.settings td {{ text-align: left; }}
pre {{ font-size: 13px; }}
</style></head>
<body><header><h1>{title}</h1><p>{subtitle}</p></header>
<main><div class="charts">{charts}</div>
{sections}
</main></body></html>
"#,
            version = env!("CARGO_PKG_VERSION"),
            title = escape(&self.title),
            subtitle = escape(&self.subtitle),
            sections = self.sections.join("\n"),
        )
    }

    /// Writes the page to `path` (atomically: a reader never sees half of it).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "invalid --html {}: cannot create its folder",
                    path.display()
                )
            })?;
        }
        descent_train::checkpoint::write_atomic(path, self.render().as_bytes())
            .with_context(|| format!("invalid --html {}: cannot write it", path.display()))
    }
}

fn flatten(prefix: &str, v: &serde_json::Value, rows: &mut Vec<Vec<String>>) {
    let key = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                flatten(&key(k), v, rows);
            }
        }
        serde_json::Value::Array(a) if a.iter().any(|x| x.is_object() || x.is_array()) => {
            for (i, x) in a.iter().enumerate() {
                flatten(&key(&i.to_string()), x, rows);
            }
        }
        serde_json::Value::Null => rows.push(vec![prefix.to_string(), "-".into()]),
        serde_json::Value::String(s) => rows.push(vec![prefix.to_string(), s.clone()]),
        other => rows.push(vec![prefix.to_string(), other.to_string()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_escapes_its_text_and_loads_nothing() {
        let mut p = Page::new("run <a>", "at /tmp & co");
        p.chart(&Chart::lines(
            "loss",
            "epoch",
            "loss",
            vec![descent_chart::Series::new(
                "train",
                vec![(1.0, 0.5), (2.0, 0.25)],
            )],
        ));
        p.table(
            "epochs",
            &[
                vec!["epoch".into(), "loss".into()],
                vec!["1".into(), "0.5000".into()],
            ],
        );
        p.settings(
            "configuration",
            &serde_json::json!({"config": {"optimizer": {"lr": 0.01}, "layers": [{"type": "relu"}]}, "note": null}),
        );
        let html = p.render();
        assert!(html.contains("run &lt;a&gt;") && html.contains("/tmp &amp; co"));
        assert!(html.contains("<td>0.5000</td>"));
        assert!(html.contains("<td>config.optimizer.lr</td><td>0.01</td>"));
        assert!(html.contains("<td>config.layers.0.type</td><td>relu</td>"));
        assert_eq!(html.matches("<svg").count(), 1);
        for remote in [
            "http://", "https://", " src=", " href=", "@import", "url(http",
        ] {
            assert!(!html.contains(remote), "{remote}");
        }
    }
}
