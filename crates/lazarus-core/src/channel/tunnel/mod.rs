//! The page tunnel: how CRIU's page streams cross between the hosts of a
//! migration without CRIU ever listening on, or connecting to, the network.
//!
//! CRIU's page servers take the first connection to their port; on the
//! network, a stranger connecting first would abort the migration. So
//! each end of a page stream is CRIU on its own host's loopback, and a
//! Lazarus process beside it ([`LocalDoor`], or a connection to CRIU's
//! loopback port) carries the bytes over a [`Link`]: a TCP connection of
//! its own, authenticated with the migration key and bound to the
//! migration by a [`Session`] id sent on the control channel. The Noise
//! encryption replaces CRIU's TLS.
//!
//! One thread per direction, no lock held across I/O: the sending one
//! reads up to [`BATCH`] bytes from CRIU, seals them as Noise messages and
//! writes them with one call; the receiving one reads up to as much from
//! the link, opens each message, and writes what it opened to CRIU in as
//! few calls. Either failing shuts both sockets down, so the other ends
//! too and CRIU sees its stream break (what it does then is the
//! migration's fail-safe path: a dump called off, a lazy-pages daemon
//! gone). Every byte is counted, per direction ([`Stats`]).
//!
//! Post-copy, the receiver's end is more than a pipe: it is the lazy-pages
//! daemon's page server, fetching every lazy page from the source ahead of
//! the daemon's requests ([`pump`]).

mod link;
mod local;
mod pump;
#[cfg(test)]
mod tests;

pub use link::{Door, Link};
pub use local::LocalDoor;
pub use pump::{LazyRun, PumpPlan, PAGE};

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::{MAX_FRAME, MAX_NOISE, TAG};

/// The most plaintext read from CRIU and sent with one write (as many
/// Noise messages as it takes): large writes, few system calls.
pub const BATCH: usize = 1 << 20;

/// A migration's tunnel id: random, sent only inside the control channel.
#[derive(Clone, PartialEq, Eq)]
pub struct Session([u8; 16]);

impl Session {
    pub fn generate() -> io::Result<Session> {
        let mut bytes = [0u8; 16];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Session(bytes))
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn parse(text: &str) -> Option<Session> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(Session(bytes))
    }

    fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// Compared without an early exit (the id is a secret of the channel).
    fn matches(&self, other: &[u8]) -> bool {
        other.len() == self.0.len()
            && self.0.iter().zip(other).fold(0u8, |d, (a, b)| d | (a ^ b)) == 0
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session(..)")
    }
}

/// What went through a tunnel: plaintext bytes each way (`sent`: from
/// this host's CRIU to the peer), and the seconds from the first byte to
/// the last.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stats {
    pub sent: u64,
    pub received: u64,
    pub seconds: f64,
}

impl Stats {
    /// Bytes both ways per second, while bytes moved.
    pub fn bytes_per_second(&self) -> Option<f64> {
        (self.seconds > 0.0).then(|| (self.sent + self.received) as f64 / self.seconds)
    }
}

struct Counters {
    origin: Instant,
    sent: AtomicU64,
    received: AtomicU64,
    /// Nanoseconds after `origin` of the first and the last byte.
    first: AtomicU64,
    last: AtomicU64,
}

impl Counters {
    fn new() -> Counters {
        Counters {
            origin: Instant::now(),
            sent: AtomicU64::new(0),
            received: AtomicU64::new(0),
            first: AtomicU64::new(u64::MAX),
            last: AtomicU64::new(0),
        }
    }

    fn add(&self, which: &AtomicU64, n: usize) {
        let now = self.origin.elapsed().as_nanos() as u64;
        which.fetch_add(n as u64, Ordering::Relaxed);
        self.first.fetch_min(now, Ordering::Relaxed);
        self.last.fetch_max(now, Ordering::Relaxed);
    }

    fn stats(&self) -> Stats {
        let (first, last) = (
            self.first.load(Ordering::Relaxed),
            self.last.load(Ordering::Relaxed),
        );
        Stats {
            sent: self.sent.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            seconds: match first {
                u64::MAX => 0.0,
                f => last.saturating_sub(f) as f64 / 1e9,
            },
        }
    }
}

/// Where the link comes from: made already (the sender's), or the first
/// one a [`Door`] authenticates (the receiver's).
pub enum LinkFrom {
    Ready(Link),
    Door(Door),
}

/// How the tunnel meets this host's CRIU.
pub enum LocalEnd {
    /// CRIU connects: the first connection of this user on the door.
    Accept(LocalDoor),
    /// As `Accept`, CRIU being a lazy-pages daemon: once the dump's lazy
    /// runs are known (set before the restore starts the daemon), the
    /// receiver's page pump ([`pump`]) serves it; without them, its
    /// requests cross as bytes.
    Fetch(LocalDoor, Arc<PumpPlan>),
    /// CRIU listens on this loopback address: connected once
    /// [`Tunnel::go`] says it does.
    Connect(SocketAddr),
    /// As `Connect`, CRIU being a lazy dump's page server. It takes a bare
    /// end of stream for the lazy-pages daemon's goodbye, and then ends
    /// the source as migrated; without TLS, a daemon that died would look
    /// the same. So the peer's end reaches it only when the last message
    /// before it was the daemon's goodbye (`PS_IOV_CLOSE`); any other end
    /// resets it, and the dump fails (the source thaws).
    ServeLazy(SocketAddr),
}

/// CRIU's page server request header (criu/page-xfer.c `struct
/// page_server_iov`: u32 cmd, padding, three u64), as its client sends
/// it; a lazy-pages daemon sends nothing else.
const PS_IOV_LEN: usize = 32;
const PS_CMD_MASK: u32 = 0xffff;
const PS_IOV_CLOSE: u32 = 0x1023;
const PS_IOV_FORCE_CLOSE: u32 = 0x1024;

/// Whether `tail` (the last bytes a page server client sent) is its
/// goodbye.
fn is_goodbye(tail: &[u8]) -> bool {
    if tail.len() < PS_IOV_LEN {
        return false;
    }
    let last = &tail[tail.len() - PS_IOV_LEN..];
    let cmd = u32::from_le_bytes([last[0], last[1], last[2], last[3]]) & PS_CMD_MASK;
    matches!(cmd, PS_IOV_CLOSE | PS_IOV_FORCE_CLOSE)
}

struct Shared {
    counters: Counters,
    stop: AtomicBool,
    /// Why the tunnel failed, the first reason given; none while it has
    /// not. Every later failure is that one's echo (a write broken by the
    /// shutdown it made, CRIU's end of stream read after it), so the first
    /// is the one reported.
    failure: Mutex<Option<String>>,
    /// The link and CRIU's socket once the tunnel runs, to shut down on
    /// abort (the lock is held to add, shut or clear, never across I/O).
    sockets: Mutex<Vec<(TcpStream, Shutdown)>>,
}

impl Shared {
    /// Records `why` unless a reason came first, shuts both sockets down
    /// ([`Shared::shut`]), and returns the reason that came first.
    fn fail(&self, why: impl Into<String>) -> String {
        let first = {
            let mut failure = self.failure.lock().unwrap_or_else(|e| e.into_inner());
            failure.get_or_insert_with(|| why.into()).clone()
        };
        self.shut();
        first
    }

    /// Wakes both directions: the link shut both ways; CRIU's socket for
    /// reading only, so nothing reaches CRIU that looks like an end. (A
    /// lazy dump's page server takes a bare end of stream for its client's
    /// clean goodbye, and would let the source go.) CRIU's socket is reset
    /// when it closes ([`abortive_close`]).
    fn shut(&self) {
        let sockets = self.sockets.lock().unwrap_or_else(|e| e.into_inner());
        for (s, how) in sockets.iter() {
            let _ = s.shutdown(*how);
        }
    }

    /// The first reason the tunnel failed for, if it has.
    fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// CRIU's socket is reset, not ended, when closed before both directions
/// ended cleanly (a failure, this process killed): CRIU then fails its
/// stream (the dump is called off, the lazy-pages daemon gives up) instead
/// of taking a bare end for a finished one. A clean end is still a FIN:
/// `shutdown(Write)` is not affected by the linger setting.
fn abortive_close(stream: &TcpStream) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    setsockopt(stream, sockopt::Linger, &linger)
}

/// One page stream's tunnel, running on threads of its own. Dropped, it is
/// aborted (both sockets shut down): its owner holds it until it ended.
pub struct Tunnel {
    shared: Arc<Shared>,
    go: Option<mpsc::SyncSender<()>>,
    done: mpsc::Receiver<std::result::Result<(), String>>,
    ended: Option<std::result::Result<(), String>>,
}

impl Tunnel {
    /// Starts the tunnel: it waits up to `wait` for its link, then for its
    /// local end, then carries bytes until both directions have ended.
    /// `dropped` hears of every connection refused on the way.
    pub fn start(
        link: LinkFrom,
        local: LocalEnd,
        wait: Duration,
        dropped: fn(&str),
    ) -> io::Result<Tunnel> {
        let shared = Arc::new(Shared {
            counters: Counters::new(),
            stop: AtomicBool::new(false),
            failure: Mutex::default(),
            sockets: Mutex::default(),
        });
        let (go, told) = mpsc::sync_channel(1);
        let (finished, done) = mpsc::sync_channel(1);
        let s = shared.clone();
        thread::Builder::new()
            .name("lazarus-tunnel".into())
            .spawn(move || {
                // An abort or the other direction may have failed it
                // first: that reason, not this echo of it, is reported.
                let result = run(&s, link, local, told, wait, dropped).map_err(|e| s.fail(e));
                // The last handles: CRIU's socket closes (reset, if it had
                // not ended cleanly).
                s.sockets.lock().unwrap_or_else(|e| e.into_inner()).clear();
                let _ = finished.send(result);
            })?;
        Ok(Tunnel {
            shared,
            go: Some(go),
            done,
            ended: None,
        })
    }

    /// CRIU listens now ([`LocalEnd::Connect`]): connect to it.
    pub fn go(&mut self) {
        if let Some(go) = self.go.take() {
            let _ = go.send(());
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.counters.stats()
    }

    /// How the tunnel ended, once it has, waiting at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<std::result::Result<(), String>> {
        if self.ended.is_none() {
            self.ended = match self.done.recv_timeout(timeout) {
                Ok(r) => Some(r),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    Some(Err("the tunnel's thread ended without a word".into()))
                }
            };
        }
        self.ended.clone()
    }

    /// Whether it ended with an error, without waiting.
    pub fn failed(&mut self) -> Option<String> {
        self.wait(Duration::ZERO).and_then(|r| r.err())
    }

    /// Stops it: whatever it waits for is given up, its sockets shut down.
    pub fn abort(&self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.fail("called off");
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        self.abort();
    }
}

fn run(
    s: &Shared,
    link: LinkFrom,
    local: LocalEnd,
    told: mpsc::Receiver<()>,
    wait: Duration,
    dropped: fn(&str),
) -> std::result::Result<(), String> {
    let goodbye = matches!(local, LocalEnd::ServeLazy(_));
    let link = match link {
        LinkFrom::Ready(l) => l,
        LinkFrom::Door(door) => door
            .take(wait, &s.stop)
            .ok_or_else(|| format!("no authenticated tunnel connection came within {wait:?}"))?,
    };
    let mut plan = None;
    let local = match local {
        LocalEnd::Accept(door) => door
            .take(wait, &s.stop, dropped)
            .map_err(|e| format!("waiting for CRIU's connection: {e}"))?,
        LocalEnd::Fetch(door, pump_plan) => {
            let daemon = door
                .take(wait, &s.stop, dropped)
                .map_err(|e| format!("waiting for CRIU's connection: {e}"))?;
            plan = pump_plan.runs().is_some().then_some(pump_plan);
            daemon
        }
        LocalEnd::Connect(addr) | LocalEnd::ServeLazy(addr) => {
            let until = Instant::now() + wait;
            loop {
                if s.stop.load(Ordering::SeqCst) || Instant::now() >= until {
                    return Err("called off before CRIU was ready".into());
                }
                match told.recv_timeout(Duration::from_millis(20)) {
                    Ok(()) => break,
                    Err(mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(mpsc::RecvTimeoutError::Disconnected) => {
                        return Err("called off before CRIU was ready".into())
                    }
                }
            }
            TcpStream::connect(addr).map_err(|e| format!("connect to CRIU at {addr}: {e}"))?
        }
    };
    // A lazy-pages request is small and waits for its answer.
    let _ = local.set_nodelay(true);
    let _ = link.stream.set_nodelay(true);
    keepalive(&link.stream).map_err(|e| format!("set the tunnel's keepalive: {e}"))?;
    abortive_close(&local).map_err(|e| format!("set CRIU's socket's linger: {e}"))?;
    let clone = |t: &TcpStream| t.try_clone().map_err(|e| format!("clone a socket: {e}"));
    {
        let mut sockets = s.sockets.lock().unwrap_or_else(|e| e.into_inner());
        sockets.push((clone(&link.stream)?, Shutdown::Both));
        sockets.push((clone(&local)?, Shutdown::Read));
    }
    if s.stop.load(Ordering::SeqCst) {
        return Err("called off".into());
    }
    if let Some(plan) = plan {
        return pump::run(link, local, &plan, s);
    }
    let (up_from, up_to) = (clone(&local)?, clone(&link.stream)?);
    let noise = link.noise.clone();
    let nonce = link.send_nonce;
    thread::scope(|scope| {
        // Each direction shuts both down the moment it fails: the other
        // may be blocked on a socket nothing will ever arrive on (CRIU
        // reset its end, the peer waits for our next request), and only
        // the shutdown wakes it.
        let up = scope.spawn(|| {
            send(up_from, up_to, &noise, nonce, s).map_err(|e| s.fail(format!("sending: {e}")))
        });
        let down = receive(link, local, &s.counters, goodbye)
            .map_err(|e| s.fail(format!("receiving: {e}")));
        let up = up
            .join()
            .unwrap_or_else(|_| Err(s.fail("the sending thread panicked")));
        // Whichever failed first: the other's failure is its echo.
        up.and(down)
    })
}

/// A link that stops answering (a cut cable, a host gone) fails within
/// about 5 + 3 x 2 = 11 s idle, or 20 s with data unacknowledged, as the
/// control channel's does: then CRIU's stream breaks on both hosts rather
/// than hanging.
fn keepalive(stream: &TcpStream) -> nix::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    setsockopt(stream, sockopt::KeepAlive, &true)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &5)?;
    setsockopt(stream, sockopt::TcpKeepInterval, &2)?;
    setsockopt(stream, sockopt::TcpKeepCount, &3)?;
    setsockopt(stream, sockopt::TcpUserTimeout, &20_000)
}

/// CRIU to the peer: batches sealed and written with one call; CRIU's end
/// of stream sent as an empty message.
fn send(
    mut from: TcpStream,
    mut to: TcpStream,
    noise: &snow::StatelessTransportState,
    mut nonce: u64,
    s: &Shared,
) -> io::Result<()> {
    let counters = &s.counters;
    let mut plain = vec![0u8; BATCH];
    let frames = BATCH.div_ceil(MAX_FRAME) + 1;
    let mut wire = vec![0u8; BATCH + frames * (TAG + 2)];
    loop {
        let n = match from.read(&mut plain) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 && s.failure().is_some() {
            return Err(io::Error::other("the tunnel failed"));
        }
        let mut at = 0;
        for chunk in plain[..n].chunks(MAX_FRAME) {
            at += link::seal(noise, nonce, chunk, &mut wire[at..]).map_err(io::Error::other)?;
            nonce += 1;
        }
        if n == 0 {
            at += link::seal(noise, nonce, &[], &mut wire[at..]).map_err(io::Error::other)?;
        }
        to.write_all(&wire[..at])?;
        if n == 0 {
            to.shutdown(Shutdown::Write)?;
            return Ok(());
        }
        counters.add(&counters.sent, n);
    }
}

/// The peer to CRIU: messages opened as they come, written to CRIU in
/// batches of what had arrived; the peer's empty message ends CRIU's
/// input. A link that ends without it was cut.
fn receive(link: Link, mut to: TcpStream, counters: &Counters, goodbye: bool) -> io::Result<()> {
    let mut from = link::Opener::new(link);
    let mut out = Vec::with_capacity(BATCH + MAX_NOISE);
    let mut ended = false;
    // The last bytes written to CRIU, for `goodbye`.
    let mut tail: Vec<u8> = Vec::with_capacity(2 * PS_IOV_LEN);
    while !ended {
        ended = from.open_into(&mut out)? == 0;
        // Written when a batch is full or nothing more has arrived yet.
        if ended && goodbye && !is_goodbye(&[&tail[..], &out[..]].concat()) {
            return Err(io::Error::other(
                "the peer's lazy-pages daemon ended without its goodbye",
            ));
        }
        if ended || out.len() >= BATCH || from.caught_up() {
            to.write_all(&out)?;
            tail.extend_from_slice(&out[out.len().saturating_sub(PS_IOV_LEN)..]);
            tail.drain(..tail.len().saturating_sub(PS_IOV_LEN));
            counters.add(&counters.received, out.len());
            out.clear();
        }
    }
    to.shutdown(Shutdown::Write)
}
