//! `lazarus serve`'s door: who gets as far as a migration, and how little
//! a peer without the key can hold. Anyone who reaches the port can
//! connect, and only the handshake proves a peer holds the key, so until
//! it has:
//!
//! - the Noise handshake and the first request (the offer) must complete
//!   within [`Limits::deadline`] in all, however the bytes trickle in (a
//!   timeout per read let one byte every few seconds hold a connection for
//!   minutes);
//! - each connection is served on a thread of its own, at most
//!   [`Limits::handshakes`] at once, so none waits for another. One more
//!   drops the oldest to make room rather than being refused itself: else
//!   anyone with a few addresses could keep every place taken and refuse
//!   every sender, while a real sender's handshake takes a round trip and
//!   is never the oldest for long;
//! - at most [`Limits::per_address`] from one address (an IPv6 peer by its
//!   /64); more are closed at once;
//! - once authenticated, one migration at a time: a second sender while
//!   one runs is refused at once ("busy", its container not touched)
//!   rather than kept waiting for a restore of unknown length;
//! - every dropped connection is logged with why, within the limits of
//!   [`log`], so a flood cannot fill the disk.
//!
//! The migration itself runs on the agent's main thread, which never
//! waits on a peer that has not authenticated.

mod log;
#[cfg(test)]
mod tests;

pub use log::{stderr, Sink};

use std::collections::{BTreeMap, HashMap};
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use lazarus_core::channel::{Channel, ChannelError, Key};

use super::{Answer, Offer};
use crate::error::{Error, Result};
use log::DropLog;

/// What an unauthenticated peer may hold.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// For the whole handshake and the first request.
    pub deadline: Duration,
    /// Handshakes under way at once.
    pub handshakes: usize,
    /// Handshakes under way from one address.
    pub per_address: usize,
    /// Lines logged per reason for dropping a connection, per window.
    pub log_lines: u32,
    pub log_window: Duration,
}

/// The agent's limits. The deadline is the sender's own patience for an
/// answer; 64 handshakes is far more than honest senders ever open at once
/// and a few MiB of buffers; 8 lets a host retry a few times while its
/// earlier attempts time out; 5 lines a minute per reason (7 reasons) is
/// at most about 9 MB of log a day under a permanent flood.
pub const LIMITS: Limits = Limits {
    deadline: super::CONNECT_TIMEOUT,
    handshakes: 64,
    per_address: 8,
    log_lines: 5,
    log_window: Duration::from_secs(60),
};

/// An authenticated sender's offer, on its channel, holding the one
/// migration slot until dropped.
pub struct Admitted {
    pub ch: Channel<TcpStream>,
    pub offer: Offer,
    pub peer: SocketAddr,
    _slot: Slot,
}

/// Serves `listener` on threads of its own; returns the authenticated
/// senders' migrations, one at a time (another sender is refused as busy
/// until the last [`Admitted`] is dropped).
pub fn open(
    listener: TcpListener,
    key: Key,
    limits: Limits,
    sink: Sink,
) -> Result<Receiver<Admitted>> {
    // Room for the one admitted migration: sending never waits.
    let (admitted, migrations) = mpsc::sync_channel(1);
    let gate = Arc::new(Gate {
        key,
        limits,
        pending: Mutex::default(),
        busy: Arc::default(),
        log: DropLog::new(sink, limits.log_lines, limits.log_window),
        admitted,
    });
    let flusher = gate.clone();
    spawn("lazarus-serve-log", move || flusher.log.flush_every())?;
    spawn("lazarus-serve-accept", move || gate.accept_loop(listener))?;
    Ok(migrations)
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<()> {
    thread::Builder::new()
        .name(name.into())
        .spawn(f)
        .map(drop)
        .map_err(|e| Error::Core(lazarus_core::Error::io(format!("start thread {name}"))(e)))
}

struct Gate {
    key: Key,
    limits: Limits,
    pending: Mutex<Pending>,
    /// The migration slot: taken while a migration runs.
    busy: Arc<AtomicBool>,
    log: DropLog,
    admitted: SyncSender<Admitted>,
}

/// After a failed accept (out of descriptors, most likely), a pause before
/// the next rather than a busy loop.
const ACCEPT_PAUSE: Duration = Duration::from_millis(50);

impl Gate {
    fn accept_loop(self: Arc<Self>, listener: TcpListener) {
        loop {
            match listener.accept() {
                Ok((stream, peer)) => self.clone().take(stream, peer),
                Err(e) => {
                    self.log.line("accept", || {
                        format!("lazarus serve: accepting a connection failed: {e}")
                    });
                    thread::sleep(ACCEPT_PAUSE);
                }
            }
        }
    }

    /// A new connection: counted, then handshaken on a thread of its own,
    /// or closed at once (dropping `stream`) with the reason logged.
    fn take(self: Arc<Self>, stream: TcpStream, peer: SocketAddr) {
        let ticket = match self.register(&stream, peer) {
            Ok(t) => t,
            Err(why) => return self.log.dropped(peer, &why),
        };
        let gate = self.clone();
        let started = thread::Builder::new()
            .name("lazarus-serve-handshake".into())
            .spawn(move || gate.handshake(stream, peer, ticket));
        if let Err(e) = started {
            self.log.dropped(peer, &Dropped::NoResources(e.to_string()));
        }
    }

    fn pending(&self) -> MutexGuard<'_, Pending> {
        // A panicked handshake thread leaves consistent counts behind:
        // every change is one statement.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn register(
        self: &Arc<Self>,
        stream: &TcpStream,
        peer: SocketAddr,
    ) -> std::result::Result<Ticket, Dropped> {
        // Kept to shut the connection down should it be evicted.
        let handle = stream
            .try_clone()
            .map_err(|e| Dropped::NoResources(e.to_string()))?;
        let share = share(peer.ip());
        let mut pending = self.pending();
        let from = pending.from(share);
        if from >= self.limits.per_address {
            return Err(Dropped::OverAddressLimit(from));
        }
        if pending.open.len() >= self.limits.handshakes {
            pending.evict_oldest();
        }
        let id = pending.add(share, handle);
        Ok(Ticket {
            gate: self.clone(),
            id,
        })
    }

    fn handshake(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, ticket: Ticket) {
        let until = Instant::now() + self.limits.deadline;
        let authenticated = self.authenticate(stream, until);
        // Authenticated or not, it no longer counts against the limits
        // (nor can it be evicted from here on).
        let evicted = ticket.release();
        match authenticated {
            // Its connection was shut down just after it authenticated.
            Ok(_) if evicted => self
                .log
                .dropped(peer, &Dropped::Evicted(self.limits.handshakes)),
            Ok((ch, offer)) => self.admit(ch, offer, peer),
            Err(failed) => {
                let why = Dropped::classify(failed, evicted, until, &self.limits);
                self.log.dropped(peer, &why)
            }
        }
    }

    /// The handshake and the offer, both before `until`.
    fn authenticate(
        &self,
        stream: TcpStream,
        until: Instant,
    ) -> std::result::Result<(Channel<Deadline>, Offer), Failed> {
        let mut ch =
            Channel::accept(Deadline { stream, until }, &self.key).map_err(Failed::Handshake)?;
        let offer = ch.recv_json().map_err(Failed::Request)?;
        Ok((ch, offer))
    }

    /// An authenticated sender: the migration's, unless one runs.
    fn admit(&self, mut ch: Channel<Deadline>, offer: Offer, peer: SocketAddr) {
        let Some(slot) = Slot::claim(&self.busy) else {
            let busy = Error::Refused(
                "this host is receiving another migration: try again once it has ended".into(),
            );
            // Still within the deadline: a sender that does not read
            // cannot hold this thread.
            let _ = ch.send_json(&Answer::refused(&busy));
            return self.log.dropped(peer, &Dropped::Busy);
        };
        let admitted = Admitted {
            ch: ch.map_stream(|d| d.stream),
            offer,
            peer,
            _slot: slot,
        };
        // Fails only once the main thread is gone (the agent is ending).
        let _ = self.admitted.send(admitted);
    }
}

/// How far an unauthenticated connection got before it failed.
enum Failed {
    Handshake(ChannelError),
    Request(ChannelError),
}

/// Why a connection was closed before it became a migration.
#[derive(Debug)]
enum Dropped {
    Deadline(Duration),
    Unauthenticated(String),
    Left { authenticated: bool, why: String },
    NotAnOffer(String),
    Evicted(usize),
    OverAddressLimit(usize),
    Busy,
    NoResources(String),
}

impl Dropped {
    fn classify(failed: Failed, evicted: bool, until: Instant, limits: &Limits) -> Dropped {
        let (authenticated, e) = match failed {
            Failed::Handshake(e) => (false, e),
            Failed::Request(e) => (true, e),
        };
        let timed_out = matches!(&e, ChannelError::Io { source, .. }
            if matches!(source.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock));
        if evicted {
            Dropped::Evicted(limits.handshakes)
        } else if timed_out || Instant::now() >= until {
            Dropped::Deadline(limits.deadline)
        } else {
            match e {
                ChannelError::NotAuthenticated(_) => Dropped::Unauthenticated(e.to_string()),
                ChannelError::Closed(_) | ChannelError::Io { .. } => Dropped::Left {
                    authenticated,
                    why: e.to_string(),
                },
                // Before the handshake, whatever fails is a peer without
                // the key (or not a Lazarus peer at all).
                _ if !authenticated => Dropped::Unauthenticated(e.to_string()),
                _ => Dropped::NotAnOffer(e.to_string()),
            }
        }
    }

    /// A word or two for the log (and its rate limit, per reason).
    fn reason(&self) -> &'static str {
        match self {
            Dropped::Deadline(_) => "deadline",
            Dropped::Unauthenticated(_) => "unauthenticated",
            Dropped::Left { .. } => "closed",
            Dropped::NotAnOffer(_) => "not an offer",
            Dropped::Evicted(_) => "evicted",
            Dropped::OverAddressLimit(_) => "over the per-address limit",
            Dropped::Busy => "busy",
            Dropped::NoResources(_) => "out of resources",
        }
    }

    fn detail(&self) -> String {
        match self {
            Dropped::Deadline(d) => format!(
                "the handshake and the first request did not complete within {} s",
                d.as_secs_f64()
            ),
            Dropped::Unauthenticated(why) => why.clone(),
            Dropped::Left {
                authenticated: false,
                why,
            } => format!("before authenticating: {why}"),
            Dropped::Left { why, .. } => format!("authenticated, then before its offer: {why}"),
            Dropped::NotAnOffer(why) => format!("authenticated, but its first request: {why}"),
            Dropped::Evicted(n) => {
                format!("{n} handshakes were under way: the oldest, this one, made room")
            }
            Dropped::OverAddressLimit(n) => {
                format!("{n} unauthenticated connections from this address already: closed at once")
            }
            Dropped::Busy => "authenticated, but a migration is under way here: refused, the \
                              sender was told to try again once it has ended"
                .into(),
            Dropped::NoResources(why) => format!("nothing to serve it with: {why}"),
        }
    }
}

/// Whose share of the per-address limit a connection counts against: its
/// address, an IPv6 one by its /64 (often one host's whole network).
fn share(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The handshakes under way.
#[derive(Default)]
struct Pending {
    next: u64,
    /// By arrival (ids only grow): the oldest first.
    open: BTreeMap<u64, Handshake>,
    per_address: HashMap<IpAddr, usize>,
}

struct Handshake {
    share: IpAddr,
    stream: TcpStream,
}

impl Pending {
    fn from(&self, share: IpAddr) -> usize {
        self.per_address.get(&share).copied().unwrap_or(0)
    }

    fn add(&mut self, share: IpAddr, stream: TcpStream) -> u64 {
        let id = self.next;
        self.next += 1;
        *self.per_address.entry(share).or_default() += 1;
        self.open.insert(id, Handshake { share, stream });
        id
    }

    fn remove(&mut self, id: u64) -> Option<Handshake> {
        let h = self.open.remove(&id)?;
        if let Some(n) = self.per_address.get_mut(&h.share) {
            *n -= 1;
            if *n == 0 {
                self.per_address.remove(&h.share);
            }
        }
        Some(h)
    }

    /// Ends the oldest handshake: its thread's next read or write fails at
    /// once, and it finds its place gone ([`Ticket::release`]).
    fn evict_oldest(&mut self) {
        let Some(&id) = self.open.keys().next() else {
            return;
        };
        if let Some(h) = self.remove(id) {
            let _ = h.stream.shutdown(Shutdown::Both);
        }
    }
}

/// One handshake's place in [`Pending`], given back when released or
/// dropped.
struct Ticket {
    gate: Arc<Gate>,
    id: u64,
}

impl Ticket {
    /// Gives the place back; whether it had been taken away already
    /// (evicted: its connection shut down).
    fn release(self) -> bool {
        self.gate.pending().remove(self.id).is_none()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // Nothing left to remove once released or evicted.
        self.gate.pending().remove(self.id);
    }
}

/// The one migration slot, free again when dropped.
struct Slot(Arc<AtomicBool>);

impl Slot {
    fn claim(busy: &Arc<AtomicBool>) -> Option<Slot> {
        busy.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Slot(busy.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A connection whose reads and writes must all end by `until`: before
/// each, the socket's timeout is set to what is left, so bytes trickling
/// in cannot stretch the whole past it.
struct Deadline {
    stream: TcpStream,
    until: Instant,
}

impl Deadline {
    fn left(&self) -> io::Result<Duration> {
        match self.until.saturating_duration_since(Instant::now()) {
            left if left.is_zero() => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the handshake's deadline passed",
            )),
            left => Ok(left),
        }
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.set_read_timeout(Some(self.left()?))?;
        self.stream.read(buf)
    }
}

impl Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.stream.set_write_timeout(Some(self.left()?))?;
        self.stream.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.stream.flush()
    }
}
