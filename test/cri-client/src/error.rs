//! The one error type. main prints it as `cri-client <command>: <error>` on
//! one line and exits 1, so each variant says what failed without a
//! backtrace or a nested Debug dump.

use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The socket could not be dialled (missing, refused, not a socket).
    #[error("cannot connect to {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },

    /// Nothing answered within the deadline: connect or an RPC.
    #[error("{what}: no answer within {} s", .after.as_secs())]
    Timeout { what: String, after: Duration },

    /// The runtime answered with an error: its gRPC code and message.
    #[error("{rpc}: {code:?}: {message}")]
    Status {
        rpc: &'static str,
        code: tonic::Code,
        message: String,
    },

    /// The runtime answered, but without something the command needs.
    #[error("{rpc}: {what}")]
    BadAnswer { rpc: &'static str, what: String },

    /// A bad value the argument parser could not catch (an endpoint scheme).
    #[error("{0}")]
    Usage(String),

    /// A local file (the container's log) could not be read.
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// An error and its sources as one line ("transport error: No such file or
/// directory (os error 2)"): tonic's own Display says only the first part.
pub fn chain(err: &dyn std::error::Error) -> String {
    with_causes(err.to_string(), err.source())
}

/// `line` followed by each cause in turn, skipping a cause that only
/// repeats what the line already ends with (tonic and hyper do that).
pub fn with_causes(
    mut line: String,
    mut next: Option<&(dyn std::error::Error + 'static)>,
) -> String {
    while let Some(cause) = next {
        let text = cause.to_string();
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        next = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn causes_are_joined_and_repeats_skipped() {
        let reset = Layer("connection reset", None);
        let transport = Layer("transport error", Some(Box::new(reset)));
        let top = Layer("transport error", Some(Box::new(transport)));
        assert_eq!(chain(&top), "transport error: connection reset");
        assert_eq!(
            with_causes("Unknown".into(), top.1.as_deref().map(|l| l as _)),
            "Unknown: transport error: connection reset"
        );
    }
}
