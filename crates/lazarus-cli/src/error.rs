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
    /// A group checkpoint failed at one member; what became of the group
    /// (every member thawed and running on) is said after.
    #[error("group checkpoint: {member}: {error}; {outcome}")]
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
