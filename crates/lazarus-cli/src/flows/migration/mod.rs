//! Moving a container to another host: `lazarus serve` receives,
//! `lazarus migrate` sends. The two meet on the core's encrypted channel
//! (authenticated by the hosts' shared key) and speak this protocol:
//!
//! 1. sender → [`Offer`]: what is coming (engine, name, image);
//! 2. receiver → [`Answer`]: ready, or why not. Everything that can be
//!    checked before the container is frozen is checked here (engine
//!    reachable, name free, same image present), so a refusal costs the
//!    source nothing;
//! 3. sender → [`Plan`]: the mode; receiver → [`Answer`]: its page
//!    tunnel's door and session id ([`pages`]), where the sender connects
//!    before anything is frozen (stop-and-copy: the receiver's page server
//!    for the memory runs already, on its loopback);
//! 4. sender: its dump (the memory through CRIU's page stream), then the
//!    checkpoint archive, streamed as one channel message;
//! 5. receiver → [`Answer`]: the container runs here, or why it does not
//!    (and nothing of it is left); sender → [`Answer`]: confirmed, once the
//!    source is let go. Any failure before brings the source back where it
//!    was, and an unconfirmed copy on the receiver is removed.
//!
//! Two modes (see [`Mode`]), both moving the memory with CRIU's page
//! server, each CRIU on its own host's loopback and the bytes between the
//! hosts in Lazarus's page tunnel (encrypted with the migration key, bound
//! to the migration by its session id; see [`pages`]). Stop-and-copy: the source's dump pushes
//! every page to the receiver's page server (memory, not disk, on both
//! sides), and the container is down while it is dumped, sent and
//! restored. Post-copy: the archive carries everything but the memory and
//! a page server request; the destination resumes the container as soon
//! as it is restored, and its memory follows from the source's page server
//! until every page is there. Until the receiver confirms the container
//! runs, a failure calls the source's dump off and it runs on, thawed,
//! where it was; after that, in post-copy, the link or the source failing
//! kills the copy (its missing pages cannot be fetched any more).

pub mod filter;
mod follow;
mod gate;
mod moving;
mod pages;
mod postcopy;
pub mod send;
pub mod serve;
#[cfg(test)]
mod test_peer;

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The protocol's version: a receiver refuses an offer of another.
pub const PROTOCOL: u32 = 3;
/// The port `lazarus serve` listens on and `migrate --to HOST` dials when
/// the address names none.
pub const DEFAULT_PORT: u16 = 7470;
/// The key both hosts hold, unless `--key` names another file.
pub const DEFAULT_KEY: &str = "/etc/lazarus/migration.key";
/// How long either side waits for the other's next bytes: longer than a
/// large dump or restore takes on a loaded host, short of forever.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a sender waits to connect, and a receiver for a peer's whole
/// handshake and offer (`serve`'s door, gate/mod.rs).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A link that stops answering (a cut cable, a host gone) is found by TCP
/// keepalives within about 5 + 3 x 2 = 11 s, and unacknowledged data fails
/// after 20 s, however long the peer legitimately stays silent (a large
/// restore): neither side waits out PEER_TIMEOUT on a dead link.
const KEEPALIVE_IDLE_SECS: u32 = 5;
const KEEPALIVE_INTERVAL_SECS: u32 = 2;
const KEEPALIVE_PROBES: u32 = 3;
const USER_TIMEOUT_MS: u32 = 20_000;

/// Timeouts and dead-link detection for a migration connection.
pub fn tune(stream: &std::net::TcpStream, timeout: Duration) -> Result<()> {
    use nix::sys::socket::{setsockopt, sockopt};
    let failed = |e| lazarus_core::Error::sys("set the connection's keepalive")(e);
    setsockopt(stream, sockopt::KeepAlive, &true).map_err(failed)?;
    setsockopt(stream, sockopt::TcpKeepIdle, &KEEPALIVE_IDLE_SECS).map_err(failed)?;
    setsockopt(stream, sockopt::TcpKeepInterval, &KEEPALIVE_INTERVAL_SECS).map_err(failed)?;
    setsockopt(stream, sockopt::TcpKeepCount, &KEEPALIVE_PROBES).map_err(failed)?;
    setsockopt(stream, sockopt::TcpUserTimeout, &USER_TIMEOUT_MS).map_err(failed)?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(lazarus_core::Error::io("set the connection's timeouts"))?;
    Ok(())
}

/// The largest archive a receiver accepts.
pub const MAX_ARCHIVE: u64 = 1 << 40;

#[derive(Debug, Serialize, Deserialize)]
pub struct Offer {
    pub protocol: u32,
    /// "docker" or "containerd".
    pub engine: String,
    /// The name the container gets on the receiving host.
    pub name: String,
    /// containerd's namespace (for a containerd container).
    pub namespace: String,
    pub image: String,
    pub image_digest: String,
}

/// How the memory moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Post-copy when both hosts can (a lazy-pages capable CRIU and kernel
    /// on the receiver, fs.pipe-max-size >= 4 MiB here), else stop-copy
    Auto,
    /// Resume on the receiver after the minimal state; memory follows
    Postcopy,
    /// Dump, send and restore everything while the container is down
    Stopcopy,
}

/// The sender's choice, once the receiver is ready.
#[derive(Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Post-copy, else stop-and-copy.
    pub postcopy: bool,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    /// In the ready answer: this receiver can restore post-copy.
    #[serde(default)]
    pub postcopy: bool,
    /// In the answer to a [`Plan`]: the receiver's page tunnel door.
    #[serde(default)]
    pub tunnel: Option<pages::TunnelOffer>,
    /// Why not, when not ok.
    pub error: Option<String>,
    /// The exit status that failure has on the receiver (`error::exit`),
    /// so the sender's says the same kind (absent from older receivers).
    #[serde(default)]
    pub exit: Option<u8>,
    /// The restore's report (`lazarus restore --json`), once running.
    pub restored: Option<crate::report::ImportReport>,
}

impl Answer {
    pub fn ready() -> Answer {
        Answer {
            ok: true,
            ..Default::default()
        }
    }

    pub fn refused(e: &Error) -> Answer {
        Answer {
            ok: false,
            error: Some(e.to_string()),
            exit: Some(e.exit_code()),
            ..Default::default()
        }
    }

    /// The sender's error for a receiver's refusal, `text` saying it: of
    /// the kind the receiver's error was (a name taken there is a
    /// conflict, an image missing there is not found), else refused.
    pub fn refusal(&self, text: String) -> Error {
        use crate::error::exit;
        match self.exit {
            Some(exit::CONFLICT) => Error::Conflict(text),
            Some(exit::NOT_FOUND) => Error::NotFound(text),
            _ => Error::Refused(text),
        }
    }
}

/// The key file: `--key`, else the default.
pub fn key_path(key: Option<PathBuf>) -> PathBuf {
    key.unwrap_or_else(|| PathBuf::from(DEFAULT_KEY))
}

/// `HOST[:PORT]` to one socket address (the first the name resolves to).
pub fn resolve(addr: &str) -> Result<SocketAddr> {
    let with_port = match addr.parse::<SocketAddr>() {
        Ok(a) => return Ok(a),
        Err(_)
            if addr
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok()) =>
        {
            addr.to_string()
        }
        Err(_) => format!("{addr}:{DEFAULT_PORT}"),
    };
    with_port
        .to_socket_addrs()
        .map_err(|e| Error::Refused(format!("cannot resolve {addr}: {e}")))?
        .next()
        .ok_or_else(|| Error::Refused(format!("{addr} resolves to no address")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_get_the_default_port_when_they_name_none() {
        assert_eq!(resolve("127.0.0.1").unwrap().port(), DEFAULT_PORT);
        assert_eq!(resolve("127.0.0.1:9").unwrap().port(), 9);
        assert_eq!(resolve("[::1]:9").unwrap().port(), 9);
        assert_eq!(resolve("localhost:9").unwrap().port(), 9);
        assert!(resolve("no-such-host.invalid").is_err());
    }

    /// A receiver's refusal keeps its kind across the channel: the sender
    /// exits as the receiver would have.
    #[test]
    fn a_refusal_keeps_its_kind_on_the_sender() {
        use crate::error::exit;
        let taken = Answer::refused(&Error::Conflict("a container named web exists".into()));
        let json = serde_json::to_string(&taken).unwrap();
        let back: Answer = serde_json::from_str(&json).unwrap();
        let e = back.refusal("hostb refused the migration: ...".into());
        assert_eq!(e.exit_code(), exit::CONFLICT);
        let missing = Answer::refused(&Error::NotFound("image x is not on this host".into()));
        assert_eq!(missing.refusal(String::new()).exit_code(), exit::NOT_FOUND);
        // An older receiver says no kind: refused, as before.
        let old: Answer = serde_json::from_str(r#"{"ok": false, "error": "no"}"#).unwrap();
        assert_eq!(old.refusal(String::new()).exit_code(), exit::REFUSED);
    }
}
