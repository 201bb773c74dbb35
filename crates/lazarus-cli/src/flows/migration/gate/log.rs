//! The door's log of dropped connections (stderr): one line per drop
//! saying why, but at most `lines` per reason per window; the rest of a
//! window's drops are counted and said in one line per reason when the
//! window ends. However many connections a flood opens, the log grows by a
//! bounded number of lines a minute, and the reasons that are not flooded
//! are still logged one by one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Dropped;

/// Where the lines go.
pub type Sink = Arc<dyn Fn(&str) + Send + Sync>;

/// Lines to stderr, as the rest of the agent's log.
pub fn stderr() -> Sink {
    Arc::new(|line| eprintln!("{line}"))
}

pub(super) struct DropLog {
    sink: Sink,
    lines: u32,
    window: Duration,
    current: Mutex<Window>,
}

struct Window {
    started: Instant,
    /// Per reason: lines written, drops not written.
    counts: BTreeMap<&'static str, (u32, u64)>,
}

impl DropLog {
    pub(super) fn new(sink: Sink, lines: u32, window: Duration) -> DropLog {
        DropLog {
            sink,
            lines,
            window,
            current: Mutex::new(Window {
                started: Instant::now(),
                counts: BTreeMap::new(),
            }),
        }
    }

    /// Logs why the connection from `peer` was dropped.
    pub(super) fn dropped(&self, peer: SocketAddr, why: &Dropped) {
        let verb = match why {
            Dropped::Busy => "refused",
            _ => "dropped",
        };
        self.line(why.reason(), || {
            format!(
                "lazarus serve: {peer}: {verb} ({}): {}",
                why.reason(),
                why.detail()
            )
        });
    }

    /// Writes `line()` unless `reason` had its lines this window.
    pub(super) fn line(&self, reason: &'static str, line: impl FnOnce() -> String) {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        self.roll(&mut current);
        let (written, unwritten) = current.counts.entry(reason).or_default();
        if *written < self.lines {
            *written += 1;
            (self.sink)(&line());
        } else {
            *unwritten += 1;
        }
    }

    /// Ends the window if its time is up, saying what it did not log.
    fn roll(&self, current: &mut Window) {
        if current.started.elapsed() < self.window {
            return;
        }
        for (reason, (_, unwritten)) in &current.counts {
            if *unwritten > 0 {
                (self.sink)(&format!(
                    "lazarus serve: {unwritten} more connections dropped ({reason}) in the last \
                     {} s, not logged one by one",
                    self.window.as_secs_f64()
                ));
            }
        }
        current.started = Instant::now();
        current.counts.clear();
    }

    /// Says what each window left unlogged soon after it ends, even if no
    /// other drop comes to end it (runs for as long as the agent does).
    pub(super) fn flush_every(&self) {
        loop {
            std::thread::sleep(self.window / 4);
            let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
            self.roll(&mut current);
        }
    }
}
