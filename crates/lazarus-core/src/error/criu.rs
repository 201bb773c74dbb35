//! A CRIU failure as data: which operation, what went wrong, CRIU's own
//! error lines, where its log is, and what to do about it.
//!
//! Here rather than in the CRIU driver (`criu`), which re-exports it: the crate's
//! [`Error`](super::Error) carries it, and the CRIU driver returns that
//! `Error`, so keeping it beside `Error` keeps the driver a layer above
//! the errors instead of a circle with them.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::ErrorKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriuOp {
    Version,
    Dump,
    Restore,
}

impl fmt::Display for CriuOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CriuOp::Version => "version check",
            CriuOp::Dump => "dump",
            CriuOp::Restore => "restore",
        })
    }
}

/// How a CRIU conversation ended badly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CriuFailure {
    /// CRIU could not be started (missing binary, bad path).
    NotInstalled(String),
    /// CRIU is installed but cannot do this here (too old for the kernel).
    Unsupported(String),
    /// CRIU answered with a failure of its own.
    Refused { errno: i32, message: String },
    /// CRIU exited or closed its socket without answering.
    Crashed(String),
    /// No answer within the deadline; CRIU was killed.
    TimedOut(Duration),
    /// CRIU's log outgrew its bound (this many bytes; a looping CRIU): CRIU
    /// was killed.
    LogTooLarge(u64),
    /// A malformed message, or the socket failed.
    Protocol(String),
    /// The caller called it off (its client went away); CRIU was killed.
    Cancelled,
}

impl fmt::Display for CriuFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CriuFailure::NotInstalled(m) | CriuFailure::Unsupported(m) => f.write_str(m),
            CriuFailure::Refused { errno, message } if message.is_empty() => {
                write!(f, "CRIU reported failure (errno {errno})")
            }
            CriuFailure::Refused { errno, message } => {
                write!(f, "CRIU reported failure (errno {errno}): {message}")
            }
            CriuFailure::Crashed(m) => write!(f, "CRIU ended without answering: {m}"),
            CriuFailure::TimedOut(after) => write!(
                f,
                "CRIU did not answer within {}s and was killed (criu_timeout_seconds in \
                 /etc/lazarus/config.toml or the file LAZARUS_CONFIG names)",
                after.as_secs()
            ),
            CriuFailure::LogTooLarge(bytes) => write!(
                f,
                "CRIU's log grew past {} MiB and CRIU was killed: it is looping, most likely \
                 on a damaged image (criu_log_max_mib in /etc/lazarus/config.toml or the \
                 file LAZARUS_CONFIG names)",
                bytes >> 20
            ),
            CriuFailure::Protocol(m) => write!(f, "CRIU conversation failed: {m}"),
            CriuFailure::Cancelled => f.write_str(
                "called off: the client that asked went away (CRIU was stopped, nothing was kept)",
            ),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CriuError {
    pub op: CriuOp,
    /// What was being done, e.g. "checkpoint of container web".
    pub subject: String,
    pub failure: CriuFailure,
    /// CRIU's own `Error (...)` lines, cause first (harmless ones dropped).
    pub errors: Vec<String>,
    /// The last lines of CRIU's log.
    pub log_tail: Vec<String>,
    /// Where CRIU's full log is kept.
    pub log: Option<PathBuf>,
    /// What the user can do about it, when known.
    pub hint: Option<String>,
    /// A clean-up that failed after this error, kept beside it.
    pub cleanup: Option<String>,
}

impl CriuError {
    pub fn new(op: CriuOp, failure: CriuFailure) -> Self {
        CriuError {
            op,
            subject: String::new(),
            failure,
            errors: Vec::new(),
            log_tail: Vec::new(),
            log: None,
            hint: None,
            cleanup: None,
        }
    }

    pub fn kind(&self) -> ErrorKind {
        match self.failure {
            CriuFailure::NotInstalled(_) | CriuFailure::Unsupported(_) => {
                ErrorKind::FailedPrecondition
            }
            CriuFailure::TimedOut(_) | CriuFailure::LogTooLarge(_) => ErrorKind::DeadlineExceeded,
            _ => ErrorKind::CriuFailed,
        }
    }
}

impl fmt::Display for CriuError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = match self.subject.is_empty() {
            true => format!("CRIU {}", self.op),
            false => self.subject.clone(),
        };
        // What to do, when known, leads: CRIU's own words come after.
        match &self.hint {
            Some(hint) => write!(f, "{subject} failed: {hint}\n{}", self.failure)?,
            None => write!(f, "{subject} failed: {}", self.failure)?,
        }
        if !self.errors.is_empty() {
            write!(f, "\n{}", self.errors.join("\n"))?;
        }
        if !self.log_tail.is_empty() {
            if !self.errors.is_empty() {
                f.write_str("\n...")?;
            }
            write!(f, "\n{}", self.log_tail.join("\n"))?;
        }
        if let Some(log) = &self.log {
            write!(f, "\n(full CRIU log: {})", log.display())?;
        }
        if let Some(c) = &self.cleanup {
            write!(f, "\n(the clean-up after it failed too: {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for CriuError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_to_do_leads_and_crius_lines_follow() {
        let mut e = CriuError::new(
            CriuOp::Dump,
            CriuFailure::Refused {
                errno: 0,
                message: "Connected TCP socket, consider using --tcp-established option.".into(),
            },
        );
        e.subject = "checkpoint of container web".into();
        e.errors = vec!["(0.1) Error (sk-inet.c:1): the cause".into()];
        e.log = Some("/run/lazarus/logs/web/dump.log".into());
        let plain = e.to_string();
        assert!(plain.starts_with("checkpoint of container web failed: CRIU reported"));
        e.hint = Some("CRIU needs --tcp-established: create it with the annotation a=true".into());
        let text = e.to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "checkpoint of container web failed: CRIU needs --tcp-established: create it with \
             the annotation a=true"
        );
        assert!(lines[1].contains("Connected TCP socket"), "{text}");
        assert!(lines[2].contains("the cause"), "{text}");
        assert!(lines[3].contains("dump.log"), "{text}");
    }
}
