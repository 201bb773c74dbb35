//! The door on loopback, with small limits: peers come from distinct
//! 127.0.0.0/8 addresses (all local), so per-address limits can be met.

use std::io::{Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::OwnedFd;

use super::*;
use crate::flows::migration::PROTOCOL;

fn key(byte: u8) -> Key {
    Key::parse(&format!("{byte:02x}").repeat(32)).unwrap()
}

/// A door on 127.0.0.1 with `limits` (log lines captured, 2 per reason).
struct Door {
    addr: SocketAddr,
    migrations: Receiver<Admitted>,
    lines: Arc<Mutex<Vec<String>>>,
}

fn door(deadline_ms: u64, handshakes: usize, per_address: usize) -> Door {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let captured = lines.clone();
    let limits = Limits {
        deadline: Duration::from_millis(deadline_ms),
        handshakes,
        per_address,
        log_lines: 2,
        log_window: Duration::from_secs(60),
    };
    let sink: Sink = Arc::new(move |l: &str| captured.lock().unwrap().push(l.to_string()));
    let migrations = open(listener, key(7), limits, sink).unwrap();
    Door {
        addr,
        migrations,
        lines,
    }
}

impl Door {
    /// The first log line holding `needle`, within 5 s.
    fn line(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if let Some(l) = lines.iter().find(|l| l.contains(needle)) {
                return l.clone();
            }
            assert!(
                Instant::now() < deadline,
                "no line with {needle:?}: {lines:#?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A TCP connection to `to` from 127.0.0.`host`.
fn connect_from(host: u8, to: SocketAddr) -> TcpStream {
    use nix::sys::socket::{bind, connect, socket, AddressFamily, SockFlag, SockType, SockaddrIn};
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let from = SockaddrIn::from(std::net::SocketAddrV4::new(
        Ipv4Addr::new(127, 0, 0, host),
        0,
    ));
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &from).unwrap();
    let SocketAddr::V4(to) = to else {
        unreachable!("the door is on 127.0.0.1")
    };
    connect(std::os::fd::AsRawFd::as_raw_fd(&fd), &SockaddrIn::from(to)).unwrap();
    TcpStream::from(fd)
}

/// Whether the door closed `stream` (its end of it) within `wait`.
fn closed_within(mut stream: &TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ),
    }
}

fn offer(name: &str) -> Offer {
    Offer {
        protocol: PROTOCOL,
        engine: "docker".into(),
        name: name.into(),
        namespace: String::new(),
        image: "busybox".into(),
        image_digest: String::new(),
    }
}

/// A sender from 127.0.0.`host` that authenticated and made its offer.
fn sender(door: &Door, host: u8, name: &str) -> Channel<TcpStream> {
    let stream = connect_from(host, door.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut ch = Channel::connect(stream, &key(7)).unwrap();
    ch.send_json(&offer(name)).unwrap();
    ch
}

fn admitted(door: &Door) -> Admitted {
    door.migrations
        .recv_timeout(Duration::from_secs(5))
        .expect("an admitted migration")
}

#[test]
fn a_sender_is_admitted_past_a_crowd_of_idle_connections() {
    let door = door(3000, 8, 2);
    // 40 idle connections from 20 addresses, then one that sent a byte:
    // five times what the door holds at once.
    let crowd: Vec<TcpStream> = (0..40)
        .map(|i| connect_from(10 + (i % 20) as u8, door.addr))
        .collect();
    let mut started_one = connect_from(99, door.addr);
    started_one.write_all(&[0]).unwrap();
    let started = Instant::now();
    let mut ch = sender(&door, 1, "through");
    let admitted = admitted(&door);
    let took = started.elapsed();
    assert_eq!(admitted.offer.name, "through");
    assert!(took < Duration::from_secs(1), "admitted after {took:?}");
    // Its channel works both ways.
    let mut theirs = admitted.ch;
    theirs.send_json(&Answer::ready()).unwrap();
    assert!(ch.recv_json::<Answer>().unwrap().ok);
    // The oldest of the crowd made room.
    door.line("dropped (evicted)");
    let closed = crowd
        .iter()
        .filter(|s| closed_within(s, Duration::from_millis(10)))
        .count();
    assert!(closed >= 40 - 8, "only {closed} of the crowd were dropped");
}

#[test]
fn a_trickling_peer_is_cut_at_the_deadline_however_it_sends() {
    let door = door(1000, 8, 8);
    let mut trickle = connect_from(2, door.addr);
    let started = Instant::now();
    // A plausible handshake's first bytes, one every 100 ms: each read
    // gets a byte well within any per-read timeout.
    let mut cut = None;
    for byte in [0u8, 48].iter().chain([0x55u8; 48].iter()).cycle().take(50) {
        if trickle.write_all(&[*byte]).is_err()
            || closed_within(&trickle, Duration::from_millis(100))
        {
            cut = Some(started.elapsed());
            break;
        }
    }
    let cut = cut.expect("the trickle was never cut");
    assert!(
        cut >= Duration::from_millis(900) && cut < Duration::from_millis(2000),
        "cut after {cut:?}"
    );
    let line = door.line("dropped (deadline)");
    assert!(
        line.contains("127.0.0.2:") && line.contains("within 1 s"),
        "{line}"
    );
}

#[test]
fn more_than_the_per_address_limit_is_closed_at_once() {
    let door = door(5000, 16, 3);
    let mut held: Vec<TcpStream> = (0..3).map(|_| connect_from(3, door.addr)).collect();
    let over = connect_from(3, door.addr);
    assert!(closed_within(&over, Duration::from_secs(1)));
    for s in &held {
        assert!(!closed_within(s, Duration::from_millis(50)));
    }
    // Another address has its own share.
    let other = connect_from(4, door.addr);
    assert!(!closed_within(&other, Duration::from_millis(200)));
    let line = door.line("dropped (over the per-address limit)");
    assert!(
        line.contains("127.0.0.3:") && line.contains("3 unauthenticated"),
        "{line}"
    );
    // A share freed is a share taken again.
    drop(held.pop());
    thread::sleep(Duration::from_millis(200));
    let again = connect_from(3, door.addr);
    assert!(!closed_within(&again, Duration::from_millis(200)));
}

#[test]
fn a_full_door_drops_its_oldest_handshake() {
    let door = door(5000, 3, 8);
    let first = connect_from(5, door.addr);
    thread::sleep(Duration::from_millis(50));
    let rest: Vec<TcpStream> = (6..=8).map(|h| connect_from(h, door.addr)).collect();
    assert!(closed_within(&first, Duration::from_secs(1)));
    for s in &rest {
        assert!(!closed_within(s, Duration::from_millis(50)));
    }
    let line = door.line("dropped (evicted)");
    assert!(
        line.contains("127.0.0.5:") && line.contains("3 handshakes"),
        "{line}"
    );
}

#[test]
fn a_second_sender_is_refused_as_busy_while_one_migration_runs() {
    let door = door(2000, 8, 8);
    let _first = sender(&door, 1, "first");
    let running = admitted(&door);
    let mut second = sender(&door, 2, "second");
    let answer: Answer = second.recv_json().unwrap();
    assert!(!answer.ok);
    let why = answer.error.unwrap();
    assert!(why.contains("another migration"), "{why}");
    let line = door.line("refused (busy)");
    assert!(line.contains("127.0.0.2:"), "{line}");
    // Once it ends, the next is admitted.
    drop(running);
    let _third = sender(&door, 3, "third");
    assert_eq!(admitted(&door).offer.name, "third");
}

#[test]
fn garbage_and_another_key_are_dropped_as_unauthenticated() {
    let door = door(5000, 8, 8);
    // A well-formed frame of junk: refused as soon as it is read.
    let mut junk = connect_from(6, door.addr);
    junk.write_all(&[0, 48]).unwrap();
    junk.write_all(&[0x55; 48]).unwrap();
    assert!(closed_within(&junk, Duration::from_secs(1)));
    let line = door.line("127.0.0.6:");
    assert!(line.contains("dropped (unauthenticated)"), "{line}");
    // Another key: the sender learns it, the door logs it.
    let stream = connect_from(7, door.addr);
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let err = Channel::connect(stream, &key(8)).err().unwrap();
    assert!(matches!(err, ChannelError::NotAuthenticated(_)), "{err}");
    let line = door.line("127.0.0.7:");
    assert!(
        line.contains("dropped (unauthenticated)") && line.contains("same key file"),
        "{line}"
    );
}

#[test]
fn an_authenticated_peer_whose_first_request_is_no_offer_is_dropped() {
    let door = door(5000, 8, 8);
    let stream = connect_from(8, door.addr);
    let mut ch = Channel::connect(stream, &key(7)).unwrap();
    ch.send_json(&serde_json::json!({ "hello": 1 })).unwrap();
    let line = door.line("127.0.0.8:");
    assert!(line.contains("dropped (not an offer)"), "{line}");
    assert!(door.migrations.try_recv().is_err());
}

#[test]
fn the_log_is_bounded_per_reason_and_counts_the_rest() {
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let captured = lines.clone();
    let log = DropLog::new(
        Arc::new(move |l: &str| captured.lock().unwrap().push(l.to_string())),
        3,
        Duration::from_millis(300),
    );
    let peer: SocketAddr = "192.0.2.1:1000".parse().unwrap();
    for _ in 0..1000 {
        log.dropped(peer, &Dropped::OverAddressLimit(8));
    }
    // Another reason is not drowned by the flood.
    log.dropped(peer, &Dropped::Deadline(Duration::from_secs(10)));
    assert_eq!(
        lines.lock().unwrap().len(),
        4,
        "{:#?}",
        lines.lock().unwrap()
    );
    thread::sleep(Duration::from_millis(350));
    log.dropped(peer, &Dropped::Busy);
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 6, "{lines:#?}");
    assert!(
        lines[4].contains("997 more connections dropped (over the per-address limit)"),
        "{lines:#?}"
    );
    assert!(lines[5].contains("refused (busy)"), "{lines:#?}");
}

#[test]
fn a_deadline_that_passed_fails_reads_and_writes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let mut d = Deadline {
        stream,
        until: Instant::now(),
    };
    let read = d.read(&mut [0u8; 4]).unwrap_err();
    assert_eq!(read.kind(), io::ErrorKind::TimedOut);
    let write = d.write(b"x").unwrap_err();
    assert_eq!(write.kind(), io::ErrorKind::TimedOut);
}

#[test]
fn addresses_share_by_host_and_ipv6_by_its_64() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(share(ip("10.0.0.1")), ip("10.0.0.1"));
    assert_eq!(share(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
    assert_eq!(share(ip("2001:db8:1:2:a:b:c:d")), ip("2001:db8:1:2::"));
    assert_ne!(share(ip("2001:db8:1:2::1")), share(ip("2001:db8:1:3::1")));
}
