//! The tunnel without root: both hosts on loopback, CRIU played by plain
//! sockets.

use super::*;
use crate::channel::{ChannelError, Key};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);

fn key(byte: u8) -> Key {
    Key::parse(&format!("{byte:02x}").repeat(32)).unwrap()
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);
fn count_dropped(why: &str) {
    eprintln!("dropped: {why}");
    DROPPED.fetch_add(1, Ordering::SeqCst);
}

fn door(key: &Key, session: &Session, deadline: Duration) -> Door {
    let listener = TcpListener::bind((LO, 0)).unwrap();
    Door::open(
        listener,
        key.duplicate(),
        session.clone(),
        LO,
        deadline,
        count_dropped,
    )
    .unwrap()
}

fn dial(port: u16) -> TcpStream {
    TcpStream::connect((LO, port)).unwrap()
}

/// Both ends of a tunnel, each with a "CRIU" socket: (CRIU at the
/// sender, CRIU at the receiver, the two tunnels).
fn pair() -> (TcpStream, TcpStream, Tunnel, Tunnel) {
    let k = key(7);
    let session = Session::generate().unwrap();
    let d = door(&k, &session, WAIT);
    let port = d.port;
    // The receiver's CRIU listens on loopback; its tunnel connects there.
    let criu_b = TcpListener::bind((LO, 0)).unwrap();
    let b_addr = criu_b.local_addr().unwrap();
    let mut b = Tunnel::start(
        LinkFrom::Door(d),
        LocalEnd::Connect(b_addr),
        WAIT,
        count_dropped,
    )
    .unwrap();
    b.go();
    let link = Link::connect(dial(port), &k, &session).unwrap();
    // The sender's CRIU connects to its tunnel's loopback door.
    let local = LocalDoor::bind().unwrap();
    let a_port = local.port;
    let a = Tunnel::start(
        LinkFrom::Ready(link),
        LocalEnd::Accept(local),
        WAIT,
        count_dropped,
    )
    .unwrap();
    let criu_a = dial(a_port);
    let (criu_b, _) = criu_b.accept().unwrap();
    (criu_a, criu_b, a, b)
}

#[test]
fn bytes_cross_both_ways_in_order_and_are_counted() {
    let (mut criu_a, mut criu_b, mut a, mut b) = pair();
    // More than a batch, in odd sizes, so frames split and join.
    let data: Vec<u8> = (0..(3 * BATCH + 12345))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        for chunk in sent.chunks(70_001) {
            criu_a.write_all(chunk).unwrap();
        }
        criu_a.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        criu_a.read_to_end(&mut back).unwrap();
        back
    });
    let mut got = Vec::new();
    criu_b.read_to_end(&mut got).unwrap();
    assert!(got == data, "the bytes arrived changed");
    criu_b.write_all(b"done: all pages").unwrap();
    criu_b.shutdown(std::net::Shutdown::Write).unwrap();
    assert_eq!(writer.join().unwrap(), b"done: all pages");
    assert_eq!(a.wait(WAIT), Some(Ok(())));
    assert_eq!(b.wait(WAIT), Some(Ok(())));
    let (sa, sb) = (a.stats(), b.stats());
    assert_eq!((sa.sent, sa.received), (data.len() as u64, 15));
    assert_eq!((sb.sent, sb.received), (15, data.len() as u64));
    assert!(sa.bytes_per_second().is_some());
}

#[test]
fn a_peer_without_the_key_is_dropped_and_the_sender_still_gets_through() {
    let k = key(1);
    let session = Session::generate().unwrap();
    let d = door(&k, &session, WAIT);
    // A stranger first: wrong key; one that says nothing; garbage.
    let stranger = Link::connect(dial(d.port), &key(2), &session);
    assert!(
        matches!(stranger, Err(ChannelError::NotAuthenticated(_))),
        "{:?}",
        stranger.err()
    );
    let _silent = dial(d.port);
    let mut garbage = dial(d.port);
    garbage.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    // The real sender, while the silent one still holds its connection.
    let started = std::time::Instant::now();
    let link = Link::connect(dial(d.port), &k, &session);
    assert!(link.is_ok(), "{:?}", link.err());
    assert!(started.elapsed() < Duration::from_secs(2), "held up");
    assert!(d.take(WAIT, &AtomicBool::new(false)).is_some());
}

#[test]
fn another_sessions_id_is_refused() {
    let k = key(3);
    let session = Session::generate().unwrap();
    let d = door(&k, &session, WAIT);
    let other = Session::generate().unwrap();
    let refused = Link::connect(dial(d.port), &k, &other);
    assert!(
        matches!(refused, Err(ChannelError::NotAuthenticated(_))),
        "{:?}",
        refused.err()
    );
    // The door still waits for this migration's.
    assert!(Link::connect(dial(d.port), &k, &session).is_ok());
    assert!(d.take(WAIT, &AtomicBool::new(false)).is_some());
}

#[test]
fn a_silent_connection_is_dropped_at_the_deadline() {
    let k = key(4);
    let session = Session::generate().unwrap();
    let d = door(&k, &session, Duration::from_millis(300));
    let mut silent = dial(d.port);
    silent
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    // Closed by the door (EOF or reset), well before the read's timeout.
    let n = silent.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn a_link_cut_mid_stream_fails_both_ends_and_breaks_criu_streams() {
    let (mut criu_a, mut criu_b, mut a, mut b) = pair();
    criu_a.write_all(&[1u8; 100_000]).unwrap();
    let mut first = vec![0u8; 100_000];
    criu_b.read_exact(&mut first).unwrap();
    // The sender's side goes away mid-stream (as if killed).
    a.abort();
    let ended = b.wait(WAIT).expect("the receiver's tunnel ended");
    // Its reason is the link's end, not the echo in the other direction
    // (CRIU's socket shut for reading, which the sending side then sees).
    let why = ended.expect_err("a cut link is not a clean end");
    assert!(why.starts_with("receiving: "), "{why}");
    // CRIU's socket on the receiver is reset, never ended: a lazy dump's
    // page server would take a bare end for a finished migration.
    criu_b
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    let read = criu_b.read_to_end(&mut rest);
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
    assert_eq!(a.wait(WAIT).unwrap(), Err("called off".to_string()));
    // So is the sender's CRIU socket, whose tunnel was aborted.
    criu_a
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let read = criu_a.read_to_end(&mut rest);
    assert_eq!(
        read.map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

/// CRIU's end reset (a lazy-pages daemon killed with a reply unread)
/// while nothing is in flight the other way: the direction reading from
/// it fails, and must take the whole tunnel down with it, on both hosts,
/// though the other direction sits waiting on a quiet link.
#[test]
fn a_reset_from_criu_fails_both_ends_though_the_link_is_quiet() {
    let (mut criu_a, criu_b, mut a, mut b) = pair();
    criu_a.write_all(b"a reply the daemon never reads").unwrap();
    std::thread::sleep(Duration::from_millis(200));
    abortive_close(&criu_b).unwrap();
    drop(criu_b);
    let ended = b.wait(WAIT).expect("the receiver's tunnel ended");
    assert!(ended.is_err(), "a reset is not a clean end: {ended:?}");
    assert!(a.wait(WAIT).expect("the sender's tunnel ended").is_err());
    criu_a
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut rest = Vec::new();
    assert_eq!(
        criu_a.read_to_end(&mut rest).map_err(|e| e.kind()),
        Err(std::io::ErrorKind::ConnectionReset)
    );
}

#[test]
fn a_dropped_tunnel_gives_up_its_waits() {
    let k = key(5);
    let session = Session::generate().unwrap();
    let d = door(&k, &session, WAIT);
    let mut t = Tunnel::start(
        LinkFrom::Door(d),
        LocalEnd::Connect("127.0.0.1:9".parse().unwrap()),
        Duration::from_secs(600),
        count_dropped,
    )
    .unwrap();
    t.abort();
    let ended = t.wait(Duration::from_secs(2)).expect("ended on abort");
    assert_eq!(ended, Err("called off".to_string()));
}

#[test]
fn a_session_id_round_trips_as_hex_and_hides_itself() {
    let s = Session::generate().unwrap();
    assert_eq!(Session::parse(&s.to_hex()), Some(s.clone()));
    assert!(Session::parse("zz").is_none());
    assert!(!format!("{s:?}").contains(&s.to_hex()));
    assert!(s.matches(s.bytes()) && !s.matches(&[0u8; 15]));
}

#[test]
fn the_owner_of_a_loopback_connection_is_read_from_the_socket_table() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:A000 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1000        0 1 1\n";
    let peer = "127.0.0.1:40960".parse().unwrap();
    let local = "127.0.0.1:8080".parse().unwrap();
    assert_eq!(local::owner_in(table, peer, local), Some(1000));
    assert_eq!(local::owner_in(table, local, peer), None);
    // This process's own loopback connection is its own user's.
    let door = LocalDoor::bind().unwrap();
    let c = dial(door.port);
    let s = door
        .take(WAIT, &AtomicBool::new(false), count_dropped)
        .unwrap();
    assert_eq!(s.peer_addr().unwrap(), c.local_addr().unwrap());
}

/// A lazy dump's page server (CRIU at the sender) hears the end of the
/// stream only after the lazy-pages daemon's goodbye; a daemon that died
/// without it resets the dump's connection (else it would let the source
/// go as migrated).
#[test]
fn a_lazy_dump_hears_an_end_only_after_the_daemons_goodbye() {
    for said_goodbye in [true, false] {
        let k = key(9);
        let session = Session::generate().unwrap();
        let d = door(&k, &session, WAIT);
        let port = d.port;
        // The receiver's side: the daemon connects to its loopback door.
        let local_b = LocalDoor::bind().unwrap();
        let b_port = local_b.port;
        let b = Tunnel::start(
            LinkFrom::Door(d),
            LocalEnd::Accept(local_b),
            WAIT,
            count_dropped,
        )
        .unwrap();
        // The sender's side: the dump listens on loopback.
        let dump = TcpListener::bind((LO, 0)).unwrap();
        let link = Link::connect(dial(port), &k, &session).unwrap();
        let mut a = Tunnel::start(
            LinkFrom::Ready(link),
            LocalEnd::ServeLazy(dump.local_addr().unwrap()),
            WAIT,
            count_dropped,
        )
        .unwrap();
        a.go();
        let (mut criu_dump, _) = dump.accept().unwrap();
        let mut daemon = dial(b_port);
        let mut get = [0u8; PS_IOV_LEN];
        get[0] = 7; // PS_IOV_GET
        daemon.write_all(&get).unwrap();
        let mut close = [0u8; PS_IOV_LEN];
        close[..4].copy_from_slice(&PS_IOV_CLOSE.to_le_bytes());
        if said_goodbye {
            daemon.write_all(&close).unwrap();
        }
        daemon.shutdown(std::net::Shutdown::Write).unwrap();
        criu_dump
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = Vec::new();
        let read = criu_dump.read_to_end(&mut got).map_err(|e| e.kind());
        match said_goodbye {
            true => {
                assert_eq!(read, Ok(2 * PS_IOV_LEN));
                drop(criu_dump);
                assert_eq!(a.wait(WAIT), Some(Ok(())));
            }
            false => {
                assert_eq!(read, Err(std::io::ErrorKind::ConnectionReset));
                assert!(a.wait(WAIT).unwrap().is_err());
            }
        }
        drop(b);
    }
}
