//! Guards: processes of their own that undo what a `lazarus` command left
//! half done when that command dies first (SIGKILL, the OOM killer, a
//! closed terminal), since only the command itself would otherwise undo it.
//!
//! The command starts its guard (a hidden subcommand of this same binary)
//! before it changes anything, in a session of its own (a Ctrl-C at the
//! terminal does not reach it), with a pipe on its stdin. A command that
//! ends normally writes `done` and closes the pipe, and the guard just
//! exits. If the pipe closes without `done`, the command died: the guard
//! does its undoing. Before that, the command may tell it what it is about
//! to make (a line each), so that the guard undoes exactly that. Used by
//! frozen checkpoints (thaw and unlock the members: `checkpoint --group`,
//! and a checkpoint that stops its container), by `restore --import` and
//! `serve` (remove the containers being restored, and their scratch
//! directory), and by migrations' packet filter rules.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use crate::error::Result;

const DONE: &str = "done";

/// A running guard, held by the command it guards.
pub struct Guard {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Guard {
    /// Starts this binary with `args` (global flags, the guard's subcommand
    /// and its arguments) as the guard of `what`.
    pub fn start(args: &[String], what: &str) -> Result<Guard> {
        // This very program, even after its file was replaced (every
        // scripts/install.sh does that under a long-running `serve`): the
        // kernel's link to the running executable still reaches the old
        // inode, where the path would name the new file, or nothing.
        let mut cmd = Command::new("/proc/self/exe");
        cmd.arg0("lazarus")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        // SAFETY: setsid is async-signal-safe and the child execs at once.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = cmd.spawn().map_err(lazarus_core::Error::io(format!(
            "start the guard of {what}"
        )))?;
        let stdin = child.stdin.take();
        Ok(Guard { child, stdin })
    }

    /// Tells the guard one line (what the command is about to make), before
    /// the command makes it.
    pub fn tell(&self, line: &str) -> Result<()> {
        let mut stdin = self.stdin.as_ref().ok_or_else(|| {
            crate::error::Error::Refused("internal: the guard was already dismissed".into())
        })?;
        writeln!(stdin, "{line}")
            .and_then(|_| stdin.flush())
            .map_err(lazarus_core::Error::io("tell the guard what is being made"))?;
        Ok(())
    }

    /// The command ended as it should (whatever its outcome): the guard is
    /// told and waited for.
    pub fn dismiss(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{DONE}");
        }
        let mut watch = lazarus_core::criu::DirectWait;
        let _ = lazarus_core::criu::ExitWatch::wait(
            &mut watch,
            &mut self.child,
            Duration::from_secs(10),
        );
    }
}

/// In the guard: blocks until the command dismisses it (true) or dies
/// without doing so (false: its end of the pipe closed).
pub fn dismissed() -> bool {
    listen(|_| {})
}

/// In the guard: hands each line the command tells ([`Guard::tell`]) to
/// `told`, until the command dismisses it (true) or dies without doing so
/// (false).
pub fn listen(mut told: impl FnMut(&str)) -> bool {
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    loop {
        let mut line = String::new();
        match stdin.read_line(&mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if line.trim() == DONE => return true,
            Ok(_) => told(line.trim_end_matches('\n')),
        }
    }
}
