//! The few calls of Docker's Engine API the CLI needs, as JSON over HTTP/1
//! on dockerd's unix socket (one connection per call: they are few).

use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

use crate::error::{Error, Result};

/// No Docker call the CLI makes takes long except a restore's start, which
/// waits for Docker to copy the checkpoint and CRIU to restore it.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const START_TIMEOUT: Duration = Duration::from_secs(900);
const UPLOAD_RACE_RETRY: Duration = Duration::from_secs(60);

pub struct Docker {
    socket: PathBuf,
}

impl Docker {
    /// `unix:///path` or a plain path, as DOCKER_HOST spells it.
    pub fn new(host: &str) -> Result<Docker> {
        let path = host.strip_prefix("unix://").unwrap_or(host);
        if host.contains("://") && !host.starts_with("unix://") {
            return Err(Error::Refused(format!(
                "Docker host {host:?}: only unix sockets are supported (unix:///path/docker.sock)"
            )));
        }
        Ok(Docker {
            socket: PathBuf::from(path),
        })
    }

    /// Whether a dockerd answers on the socket.
    pub async fn reachable(&self) -> bool {
        self.socket.exists() && self.call(Method::GET, "/_ping", None).await.is_ok()
    }

    /// The pid of the process listening on the socket (dockerd), as the
    /// kernel tells the peer of a unix socket.
    pub fn peer_pid(&self) -> Option<i32> {
        let stream = std::os::unix::net::UnixStream::connect(&self.socket).ok()?;
        let cred =
            nix::sys::socket::getsockopt(&stream, nix::sys::socket::sockopt::PeerCredentials)
                .ok()?;
        Some(cred.pid()).filter(|&p| p > 0)
    }

    pub async fn info(&self) -> Result<Value> {
        self.json(Method::GET, "/info", None, "info").await
    }

    /// `docker inspect` of a container; None when Docker knows no such name.
    pub async fn container(&self, name: &str) -> Result<Option<Value>> {
        let path = format!("/containers/{}/json", escape(name));
        optional(
            self.json(Method::GET, &path, None, &format!("inspect {name}"))
                .await,
        )
    }

    /// Docker's record of the volume `name` (`docker volume inspect`), or
    /// None.
    pub async fn volume(&self, name: &str) -> Result<Option<Value>> {
        let path = format!("/volumes/{}", escape(name));
        optional(
            self.json(Method::GET, &path, None, &format!("inspect volume {name}"))
                .await,
        )
    }

    /// Makes the local volume `name` (no driver options); its record.
    pub async fn create_volume(&self, name: &str) -> Result<Value> {
        let body = serde_json::json!({ "Name": name, "Driver": "local" });
        self.json(
            Method::POST,
            "/volumes/create",
            Some(&body),
            &format!("create volume {name}"),
        )
        .await
    }

    /// Removes the volume `name` (gone already is fine).
    pub async fn remove_volume(&self, name: &str) -> Result<()> {
        let path = format!("/volumes/{}", escape(name));
        let what = format!("remove volume {name}");
        let (status, body) = self.timed(Method::DELETE, &path, None, &what).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        check(status, &body, &what).map(drop)
    }

    /// The names of the running containers labelled `key=value`, oldest
    /// first (`docker ps --filter label=key=value`, by creation time).
    pub async fn running_with_label(&self, key: &str, value: &str) -> Result<Vec<String>> {
        let filters = serde_json::json!({ "label": [format!("{key}={value}")] }).to_string();
        let path = format!("/containers/json?filters={}", escape(&filters));
        let list = self
            .json(
                Method::GET,
                &path,
                None,
                &format!("list containers labelled {key}={value}"),
            )
            .await?;
        // The list's creation times are in seconds; inspect's to the
        // nanosecond (Compose creates a service's dependencies first, and
        // restoring servers before their clients spares those clients
        // retransmissions).
        let mut found = Vec::new();
        for id in list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Id"].as_str())
        {
            if let Some(c) = self.container(id).await? {
                let created = c["Created"].as_str().unwrap_or_default();
                let created = chrono::DateTime::parse_from_rfc3339(created).ok();
                let name = c["Name"].as_str().unwrap_or(id).trim_start_matches('/');
                found.push((created, name.to_string()));
            }
        }
        found.sort();
        Ok(found.into_iter().map(|(_, n)| n).collect())
    }

    /// `docker image inspect`; None when the image is not on this host.
    pub async fn image(&self, reference: &str) -> Result<Option<Value>> {
        let path = format!("/images/{}/json", escape(reference));
        optional(
            self.json(
                Method::GET,
                &path,
                None,
                &format!("inspect image {reference}"),
            )
            .await,
        )
    }

    /// Creates a container (not started); returns its id.
    pub async fn create(&self, name: &str, body: &Value) -> Result<String> {
        let path = format!("/containers/create?name={}", escape(name));
        let v = self
            .json(Method::POST, &path, Some(body), &format!("create {name}"))
            .await?;
        v["Id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| Error::Refused(format!("Docker created {name} but named no id: {v}")))
    }

    /// Where Docker keeps the container's checkpoint `name` (Docker 26
    /// refuses a checkpoint directory of the caller's choice at start).
    pub async fn checkpoint_dir(&self, id: &str, name: &str) -> Result<PathBuf> {
        let info = self.info().await?;
        let root = info["DockerRootDir"].as_str().unwrap_or("/var/lib/docker");
        Ok(Path::new(root)
            .join("containers")
            .join(id)
            .join("checkpoints")
            .join(name))
    }

    /// `docker start --checkpoint NAME`: Docker hands the container's
    /// checkpoint NAME to containerd, and the runtime restores from it.
    ///
    /// Docker uploads the checkpoint into containerd's content store under
    /// its digest; when a blob with that digest is still there (the same
    /// archive restored again, before containerd's collector ran), Docker
    /// fails with "content sha256:… already exists" instead of using it.
    /// Retried on exactly that, once a second, for up to a minute.
    pub async fn start_from_checkpoint(&self, id: &str, name: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + UPLOAD_RACE_RETRY;
        loop {
            match self.start_once(id, Some(name)).await {
                Err(Error::Docker { message, .. })
                    if is_upload_race(&message) && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                r => return r,
            }
        }
    }

    /// `docker start` (a container `lazarus restore --import` made restores
    /// at its first start: lazarus_core::checkpoint::handoff).
    pub async fn start(&self, id: &str) -> Result<()> {
        self.start_once(id, None).await
    }

    async fn start_once(&self, id: &str, checkpoint: Option<&str>) -> Result<()> {
        let (path, what) = match checkpoint {
            Some(name) => (
                format!(
                    "/containers/{}/start?checkpoint={}",
                    escape(id),
                    escape(name)
                ),
                format!("start {} from its checkpoint", short(id)),
            ),
            None => (
                format!("/containers/{}/start", escape(id)),
                format!("start {}", short(id)),
            ),
        };
        let call = self.call(Method::POST, &path, None);
        let (status, body) = tokio::time::timeout(START_TIMEOUT, call)
            .await
            .map_err(|_| timed_out(&what, START_TIMEOUT))??;
        check(status, &body, &what).map(drop)
    }

    /// `docker checkpoint rm`.
    pub async fn remove_checkpoint(&self, id: &str, name: &str) -> Result<()> {
        let path = format!("/containers/{}/checkpoints/{}", escape(id), escape(name));
        let what = format!("remove checkpoint {name} of {}", short(id));
        let (status, body) = self.timed(Method::DELETE, &path, None, &what).await?;
        check(status, &body, &what).map(drop)
    }

    /// `docker rm -f`.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let path = format!("/containers/{}?force=1", escape(id));
        let what = format!("remove {}", short(id));
        let (status, body) = self.timed(Method::DELETE, &path, None, &what).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(());
        }
        check(status, &body, &what).map(drop)
    }

    async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<Value> {
        let (status, bytes) = self.timed(method, path, body, what).await?;
        let bytes = check(status, &bytes, what)?;
        serde_json::from_slice(bytes).map_err(|e| Error::Docker {
            context: what.to_string(),
            status: status.as_u16(),
            message: format!("answer is not JSON: {e}"),
        })
    }

    async fn timed(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, Bytes)> {
        tokio::time::timeout(CALL_TIMEOUT, self.call(method, path, body))
            .await
            .map_err(|_| timed_out(what, CALL_TIMEOUT))?
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Bytes)> {
        let unreachable = |why: String| Error::DockerUnreachable {
            address: format!("unix://{}", self.socket.display()),
            why,
        };
        let stream = UnixStream::connect(&self.socket)
            .await
            .map_err(|e| unreachable(crate::engine::containerd::why_not_connected(&e)))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        // The connection runs beside the request and ends with it.
        tokio::spawn(connection);
        let bytes = match body {
            Some(v) => Bytes::from(serde_json::to_vec(v).expect("JSON values serialize")),
            None => Bytes::new(),
        };
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", "docker")
            .header("Content-Type", "application/json")
            .body(Full::new(bytes))
            .expect("a well-formed request");
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes();
        Ok((status, body))
    }
}

/// What `checkpoint --all` and `restore --all` ask of Docker besides.
impl Docker {
    /// The ids of the running containers (`docker ps -q --no-trunc`).
    pub async fn running_ids(&self) -> Result<Vec<String>> {
        let list = self
            .json(Method::GET, "/containers/json", None, "list containers")
            .await?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["Id"].as_str().map(str::to_string))
            .collect())
    }

    /// `docker update --restart NAME[:COUNT]`.
    pub async fn set_restart_policy(&self, id: &str, name: &str, count: u64) -> Result<()> {
        let path = format!("/containers/{}/update", escape(id));
        let body = serde_json::json!({
            "RestartPolicy": { "Name": name, "MaximumRetryCount": count }
        });
        let what = format!("set the restart policy of {} to {name}", short(id));
        self.json(Method::POST, &path, Some(&body), &what)
            .await
            .map(drop)
    }

    /// `docker rename`.
    pub async fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let path = format!(
            "/containers/{}/rename?name={}",
            escape(id),
            escape(new_name)
        );
        let what = format!("rename {} to {new_name}", short(id));
        let (status, body) = self.timed(Method::POST, &path, None, &what).await?;
        check(status, &body, &what).map(drop)
    }
}

/// The body of a successful answer, or Docker's own error message.
fn check<'b>(status: StatusCode, body: &'b Bytes, what: &str) -> Result<&'b [u8]> {
    if status.is_success() {
        return Ok(body);
    }
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    Err(Error::Docker {
        context: what.to_string(),
        status: status.as_u16(),
        message,
    })
}

/// Docker's failure to re-upload a checkpoint blob containerd still holds.
fn is_upload_race(message: &str) -> bool {
    message.contains("content sha256:") && message.contains("already exists")
}

fn optional(r: Result<Value>) -> Result<Option<Value>> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn timed_out(what: &str, after: Duration) -> Error {
    Error::Docker {
        context: what.to_string(),
        status: 0,
        message: format!("no answer within {after:?}"),
    }
}

/// Percent-encodes what goes into a URL path or query.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' | b'/' | b':' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Docker's 12-character form of an id (a name, which may come from a
/// migration peer, as it is if byte 12 is inside a character).
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Docker's overlay2 record of the container as overlay mount options.
pub fn overlay_options(inspect: &Value, name: &str) -> Result<Vec<String>> {
    let data = &inspect["GraphDriver"]["Data"];
    let field = |k: &str| data[k].as_str().unwrap_or("");
    upper_dir(inspect, name)?;
    Ok(lazarus_core::host::overlay::docker_overlay_options(
        field("LowerDir"),
        field("UpperDir"),
        field("WorkDir"),
    ))
}

/// Docker's overlay2 upper directory of the container.
pub fn upper_dir(inspect: &Value, name: &str) -> Result<PathBuf> {
    let driver = inspect["GraphDriver"]["Name"].as_str().unwrap_or("");
    match inspect["GraphDriver"]["Data"]["UpperDir"].as_str() {
        Some(upper) if driver == "overlay2" => Ok(PathBuf::from(upper)),
        _ => Err(Error::Refused(format!(
            "{name} uses Docker's {driver:?} storage driver: Lazarus carries root filesystem \
             changes from overlay2 only"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_shortened_without_splitting_a_character() {
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
        assert_eq!(short("0123456789aé-bc"), "0123456789aé-bc");
    }

    #[test]
    fn names_and_paths_are_escaped_for_urls() {
        assert_eq!(escape("looper"), "looper");
        assert_eq!(escape("/var/lib/x y"), "/var/lib/x%20y");
        assert_eq!(escape("a&b=c?d#e"), "a%26b%3Dc%3Fd%23e");
    }

    #[test]
    fn only_unix_hosts_are_accepted() {
        assert_eq!(
            Docker::new("unix:///run/d.sock").unwrap().socket,
            Path::new("/run/d.sock")
        );
        assert_eq!(
            Docker::new("/run/d.sock").unwrap().socket,
            Path::new("/run/d.sock")
        );
        let e = Docker::new("tcp://1.2.3.4:2375").err().unwrap().to_string();
        assert!(e.contains("only unix sockets"), "{e}");
    }

    #[test]
    fn only_the_upload_race_is_retried() {
        assert!(is_upload_race(
            "failed to upload checkpoint to containerd: commit failed: content sha256:d04d: already exists"
        ));
        assert!(!is_upload_race("container already exists"));
        assert!(!is_upload_race("content sha256:d04d: not found"));
    }

    #[test]
    fn docker_errors_carry_dockers_message() {
        let body = Bytes::from_static(br#"{"message":"No such container: x"}"#);
        let e = check(StatusCode::NOT_FOUND, &body, "inspect x").unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(e.to_string(), "Docker: inspect x: No such container: x");
    }
}
