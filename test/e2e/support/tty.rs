//! Driving interactive clients (`ctr run -t`, `docker run -it`, `docker exec
//! -it`) through a real terminal: a tmux server on a private socket inside
//! the daemon set's directory.

use crate::support::cmd::{poll, run};
use crate::support::harness::Daemons;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct Tmux {
    socket: PathBuf,
    session: String,
    /// Where the wrapper shell writes the command's exit status: tmux's own
    /// `pane_dead_status` is sometimes empty (it can notice the pane's end
    /// before reaping the process).
    status_file: PathBuf,
}

impl Tmux {
    /// Starts `argv` in a detached 120x40 tmux session. The pane stays after
    /// the command exits so that its last screen can be read.
    pub fn start(d: &Daemons, session: &str, argv: &[String]) -> Tmux {
        let conf = d.path("tmux.conf");
        let settings = "set -g remain-on-exit on\nset -g history-limit 2000\n";
        std::fs::write(&conf, settings).unwrap();
        let t = Tmux {
            socket: d.path("tmux.sock"),
            session: session.to_string(),
            status_file: d.path(&format!("{session}.status")),
        };
        let wrapper = format!("\"$@\"; echo $? > {}", t.status_file.display());
        let mut cmd = t.tmux(&[]);
        cmd.arg("-f").arg(&conf);
        cmd.args(["new-session", "-d", "-x", "120", "-y", "40", "-s", session]);
        cmd.args(["--", "sh", "-c", &wrapper, "sh"]).args(argv);
        run(&mut cmd).ok();
        t
    }

    fn tmux(&self, args: &[&str]) -> Command {
        let mut c = Command::new("tmux");
        c.arg("-S").arg(&self.socket).args(args);
        c
    }

    fn target(&self) -> String {
        format!("{}:0.0", self.session)
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        let t = self.target();
        run(&mut self.tmux(&["send-keys", "-t", &t, "-l", text])).ok();
        run(&mut self.tmux(&["send-keys", "-t", &t, "Enter"])).ok();
    }

    /// The pane's visible text plus scroll-back.
    pub fn screen(&self) -> String {
        let t = self.target();
        run(&mut self.tmux(&["capture-pane", "-p", "-J", "-S", "-2000", "-t", &t]))
            .ok()
            .stdout
    }

    /// Waits until the screen satisfies `pred` (described by `what`).
    pub fn wait_screen(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let mut last = String::new();
        poll(timeout, || {
            last = self.screen();
            pred(&last).then(|| last.clone())
        })
        .unwrap_or_else(|| panic!("no {what} on the terminal within {timeout:?}; screen:\n{last}"))
    }

    /// Waits until some line of the screen, trimmed, equals `line`.
    pub fn wait_line(&self, line: &str, timeout: Duration) -> String {
        let what = format!("line {line:?}");
        self.wait_screen(&what, timeout, |s| s.lines().any(|l| l.trim() == line))
    }

    /// Waits for the command in the pane to exit; returns its exit status.
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        let status = poll(timeout, || {
            let text = std::fs::read_to_string(&self.status_file).ok()?;
            text.ends_with('\n')
                .then(|| text.trim().parse::<i32>().expect("exit status"))
        });
        status.unwrap_or_else(|| {
            let screen = self.screen();
            panic!("terminal command still running after {timeout:?}; screen:\n{screen}")
        })
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = run(&mut self.tmux(&["kill-server"]));
    }
}

/// Interactive `sh` on a terminal: arithmetic, `tty`, and the exit status.
pub fn interactive_sh(d: &Daemons, session: &str, argv: Vec<String>) {
    let term = Tmux::start(d, session, &argv);
    term.wait_line("/ #", Duration::from_secs(30));
    term.type_line("echo $((6*7)); tty");
    term.wait_line("42", Duration::from_secs(10));
    let is_pty = |s: &str| s.lines().any(|l| l.trim().starts_with("/dev/pts/"));
    term.wait_screen("`tty` naming a pty", Duration::from_secs(10), is_pty);
    term.type_line("exit 4");
    assert_eq!(
        term.wait_exit(Duration::from_secs(30)),
        4,
        "{}",
        term.screen()
    );
}
