//! The tunnel's local half: where CRIU meets it, on 127.0.0.1 only (never
//! an address another host reaches). When CRIU is the client (a push
//! dump's page stream, a lazy-pages daemon), the tunnel listens on a
//! loopback port and takes the first connection made by a process of its
//! own user (read from the kernel's socket table): another local user
//! connecting first is dropped, not served, and does not end the wait.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// How often a waiting accept looks whether it should stop.
const POLL: Duration = Duration::from_millis(10);

/// A loopback listener for one CRIU connection.
pub struct LocalDoor {
    listener: TcpListener,
    pub port: u16,
}

impl LocalDoor {
    /// Listens on a free port of 127.0.0.1.
    pub fn bind() -> io::Result<LocalDoor> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        Ok(LocalDoor { listener, port })
    }

    /// The first connection from a process of this user, within `timeout`
    /// and until `stop` is set.
    pub fn take(
        &self,
        timeout: Duration,
        stop: &AtomicBool,
        dropped: fn(&str),
    ) -> io::Result<TcpStream> {
        let until = Instant::now() + timeout;
        let uid = nix::unistd::geteuid().as_raw();
        loop {
            if stop.load(Ordering::SeqCst) {
                return Err(io::Error::new(io::ErrorKind::Interrupted, "called off"));
            }
            if Instant::now() >= until {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("CRIU did not connect within {timeout:?}"),
                ));
            }
            match self.listener.accept() {
                Ok((stream, peer)) => {
                    let local = stream.local_addr()?;
                    match owner(peer, local) {
                        Some(owner) if owner == uid => {
                            stream.set_nonblocking(false)?;
                            return Ok(stream);
                        }
                        owner => dropped(&format!(
                            "{peer}: a local connection of user {owner:?}, not {uid}"
                        )),
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                Err(e) => return Err(e),
            }
        }
    }
}

/// The user owning the client socket of a loopback connection from `peer`
/// to `local`: its row in /proc/net/tcp (local address `peer`, remote
/// `local`).
pub fn owner(peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    owner_in(&table, peer, local)
}

pub(super) fn owner_in(table: &str, peer: SocketAddr, local: SocketAddr) -> Option<u32> {
    let (want_local, want_remote) = (proc_addr(peer)?, proc_addr(local)?);
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 7 && f[1] == want_local && f[2] == want_remote)
            .then(|| f[7].parse().ok())
            .flatten()
    })
}

/// An IPv4 socket address as /proc/net/tcp writes it: the address as a
/// host-order u32 in hex, then the port.
fn proc_addr(addr: SocketAddr) -> Option<String> {
    match addr {
        SocketAddr::V4(a) => Some(format!(
            "{:08X}:{:04X}",
            u32::from_ne_bytes(a.ip().octets()),
            a.port()
        )),
        SocketAddr::V6(_) => None,
    }
}
