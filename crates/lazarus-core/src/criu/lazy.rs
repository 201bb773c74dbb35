//! CRIU's lazy-pages daemon, the restoring half of post-copy. It cannot be
//! started over RPC: it is `criu lazy-pages --page-server` in the restore's
//! work directory, where the restore finds it (`lazy-pages.socket`). It
//! fetches the memory from the source's page server and exits once every
//! page is in; the restored process depends on it until then.
//!
//! Its counterpart for stop-and-copy is the destination's `criu page-server`
//! ([`SwrkCriu::receive_pages`]): the source's dump pushes every page to it
//! before the restore, and it writes them into the images directory.
//!
//! The driver knows nothing of migrations: it is told where the page stream
//! is ([`PageDaemonRequest`]: a loopback address, where Lazarus's page
//! tunnel meets CRIU); the migration layer (`checkpoint::postcopy`, above)
//! translates its request into one. No TLS: the tunnel encrypts between
//! the hosts, and CRIU never speaks to the network.

use std::io::{Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};

use super::{CriuError, CriuFailure, CriuOp, ExitWatch, SwrkCriu};
use crate::error::{Error, Result};

/// The daemons' logs, in the work directory.
pub const LAZY_PAGES_LOG: &str = "lazy-pages.log";
pub const PAGE_SERVER_LOG: &str = "page-server.log";
/// How long the daemon gets to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// What a lazy-pages daemon serves, or where a receiving page server
/// writes, and the page stream it takes part in.
pub struct PageDaemonRequest<'a> {
    pub images: &'a Path,
    pub work: &'a Path,
    /// The page server's address and port: the source's, for lazy-pages;
    /// its own, for a receiving page server.
    pub address: IpAddr,
    pub port: u16,
}

/// Creates `path` readable by its owner only (it holds a key) and writes
/// `bytes` into it; an existing file is an error.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .map_err(Error::io(format!("write {}", path.display())))
}

/// A running CRIU page daemon: lazy-pages, or a receiving page server.
pub trait LazyPages: Send {
    /// Waits at most `timeout` for it to end: its exit status, or None.
    fn wait(&mut self, timeout: Duration) -> Option<i32>;
    fn kill(&mut self);
    /// Its log, for the error that says why the memory did not arrive.
    fn log(&self) -> &Path;
}

struct Daemon {
    child: Child,
    watch: Box<dyn ExitWatch>,
    log: PathBuf,
}

impl LazyPages for Daemon {
    fn wait(&mut self, timeout: Duration) -> Option<i32> {
        self.watch.wait(&mut self.child, timeout)
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.watch.wait(&mut self.child, Duration::from_secs(10));
    }

    fn log(&self) -> &Path {
        &self.log
    }
}

impl SwrkCriu {
    pub(super) fn spawn_lazy_pages(&self, req: &PageDaemonRequest) -> Result<Box<dyn LazyPages>> {
        self.spawn_page_daemon(&["lazy-pages", "--page-server"], LAZY_PAGES_LOG, req)
    }

    /// Starts CRIU's page server for a push dump (stop-and-copy) at
    /// `req`'s address and port (loopback); it writes the pages it
    /// receives into `req.images` and exits once the dump has disconnected.
    /// Returns once it listens.
    pub fn receive_pages(&self, req: &PageDaemonRequest) -> Result<Box<dyn LazyPages>> {
        self.spawn_page_daemon(&["page-server"], PAGE_SERVER_LOG, req)
    }

    fn spawn_page_daemon(
        &self,
        command: &[&str],
        log_name: &str,
        req: &PageDaemonRequest,
    ) -> Result<Box<dyn LazyPages>> {
        let fail = |f| Error::from(CriuError::new(CriuOp::Restore, f));
        let what = command.join(" ");
        let (ready_r, ready_w) = nix::unistd::pipe().map_err(Error::sys("create a pipe"))?;
        let status_fd = ready_w.as_raw_fd();
        let mut cmd = Command::new(&self.binary);
        cmd.args(command)
            .arg("--address")
            .arg(req.address.to_string())
            .arg("--port")
            .arg(req.port.to_string())
            .arg("--images-dir")
            .arg(req.images)
            .arg("--work-dir")
            .arg(req.work)
            .arg("--log-file")
            .arg(log_name)
            .arg("-v4")
            .arg("--status-fd")
            .arg(status_fd.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // No parent-death signal, unlike swrk: a lazy-pages daemon must
        // outlive the thread that started it (the restored process faults
        // its memory in through it), and its owner watches it to the end.
        // SAFETY: only fcntl, async-signal-safe, runs before exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::fcntl(status_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let watch = self.waiter.watch()?;
        let child = cmd.spawn().map_err(|e| {
            fail(CriuFailure::NotInstalled(format!(
                "cannot run `{} {what}`: {e}",
                self.binary.display()
            )))
        })?;
        drop(ready_w);
        let mut daemon = Daemon {
            child,
            watch,
            log: req.work.join(log_name),
        };
        if let Err(why) = wait_ready(ready_r) {
            daemon.kill();
            let log = super::log::excerpt(&daemon.log, 10);
            return Err(fail(CriuFailure::Crashed(format!(
                "`criu {what}` did not start ({why}): {}",
                log.errors.join("; ")
            ))));
        }
        Ok(Box::new(daemon))
    }
}

/// Waits for the daemon's byte on its status pipe (written once it listens:
/// on `lazy-pages.socket`, or on its TCP port).
fn wait_ready(pipe: std::os::fd::OwnedFd) -> std::result::Result<(), String> {
    let deadline = Instant::now() + READY_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("not ready within {READY_TIMEOUT:?}"));
        }
        let mut fds = [PollFd::new(pipe.as_fd(), PollFlags::POLLIN)];
        let ms =
            PollTimeout::try_from(left.as_millis().min(1000) as u32).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, ms) {
            Ok(0) | Err(nix::Error::EINTR) => continue,
            Ok(_) => break,
            Err(e) => return Err(format!("poll its status pipe: {e}")),
        }
    }
    let mut byte = [0u8; 1];
    match std::fs::File::from(pipe).read(&mut byte) {
        Ok(1) => Ok(()),
        Ok(_) => Err("it exited first".into()),
        Err(e) => Err(format!("read its status pipe: {e}")),
    }
}
