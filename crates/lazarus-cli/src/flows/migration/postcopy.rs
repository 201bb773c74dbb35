//! The sending side's hold on its migration dump, after the offer: the
//! page tunnel door's filter, calling the dump off
//! when the receiver fails before it confirms (either mode), letting a
//! stop-and-copy source go once it did, and waiting for a post-copy memory
//! to have followed.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use lazarus_core::checkpoint::control;
use lazarus_core::checkpoint::postcopy;

use super::filter::{Family, PortFilter, Rule};
use super::PEER_TIMEOUT;
use crate::engine::containerd::Status;
use crate::engine::target::Target;
use crate::engine::Tasks;
use crate::error::{Error, Result};
use crate::flows::export::MigrationDump;
use crate::progress::{self, Progress};

/// The rule that lets only the migration's peer (the other end of
/// `stream`, the authenticated connection) reach this host's page tunnel
/// door at `port` on the connection's address, in place before the door
/// takes connections (see [`super::filter`]). The door drops other
/// addresses itself; the rule keeps them from reaching it at all.
pub fn filter(stream: &TcpStream, port: u16) -> Result<PortFilter> {
    let read = |e| lazarus_core::Error::io("read the connection's addresses")(e);
    let peer = stream.peer_addr().map_err(read)?.ip();
    let family = match stream.local_addr().map_err(read)?.ip() {
        std::net::IpAddr::V4(_) => Family::V4,
        std::net::IpAddr::V6(_) => Family::V6,
    };
    PortFilter::insert(Rule::new(family, port, peer)?)
}

/// How long a called-off post-copy dump gets to give the container back:
/// CRIU is stopped within 100 ms of the request, then the runtime thaws it.
const CALL_OFF_TIMEOUT: Duration = Duration::from_secs(60);

/// After a migration failed before the receiver confirmed: the source's
/// dump (frozen, serving or sending pages, or waiting to be released) is
/// called off and the container runs on where it was. (`tasks` reaches
/// the source's task, `source`.)
pub async fn call_off(
    error: Error,
    tasks: &impl Tasks,
    source: &Target,
    p: &MigrationDump,
) -> Error {
    let name = &source.name;
    let images = p.images();
    if !control::is_requested(&images) {
        return error; // refused before any dump began
    }
    if let Err(e) = control::cancel(&images) {
        return error.with_cleanup(Some(format!("calling the dump of {name} off failed: {e}")));
    }
    // The runtime says when the dump has ended and the container is thawed.
    if wait_ended(&images, CALL_OFF_TIMEOUT).await.is_none() {
        return error.with_cleanup(Some(format!(
            "the dump of {name} had not ended {CALL_OFF_TIMEOUT:?} after it was called off"
        )));
    }
    match tasks.task_status(&source.id).await {
        Ok(Some(Status::Running)) => Error::Refused(format!(
            "migration failed: {error}\n  {name} runs on here (its dump was called off)"
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
        if let Some(how) = control::ended(images) {
            return Some(how);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// How long a released stop-and-copy dump gets to end the source's task.
const LET_GO_TIMEOUT: Duration = Duration::from_secs(60);

/// Stop-and-copy, once the receiver runs the container: releases the
/// source's dump (frozen at CRIU's post-dump notification), which then ends
/// the source's task, and waits until it has. An error leaves the dump for
/// [`call_off`].
pub async fn let_go(tasks: &impl Tasks, source: &Target, p: &MigrationDump) -> Result<()> {
    let images = p.images();
    control::release(&images)?;
    let Some(how) = wait_ended(&images, LET_GO_TIMEOUT).await else {
        return Err(Error::Refused(format!(
            "the dump of {} had not ended {LET_GO_TIMEOUT:?} after it was released",
            source.name
        )));
    };
    // The task's exit is reported just after the dump's end.
    let deadline = Instant::now() + Duration::from_secs(10);
    while matches!(tasks.task_status(&source.id).await?, Some(Status::Running)) {
        if Instant::now() >= deadline {
            return Err(Error::Refused(format!(
                "{} still runs here after its released dump ended ({})",
                source.name,
                how.trim()
            )));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Post-copy, once the receiver runs the container: waits for the source's
/// dump to have served every page (CRIU then ends the source's task).
/// Returns the seconds that took and the bytes of memory sent.
pub async fn memory_followed(
    tasks: &impl Tasks,
    source: &Target,
    p: &MigrationDump,
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
    // A dump that served every page ends the task; its exit is reported
    // just after the dump's end marker, so a task still running then is
    // given a moment (as in `let_go`) before it counts as thawed.
    let served = how.contains("every page was sent");
    let deadline = Instant::now() + Duration::from_secs(10);
    while served
        && Instant::now() < deadline
        && matches!(tasks.task_status(&source.id).await?, Some(Status::Running))
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if matches!(tasks.task_status(&source.id).await?, Some(Status::Running)) {
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

#[cfg(test)]
mod tests;
