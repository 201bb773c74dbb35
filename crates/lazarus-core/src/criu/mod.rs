//! CRIU over its RPC interface: `criu swrk <fd>` on a SOCK_SEQPACKET
//! socketpair, one request per CRIU process.
//!
//! rust-criu's generated protobuf types are reused; its driver is not: its
//! restore drops the restored pid, its notify callback is a plain `fn` that
//! cannot reach the caller's state, and it waits on CRIU itself, which
//! races a containerd shim's reaper. Here the caller says how a child is
//! waited for ([`ChildWaiter`]), and every conversation has a deadline and
//! a bound on CRIU's log: a CRIU that hangs or loops is killed and reported.

pub mod images;
mod lazy;
pub mod log;
mod waiter;
pub mod yard;

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use protobuf::Message;
pub use rust_criu::rust_criu_protobuf::rpc;

pub use crate::error::{CriuError, CriuFailure, CriuOp};
pub use lazy::{write_private, LazyPages, PageDaemonRequest, LAZY_PAGES_LOG};
pub use waiter::{ChildWaiter, DirectWait, ExitWatch};

use crate::error::{Error, Result};

/// What CRIU answered, and the fd it sent along (the orphan pts master of a
/// restored terminal).
pub struct Outcome {
    pub response: rpc::Criu_resp,
    pub received_fd: Option<OwnedFd>,
}

/// A CRIU notification during dump or restore ("post-restore", ...): the
/// script name and the pid it concerns.
pub type NotifyFn<'a> = dyn FnMut(&str, i32) -> Result<()> + 'a;

/// One CRIU request: what to send, which fds CRIU inherits under the same
/// numbers (`inherit_fd`, `images_dir_fd`, `work_dir_fd`), and the log file
/// to keep bounded.
pub struct Call<'a> {
    pub op: CriuOp,
    pub request: rpc::Criu_req,
    pub inherited: &'a [RawFd],
    pub log: Option<&'a Path>,
    /// Asked while CRIU works: true ends the conversation (CRIU is killed),
    /// e.g. because the client that asked for the dump has gone away.
    pub cancel: Option<&'a dyn Fn() -> bool>,
}

pub trait Criu: Send + Sync {
    /// Runs one request to its end. A failure is an [`Error::Criu`] saying
    /// how it failed; CRIU's own refusal is an `Ok` response with
    /// `success() == false`, for the caller to explain.
    fn call(&self, call: Call, notify: &mut NotifyFn) -> Result<Outcome>;

    /// Starts CRIU's lazy-pages daemon for a post-copy restore and returns
    /// once it is ready for the restore (see [`lazy`]).
    fn lazy_pages(&self, _request: &PageDaemonRequest) -> Result<Box<dyn LazyPages>> {
        Err(Error::FailedPrecondition(
            "this CRIU driver cannot run a lazy-pages daemon (post-copy restore)".into(),
        ))
    }

    /// CRIU's version as (major, minor, sublevel).
    fn version(&self) -> Result<(u32, u32, u32)> {
        let mut request = rpc::Criu_req::new();
        request.set_type(rpc::Criu_req_type::VERSION);
        let call = Call {
            op: CriuOp::Version,
            request,
            inherited: &[],
            log: None,
            cancel: None,
        };
        let outcome = self.call(call, &mut |_, _| Ok(()))?;
        let v = &outcome.response.version;
        Ok((
            v.major_number() as u32,
            v.minor_number() as u32,
            v.sublevel() as u32,
        ))
    }
}

/// Limits on one CRIU conversation.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// From the request to CRIU's final answer.
    pub timeout: Duration,
    /// CRIU's log may not grow past this.
    pub log_max_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            timeout: Duration::from_secs(600),
            log_max_bytes: 256 << 20,
        }
    }
}

/// The longest timeout honoured: a year is no limit in practice, and a
/// larger one (a config's `criu_timeout_seconds = 9223372036854775807`)
/// would overflow `Instant + Duration`, which panics.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(365 * 24 * 3600);

/// How often the conversation checks the deadline, the log size and
/// whether it was called off (CRIU's answers wake it at once anyway).
const WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// How long CRIU gets to exit once its socket is closed.
const EXIT_GRACE: Duration = Duration::from_secs(10);

/// The real CRIU: `criu swrk`.
pub struct SwrkCriu {
    pub binary: PathBuf,
    pub limits: Limits,
    pub waiter: Box<dyn ChildWaiter>,
}

impl Criu for SwrkCriu {
    fn lazy_pages(&self, request: &PageDaemonRequest) -> Result<Box<dyn LazyPages>> {
        self.spawn_lazy_pages(request)
    }

    fn call(&self, call: Call, notify: &mut NotifyFn) -> Result<Outcome> {
        let fail = |failure| Error::from(CriuError::new(call.op, failure));
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(Error::sys("create CRIU socketpair"))?;
        let mut keep: Vec<RawFd> = call.inherited.to_vec();
        keep.push(theirs.as_raw_fd());
        let mut cmd = Command::new(&self.binary);
        cmd.arg("swrk")
            .arg(theirs.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // CRIU dies with the thread that runs the conversation (it does not
        // outlive the call): a CRIU orphaned by a killed shim would go on
        // dumping into a directory its requester has already removed, and
        // then stop the container for a checkpoint nobody receives.
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: only fcntl, prctl and getppid, which are async-signal-safe,
        // run before exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &keep {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the shim died before CRIU started"));
                }
                Ok(())
            });
        }
        let mut watch = self.waiter.watch()?;
        let mut child = cmd.spawn().map_err(|e| {
            fail(CriuFailure::NotInstalled(format!(
                "cannot run CRIU ({}): {e}; checkpoint/restore needs criu >= 4.2 \
                 (scripts/setup-host.sh builds it)",
                self.binary.display()
            )))
        })?;
        drop(theirs);
        let timeout = self.limits.timeout.min(MAX_TIMEOUT);
        let deadline = Instant::now() + timeout;
        let mut conversation = Conversation {
            sock: &ours,
            deadline,
            timeout,
            log: call.log,
            log_max: self.limits.log_max_bytes,
            cancel: call.cancel,
        };
        let result = conversation.run(call.request, notify);
        if result.is_err() {
            // Whatever went wrong, CRIU must not outlive the conversation.
            let _ = child.kill();
        }
        drop(ours); // CRIU exits when its socket closes
        let status = watch.wait(&mut child, EXIT_GRACE);
        if status.is_none() {
            let _ = child.kill();
            let _ = watch.wait(&mut child, EXIT_GRACE);
        }
        result.map_err(|f| {
            let f = match (f, status) {
                (CriuFailure::Crashed(m), Some(code)) => {
                    CriuFailure::Crashed(format!("{m} (criu exit status {code})"))
                }
                (f, _) => f,
            };
            fail(f)
        })
    }
}

struct Conversation<'a> {
    sock: &'a OwnedFd,
    deadline: Instant,
    timeout: Duration,
    log: Option<&'a Path>,
    log_max: u64,
    cancel: Option<&'a dyn Fn() -> bool>,
}

impl Conversation<'_> {
    fn run(
        &mut self,
        request: rpc::Criu_req,
        notify: &mut NotifyFn,
    ) -> std::result::Result<Outcome, CriuFailure> {
        self.send(&request)?;
        let mut received_fd = None;
        loop {
            self.wait_readable()?;
            let (response, fd) = self.receive()?;
            if fd.is_some() {
                received_fd = fd;
            }
            if response.type_() != rpc::Criu_req_type::NOTIFY {
                return Ok(Outcome {
                    response,
                    received_fd,
                });
            }
            let script = response.notify.script().to_string();
            let result = notify(&script, response.notify.pid());
            if let Err(e) = &result {
                ::log::error!("CRIU notification {script}: {e}");
            }
            let mut ack = rpc::Criu_req::new();
            ack.set_type(rpc::Criu_req_type::NOTIFY);
            ack.set_notify_success(result.is_ok());
            self.send(&ack)?;
        }
    }

    /// Waits until CRIU has something to say, watching the deadline and the
    /// log's size meanwhile.
    fn wait_readable(&self) -> std::result::Result<(), CriuFailure> {
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CriuFailure::TimedOut(self.timeout));
            }
            if self.cancel.is_some_and(|cancelled| cancelled()) {
                return Err(CriuFailure::Cancelled);
            }
            let size = self
                .log
                .and_then(|l| std::fs::metadata(l).ok())
                .map(|m| m.len());
            if size.is_some_and(|s| s > self.log_max) {
                return Err(CriuFailure::LogTooLarge(self.log_max));
            }
            let slice = left.min(WATCH_INTERVAL);
            let mut fds = [PollFd::new(self.sock.as_fd(), PollFlags::POLLIN)];
            let ms = PollTimeout::try_from(slice.as_millis() as u32).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, ms) {
                Ok(0) | Err(nix::Error::EINTR) => continue,
                Ok(_) => return Ok(()),
                Err(e) => return Err(CriuFailure::Protocol(format!("poll CRIU socket: {e}"))),
            }
        }
    }

    fn send(&self, message: &rpc::Criu_req) -> std::result::Result<(), CriuFailure> {
        let bytes = message
            .write_to_bytes()
            .map_err(|e| CriuFailure::Protocol(format!("encode request: {e}")))?;
        nix::unistd::write(self.sock, &bytes)
            .map_err(|e| CriuFailure::Crashed(format!("send request: {e}")))?;
        Ok(())
    }

    fn receive(&self) -> std::result::Result<(rpc::Criu_resp, Option<OwnedFd>), CriuFailure> {
        let mut buf = vec![0u8; 1 << 20];
        let (len, fd) =
            crate::fdpass::receive_with_fd(self.sock.as_raw_fd(), &mut buf, "CRIU response")
                .map_err(|e| match e {
                    // CRIU died with our request unread.
                    Error::Sys {
                        source: nix::Error::ECONNRESET,
                        ..
                    } => CriuFailure::Crashed("CRIU closed its socket".into()),
                    e => CriuFailure::Protocol(e.to_string()),
                })?;
        if len == 0 {
            return Err(CriuFailure::Crashed("CRIU closed its socket".into()));
        }
        let response = rpc::Criu_resp::parse_from_bytes(&buf[..len])
            .map_err(|e| CriuFailure::Protocol(format!("bad response: {e}")))?;
        Ok((response, fd))
    }
}

/// Opens a directory as an fd CRIU can inherit (`images_dir_fd`, `work_dir_fd`).
pub fn open_dir(path: &Path) -> Result<File> {
    File::open(path).map_err(Error::io(format!("open {}", path.display())))
}

#[cfg(test)]
mod tests;
