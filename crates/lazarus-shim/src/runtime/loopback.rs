//! Loopback for a container in a network namespace of its own.
//!
//! runc brings `lo` up in every network namespace it creates (its spec
//! conversion adds a loopback network); libcontainer does not, and Docker's
//! `none` network, like any spec with a network namespace and no path,
//! relies on the runtime for it: without this, 127.0.0.1 is unreachable.

use std::os::fd::{AsFd, AsRawFd};

use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};

pub use lazarus_core::checkpoint::new_network_namespace;

/// Brings `lo` up in the network namespace of `pid`. Switches this thread's
/// network namespace (a thread's own, in Linux): only for a thread that
/// ends next (the single-threaded helper, or a thread of the shim's made
/// for it).
pub fn bring_up(pid: i32) -> Result<(), String> {
    let ns = std::fs::File::open(format!("/proc/{pid}/ns/net"))
        .map_err(|e| format!("open netns of {pid}: {e}"))?;
    setns(ns.as_fd(), CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("enter netns of {pid}: {e}"))?;
    let sock = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(|e| format!("socket: {e}"))?;
    // SAFETY: ifreq is plain data; the ioctls read and write one ifreq.
    unsafe {
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(format!(
                "read lo flags: {}",
                std::io::Error::last_os_error()
            ));
        }
        req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(format!("bring lo up: {}", std::io::Error::last_os_error()));
        }
    }
    Ok(())
}
