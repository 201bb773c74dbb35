//! One error type for the shim and its single mapping to ttrpc status codes.
//!
//! containerd turns the ttrpc code back into its `errdefs` kinds (NotFound,
//! FailedPrecondition, ...), and Docker/ctr decide what to do from the kind,
//! so the code matters as much as the message.

use lazarus_core::error::ErrorKind;
use ttrpc::{Code, Status};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names something the shim does not have (or no longer has).
    #[error("{0}")]
    NotFound(String),
    /// The request is malformed: bad spec, bad options, bad arguments.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is fine but the object is in the wrong state for it.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Something with that id exists already.
    #[error("{0}")]
    AlreadyExists(String),
    /// Not implemented by this shim (yet).
    #[error("{0}")]
    Unimplemented(String),
    /// The runtime (libcontainer, via the helper) failed.
    #[error("{0}")]
    Runtime(String),
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
    /// A deadline ran out (CRIU or a helper stopped answering).
    #[error("{0}")]
    DeadlineExceeded(String),
    /// From the core: its kind decides the code.
    #[error(transparent)]
    Core(#[from] lazarus_core::Error),
    #[error("{0}")]
    Other(String),
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

    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Code::NOT_FOUND
            }
            Error::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
            Error::Core(e) => match e.kind() {
                ErrorKind::NotFound => Code::NOT_FOUND,
                ErrorKind::InvalidArgument => Code::INVALID_ARGUMENT,
                ErrorKind::FailedPrecondition => Code::FAILED_PRECONDITION,
                ErrorKind::PermissionDenied => Code::PERMISSION_DENIED,
                ErrorKind::DeadlineExceeded => Code::DEADLINE_EXCEEDED,
                ErrorKind::CriuFailed | ErrorKind::Internal => Code::INTERNAL,
            },
            Error::Runtime(_) | Error::Io { .. } | Error::Sys { .. } | Error::Other(_) => {
                Code::INTERNAL
            }
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(err: Error) -> Self {
        let mut status = Status::new();
        status.set_code(err.code());
        status.set_message(err.to_string());
        ttrpc::Error::RpcStatus(status)
    }
}

impl From<containerd_shim_protos::protobuf::Error> for Error {
    fn from(err: containerd_shim_protos::protobuf::Error) -> Self {
        Error::InvalidArgument(format!("cannot decode protobuf message: {err}"))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::InvalidArgument(format!("invalid JSON: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazarus_core::criu::{CriuError, CriuFailure, CriuOp};

    fn status_of(err: Error) -> (Code, String) {
        match ttrpc::Error::from(err) {
            ttrpc::Error::RpcStatus(s) => (s.code(), s.message().to_string()),
            other => panic!("expected an RpcStatus, got {other:?}"),
        }
    }

    #[test]
    fn each_kind_maps_to_its_ttrpc_code() {
        let cases = [
            (Error::NotFound("no exec x".into()), Code::NOT_FOUND),
            (Error::InvalidArgument("bad".into()), Code::INVALID_ARGUMENT),
            (
                Error::FailedPrecondition("running".into()),
                Code::FAILED_PRECONDITION,
            ),
            (Error::AlreadyExists("dup".into()), Code::ALREADY_EXISTS),
            (Error::Unimplemented("later".into()), Code::UNIMPLEMENTED),
            (Error::Runtime("boom".into()), Code::INTERNAL),
            (Error::Other("boom".into()), Code::INTERNAL),
            (
                Error::DeadlineExceeded("slow".into()),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                lazarus_core::Error::InvalidArgument("bad image".into()).into(),
                Code::INVALID_ARGUMENT,
            ),
            (
                lazarus_core::Error::FailedPrecondition("no criu".into()).into(),
                Code::FAILED_PRECONDITION,
            ),
            (
                lazarus_core::Error::PermissionDenied("capabilities".into()).into(),
                Code::PERMISSION_DENIED,
            ),
            (
                lazarus_core::Error::from(CriuError::new(
                    CriuOp::Restore,
                    CriuFailure::TimedOut(std::time::Duration::from_secs(5)),
                ))
                .into(),
                Code::DEADLINE_EXCEEDED,
            ),
            (
                lazarus_core::Error::from(CriuError::new(
                    CriuOp::Dump,
                    CriuFailure::Refused {
                        errno: 0,
                        message: String::new(),
                    },
                ))
                .into(),
                Code::INTERNAL,
            ),
            (
                Error::Sys {
                    context: "kill".into(),
                    source: nix::Error::EPERM,
                },
                Code::INTERNAL,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            let (got_code, got_msg) = status_of(err);
            assert_eq!(got_code, code, "code for {text}");
            assert_eq!(got_msg, text);
        }
    }

    #[test]
    fn missing_file_is_not_found_and_keeps_context() {
        let err = Error::io("open spec /b/config.json")(std::io::Error::from(
            std::io::ErrorKind::NotFound,
        ));
        let (code, msg) = status_of(err);
        assert_eq!(code, Code::NOT_FOUND);
        assert!(msg.starts_with("open spec /b/config.json: "), "{msg}");
    }
}
