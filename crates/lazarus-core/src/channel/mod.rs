//! The migration channel: an authenticated, encrypted byte stream between
//! two hosts, over any `Read + Write` (a TCP connection in practice).
//!
//! A migration carries process memory, so nothing crosses the network in
//! clear and nothing is accepted from a peer that cannot prove it holds the
//! hosts' shared key. The handshake is the Noise framework's `NNpsk0`
//! (fresh X25519 keys on both sides, the pre-shared key mixed in from the
//! first message): a peer with another key fails the first message's
//! authentication tag, and every later frame is AES-GCM-sealed with
//! per-direction keys and counters, so a changed, dropped, replayed or
//! reordered frame fails to open. AES-GCM rather than ChaChaPoly: with
//! the CPU's AES instructions (x86-64's AES-NI, ARMv8's crypto extension)
//! ring seals and opens it 3-4x faster (`examples/cipher_bench.rs`: on
//! these machines 3.7 against 1.0 GiB/s to seal), and the memory of a
//! migration crosses this cipher twice on hosts with few cores.
//!
//! On the wire every Noise message is preceded by its length (u16, big
//! endian). A *message* of this module is one length frame (u64 plaintext
//! length) followed by as many data frames as it needs: JSON control
//! messages and the archive stream use the same framing.

mod key;
#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod tests;
pub mod tunnel;

#[cfg(feature = "archive")]
pub(crate) use key::write_secret;
pub use key::Key;

use std::io::{self, Read, Write};

/// Noise's own bound on one message, tag included.
const MAX_NOISE: usize = 65535;
const TAG: usize = 16;
/// The most plaintext one frame carries.
pub const MAX_FRAME: usize = MAX_NOISE - TAG;
/// Both hosts must use the same: a peer with another fails the handshake
/// as one with another key does.
pub const PATTERN: &str = "Noise_NNpsk0_25519_AESGCM_BLAKE2s";

#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    /// The handshake failed: the peer holds another key, or is not a
    /// Lazarus peer at all.
    #[error(
        "the peer could not be authenticated ({0}): do both hosts use the same key file, and \
         the same Lazarus build? (The channel seals with AES-GCM; earlier builds used \
         ChaChaPoly.)"
    )]
    NotAuthenticated(String),
    /// A frame failed to open after the handshake: changed on the way.
    #[error("a frame from the peer failed its authentication: the connection was tampered with")]
    Tampered,
    /// The listener answered the handshake with something that is not
    /// Lazarus's (another program listens there).
    #[error("the peer did not speak Lazarus's migration protocol ({0}): is it `lazarus serve`? (check the address and port)")]
    NotLazarus(String),
    #[error("the peer closed the connection {0}")]
    Closed(&'static str),
    #[error("the peer sent a {got}-byte message where at most {limit} bytes were expected")]
    TooLarge { got: u64, limit: u64 },
    #[error("the peer's message is not what Lazarus sends: {0}")]
    Protocol(String),
}

pub type Result<T> = std::result::Result<T, ChannelError>;

fn io(context: &'static str) -> impl FnOnce(io::Error) -> ChannelError {
    move |source| match source.kind() {
        io::ErrorKind::UnexpectedEof => ChannelError::Closed(context),
        _ => ChannelError::Io { context, source },
    }
}

/// One end of an established channel.
pub struct Channel<S> {
    stream: S,
    noise: snow::TransportState,
    wire: Vec<u8>,
    plain: Vec<u8>,
}

impl<S: Read + Write> Channel<S> {
    /// The connecting side's handshake.
    pub fn connect(mut stream: S, key: &Key) -> Result<Channel<S>> {
        let mut hs = builder(key)?.build_initiator().map_err(noise_setup)?;
        let mut wire = vec![0u8; MAX_NOISE];
        let n = hs.write_message(&[], &mut wire).map_err(noise_setup)?;
        write_frame(&mut stream, &wire[..n]).map_err(io("sending the handshake"))?;
        let got = read_reply(&mut stream, &mut wire).map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => ChannelError::NotLazarus(e.to_string()),
            // A listener with another key drops the connection; so does
            // one at its limit of connections not yet authenticated.
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                ChannelError::NotAuthenticated(
                    "the listener closed the connection; with the same key, its limits on \
                     unauthenticated connections may have dropped it (see its log)"
                        .into(),
                )
            }
            _ => io("reading the handshake")(e),
        })?;
        let mut plain = vec![0u8; MAX_NOISE];
        hs.read_message(&wire[..got], &mut plain)
            .map_err(|e| ChannelError::NotAuthenticated(e.to_string()))?;
        Self::established(stream, hs)
    }

    /// The listening side's handshake.
    pub fn accept(mut stream: S, key: &Key) -> Result<Channel<S>> {
        let mut hs = builder(key)?.build_responder().map_err(noise_setup)?;
        let mut wire = vec![0u8; MAX_NOISE];
        let mut plain = vec![0u8; MAX_NOISE];
        let got = read_frame(&mut stream, &mut wire).map_err(io("reading the handshake"))?;
        hs.read_message(&wire[..got], &mut plain)
            .map_err(|e| ChannelError::NotAuthenticated(e.to_string()))?;
        let n = hs.write_message(&[], &mut wire).map_err(noise_setup)?;
        write_frame(&mut stream, &wire[..n]).map_err(io("sending the handshake"))?;
        Self::established(stream, hs)
    }

    fn established(stream: S, hs: snow::HandshakeState) -> Result<Channel<S>> {
        Ok(Channel {
            stream,
            noise: hs.into_transport_mode().map_err(noise_setup)?,
            wire: vec![0u8; MAX_NOISE],
            plain: vec![0u8; MAX_NOISE],
        })
    }

    /// The underlying stream (e.g. to set its timeouts).
    pub fn stream(&self) -> &S {
        &self.stream
    }

    /// The same channel over `f(stream)`, which must carry the same bytes
    /// (e.g. the bare connection once a wrapper that bounded the handshake
    /// is no longer wanted). Nothing is buffered here between frames, so
    /// the swap loses nothing.
    pub fn map_stream<T>(self, f: impl FnOnce(S) -> T) -> Channel<T> {
        Channel {
            stream: f(self.stream),
            noise: self.noise,
            wire: self.wire,
            plain: self.plain,
        }
    }

    fn send_frame(&mut self, plain: &[u8]) -> Result<()> {
        let n = self
            .noise
            .write_message(plain, &mut self.wire)
            .map_err(|e| ChannelError::Protocol(format!("sealing a frame: {e}")))?;
        write_frame(&mut self.stream, &self.wire[..n]).map_err(io("sending"))
    }

    /// Reads and opens one frame into `self.plain`; returns its length.
    fn recv_frame(&mut self) -> Result<usize> {
        let got = read_frame(&mut self.stream, &mut self.wire).map_err(io("while receiving"))?;
        self.noise
            .read_message(&self.wire[..got], &mut self.plain)
            .map_err(|_| ChannelError::Tampered)
    }

    /// Sends `data` as one message.
    pub fn send(&mut self, data: &[u8]) -> Result<()> {
        self.send_frame(&(data.len() as u64).to_be_bytes())?;
        for chunk in data.chunks(MAX_FRAME) {
            self.send_frame(chunk)?;
        }
        Ok(())
    }

    /// Sends exactly `len` bytes read from `from` as one message, calling
    /// `progress` with the bytes sent so far.
    pub fn send_from(
        &mut self,
        from: &mut impl Read,
        len: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        self.send_frame(&len.to_be_bytes())?;
        let mut buf = vec![0u8; MAX_FRAME];
        let mut sent = 0u64;
        while sent < len {
            let want = (len - sent).min(MAX_FRAME as u64) as usize;
            from.read_exact(&mut buf[..want])
                .map_err(io("reading what is sent"))?;
            self.send_frame(&buf[..want])?;
            sent += want as u64;
            progress(sent);
        }
        self.stream.flush().map_err(io("sending"))
    }

    /// Receives one message's length, refusing one over `limit`.
    fn recv_len(&mut self, limit: u64) -> Result<u64> {
        let n = self.recv_frame()?;
        let bytes: [u8; 8] = self.plain[..n]
            .try_into()
            .map_err(|_| ChannelError::Protocol(format!("a {n}-byte length frame")))?;
        let got = u64::from_be_bytes(bytes);
        if got > limit {
            return Err(ChannelError::TooLarge { got, limit });
        }
        Ok(got)
    }

    /// Receives one message of at most `limit` bytes.
    pub fn recv(&mut self, limit: u64) -> Result<Vec<u8>> {
        let len = self.recv_len(limit)?;
        // The length is the peer's word: room for one frame at first, the
        // rest as frames arrive (a claimed 2^63 bytes must not allocate).
        let mut out = Vec::with_capacity(len.min(MAX_FRAME as u64) as usize);
        self.recv_rest(len, &mut out, &mut |_| {})?;
        Ok(out)
    }

    /// Receives one message of at most `limit` bytes into `to`, calling
    /// `progress` with the bytes received so far; returns its length.
    pub fn recv_into(
        &mut self,
        to: &mut impl Write,
        limit: u64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64> {
        let len = self.recv_len(limit)?;
        self.recv_rest(len, to, progress)?;
        Ok(len)
    }

    fn recv_rest(
        &mut self,
        len: u64,
        to: &mut impl Write,
        progress: &mut dyn FnMut(u64),
    ) -> Result<()> {
        let mut got = 0u64;
        while got < len {
            let n = self.recv_frame()?;
            if n == 0 || got + n as u64 > len {
                return Err(ChannelError::Protocol(format!(
                    "a {n}-byte frame at {got} of a {len}-byte message"
                )));
            }
            to.write_all(&self.plain[..n])
                .map_err(io("writing what was received"))?;
            got += n as u64;
            progress(got);
        }
        Ok(())
    }

    /// Sends `value` as one JSON message.
    pub fn send_json<T: serde::Serialize>(&mut self, value: &T) -> Result<()> {
        let bytes = serde_json::to_vec(value).expect("JSON of a plain struct");
        self.send(&bytes)
    }

    /// Receives one JSON message (at most 1 MiB).
    pub fn recv_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let bytes = self.recv(1 << 20)?;
        serde_json::from_slice(&bytes).map_err(|e| ChannelError::Protocol(e.to_string()))
    }
}

fn builder(key: &Key) -> Result<snow::Builder<'_>> {
    let params = PATTERN.parse().expect("a valid Noise pattern");
    snow::Builder::new(params)
        .psk(0, key.bytes())
        .map_err(noise_setup)
}

fn noise_setup(e: snow::Error) -> ChannelError {
    ChannelError::Protocol(format!("Noise handshake: {e}"))
}

fn write_frame(w: &mut impl Write, frame: &[u8]) -> io::Result<()> {
    let len = u16::try_from(frame.len()).expect("a Noise message fits in u16");
    w.write_all(&len.to_be_bytes())?;
    w.write_all(frame)
}

/// The listener's handshake answer in `NNpsk0`: its ephemeral key and the
/// (empty) payload's tag.
const REPLY_LEN: usize = 32 + TAG;

/// Reads the listener's handshake answer, which has one length: anything
/// else (an HTTP server's "HT..." read as a length, a banner) is another
/// program's, said as `InvalidData` with the bytes seen.
fn read_reply(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    if u16::from_be_bytes(len) as usize != REPLY_LEN {
        let mut more = [0u8; 30];
        let n = r.read(&mut more).unwrap_or(0);
        let seen: String = String::from_utf8_lossy(&[&len[..], &more[..n]].concat())
            .chars()
            .map(|c| match c.is_ascii_graphic() || c == ' ' {
                true => c,
                false => '.',
            })
            .collect();
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("it answered {seen:?}"),
        ));
    }
    r.read_exact(&mut buf[..REPLY_LEN])?;
    Ok(REPLY_LEN)
}

/// Reads one length-prefixed frame into `buf`; returns its length.
fn read_frame(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len)?;
    let len = u16::from_be_bytes(len) as usize;
    r.read_exact(&mut buf[..len])?;
    Ok(len)
}
