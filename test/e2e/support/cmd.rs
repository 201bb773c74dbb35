//! Running client commands (ctr, docker, tmux, sh) with a deadline, so a hang
//! fails the test instead of blocking the suite, and polling helpers.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Default deadline for one client command.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a finished command produced.
#[derive(Debug, Clone)]
pub struct Out {
    pub cmdline: String,
    /// Exit code; `None` when killed by a signal.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// Panics (with everything the command printed) unless it exited 0.
    pub fn ok(self) -> Out {
        if self.code != Some(0) {
            panic!("command failed: {self}");
        }
        self
    }

    /// Panics unless the command failed (non-zero exit).
    pub fn err(self) -> Out {
        if self.code == Some(0) {
            panic!("command unexpectedly succeeded: {self}");
        }
        self
    }

    /// stdout and stderr together, for assertions on error messages.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    /// stdout with surrounding whitespace removed.
    pub fn text(&self) -> &str {
        self.stdout.trim()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "`{}` exit={:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.cmdline, self.code, self.stdout, self.stderr
        )
    }
}

/// A command running in the background (its own process group), whose output
/// is collected as it arrives.
pub struct Proc {
    cmdline: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    readers: Vec<JoinHandle<()>>,
}

fn collect(mut from: impl Read + Send + 'static, into: Arc<Mutex<Vec<u8>>>) -> JoinHandle<()> {
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The command starts with the terminal's signals at their defaults, as
/// a shell's foreground job does, whatever this process inherited: a
/// suite started in the background of a non-interactive shell ignores
/// SIGINT and SIGQUIT, and its children would too (so a Ctrl-C case
/// would test nothing).
pub fn default_signals(cmd: &mut Command) {
    // SAFETY: signal() is async-signal-safe; nothing else runs between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            for sig in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
}

impl Proc {
    /// Starts `cmd` with stdin from /dev/null.
    pub fn spawn(cmd: &mut Command) -> Proc {
        Proc::start(cmd, Stdio::null())
    }

    /// Starts `cmd` with a pipe on stdin, to be written by [`Proc::feed`].
    pub fn spawn_piped(cmd: &mut Command) -> Proc {
        Proc::start(cmd, Stdio::piped())
    }

    fn start(cmd: &mut Command, stdin: Stdio) -> Proc {
        let cmdline = describe(cmd);
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(stdin)
            .process_group(0);
        default_signals(cmd);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let readers = vec![
            collect(child.stdout.take().unwrap(), stdout.clone()),
            collect(child.stderr.take().unwrap(), stderr.clone()),
        ];
        Proc {
            cmdline,
            stdin: child.stdin.take(),
            child,
            stdout,
            stderr,
            readers,
        }
    }

    /// Writes `input` to the command's stdin (in a thread), then closes it.
    pub fn feed(&mut self, input: &[u8]) {
        let mut pipe = self
            .stdin
            .take()
            .expect("stdin not piped or already closed");
        let input = input.to_vec();
        thread::spawn(move || {
            let _ = pipe.write_all(&input);
        });
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// True while the command has not exited.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything printed on stdout so far.
    pub fn stdout_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap()).into_owned()
    }

    fn kill_group(&self) {
        unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
    }

    fn finish(mut self, status: Option<ExitStatus>) -> Out {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        let text =
            |b: &Arc<Mutex<Vec<u8>>>| String::from_utf8_lossy(&b.lock().unwrap()).into_owned();
        Out {
            cmdline: self.cmdline.clone(),
            code: status.and_then(|s| s.code()),
            stdout: text(&self.stdout),
            stderr: text(&self.stderr),
        }
    }

    /// Waits for the command to exit; kills its process group and panics
    /// (showing the partial output) when `timeout` passes first.
    pub fn wait(self, timeout: Duration) -> Out {
        match self.wait_or_kill(timeout) {
            Ok(out) => out,
            Err(out) => panic!("timed out after {timeout:?}: {out}"),
        }
    }

    /// Waits for the command to exit; when `timeout` passes first, kills its
    /// process group and returns the partial output as the error.
    pub fn wait_or_kill(mut self, timeout: Duration) -> Result<Out, Out> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // Let anything the command left in its group go, so the pipe
                // readers see EOF.
                self.kill_group();
                return Ok(self.finish(Some(status)));
            }
            if Instant::now() >= deadline {
                self.kill_group();
                let status = self.child.wait().ok();
                return Err(self.finish(status));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill_group();
            let _ = self.child.wait();
        }
    }
}

/// Runs `cmd` to completion within `timeout`, with `stdin` (if any) written
/// to it at once.
pub fn run_timeout(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Out {
    match stdin {
        None => Proc::spawn(cmd).wait(timeout),
        Some(input) => {
            let mut p = Proc::spawn_piped(cmd);
            p.feed(input);
            p.wait(timeout)
        }
    }
}

/// Runs `cmd` to completion within [`CMD_TIMEOUT`].
pub fn run(cmd: &mut Command) -> Out {
    run_timeout(cmd, None, CMD_TIMEOUT)
}

/// Calls `probe` every 100 ms until it returns `Some`; `None` when `timeout`
/// passes first.
pub fn poll<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// [`poll`], panicking naming `what` on timeout.
pub fn wait_until<T>(what: &str, timeout: Duration, probe: impl FnMut() -> Option<T>) -> T {
    poll(timeout, probe).unwrap_or_else(|| panic!("timed out after {timeout:?} waiting for {what}"))
}

/// The numbers printed by a counter loop (`echo tick-N`), in order.
pub fn ticks(output: &str) -> Vec<u64> {
    output
        .lines()
        .filter_map(|l| l.trim().strip_prefix("tick-"))
        .filter_map(|n| n.parse().ok())
        .collect()
}

/// Shell snippet: prints `tick-0`, `tick-1`, ... every 0.2 s, forever.
pub const COUNTER: &str = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done";

/// The tail of the CRIU log that runc's shim names in an error ("path= X"
/// for a dump, "log file: X" for a restore), read while the bundle that
/// holds it still exists; runc's own message says only "criu failed".
pub fn criu_log_named_in(error: &str) -> String {
    let named = ["path= ", "log file: "].iter().find_map(|marker| {
        let from = error.find(marker)? + marker.len();
        let path: String = error[from..]
            .chars()
            .take_while(|c| !c.is_whitespace() && *c != ':' && *c != '"')
            .collect();
        (!path.is_empty()).then_some(path)
    });
    let Some(path) = named else {
        return "(no CRIU log named)".into();
    };
    match std::fs::read_to_string(&path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            format!("tail of {path}:\n{}", tail.join("\n"))
        }
        Err(e) => format!("{path}: {e}"),
    }
}
