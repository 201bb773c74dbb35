//! Waiting for a child through containerd-shim's reaper.
//!
//! The shim is a child subreaper and the crate's reaper `waitpid(-1)`s on
//! every SIGCHLD, broadcasting each exit. A second wait would race it (and
//! get ECHILD), so children the shim starts (CRIU, the helper) are waited
//! for here: subscribed before the spawn, then matched by pid.

use std::process::Child;
use std::time::{Duration, Instant};

use containerd_shim::monitor::{monitor_subscribe, Subject, Subscription, Topic};
use lazarus_core::criu::{ChildWaiter, ExitWatch};

pub struct ReaperWait;

impl ChildWaiter for ReaperWait {
    fn watch(&self) -> lazarus_core::Result<Box<dyn ExitWatch>> {
        let subscription = monitor_subscribe(Topic::Pid)
            .map_err(|e| lazarus_core::Error::Other(format!("subscribe to exits: {e}")))?;
        Ok(Box::new(ReaperWatch(subscription)))
    }
}

pub struct ReaperWatch(pub Subscription);

impl ReaperWatch {
    /// Waits at most `timeout` for `pid` to be reaped: its exit status.
    pub fn wait_pid(&self, pid: i32, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.0.rx.recv_timeout(left) {
                Ok(e) if matches!(e.subject, Subject::Pid(p) if p == pid) => {
                    return Some(e.exit_code)
                }
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }
}

impl ExitWatch for ReaperWatch {
    fn wait(&mut self, child: &mut Child, timeout: Duration) -> Option<i32> {
        self.wait_pid(child.id() as i32, timeout)
    }
}
