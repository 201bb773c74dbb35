//! Progress on a terminal: a bar with bytes and rate for what has a known
//! size, a spinner with bytes so far for what has not (CRIU writing images).
//! Drawn on stderr, and only when stdout is a terminal and the output is not
//! JSON: a script or a pipe sees only the result.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

/// Whether progress is drawn at all.
pub fn wanted(json: bool) -> bool {
    !json && std::io::stdout().is_terminal() && std::io::stderr().is_terminal()
}

impl Progress {
    fn new(bar: ProgressBar, show: bool) -> Progress {
        if !show {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        Progress { bar }
    }

    /// A bar over `total` bytes.
    pub fn bytes(show: bool, what: &str, total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what.to_string());
        Progress::new(bar, show)
    }

    /// A spinner counting bytes of unknown total.
    pub fn spinner(show: bool, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} {spinner} {bytes} {bytes_per_sec} {elapsed}")
                .expect("a valid template"),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::new(bar, show)
    }

    /// A spinner for a step of no size (the engine creating and restoring
    /// the container): what, and for how long so far.
    pub fn stage(show: bool, what: &str) -> Progress {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg:>12} {spinner} {elapsed}")
                .expect("a valid template"),
        );
        bar.set_message(what.to_string());
        bar.enable_steady_tick(Duration::from_millis(100));
        Progress::new(bar, show)
    }

    pub fn set(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    pub fn finish(self) {
        self.bar.finish_and_clear();
    }
}

/// The bytes of the regular files under `dir` (CRIU's images as it writes
/// them); what cannot be read counts as nothing.
pub fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| if m.is_dir() { 0 } else { m.len() })
        .sum()
}
