//! Post-copy's sending side, after the offer: the page server's address
//! and TLS material, calling the dump off when the receiver fails before it
//! confirms, and waiting for the memory to have followed after it did.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use lazarus_core::checkpoint::postcopy::{self, PageServer};

use super::PEER_TIMEOUT;
use crate::containerd::Status;
use crate::error::{Error, Result};
use crate::export::{Postcopy, Source};
use crate::progress::{self, Progress};

/// The page server's address and port as the receiver reaches them: this
/// end's address on the migration's connection, and a port free now (CRIU
/// listens on it on every address, TLS only).
pub fn page_server(stream: &TcpStream) -> Result<PageServer> {
    let ip = stream
        .local_addr()
        .map_err(lazarus_core::Error::io("read the connection's address"))?
        .ip();
    let port = std::net::TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map_err(lazarus_core::Error::io(
            "find a free port for the page server",
        ))?
        .port();
    Ok(PageServer::generate(ip, port)?)
}

/// How long a called-off post-copy dump gets to give the container back:
/// CRIU is stopped within 100 ms of the request, then the runtime thaws it.
const CALL_OFF_TIMEOUT: Duration = Duration::from_secs(60);

/// After a post-copy migration failed before the receiver confirmed: the
/// source's dump (frozen, serving pages) is called off and the container
/// runs on where it was.
pub async fn call_off(error: Error, source: &Source, p: &Postcopy) -> Error {
    let name = &source.target.name;
    let images = p.images();
    if !images.join(postcopy::REQUEST_FILE).is_file() {
        return error; // refused before any dump began
    }
    if let Err(e) = postcopy::cancel(&images) {
        return error.with_cleanup(Some(format!("calling the dump of {name} off failed: {e}")));
    }
    // The runtime says when the dump has ended and the container is thawed.
    if wait_ended(&images, CALL_OFF_TIMEOUT).await.is_none() {
        return error.with_cleanup(Some(format!(
            "the dump of {name} had not ended {CALL_OFF_TIMEOUT:?} after it was called off"
        )));
    }
    match source.ctr.task_status(&source.target.id).await {
        Ok(Some(Status::Running)) => Error::Refused(format!(
            "migration failed: {error}\n  {name} runs on here (its post-copy dump was called off)"
        )),
        Ok(status) => error.with_cleanup(Some(format!(
            "{name} is not running after its dump was called off (task status {status:?})"
        ))),
        Err(e) => error.with_cleanup(Some(format!("{name}: {e}"))),
    }
}

/// How the source's dump ended (the runtime's end marker), once it has,
/// or None after `timeout`.
async fn wait_ended(images: &std::path::Path, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(how) = postcopy::ended(images) {
            return Some(how);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Post-copy, once the receiver runs the container: waits for the source's
/// dump to have served every page (CRIU then ends the source's task).
/// Returns the seconds that took and the bytes of memory sent.
pub async fn memory_followed(
    source: &Source,
    p: &Postcopy,
    name: &str,
    to: &str,
    json: bool,
) -> Result<(f64, u64)> {
    let started = Instant::now();
    let spinner = Progress::spinner(progress::wanted(json), "memory");
    let images = p.images();
    let how = wait_ended(&images, PEER_TIMEOUT).await;
    spinner.finish();
    let Some(how) = how else {
        return Err(Error::Refused(format!(
            "{name} runs on {to}, but its memory was still being sent after {PEER_TIMEOUT:?}: \
             see the shims' logs on both hosts"
        )));
    };
    if matches!(
        source.ctr.task_status(&source.target.id).await?,
        Some(Status::Running)
    ) {
        // The dump failed after the receiver resumed: the copy there
        // cannot get its memory and is killed; the source was thawed.
        return Err(Error::Refused(format!(
            "{name} resumed on {to} but its memory stopped arriving ({}): the copy there is \
             killed, and {name} runs on here from where it was frozen",
            how.trim()
        )));
    }
    let seconds = started.elapsed().as_secs_f64();
    let bytes = postcopy::lazy_bytes(&images).unwrap_or_else(|e| {
        eprintln!("lazarus: warning: cannot count the memory sent: {e}");
        0
    });
    Ok((seconds, bytes))
}
