//! Finding the CRI socket, dialling it, and calling RPCs under a deadline.
//!
//! Every wait here is bounded: connect and each RPC run inside
//! tokio::time::timeout, and each request also carries its deadline as
//! gRPC's `grpc-timeout`, so containerd gives up on its side as well.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::cri::image_service_client::ImageServiceClient;
use crate::cri::runtime_service_client::RuntimeServiceClient;
use crate::error::{chain, with_causes, Error, Result};

/// containerd's socket, where crictl also looks first.
pub const DEFAULT_ENDPOINT: &str = "/run/containerd/containerd.sock";

/// The variable crictl reads for its endpoint.
pub const ENDPOINT_ENV: &str = "CONTAINER_RUNTIME_ENDPOINT";

/// ExecSync answers up to 16 MiB per stream (the CRI's cap), more than
/// tonic's 4 MiB default would accept.
const MAX_MESSAGE: usize = 64 << 20;

/// The socket path from `unix:///path` or a plain `/path`. Other schemes
/// (tcp://, npipe://) are not CRI endpoints containerd offers on Linux.
pub fn parse_endpoint(text: &str) -> Result<PathBuf> {
    let path = match text.strip_prefix("unix://") {
        Some(rest) => rest,
        None if text.contains("://") => {
            return Err(Error::Usage(format!(
                "endpoint {text:?}: only unix:///path or a plain socket path is supported"
            )))
        }
        None => text,
    };
    if path.is_empty() {
        return Err(Error::Usage(format!("endpoint {text:?} names no socket")));
    }
    Ok(PathBuf::from(path))
}

/// --endpoint, else $CONTAINER_RUNTIME_ENDPOINT, else containerd's default.
pub fn choose_endpoint(flag: Option<&str>) -> Result<PathBuf> {
    match flag {
        Some(text) => parse_endpoint(text),
        None => match std::env::var(ENDPOINT_ENV) {
            Ok(text) if !text.is_empty() => parse_endpoint(&text),
            _ => parse_endpoint(DEFAULT_ENDPOINT),
        },
    }
}

/// The two CRI services, over one connection.
pub struct Cri {
    pub runtime: RuntimeServiceClient<Channel>,
    pub image: ImageServiceClient<Channel>,
    /// The deadline of each RPC unless a command sets its own.
    pub deadline: Duration,
}

/// Dials the unix socket (within `deadline`) and builds both clients.
pub async fn connect(path: PathBuf, deadline: Duration) -> Result<Cri> {
    let shown = path.display().to_string();
    // The URI is a placeholder tonic requires; the connector ignores it.
    let endpoint = Endpoint::try_from("http://[::]:50051")
        .expect("a constant, valid URI")
        .connect_timeout(deadline);
    let connector = tower::service_fn(move |_: Uri| {
        let path = path.clone();
        async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
    });
    let channel =
        match tokio::time::timeout(deadline, endpoint.connect_with_connector(connector)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    what: format!("connect to {shown}"),
                    after: deadline,
                })
            }
            Ok(Err(err)) => {
                return Err(Error::Connect {
                    endpoint: shown,
                    reason: chain(&err),
                })
            }
            Ok(Ok(channel)) => channel,
        };
    Ok(Cri {
        runtime: RuntimeServiceClient::new(channel.clone()).max_decoding_message_size(MAX_MESSAGE),
        image: ImageServiceClient::new(channel).max_decoding_message_size(MAX_MESSAGE),
        deadline,
    })
}

/// A request carrying its deadline to the server (`grpc-timeout`).
pub fn request<T>(message: T, deadline: Duration) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(deadline);
    request
}

/// Awaits one RPC for at most `deadline`; a gRPC error keeps its code and
/// message, named by the RPC.
pub async fn call<T, F>(rpc: &'static str, deadline: Duration, answer: F) -> Result<T>
where
    F: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
{
    match tokio::time::timeout(deadline, answer).await {
        Err(_) => Err(Error::Timeout {
            what: rpc.to_owned(),
            after: deadline,
        }),
        Ok(Err(status)) => Err(status_error(rpc, &status, deadline)),
        Ok(Ok(response)) => Ok(response.into_inner()),
    }
}

/// A gRPC error as ours. tonic's channel enforces the request's
/// grpc-timeout itself, usually a moment before tokio's timeout fires, and
/// reports it as Cancelled "Timeout expired" (tonic::TimeoutExpired,
/// whose type the Status does not keep): that is our deadline, said so.
fn status_error(rpc: &'static str, status: &tonic::Status, deadline: Duration) -> Error {
    let expired = tonic::TimeoutExpired(()).to_string();
    if status.code() == tonic::Code::Cancelled && status.message() == expired {
        return Error::Timeout {
            what: rpc.to_owned(),
            after: deadline,
        };
    }
    // A transport failure says only "transport error"; its cause (EOF,
    // reset) is in the source chain.
    let message = with_causes(
        status.message().to_owned(),
        std::error::Error::source(status),
    );
    Error::Status {
        rpc,
        code: status.code(),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_url_and_plain_path_name_the_same_socket() {
        assert_eq!(parse_endpoint("unix:///x").unwrap(), PathBuf::from("/x"));
        assert_eq!(parse_endpoint("/x").unwrap(), PathBuf::from("/x"));
        assert_eq!(
            parse_endpoint("unix:///run/containerd/containerd.sock").unwrap(),
            PathBuf::from("/run/containerd/containerd.sock")
        );
    }

    #[test]
    fn other_schemes_and_empty_endpoints_are_refused() {
        assert!(matches!(
            parse_endpoint("tcp://127.0.0.1:1234"),
            Err(Error::Usage(_))
        ));
        assert!(matches!(parse_endpoint("unix://"), Err(Error::Usage(_))));
        assert!(matches!(parse_endpoint(""), Err(Error::Usage(_))));
    }

    #[test]
    fn tonics_own_deadline_is_a_timeout_and_other_errors_keep_code_and_message() {
        let second = Duration::from_secs(1);
        let status = tonic::Status::cancelled("Timeout expired");
        let err = status_error("Version", &status, second);
        assert!(matches!(err, Error::Timeout { .. }), "{err}");
        assert_eq!(err.to_string(), "Version: no answer within 1 s");

        let status = tonic::Status::not_found("container \"x\" not found");
        let err = status_error("StartContainer", &status, second);
        assert_eq!(
            err.to_string(),
            "StartContainer: NotFound: container \"x\" not found"
        );
        // A server's own cancel is not our deadline.
        let status = tonic::Status::cancelled("context canceled");
        let err = status_error("ExecSync", &status, second);
        assert!(matches!(err, Error::Status { .. }), "{err}");
    }

    #[test]
    fn the_flag_wins_over_the_default() {
        assert_eq!(
            choose_endpoint(Some("unix:///flag.sock")).unwrap(),
            PathBuf::from("/flag.sock")
        );
    }
}
