//! How the CRIU driver waits for the CRIU process it started.
//!
//! A containerd shim is a child subreaper whose reaper calls `waitpid(-1)`
//! on every SIGCHLD: a second `wait` there can get ECHILD or steal another
//! child's status, so the shim routes the wait through its reaper. A plain
//! program (the CLI, tests) waits on the child directly.

use std::process::Child;
use std::time::{Duration, Instant};

use crate::error::Result;

pub trait ChildWaiter: Send + Sync {
    /// Starts watching for exits. Called before the child is spawned, so
    /// that its exit cannot be missed.
    fn watch(&self) -> Result<Box<dyn ExitWatch>>;
}

pub trait ExitWatch: Send {
    /// Waits at most `timeout` for `child` to exit: its exit status, or None.
    fn wait(&mut self, child: &mut Child, timeout: Duration) -> Option<i32>;
}

/// Waits on the child itself: for processes that reap their own children.
pub struct DirectWait;

impl ChildWaiter for DirectWait {
    fn watch(&self) -> Result<Box<dyn ExitWatch>> {
        Ok(Box::new(DirectWait))
    }
}

impl ExitWatch for DirectWait {
    fn wait(&mut self, child: &mut Child, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    use std::os::unix::process::ExitStatusExt;
                    return Some(
                        status
                            .code()
                            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
                    );
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }
}
