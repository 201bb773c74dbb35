//! The migration dump's control files: how the migrating client (`lazarus
//! migrate` on the source host) and the runtime that dumps the container
//! (the shim's Checkpoint) talk while a migration's dump runs. They share
//! nothing but the checkpoint's image directory, so each word is a file in
//! it, and every reader and writer of those files goes through this module.
//!
//! | file                       | written by | says                                              |
//! |----------------------------|------------|---------------------------------------------------|
//! | `lazarus-postcopy.json`    | client     | dump through a page server (the [`PageServer`]) |
//! | `lazarus-postcopy.lease`   | client     | the client is alive (renewed every [`LEASE_RENEW`]) |
//! | `lazarus-postcopy.cancel`  | client     | call the dump off: the container runs on here     |
//! | `lazarus-postcopy.release` | client     | the destination runs: a push dump's source may end |
//! | `lazarus-postcopy.ended`   | runtime    | the dump is over, and how it ended                |
//!
//! [`PageServer`]: super::postcopy::PageServer
//!
//! The dump's states, as [`state`] reads them from the files:
//!
//! ```text
//!               client: request + lease
//!   NotRequested ──────────────────────▶ Running ──────────────────────────┐
//!                                         │  │ client: release             │
//!           client: cancel, or its lease  │  ▼                             │
//!           not renewed for LEASE_TIMEOUT │ Released                       │
//!                                         ▼  │                             │
//!                                   CalledOff │ runtime: ended             │
//!                                         │  ▼                             │
//!                                         └▶ Ended(how) ◀─────────────────┘
//! ```
//!
//! - `Running`: the request and the lease are written before the dump is
//!   asked for; the runtime dumps, and a push dump then waits, frozen, at
//!   CRIU's post-dump notification ([`await_release`]).
//! - `Released` wins over a call-off that comes later: once the destination
//!   runs the container, the source must not run it too.
//! - `CalledOff`: the runtime stops CRIU and thaws the container.
//! - `Ended(how)` is final, whatever came before: the runtime writes it
//!   when the dump is over (every page sent, released, or called off and
//!   thawed), and the client waits for it before it lets go.
//!
//! A failed dump leaves these files where they are ([`is_control_file`]).

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::error::{Error, Result};

const REQUEST_FILE: &str = "lazarus-postcopy.json";
const LEASE_FILE: &str = "lazarus-postcopy.lease";
const CANCEL_FILE: &str = "lazarus-postcopy.cancel";
const RELEASE_FILE: &str = "lazarus-postcopy.release";
const ENDED_FILE: &str = "lazarus-postcopy.ended";

/// How often the client renews its lease.
pub const LEASE_RENEW: Duration = Duration::from_secs(2);
/// A lease older than this has lapsed: its client died (killed
/// mid-migration), and the dump is called off rather than leave the source
/// frozen for CRIU's whole deadline on behalf of nobody.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest a push dump waits for its client's word at post-dump, as
/// long as CRIU's own default deadline: a client that keeps its lease but
/// never says (a receiver's restore taking longer than this) gets its
/// source back, resumed, rather than a source frozen for ever.
pub const RELEASE_TIMEOUT: Duration = Duration::from_secs(600);

/// How often a push dump, frozen at its post-dump notification, looks for
/// its client's word.
const DECISION_POLL: Duration = Duration::from_millis(20);

/// Where a migration's dump stands, read from the control files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DumpState {
    /// No request: not a migration's dump (or not yet).
    NotRequested,
    /// Requested, and the client has said nothing since.
    Running,
    /// The client let the source go (the destination runs).
    Released,
    /// The client called the dump off, or stopped renewing its lease.
    CalledOff,
    /// The runtime says the dump is over, and how.
    Ended(String),
}

/// The dump's state in `images` (see the module doc for the order in which
/// the words count).
pub fn state(images: &Path) -> DumpState {
    if let Some(how) = ended(images) {
        DumpState::Ended(how)
    } else if !is_requested(images) {
        DumpState::NotRequested
    } else if released(images) {
        DumpState::Released
    } else if called_off(images) {
        DumpState::CalledOff
    } else {
        DumpState::Running
    }
}

/// Where the client writes its request (the page server's JSON): see
/// [`PageServer::write`](super::postcopy::PageServer::write).
pub fn request_path(images: &Path) -> PathBuf {
    images.join(REQUEST_FILE)
}

/// A migration's dump was requested in `images`.
pub fn is_requested(images: &Path) -> bool {
    request_path(images).is_file()
}

/// The client's lease on a dump, renewed by a thread of its own until
/// dropped. The client also writes it with the request ([`write_lease`]),
/// so a dump never runs without one; the thread renews it once the image
/// directory exists.
pub struct Lease {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Lease {
    pub fn hold(images: &Path) -> Lease {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, images) = (stop.clone(), images.to_path_buf());
        let thread = std::thread::spawn(move || {
            let tick = Duration::from_millis(100);
            let mut since = LEASE_RENEW;
            while !flag.load(Ordering::Relaxed) {
                if since >= LEASE_RENEW {
                    let _ = write_lease(&images);
                    since = Duration::ZERO;
                }
                std::thread::sleep(tick);
                since += tick;
            }
        });
        Lease {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Creates the lease in `images` or moves its time to now.
pub fn write_lease(images: &Path) -> Result<()> {
    let path = images.join(LEASE_FILE);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .map_err(Error::io(format!("write {}", path.display())))
}

/// The client's lease has lapsed: it was taken and not renewed for
/// [`LEASE_TIMEOUT`]. (No lease at all is a client that takes none.)
pub fn lease_lapsed(images: &Path) -> bool {
    std::fs::metadata(images.join(LEASE_FILE))
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > LEASE_TIMEOUT)
}

/// Calls the dump off (the client, after a failure before the destination
/// ran the container).
pub fn cancel(images: &Path) -> Result<()> {
    touch(&images.join(CANCEL_FILE))
}

pub fn cancelled(images: &Path) -> bool {
    images.join(CANCEL_FILE).exists()
}

/// The dump is to stop and give the container back: cancelled, or its
/// client's lease lapsed.
pub fn called_off(images: &Path) -> bool {
    cancelled(images) || lease_lapsed(images)
}

/// Lets a push dump's source end (the client, once the destination runs
/// the container).
pub fn release(images: &Path) -> Result<()> {
    touch(&images.join(RELEASE_FILE))
}

pub fn released(images: &Path) -> bool {
    images.join(RELEASE_FILE).exists()
}

fn touch(path: &Path) -> Result<()> {
    std::fs::write(path, b"").map_err(Error::io(format!("write {}", path.display())))
}

/// A push dump's wait at CRIU's post-dump notification (every page is at
/// the destination): Ok once released, an error once called off
/// (`called_off`: the runtime's test, [`called_off`] or its own) or after
/// `timeout`. CRIU kills the tree after Ok and resumes it after an error.
pub fn await_release(
    images: &Path,
    called_off: &dyn Fn() -> bool,
    timeout: Duration,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if released(images) {
            return Ok(());
        }
        if called_off() {
            return Err(Error::Other(
                "the migration was called off before the destination ran the container".into(),
            ));
        }
        if Instant::now() >= deadline {
            return Err(Error::Other(format!(
                "the migration's client neither released nor called off the dump within \
                 {timeout:?}"
            )));
        }
        std::thread::sleep(DECISION_POLL);
    }
}

/// Says the dump has ended, and how (the runtime). Written whole (renamed
/// into place): the client, polling, acts on what it reads at once, and a
/// created-but-empty marker read as "ended, not every page sent" (a CI run
/// saw exactly that). Best effort: a client that went away took the
/// directory with it.
pub fn say_ended(images: &Path, how: &str) {
    let _ = crate::files::write_atomic(&images.join(ENDED_FILE), how.as_bytes());
}

/// How the dump ended, once it has. The runtime always says how, so an
/// empty marker (one written by an older runtime, caught half written)
/// is not an end yet.
pub fn ended(images: &Path) -> Option<String> {
    std::fs::read_to_string(images.join(ENDED_FILE))
        .ok()
        .filter(|how| !how.is_empty())
}

/// One of the files above: not CRIU's, and left in place by a failed dump.
/// (The end marker's temp file, left by a runtime killed mid-write, too.)
pub fn is_control_file(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        [
            REQUEST_FILE,
            CANCEL_FILE,
            ENDED_FILE,
            LEASE_FILE,
            RELEASE_FILE,
        ]
        .iter()
        .any(|f| n == *f)
    }) || path == crate::files::tmp_of(&path.with_file_name(ENDED_FILE))
}

#[cfg(test)]
#[path = "control_tests.rs"]
mod tests;
