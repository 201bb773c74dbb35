//! The core's errors. Each says what kind of failure it is, so a front door
//! can answer with the right code (the shim maps kinds to ttrpc codes, the
//! CLI to exit codes) and a caller can tell "an option is missing" from
//! "CRIU crashed" from "CRIU did not answer in time".

mod criu;

pub use criu::{CriuError, CriuFailure, CriuOp};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request or its input is malformed: bad spec, options, image.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is fine but cannot be done in the current state (CRIU
    /// missing or too old, a bundle that cannot host the checkpoint).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The input asks for more than the user granted (an archive's hooks
    /// or privileges, a checkpoint's credentials beyond its container's).
    #[error("{0}")]
    PermissionDenied(String),
    /// CRIU ran and failed, crashed or timed out.
    #[error(transparent)]
    Criu(#[from] Box<CriuError>),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What kind of failure an [`Error`] is, for front doors mapping errors to
/// their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidArgument,
    FailedPrecondition,
    PermissionDenied,
    /// CRIU refused (its own error), crashed, or broke the protocol.
    CriuFailed,
    /// A deadline ran out (CRIU or a peer stopped answering).
    DeadlineExceeded,
    Internal,
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Criu(e) => e.kind(),
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } | Error::Sys { .. } | Error::Other(_) => ErrorKind::Internal,
        }
    }

    /// The CRIU failure behind this error, if it is one.
    pub fn criu(&self) -> Option<&CriuError> {
        match self {
            Error::Criu(e) => Some(e),
            _ => None,
        }
    }
}

impl From<CriuError> for Error {
    fn from(e: CriuError) -> Self {
        Error::Criu(Box::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::InvalidArgument(format!("invalid JSON: {err}"))
    }
}
