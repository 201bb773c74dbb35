//! The tunnel's network half: a TCP connection of its own between the two
//! hosts, authenticated with the migration key and bound to one migration
//! by a session id that only the control channel carried.
//!
//! The handshake is the control channel's (`NNpsk0`, fresh ephemeral keys,
//! the shared key mixed in from the first message) under another prologue,
//! so a handshake made for one kind of connection never completes as the
//! other. The initiator's first sealed message is the session id; the
//! responder answers a sealed "ok" only if it is this migration's. A replay
//! of a real sender's first message gets the responder's answer but not the
//! transport keys (they need the sender's ephemeral secret), so it cannot
//! seal a session id: it is dropped like any peer without the key.
//!
//! After that each direction is a sequence of Noise messages (u16 length,
//! then the sealed bytes), each nonce the previous plus one: the transport
//! state is stateless (`&self`) so the two directions run on threads of
//! their own without a lock, each counting its own nonces. A message with
//! no payload ends its direction (so a connection cut short is told from
//! one that ended: a bare TCP end is an error).

use std::io::{self, BufReader, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::super::{builder, noise_setup, ChannelError, Key, Result, MAX_FRAME, MAX_NOISE, TAG};
use super::Session;

const PROLOGUE: &[u8] = b"lazarus page tunnel 1";
const ACCEPTED: &[u8] = b"ok";
/// The responder's handshake answer: its ephemeral key and the empty
/// payload's tag.
const REPLY_LEN: usize = 32 + TAG;

/// One authenticated tunnel connection.
pub struct Link {
    pub(super) stream: TcpStream,
    pub(super) noise: Arc<snow::StatelessTransportState>,
    /// The next nonce each way (the initiator's first transport message,
    /// the session id, used 0 one way; the answer 0 the other).
    pub(super) send_nonce: u64,
    pub(super) recv_nonce: u64,
}

fn io(context: &'static str) -> impl FnOnce(io::Error) -> ChannelError {
    move |source| match source.kind() {
        io::ErrorKind::UnexpectedEof => ChannelError::Closed(context),
        _ => ChannelError::Io { context, source },
    }
}

impl Link {
    /// The sender's side: the handshake on `stream`, then this migration's
    /// `session`; fails unless the responder accepted both.
    pub fn connect(mut stream: TcpStream, key: &Key, session: &Session) -> Result<Link> {
        let mut hs = builder(key)?
            .prologue(PROLOGUE)
            .map_err(noise_setup)?
            .build_initiator()
            .map_err(noise_setup)?;
        let mut wire = vec![0u8; MAX_NOISE];
        let mut plain = vec![0u8; MAX_NOISE];
        let n = hs.write_message(&[], &mut wire).map_err(noise_setup)?;
        write_msg(&mut stream, &wire[..n]).map_err(io("sending the tunnel handshake"))?;
        let got = read_msg(&mut stream, &mut wire).map_err(refused)?;
        if got != REPLY_LEN {
            return Err(ChannelError::NotLazarus(format!(
                "a {got}-byte tunnel handshake answer"
            )));
        }
        hs.read_message(&wire[..got], &mut plain)
            .map_err(|e| ChannelError::NotAuthenticated(e.to_string()))?;
        let noise = hs.into_stateless_transport_mode().map_err(noise_setup)?;
        let mut link = Link {
            stream,
            noise: Arc::new(noise),
            send_nonce: 0,
            recv_nonce: 0,
        };
        link.send(session.bytes())?;
        let answer = link.recv().map_err(|e| match e {
            ChannelError::Closed(_) | ChannelError::Io { .. } => {
                ChannelError::NotAuthenticated("the receiver refused the tunnel's session".into())
            }
            e => e,
        })?;
        if answer != ACCEPTED {
            return Err(ChannelError::Protocol("an unexpected tunnel answer".into()));
        }
        Ok(link)
    }

    /// The receiver's side: the handshake, then the session id, which must
    /// be `session`. The caller bounds the time it may take (the stream's
    /// timeouts).
    pub fn accept(mut stream: TcpStream, key: &Key, session: &Session) -> Result<Link> {
        let mut hs = builder(key)?
            .prologue(PROLOGUE)
            .map_err(noise_setup)?
            .build_responder()
            .map_err(noise_setup)?;
        let mut wire = vec![0u8; MAX_NOISE];
        let mut plain = vec![0u8; MAX_NOISE];
        let got = read_msg(&mut stream, &mut wire).map_err(io("reading the tunnel handshake"))?;
        hs.read_message(&wire[..got], &mut plain)
            .map_err(|e| ChannelError::NotAuthenticated(e.to_string()))?;
        let n = hs.write_message(&[], &mut wire).map_err(noise_setup)?;
        write_msg(&mut stream, &wire[..n]).map_err(io("answering the tunnel handshake"))?;
        let noise = hs.into_stateless_transport_mode().map_err(noise_setup)?;
        let mut link = Link {
            stream,
            noise: Arc::new(noise),
            send_nonce: 0,
            recv_nonce: 0,
        };
        // A peer that could not derive the transport keys fails here.
        let id = link
            .recv()
            .map_err(|e| ChannelError::NotAuthenticated(format!("its session id: {e}")))?;
        if !session.matches(&id) {
            return Err(ChannelError::NotAuthenticated(
                "it named another migration's session".into(),
            ));
        }
        link.send(ACCEPTED)?;
        Ok(link)
    }

    fn send(&mut self, plain: &[u8]) -> Result<()> {
        let mut wire = vec![0u8; MAX_NOISE + 2];
        let n = seal(&self.noise, self.send_nonce, plain, &mut wire)?;
        self.send_nonce += 1;
        // `seal` wrote the length already.
        self.stream.write_all(&wire[..n]).map_err(io("sending"))
    }

    fn recv(&mut self) -> Result<Vec<u8>> {
        let mut wire = vec![0u8; MAX_NOISE];
        let mut plain = vec![0u8; MAX_NOISE];
        let got = read_msg(&mut self.stream, &mut wire).map_err(io("receiving"))?;
        let n = self
            .noise
            .read_message(self.recv_nonce, &wire[..got], &mut plain)
            .map_err(|_| ChannelError::Tampered)?;
        self.recv_nonce += 1;
        plain.truncate(n);
        Ok(plain)
    }
}

fn refused(e: io::Error) -> ChannelError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
            ChannelError::NotAuthenticated("the receiver closed the tunnel connection".into())
        }
        _ => io("reading the tunnel handshake")(e),
    }
}

/// Seals `plain` (at most [`MAX_FRAME`] bytes) with `nonce` into `wire`,
/// length first; returns the bytes written.
pub(super) fn seal(
    noise: &snow::StatelessTransportState,
    nonce: u64,
    plain: &[u8],
    wire: &mut [u8],
) -> Result<usize> {
    debug_assert!(plain.len() <= MAX_FRAME);
    let n = noise
        .write_message(nonce, plain, &mut wire[2..])
        .map_err(|e| ChannelError::Protocol(format!("sealing a frame: {e}")))?;
    wire[..2].copy_from_slice(&(n as u16).to_be_bytes());
    Ok(n + 2)
}

fn write_msg(w: &mut impl Write, msg: &[u8]) -> io::Result<()> {
    let mut framed = Vec::with_capacity(msg.len() + 2);
    framed.extend_from_slice(&(msg.len() as u16).to_be_bytes());
    framed.extend_from_slice(msg);
    w.write_all(&framed)
}

/// Reads one length-prefixed Noise message into `buf`.
pub(super) fn read_msg(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = u16::from_be_bytes(len) as usize;
    r.read_exact(&mut buf[..len])?;
    Ok(len)
}

/// A buffered reader for the receiving direction: one read fills up to
/// 1 MiB (many frames) from the socket.
pub(super) fn reader(stream: TcpStream) -> BufReader<TcpStream> {
    BufReader::with_capacity(1 << 20, stream)
}

/// A link's receiving direction as its messages, each read and opened in
/// turn (its nonce counted): the one reader of both the tunnel's relay and
/// the page pump. The empty message ends the direction.
pub(super) struct Opener {
    from: BufReader<TcpStream>,
    noise: std::sync::Arc<snow::StatelessTransportState>,
    nonce: u64,
    wire: Vec<u8>,
}

impl Opener {
    /// The receiving side of `link` (its sending side is the caller's).
    pub(super) fn new(link: Link) -> Opener {
        Opener {
            noise: link.noise.clone(),
            nonce: link.recv_nonce,
            from: reader(link.stream),
            wire: vec![0u8; MAX_NOISE],
        }
    }

    /// Whether nothing more has arrived yet (the buffer is empty).
    pub(super) fn caught_up(&self) -> bool {
        self.from.buffer().is_empty()
    }

    /// Opens the next message onto the end of `out`; returns its length
    /// (0: the peer ended the direction). A connection that ends between
    /// messages was cut: an error, never an end.
    pub(super) fn open_into(&mut self, out: &mut Vec<u8>) -> io::Result<usize> {
        let got = read_msg(&mut self.from, &mut self.wire).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the tunnel connection ended mid-stream",
            ),
            _ => e,
        })?;
        let at = out.len();
        out.resize(at + MAX_NOISE, 0);
        let opened = self
            .noise
            .read_message(self.nonce, &self.wire[..got], &mut out[at..]);
        let n = opened.map_err(|_| {
            out.truncate(at);
            io::Error::new(io::ErrorKind::InvalidData, "a frame failed to open")
        })?;
        self.nonce += 1;
        out.truncate(at + n);
        Ok(n)
    }
}

/// The receiver's tunnel port for one migration: it takes connections
/// from the migration's peer address only, authenticates each on a thread
/// of its own within `deadline`, and hands over the first that proves the
/// key and names the session. Everything else is dropped (and reported to
/// `dropped`) without holding up the others.
pub struct Door {
    pub port: u16,
    links: mpsc::Receiver<Link>,
    stop: Arc<AtomicBool>,
}

/// Handshakes under way at once; one more is closed at once.
const MAX_HANDSHAKES: usize = 16;
/// How often the accepting thread looks whether it should stop.
const POLL: Duration = Duration::from_millis(20);

impl Door {
    pub fn open(
        listener: TcpListener,
        key: Key,
        session: Session,
        peer: IpAddr,
        deadline: Duration,
        dropped: fn(&str),
    ) -> io::Result<Door> {
        let port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let (tx, links) = mpsc::sync_channel(1);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let shared = Arc::new((key, session));
        thread::Builder::new()
            .name("lazarus-tunnel-door".into())
            .spawn(move || {
                let open = Arc::new(AtomicUsize::new(0));
                while !stopped.load(Ordering::SeqCst) {
                    let (stream, from) = match listener.accept() {
                        Ok(v) => v,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            thread::sleep(POLL);
                            continue;
                        }
                        Err(_) => {
                            thread::sleep(POLL);
                            continue;
                        }
                    };
                    if from.ip().to_canonical() != peer.to_canonical() {
                        dropped(&format!("{from}: not the migration's peer"));
                        continue;
                    }
                    if open.load(Ordering::SeqCst) >= MAX_HANDSHAKES {
                        dropped(&format!("{from}: too many tunnel handshakes under way"));
                        continue;
                    }
                    open.fetch_add(1, Ordering::SeqCst);
                    let (count, shared, tx, stopped) =
                        (open.clone(), shared.clone(), tx.clone(), stopped.clone());
                    let spawned = thread::Builder::new()
                        .name("lazarus-tunnel-handshake".into())
                        .spawn(move || {
                            let until = Instant::now() + deadline;
                            let link = handshake(stream, &shared.0, &shared.1, until);
                            count.fetch_sub(1, Ordering::SeqCst);
                            match link {
                                Ok(link) if !stopped.swap(true, Ordering::SeqCst) => {
                                    let _ = tx.send(link);
                                }
                                Ok(link) => {
                                    let _ = link.stream.shutdown(Shutdown::Both);
                                }
                                Err(e) => dropped(&format!("{from}: {e}")),
                            }
                        });
                    if spawned.is_err() {
                        open.fetch_sub(1, Ordering::SeqCst);
                    }
                }
            })?;
        Ok(Door { port, links, stop })
    }

    /// The authenticated link, once one came; None after `timeout` or
    /// once `stop` is set.
    pub fn take(&self, timeout: Duration, stop: &AtomicBool) -> Option<Link> {
        let until = Instant::now() + timeout;
        while Instant::now() < until && !stop.load(Ordering::SeqCst) {
            match self.links.recv_timeout(POLL) {
                Ok(link) => return Some(link),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return None,
            }
        }
        None
    }
}

impl Drop for Door {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One connection's handshake, all of it before `until`: a peer that
/// trickles bytes holds only its own thread, and only until then.
fn handshake(stream: TcpStream, key: &Key, session: &Session, until: Instant) -> Result<Link> {
    let left = until.saturating_duration_since(Instant::now());
    let set = |s: &TcpStream| {
        s.set_nonblocking(false)?;
        s.set_read_timeout(Some(left))?;
        s.set_write_timeout(Some(left))
    };
    set(&stream).map_err(io("set the tunnel's timeouts"))?;
    let guard = stream.try_clone().map_err(io("clone the tunnel socket"))?;
    // The deadline is for the whole, not per read: a watcher shuts the
    // socket down when it passes.
    let done = Arc::new(AtomicBool::new(false));
    let watched = done.clone();
    let _ = thread::Builder::new()
        .name("lazarus-tunnel-deadline".into())
        .spawn(move || {
            while Instant::now() < until {
                if watched.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(POLL);
            }
            if !watched.load(Ordering::SeqCst) {
                let _ = guard.shutdown(Shutdown::Both);
            }
        });
    let link = Link::accept(stream, key, session);
    done.store(true, Ordering::SeqCst);
    if Instant::now() >= until {
        return Err(ChannelError::NotAuthenticated(
            "the tunnel handshake's deadline passed".into(),
        ));
    }
    let link = link?;
    link.stream
        .set_read_timeout(None)
        .and_then(|_| link.stream.set_write_timeout(None))
        .map_err(io("set the tunnel's timeouts"))?;
    Ok(link)
}
