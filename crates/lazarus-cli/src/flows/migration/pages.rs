//! Both ends of a migration's page tunnel (`lazarus_core::channel::tunnel`):
//! CRIU's page stream stays on each host's loopback, and the tunnel
//! carries it between the hosts on a connection of its own, authenticated
//! with the migration key and bound to this migration by a session id
//! the control channel carried.
//!
//! The receiver opens the tunnel's door (a port on the control
//! connection's address, reachable from the peer only: a packet filter
//! rule, and the door itself drops any other address) and says where it
//! is in its answer to the [`super::Plan`]; the sender connects before
//! anything is frozen. Then, by mode:
//!
//! - stop-copy: the source's dump pushes to the sender's loopback door;
//!   the receiver's tunnel connects to its `criu page-server` on loopback;
//! - post-copy: the source's dump serves on 127.0.0.1 and the sender's
//!   tunnel connects to it once the dump is ready; the receiver's
//!   lazy-pages daemon connects to the receiver's loopback door, where the
//!   tunnel's page pump answers it, having asked the source for every
//!   lazy page (the import says which, once it extracted the archive).

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};

use lazarus_core::channel::tunnel::{Door, Link, LinkFrom, LocalDoor, LocalEnd, Session, Tunnel};
use lazarus_core::channel::Key;
use lazarus_core::checkpoint::postcopy::{PageMode, PageServer};
use serde::{Deserialize, Serialize};

use super::filter::PortFilter;
use super::{CONNECT_TIMEOUT, PEER_TIMEOUT};
use crate::error::{Error, Result};
use crate::flows::import::SharedPumpPlan;

/// The receiver's tunnel door, in its answer to the plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TunnelOffer {
    /// On the address the control connection reached.
    pub port: u16,
    /// Hex; the sender proves it on the tunnel connection.
    pub session: String,
    /// Post-copy: the receiver's loopback door, where its lazy-pages
    /// daemon fetches the memory (written into the dump's request).
    pub fetch_port: Option<u16>,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::Core(lazarus_core::Error::io(what)(e))
}

fn dropped(why: &str) {
    eprintln!("lazarus: page tunnel: dropped {why}");
}

/// The receiver's end: the door open (and filtered to the peer), the
/// tunnel waiting for the sender's link and for CRIU. Stop-copy: `criu`
/// is the loopback address of this host's page server, already listening.
pub struct Receiver {
    pub tunnel: Tunnel,
    pub offer: TunnelOffer,
    /// Post-copy: where the import says which memory the source's dump
    /// left to its page server, for the tunnel's pump.
    pub pump_plan: Option<SharedPumpPlan>,
    _filter: PortFilter,
}

pub fn receiver(control: &TcpStream, key: &Key, criu: Option<SocketAddr>) -> Result<Receiver> {
    let here = control
        .local_addr()
        .map_err(io("read the connection's address"))?;
    let peer = control
        .peer_addr()
        .map_err(io("read the connection's peer"))?;
    let listener = TcpListener::bind((here.ip(), 0)).map_err(io("open the page tunnel's door"))?;
    let port = listener
        .local_addr()
        .map_err(io("read the door's port"))?
        .port();
    // In place before the door takes connections.
    let filter = super::postcopy::filter(control, port)?;
    let session = Session::generate().map_err(io("read /dev/urandom"))?;
    let door = Door::open(
        listener,
        key.duplicate(),
        session.clone(),
        peer.ip(),
        CONNECT_TIMEOUT,
        dropped,
    )
    .map_err(io("open the page tunnel's door"))?;
    let (local, fetch_port, pump_plan) = match criu {
        Some(addr) => (LocalEnd::Connect(addr), None, None),
        None => {
            let local = LocalDoor::bind().map_err(io("open the lazy pages' loopback door"))?;
            let port = local.port;
            let slot = SharedPumpPlan::default();
            (LocalEnd::Fetch(local, slot.clone()), Some(port), Some(slot))
        }
    };
    let mut tunnel = Tunnel::start(LinkFrom::Door(door), local, PEER_TIMEOUT, dropped)
        .map_err(io("start the page tunnel"))?;
    if criu.is_some() {
        tunnel.go();
    }
    Ok(Receiver {
        tunnel,
        offer: TunnelOffer {
            port,
            session: session.to_hex(),
            fetch_port,
        },
        pump_plan,
        _filter: filter,
    })
}

impl Receiver {
    /// Post-copy, once the container runs here: the tunnel, which runs on
    /// until the lazy-pages daemon has every page (the streams end it; the
    /// caller holds it until then); the door's filter goes (the link was
    /// made long ago).
    pub fn keep(self) -> Tunnel {
        self.tunnel
    }
}

/// The sender's end: the link made to the receiver's door, and the page
/// server request the source's dump is given.
pub struct Sender {
    pub tunnel: Tunnel,
    pub server: PageServer,
}

pub fn sender(
    control: &TcpStream,
    key: &Key,
    offer: &TunnelOffer,
    postcopy: bool,
) -> Result<Sender> {
    let session = Session::parse(&offer.session)
        .ok_or_else(|| Error::Refused("the receiver sent an invalid tunnel session".into()))?;
    let peer = control
        .peer_addr()
        .map_err(io("read the connection's peer"))?;
    let door = SocketAddr::new(peer.ip(), offer.port);
    let stream = TcpStream::connect_timeout(&door, CONNECT_TIMEOUT).map_err(|e| {
        Error::Refused(format!(
            "cannot reach the receiver's page tunnel ({door}): {e}"
        ))
    })?;
    super::tune(&stream, PEER_TIMEOUT)?;
    let link = Link::connect(stream, key, &session)?;
    let (local, server) = match postcopy {
        true => {
            // The dump's page server listens here once it is ready.
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .map_err(io("find a free loopback port for the page server"))?
                .port();
            let fetch_port = offer.fetch_port.ok_or_else(|| {
                Error::Refused("the receiver named no door for its lazy pages".into())
            })?;
            let mut server = PageServer::local(port, PageMode::Lazy);
            server.fetch_port = Some(fetch_port);
            (
                LocalEnd::ServeLazy(SocketAddr::new(server.address, port)),
                server,
            )
        }
        false => {
            let door = LocalDoor::bind().map_err(io("open the dump's loopback door"))?;
            let server = PageServer::local(door.port, PageMode::Push);
            (LocalEnd::Accept(door), server)
        }
    };
    let tunnel = Tunnel::start(LinkFrom::Ready(link), local, PEER_TIMEOUT, dropped)
        .map_err(io("start the page tunnel"))?;
    Ok(Sender { tunnel, server })
}
