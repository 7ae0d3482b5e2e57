//! Progress bars that appear only on a terminal and never garble the log lines.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar on stderr when stderr is a terminal; lines printed through it stay whole.
pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    pub fn new(enabled: bool) -> Self {
        Self {
            bar: (enabled && std::io::stderr().is_terminal()).then(|| {
                // Hidden until the first epoch starts, so that no empty bar flashes.
                let b = ProgressBar::hidden();
                b.set_style(
                    ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ({eta})")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                b
            }),
        }
    }

    pub fn reset(&self, prefix: String, len: u64) {
        if let Some(b) = &self.bar {
            let first = b.is_hidden();
            b.reset();
            b.set_prefix(prefix);
            b.set_length(len);
            b.set_position(0);
            if first {
                b.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    }

    pub fn set(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }
}

/// What both bars do with lines: print them whole with the bar (if any) out of the way,
/// and clear the bar at the end.
pub trait Lines {
    /// The bar, where stderr is a terminal.
    fn bar(&self) -> Option<&ProgressBar>;

    /// Prints a line on stdout with the bar out of the way.
    fn println(&self, line: &str) {
        self.above(|| out!("{line}"));
    }

    /// A line for the standard error (a warning), above the bar.
    fn eprintln(&self, line: &str) {
        self.above(|| eprintln!("{line}"));
    }

    /// Removes the bar.
    fn finish(&self) {
        if let Some(b) = self.bar() {
            b.finish_and_clear();
        }
    }

    /// Runs `print` with the bar out of the way, so that its line stays whole.
    fn above(&self, print: impl FnOnce()) {
        match self.bar() {
            Some(b) => b.suspend(print),
            None => print(),
        }
    }
}

impl Lines for Bar {
    fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }
}

/// Download progress for `descent-data`, in bytes.
pub struct FetchBar {
    bar: Option<ProgressBar>,
}

impl FetchBar {
    pub fn new() -> Self {
        Self { bar: None }
    }
}

impl descent_data::Progress for FetchBar {
    fn message(&mut self, msg: &str) {
        eprintln!("{msg}");
    }

    fn start(&mut self, what: &str, total: Option<u64>) {
        if std::io::stderr().is_terminal() {
            let b = match total {
                Some(n) => {
                    let b = ProgressBar::new(n);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{prefix} [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec})",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                    b
                }
                // Unknown length (or not bytes at all): a spinner that shows it is alive.
                None => {
                    let b = ProgressBar::new_spinner();
                    b.enable_steady_tick(std::time::Duration::from_millis(100));
                    b
                }
            };
            b.set_prefix(what.to_string());
            if total.is_none() {
                b.set_message(what.to_string());
            }
            self.bar = Some(b);
        }
    }

    fn advance(&mut self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }

    fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

/// Progress over whole pieces of work (a study's trials, a race's epochs or steps) with a
/// status after the count, the time so far and an estimate of the rest; on a terminal only,
/// and lines printed through it stay whole.
pub struct CountBar {
    bar: Option<ProgressBar>,
}

impl CountBar {
    /// `total` pieces called `unit` ("trials").
    pub fn new(unit: &str, total: u64) -> Self {
        Self::on(std::io::stderr().is_terminal(), unit, total)
    }

    fn on(terminal: bool, unit: &str, total: u64) -> Self {
        let bar = terminal.then(|| {
            let b = ProgressBar::new(total);
            b.set_style(
                ProgressStyle::with_template(&format!(
                    "[{{bar:30}}] {{pos}}/{{len}} {unit} {{msg}} | {{elapsed}} so far, ~{{eta}} to go"
                ))
                .expect("valid template")
                .progress_chars("=> "),
            );
            b
        });
        CountBar { bar }
    }

    /// One more piece done; `status` follows the count.
    pub fn advance(&self, status: String) {
        self.advance_by(1, status);
    }

    /// `n` more pieces done.
    pub fn advance_by(&self, n: u64, status: String) {
        if let Some(b) = &self.bar {
            b.set_message(status);
            b.inc(n);
        }
    }
}

impl Lines for CountBar {
    fn bar(&self) -> Option<&ProgressBar> {
        self.bar.as_ref()
    }
}

/// A study's status after each trial: `best 97.12% (trial 4), 3 pruned, 1 failed`.
pub fn study_status(best: Option<(u64, String)>, pruned: u64, failed: u64) -> String {
    let mut s = match best {
        Some((n, v)) => format!("best {v} (trial {n})"),
        None => "no complete trial yet".to_string(),
    };
    if pruned > 0 {
        s.push_str(&format!(", {pruned} pruned"));
    }
    if failed > 0 {
        s.push_str(&format!(", {failed} failed"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_study_status_says_the_best_and_what_was_cut_short() {
        assert_eq!(study_status(None, 0, 0), "no complete trial yet");
        assert_eq!(
            study_status(Some((4, "val_acc 97.12%".into())), 3, 1),
            "best val_acc 97.12% (trial 4), 3 pruned, 1 failed"
        );
        assert_eq!(
            study_status(Some((0, "x".into())), 0, 2),
            "best x (trial 0), 2 failed"
        );
    }

    #[test]
    fn off_a_terminal_there_is_no_bar() {
        let quiet = CountBar::on(false, "trials", 10);
        assert!(quiet.bar.is_none());
        quiet.advance("best".into());
        let shown = CountBar::on(true, "trials", 10);
        shown.advance("best 1".into());
        let b = shown.bar.as_ref().unwrap();
        assert_eq!((b.position(), b.length()), (1, Some(10)));
        assert_eq!(b.message(), "best 1");
        shown.finish();
    }
}
