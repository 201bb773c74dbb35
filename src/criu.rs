//! Seam 2: CRIU over its RPC interface (`criu swrk <fd>` on a SOCK_SEQPACKET
//! socketpair).
//!
//! rust-criu's generated protobuf types are reused; its driver is not: its
//! restore drops the restored pid, its notify callback is a plain `fn` that
//! cannot reach our state, and it waits on criu itself, which races the
//! shim's reaper. [`SwrkCriu`] waits through the reaper's exit monitor.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim_protos::protobuf::Message;
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
pub use rust_criu::rust_criu_protobuf::rpc;

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

pub trait Criu: Send + Sync {
    /// Runs one request. `inherited` fds are handed to criu under the same
    /// numbers (for `inherit_fd`, `images_dir_fd`, `work_dir_fd`).
    fn call(
        &self,
        request: rpc::Criu_req,
        inherited: &[RawFd],
        notify: &mut NotifyFn,
    ) -> Result<Outcome>;

    /// CRIU's version as (major, minor, sublevel).
    fn version(&self) -> Result<(u32, u32, u32)> {
        let mut req = rpc::Criu_req::new();
        req.set_type(rpc::Criu_req_type::VERSION);
        let outcome = self.call(req, &[], &mut |_, _| Ok(()))?;
        let v = &outcome.response.version;
        Ok((
            v.major_number() as u32,
            v.minor_number() as u32,
            v.sublevel() as u32,
        ))
    }
}

/// How long one CRIU request may take before we give up on it.
const CRIU_TIMEOUT: Duration = Duration::from_secs(600);

pub struct SwrkCriu {
    pub binary: PathBuf,
}

impl SwrkCriu {
    fn missing(&self, e: std::io::Error) -> Error {
        Error::FailedPrecondition(format!(
            "cannot run CRIU ({}): {e}; checkpoint/restore needs criu >= 4.2 installed \
             (scripts/setup-host.sh builds it)",
            self.binary.display()
        ))
    }
}

impl Criu for SwrkCriu {
    fn call(
        &self,
        request: rpc::Criu_req,
        inherited: &[RawFd],
        notify: &mut NotifyFn,
    ) -> Result<Outcome> {
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(Error::sys("create CRIU socketpair"))?;
        let mut keep: Vec<RawFd> = inherited.to_vec();
        keep.push(theirs.as_raw_fd());
        let mut cmd = Command::new(&self.binary);
        cmd.arg("swrk")
            .arg(theirs.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        // SAFETY: only fcntl, which is async-signal-safe, runs before exec.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &keep {
                    if libc::fcntl(*fd, libc::F_SETFD, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let exits = monitor_subscribe(Topic::Pid)
            .map_err(|e| Error::Other(format!("subscribe to exits: {e}")))?;
        let child = cmd.spawn().map_err(|e| self.missing(e))?;
        drop(theirs);
        let pid = child.id() as i32;
        let result = converse(&ours, request, notify);
        drop(ours); // criu exits when its socket closes
        let waited = wait_for(&exits, pid);
        let outcome = result?;
        if let Err(e) = waited {
            log::warn!("criu (pid {pid}): {e}");
        }
        Ok(outcome)
    }
}

fn converse(sock: &OwnedFd, request: rpc::Criu_req, notify: &mut NotifyFn) -> Result<Outcome> {
    send(sock, &request)?;
    let mut received_fd = None;
    loop {
        let (response, fd) = receive(sock)?;
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
            log::error!("CRIU notification {script}: {e}");
        }
        let mut ack = rpc::Criu_req::new();
        ack.set_type(rpc::Criu_req_type::NOTIFY);
        ack.set_notify_success(result.is_ok());
        send(sock, &ack)?;
    }
}

fn send(sock: &OwnedFd, message: &rpc::Criu_req) -> Result<()> {
    let bytes = message
        .write_to_bytes()
        .map_err(|e| Error::Other(format!("encode CRIU request: {e}")))?;
    nix::unistd::write(sock, &bytes).map_err(Error::sys("send CRIU request"))?;
    Ok(())
}

fn receive(sock: &OwnedFd) -> Result<(rpc::Criu_resp, Option<OwnedFd>)> {
    let mut buf = vec![0u8; 1 << 20];
    let (len, fd) = crate::io::receive_with_fd(sock.as_raw_fd(), &mut buf, "CRIU response")?;
    if len == 0 {
        return Err(Error::Runtime(
            "CRIU exited without answering (see its log)".into(),
        ));
    }
    let response = rpc::Criu_resp::parse_from_bytes(&buf[..len])
        .map_err(|e| Error::Runtime(format!("bad CRIU response: {e}")))?;
    Ok((response, fd))
}

fn wait_for(exits: &containerd_shim::monitor::Subscription, pid: i32) -> Result<i32> {
    let deadline = std::time::Instant::now() + CRIU_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match exits.rx.recv_timeout(left) {
            Ok(e) if matches!(e.subject, Subject::Pid(p) if p == pid) => return Ok(e.exit_code),
            Ok(_) => continue,
            Err(_) => {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::SIGKILL,
                );
                return Err(Error::Runtime("CRIU did not exit".into()));
            }
        }
    }
}

/// Opens a directory as an fd criu can inherit (`images_dir_fd`, `work_dir_fd`).
pub fn open_dir(path: &std::path::Path) -> Result<File> {
    File::open(path).map_err(Error::io(format!("open {}", path.display())))
}
