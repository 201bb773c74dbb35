//! The CLI's errors: the core's, and those of talking to containerd and
//! Docker, each saying what was being done and, where there is one, what
//! to do about it.

use containerd_client::tonic;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Core(#[from] lazarus_core::Error),
    #[error(transparent)]
    Inspect(#[from] lazarus_core::inspect::Error),
    #[error("cannot reach containerd at {address}: {why} (give its socket with --address or CONTAINERD_ADDRESS)")]
    ContainerdUnreachable { address: String, why: String },
    #[error("containerd: {context}: {message}")]
    Containerd {
        context: String,
        code: tonic::Code,
        message: String,
    },
    #[error(
        "cannot reach Docker at {address}: {why} (give its socket with --host or DOCKER_HOST)"
    )]
    DockerUnreachable { address: String, why: String },
    #[error("Docker: {context}: {message}")]
    Docker {
        context: String,
        status: u16,
        message: String,
    },
    /// The migration channel failed (peer not authenticated, connection
    /// lost or tampered with).
    #[error(transparent)]
    Channel(#[from] lazarus_core::channel::ChannelError),
    /// What the user asked for cannot be done as asked; the text says why
    /// and what would work.
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    NotFound(String),
    /// Something by that name exists already, or is in use (a container
    /// name taken, another agent holding a lock).
    #[error("{0}")]
    Conflict(String),
    /// CRIU failed in the runtime (through containerd): what failed and
    /// what to do first, CRIU's own lines after.
    #[error("{summary}{}", match .log.is_empty() { true => String::new(), false => format!("\n{}", .log) })]
    Criu { summary: String, log: String },
    /// A group checkpoint failed at one member; what became of the group
    /// (every member thawed and running on) is said after.
    #[error(
        "group checkpoint: {member}: {}; {outcome}{}",
        first_line(error),
        rest(error)
    )]
    Group {
        member: String,
        error: Box<Error>,
        outcome: String,
    },
    /// A stopping checkpoint of one container failed; what became of it
    /// (thawed, running on) is said after.
    #[error("checkpoint of {container}: {error}; {outcome}")]
    Checkpoint {
        container: String,
        error: Box<Error>,
        outcome: String,
    },
    /// The operation failed and so did undoing it: both are reported.
    #[error("{error}\n  and cleaning up failed too: {cleanup}")]
    Cleanup { error: Box<Error>, cleanup: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// The first line of an error's text (what failed, and what to do).
fn first_line(e: &Error) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

/// The lines after the first (a CRIU log excerpt), each on its own line.
fn rest(e: &Error) -> String {
    let text = e.to_string();
    match text.split_once('\n') {
        Some((_, rest)) => format!("\n{rest}"),
        None => String::new(),
    }
}

/// The CLI's exit codes, by kind of failure (docs/troubleshooting.md has
/// the table). Usage errors are clap's (2); a signal ends the CLI as the
/// shell's convention says (128 + the signal: 130 for SIGINT, 143 for
/// SIGTERM).
pub mod exit {
    /// Anything else (an I/O error, an engine's unexpected answer).
    pub const OTHER: u8 = 1;
    /// A malformed command line (clap's own code).
    pub const USAGE: u8 = 2;
    /// The container, image, archive or file named does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// Refused by policy or as asked: an archive asking for more than was
    /// granted, a container Lazarus does not run or that is not running,
    /// a bad signature, a peer refusing. (An input that is malformed, such
    /// as a file that is not an archive, is "other".)
    pub const REFUSED: u8 = 4;
    /// The name is taken, or the thing is busy (another agent's lock).
    pub const CONFLICT: u8 = 5;
    /// containerd or Docker cannot be reached (or not as this user).
    pub const UNREACHABLE: u8 = 6;
    /// CRIU failed (dump or restore), crashed or timed out.
    pub const CRIU: u8 = 7;
    /// Interrupted by SIGINT.
    pub const SIGINT: u8 = 130;
    /// Stopped by SIGTERM.
    pub const SIGTERM: u8 = 143;
}

impl Error {
    /// A gRPC status from containerd, with what was being done.
    pub fn containerd(context: impl Into<String>) -> impl FnOnce(tonic::Status) -> Error {
        let context = context.into();
        move |s| Error::Containerd {
            context,
            code: s.code(),
            message: s.message().to_string(),
        }
    }

    /// Whether containerd or Docker said "no such thing".
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::Containerd { code, .. } => *code == tonic::Code::NotFound,
            Error::Docker { status, .. } => *status == 404,
            Error::NotFound(_) => true,
            _ => false,
        }
    }

    /// The exit code for this error (see [`exit`]).
    pub fn exit_code(&self) -> u8 {
        use lazarus_core::error::ErrorKind as K;
        match self {
            Error::NotFound(_) => exit::NOT_FOUND,
            Error::Refused(_) => exit::REFUSED,
            Error::Inspect(lazarus_core::inspect::Error::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                exit::NOT_FOUND
            }
            Error::Inspect(_) => exit::OTHER,
            Error::Conflict(_) => exit::CONFLICT,
            Error::ContainerdUnreachable { .. } | Error::DockerUnreachable { .. } => {
                exit::UNREACHABLE
            }
            Error::Criu { .. } => exit::CRIU,
            Error::Core(e) => match e.kind() {
                K::NotFound => exit::NOT_FOUND,
                K::PermissionDenied => exit::REFUSED,
                K::CriuFailed | K::DeadlineExceeded => exit::CRIU,
                K::FailedPrecondition if e.criu().is_some() => exit::CRIU,
                K::InvalidArgument | K::FailedPrecondition | K::Internal => exit::OTHER,
            },
            Error::Containerd { code, message, .. } => match code {
                tonic::Code::NotFound => exit::NOT_FOUND,
                tonic::Code::AlreadyExists => exit::CONFLICT,
                tonic::Code::PermissionDenied | tonic::Code::InvalidArgument => exit::REFUSED,
                tonic::Code::Unavailable => exit::UNREACHABLE,
                _ if message.contains("CRIU") => exit::CRIU,
                _ => exit::OTHER,
            },
            Error::Docker { status, .. } => match status {
                404 => exit::NOT_FOUND,
                409 => exit::CONFLICT,
                _ => exit::OTHER,
            },
            Error::Channel(_) => exit::OTHER,
            Error::Group { error, .. }
            | Error::Checkpoint { error, .. }
            | Error::Cleanup { error, .. } => error.exit_code(),
        }
    }

    /// Keeps a failed clean-up's error beside the original one.
    pub fn with_cleanup(self, cleanup: Option<String>) -> Error {
        match cleanup {
            None => self,
            Some(c) => Error::Cleanup {
                error: Box::new(self),
                cleanup: c,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(e: lazarus_core::Error) -> Error {
        Error::Core(e)
    }

    #[test]
    fn each_kind_of_failure_has_its_exit_code() {
        let criu = lazarus_core::criu::CriuError::new(
            lazarus_core::criu::CriuOp::Restore,
            lazarus_core::criu::CriuFailure::Crashed("gone".into()),
        );
        let cases: Vec<(Error, u8)> = vec![
            (Error::NotFound("no archive".into()), exit::NOT_FOUND),
            (
                core(lazarus_core::Error::NotFound("x".into())),
                exit::NOT_FOUND,
            ),
            (
                Error::Docker {
                    context: "inspect".into(),
                    status: 404,
                    message: "no such container".into(),
                },
                exit::NOT_FOUND,
            ),
            (Error::Refused("asks for hooks".into()), exit::REFUSED),
            (
                core(lazarus_core::Error::PermissionDenied("hooks".into())),
                exit::REFUSED,
            ),
            (Error::Conflict("name taken".into()), exit::CONFLICT),
            (
                Error::Docker {
                    context: "create".into(),
                    status: 409,
                    message: "Conflict".into(),
                },
                exit::CONFLICT,
            ),
            (
                Error::ContainerdUnreachable {
                    address: "/x".into(),
                    why: "no such socket".into(),
                },
                exit::UNREACHABLE,
            ),
            (
                Error::DockerUnreachable {
                    address: "unix:///x".into(),
                    why: "refused".into(),
                },
                exit::UNREACHABLE,
            ),
            (
                Error::Criu {
                    summary: "checkpoint web: CRIU failed".into(),
                    log: String::new(),
                },
                exit::CRIU,
            ),
            (core(criu.into()), exit::CRIU),
            (
                Error::Containerd {
                    context: "restore".into(),
                    code: tonic::Code::Internal,
                    message: "restore of web failed: CRIU reported failure".into(),
                },
                exit::CRIU,
            ),
            (
                Error::Containerd {
                    context: "create".into(),
                    code: tonic::Code::AlreadyExists,
                    message: "exists".into(),
                },
                exit::CONFLICT,
            ),
            (core(lazarus_core::Error::Other("disk".into())), exit::OTHER),
        ];
        for (e, code) in cases {
            assert_eq!(e.exit_code(), code, "{e}");
        }
        // Wrapped errors keep the kind of what failed.
        let wrapped = Error::Conflict("taken".into()).with_cleanup(Some("rm failed".into()));
        assert_eq!(wrapped.exit_code(), exit::CONFLICT);
        let codes = [
            exit::OTHER,
            exit::USAGE,
            exit::NOT_FOUND,
            exit::REFUSED,
            exit::CONFLICT,
            exit::UNREACHABLE,
            exit::CRIU,
            exit::SIGINT,
            exit::SIGTERM,
        ];
        let distinct: std::collections::BTreeSet<u8> = codes.into_iter().collect();
        assert_eq!(distinct.len(), codes.len(), "two kinds share a code");
        assert_eq!((exit::SIGINT, exit::SIGTERM), (128 + 2, 128 + 15));
    }

    #[test]
    fn a_group_failure_says_its_outcome_before_crius_lines() {
        let e = Error::Group {
            member: "redis".into(),
            error: Box::new(Error::Criu {
                summary: "checkpoint of r failed: give --tcp-established".into(),
                log: "(0.1) Error: one\n(0.2) Error: two".into(),
            }),
            outcome: "every member was thawed and runs on".into(),
        };
        let text = e.to_string();
        assert_eq!(
            text.lines().next().unwrap(),
            "group checkpoint: redis: checkpoint of r failed: give --tcp-established; every \
             member was thawed and runs on"
        );
        assert!(text.ends_with("(0.2) Error: two"), "{text}");
        assert_eq!(e.exit_code(), exit::CRIU);
    }
}
