//! Receiving a file descriptor over a unix socket (SCM_RIGHTS): a console
//! socket's pty master, the orphan pts master CRIU hands back at restore.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::error::{Error, Result};

/// Receives one message and the fd sent with it, if any.
pub fn receive_with_fd(
    sock: RawFd,
    buf: &mut [u8],
    what: &str,
) -> Result<(usize, Option<OwnedFd>)> {
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let msg = recvmsg::<()>(sock, &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
        .map_err(Error::sys(format!("receive {what}")))?;
    let mut fd = None;
    for c in msg.cmsgs().map_err(Error::sys(format!("read {what}")))? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just installed these fds for us.
            fd = fds.first().map(|&f| unsafe { OwnedFd::from_raw_fd(f) });
        }
    }
    Ok((msg.bytes, fd))
}
