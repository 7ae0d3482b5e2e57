//! `report --html` and `tune show --html`: one self-contained page each, opened in headless
//! Chromium (Debian's `chromium`; skipped, saying so, where there is none): every chart is
//! drawn where the page's fixed layout puts it (a screenshot, band by band), the run's
//! numbers are in the DOM, and no request leaves the page (Chromium is given a proxy that
//! records what reaches it; the hosts the browser itself calls on an empty page, its own
//! services, are told apart from the page's).

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

mod common;
use common::*;

/// The page layout's constants (src/html.rs).
const HEADER: u32 = 72;
const GAP: u32 = 16;
const PAD: u32 = 16;

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("DESCENT_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser", "google-chrome"].map(|n| d.join(n)))
        .find(|p| p.is_file())
}

/// The (width, height) of every chart on the page, in order.
fn chart_sizes(html: &str) -> Vec<(u32, u32)> {
    html.split(r#"<figure class="chart"><svg"#)
        .skip(1)
        .map(|s| {
            let attr = |name: &str| -> u32 {
                let k = format!(r#" {name}=""#);
                let v = &s[s.find(&k).unwrap() + k.len()..];
                v[..v.find('"').unwrap()].parse::<f64>().unwrap().ceil() as u32
            };
            (attr("width"), attr("height"))
        })
        .collect()
}

/// Every request line that reached the proxy (connections that sent none are not kept).
type Requests = Arc<Mutex<Vec<String>>>;

fn proxy() -> (u16, Requests) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Requests = Arc::default();
    let log = seen.clone();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let mut buf = [0u8; 512];
            let n = conn.read(&mut buf).unwrap_or(0);
            let line = String::from_utf8_lossy(&buf[..n]);
            // A connection the browser opened ahead and closed unused (Chromium 148
            // preconnects to its proxy) asks for nothing: only request lines count.
            if let Some(first) = line.lines().map(str::trim).find(|l| !l.is_empty()) {
                log.lock().unwrap().push(first.to_string());
            }
        }
    });
    (port, seen)
}

/// The host a proxied request line asks for (`CONNECT host:443`, `GET http://host/...`).
fn host(request: &str) -> String {
    let target = request.split_whitespace().nth(1).unwrap_or("");
    let target = target.split("://").last().unwrap_or(target);
    target.split(['/', ':']).next().unwrap_or("").to_string()
}

/// Opens `url` in headless Chromium: its DOM after loading, a screenshot of `size`, and the
/// requests that tried to leave.
fn open(browser: &Path, url: &str, size: (u32, u32), shot: &Path) -> (String, Vec<String>) {
    let (port, seen) = proxy();
    let url = url.to_string();
    let run = |extra: &[String]| {
        let mut args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--hide-scrollbars".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-extensions".into(),
            "--disable-default-apps".into(),
            "--no-pings".into(),
            "--disable-domain-reliability".into(),
            "--disable-client-side-phishing-detection".into(),
            "--disable-features=NetworkTimeServiceQuerying,OptimizationHints,Translate,MediaRouter"
                .into(),
            format!("--proxy-server=http://127.0.0.1:{port}"),
            "--proxy-bypass-list=<-loopback>".into(),
            format!(
                "--user-data-dir={}",
                shot.with_extension("profile").display()
            ),
        ];
        args.extend_from_slice(extra);
        args.push(url.clone());
        let o = std::process::Command::new(browser)
            .args(&args)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    run(&[
        format!("--window-size={},{}", size.0, size.1),
        format!("--screenshot={}", shot.display()),
    ]);
    let dom = run(&["--dump-dom".to_string()]);
    let requests = seen.lock().unwrap().clone();
    (dom, requests)
}

/// The screenshot's pixels: (width, rows of RGB).
fn pixels(png_path: &Path) -> (u32, Vec<[u8; 3]>) {
    let file = std::fs::File::open(png_path).unwrap();
    let mut dec = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .unwrap();
    let mut buf = vec![0; dec.output_buffer_size().unwrap()];
    let info = dec.next_frame(&mut buf).unwrap();
    let step = info.color_type.samples();
    let px = buf[..info.buffer_size()]
        .chunks(step)
        .map(|p| [p[0], p[1], p[2]])
        .collect();
    (info.width, px)
}

/// Checks the page of `html` in the browser: each chart's band of the screenshot holds
/// drawing (`coloured` of them curves in colour), `numbers` are in the DOM, and nothing was
/// requested.
fn check_in_browser(page: &Path, coloured: usize, numbers: &[String]) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var_os("DESCENT_REQUIRE_CHROMIUM").is_none(),
            "DESCENT_REQUIRE_CHROMIUM is set but no chromium was found (set DESCENT_CHROMIUM)"
        );
        eprintln!(
            "{}: browser check skipped: no chromium (apt-get install chromium)",
            page.display()
        );
        return;
    };
    let html = std::fs::read_to_string(page).unwrap();
    let sizes = chart_sizes(&html);
    let width = sizes.iter().map(|s| s.0).max().unwrap() + 2 * PAD;
    let height = HEADER + sizes.iter().map(|s| s.1 + GAP).sum::<u32>() + 40;
    let shot = page.with_extension("png");
    let (_, own) = open(
        &browser,
        "about:blank",
        (400, 300),
        &shot.with_extension("blank.png"),
    );
    let own: Vec<String> = own.iter().map(|r| host(r)).collect();
    let url = format!("file://{}", page.display());
    let (dom, requests) = open(&browser, &url, (width, height), &shot);
    let left: Vec<&String> = requests
        .iter()
        .filter(|r| !own.contains(&host(r)))
        .collect();
    assert!(
        left.is_empty(),
        "requests left the page: {left:?} (the browser's own: {own:?})"
    );
    assert_eq!(
        dom.matches("<svg").count(),
        sizes.len(),
        "every chart in the DOM"
    );
    for n in numbers {
        assert!(
            dom.contains(&format!("<td>{n}</td>")),
            "{n} not in a table cell of the DOM"
        );
    }
    let (w, px) = pixels(&shot);
    let mut top = HEADER;
    for (i, &(cw, ch)) in sizes.iter().enumerate() {
        let band = |keep: &dyn Fn([u8; 3]) -> bool| -> usize {
            (top..top + ch)
                .flat_map(|y| (PAD..PAD + cw).map(move |x| (x, y)))
                .filter(|&(x, y)| keep(px[(y * w + x) as usize]))
                .count()
        };
        let drawn = band(&|p| p.iter().any(|&c| c < 200));
        assert!(
            drawn > 2000,
            "chart {i} at y {top}: only {drawn} drawn pixels"
        );
        if i < coloured {
            let colour = band(&|p| p.iter().max().unwrap() - p.iter().min().unwrap() > 80);
            assert!(
                colour > 300,
                "chart {i} at y {top}: only {colour} coloured pixels"
            );
        }
        top += ch + GAP;
    }
    // Below the last chart the band is the tables': no chart was drawn lower than its place.
    assert!(top <= height);
}

#[test]
fn a_run_report_page_shows_its_charts_epochs_and_settings() {
    let dir = tempfile::tempdir().unwrap();
    let data = classes_source(dir.path(), 300, 3);
    let run = dir.path().join("run");
    ok(&[
        "train",
        "--data",
        &data,
        "--optimizer",
        "adam",
        "--lr",
        "0.01",
        "--epochs",
        "3",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let page = dir.path().join("out/report.html");
    let out = ok(&[
        "report",
        run.to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    assert!(out.contains("wrote") && page.exists(), "{out}");
    let html = std::fs::read_to_string(&page).unwrap();
    for remote in ["http://", "https://", " src=", " href=", "url(h", "@import"] {
        assert!(!html.contains(remote), "the page refers to {remote}");
    }
    // The run's numbers, as metrics.jsonl has them, in the epochs table.
    let metrics = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
    let numbers: Vec<String> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "epoch")
        .map(|v| format!("{:.4}", v["train_loss"].as_f64().unwrap()))
        .collect();
    assert_eq!(numbers.len(), 3);
    for n in &numbers {
        assert!(html.contains(&format!("<td>{n}</td>")), "{n}");
    }
    assert!(
        html.contains("<td>config.optimizer.lr</td><td>0.01</td>"),
        "the settings"
    );
    assert_eq!(chart_sizes(&html).len(), 2);
    check_in_browser(&page, 2, &numbers);
}

#[test]
fn a_study_page_shows_its_charts_and_trials() {
    let dir = tempfile::tempdir().unwrap();
    let storage = tiny_gpt_study(dir.path(), 5, 8, &[]);
    let page = dir.path().join("study.html");
    let out = ok(&[
        "tune",
        "show",
        "--storage",
        &storage,
        "--study",
        "s",
        "--out",
        dir.path().join("charts").to_str().unwrap(),
        "--html",
        page.to_str().unwrap(),
    ]);
    let html = std::fs::read_to_string(&page).unwrap();
    assert_eq!(
        chart_sizes(&html).len(),
        4,
        "history, intermediate, importances, parallel"
    );
    // Every trial's value, as `tune show` prints it in its table, is a cell of the page.
    let storage = std::sync::Arc::new(
        descent_tune::SqlStorage::open_sqlite(dir.path().join("t.db")).unwrap(),
    );
    let trials = descent_tune::Study::load("s", storage)
        .unwrap()
        .trials()
        .unwrap();
    let values: Vec<String> = trials
        .iter()
        .map(|t| format!("{:.6}", t.value.unwrap()))
        .collect();
    for v in &values {
        assert!(html.contains(&format!("<td>{v}</td>")), "{v} in {out}");
    }
    assert!(html.contains("Parameter importances"));
    check_in_browser(&page, 2, &values);
}
