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

    /// Prints a line on stdout with the bar out of the way.
    pub fn println(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| out!("{line}")),
            None => out!("{line}"),
        }
    }

    /// A line for the standard error (a warning), above the bar.
    pub fn eprintln(&self, line: &str) {
        match &self.bar {
            Some(b) => b.suspend(|| eprintln!("{line}")),
            None => eprintln!("{line}"),
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
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
