//! `lazarus serve` under connections that do not hold the key: none can
//! delay or abort a migration, and each is dropped with its reason in the
//! agent's log (bounded: a few lines a minute per reason). Host B's agent
//! runs in B's network namespace, as in migrate_tests; the unwanted
//! connections come from B's own loopback addresses (127.0.x.y, opened by
//! a thread inside B's namespace), so they share no address with the
//! sender on A and need no route beyond B.

use crate::archive::export_import::{assert_cli_left_nothing, assert_counts_on};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::migrate::moves::{assert_refused_by_runtime, last_tick, migrate};
use crate::support::cmd::{wait_until, COUNTER};
use crate::support::harness::Daemons;
use crate::support::lazarus::{keygen, Serve, B_HOST};
use crate::support::netns::Netns;
use lazarus_core::channel::{Channel, Key};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The agent's limits (gate::LIMITS), as this suite expects them.
const DEADLINE: Duration = Duration::from_secs(10);
const LOG_LINES_PER_REASON: usize = 5;

/// 300 idle connections to B's agent (100 from one address, then 200 from
/// 25 others: more than it holds from one address, and than it holds at
/// once), then one sending a handshake's bytes one every 3 s; then a real
/// migration from A. It completes within 20 s (measured and printed; the
/// issue measured 56 s behind 300 idle connections before the door).
/// The slow sender is cut at the 10 s deadline, every idle connection is
/// closed by the agent within its deadline, and the log says why, in a
/// bounded number of lines.
#[test]
fn migrate_goes_through_a_crowd_of_idle_and_slow_connections() {
    let a = Daemons::with_docker("migrate_crowd_a");
    let b = Daemons::with_docker_with("migrate_crowd_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        assert_refused_by_runtime(&a, &name, &key, &[]);
        wait_ticks_past(&a, &name, last_tick(&a, &name) + 2);
        return;
    }
    let serve = Serve::start(&b, &key);
    let to: SocketAddrV4 = serve.addr.parse().unwrap();
    let ns = b.netns().unwrap();
    let opened = Instant::now();
    let crowd = inside(ns, || {
        (0..300)
            .map(|i| {
                let host = if i < 100 { 1 } else { 2 + (i % 25) as u8 };
                connect_from(Ipv4Addr::new(127, 0, 1, host), to)
            })
            .collect::<Vec<_>>()
    });
    eprintln!("crowd: 300 connections opened in {:.2?}", opened.elapsed());
    let slow = Trickle::start(ns, Ipv4Addr::new(127, 0, 2, 1), to, Duration::from_secs(3));

    let before = last_tick(&a, &name);
    let started = Instant::now();
    let out = migrate(&a, &name, &serve.addr, &key, &[]).ok();
    let took = started.elapsed();
    eprintln!(
        "migrate through the crowd took {took:.2?} (bound 20 s): {}",
        out.stdout.trim()
    );
    assert!(took < Duration::from_secs(20), "migrate took {took:?}");
    assert_counts_on(&b, &name, before);

    let held = slow.wait();
    eprintln!("the slow sender was cut after {held:.2?} (deadline {DEADLINE:?})");
    // Cut by the deadline, or earlier when the crowd still arriving made it
    // the oldest pending handshake (evicted): never held past the deadline.
    assert!(
        held < DEADLINE + Duration::from_secs(4),
        "the slow sender was held {held:?}"
    );
    wait_until(
        "the agent to have closed every idle connection",
        DEADLINE * 3,
        || crowd.iter().all(closed_by_peer).then_some(()),
    );
    eprintln!(
        "crowd: all 300 closed by the agent {:.2?} after the first",
        opened.elapsed()
    );

    let log = serve.log();
    for why in [
        "dropped (over the per-address limit)",
        "dropped (evicted)",
        "dropped (deadline)",
    ] {
        assert!(log.contains(why), "no {why:?} in the agent's log:\n{log}");
    }
    // About 370 connections dropped; a few lines per reason logged.
    let dropped = log.lines().filter(|l| l.contains(": dropped (")).count();
    assert!(
        dropped <= 4 * LOG_LINES_PER_REASON,
        "{dropped} lines of drops:\n{log}"
    );
    assert!(serve.log().contains(&format!("{name} runs here")), "{log}");
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
}

/// Connections that send what no Lazarus peer sends, each dropped with its
/// reason logged: an HTTP request (a Noise frame length that never
/// arrives: the deadline), a frame of junk and 70 kB of noise (refused as
/// unauthenticated once read, at once), a connection closed without a
/// word; a peer with the key whose first request is not an offer. The
/// agent serves on: a sender with the key still gets its answer. (No
/// container is involved: the same under either runtime.)
#[test]
fn migrate_serve_drops_garbage_and_says_why() {
    let b = Daemons::containerd_only_with("migrate_garbage_b", &B_HOST);
    let key_file = keygen(&b, "migration.key");
    let mut serve = Serve::start(&b, &key_file);
    let to: SocketAddrV4 = serve.addr.parse().unwrap();
    let ns = b.netns().unwrap();
    let from = |host| Ipv4Addr::new(127, 0, 3, host);

    let started = Instant::now();
    let mut http = inside(ns, || connect_from(from(1), to));
    http.write_all(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n")
        .unwrap();
    let mut junk_frame = inside(ns, || connect_from(from(2), to));
    junk_frame.write_all(&[0, 48]).unwrap();
    junk_frame.write_all(&[0x55; 48]).unwrap();
    let mut noise = inside(ns, || connect_from(from(3), to));
    let bytes: Vec<u8> = (0..70_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    // The agent may close it before all is written.
    let _ = noise.write_all(&bytes);
    drop(inside(ns, || connect_from(from(4), to)));
    let authenticated = inside(ns, || connect_from(from(5), to));
    authenticated
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let key = Key::load(std::path::Path::new(&key_file)).unwrap();
    let mut not_an_offer = Channel::connect(authenticated, &key).unwrap();
    not_an_offer
        .send_json(&serde_json::json!({ "hello": "agent" }))
        .unwrap();

    for s in [&junk_frame, &noise] {
        assert!(
            wait_closed(s, Duration::from_secs(3)),
            "not dropped at once"
        );
    }
    assert!(
        wait_closed(&http, DEADLINE + Duration::from_secs(5)),
        "the HTTP request was never dropped"
    );
    let held = started.elapsed();
    eprintln!("the HTTP request was dropped after {held:.2?}");
    assert!(held >= DEADLINE - Duration::from_secs(1), "{held:?}");

    let log = serve.log();
    for (host, why) in [
        (1, "dropped (deadline)"),
        (2, "dropped (unauthenticated)"),
        (3, "dropped (unauthenticated)"),
        (4, "dropped (closed)"),
        (5, "dropped (not an offer)"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("{}:", from(host))))
            .unwrap_or_else(|| panic!("nothing logged for {}:\n{log}", from(host)));
        assert!(
            line.contains(why),
            "{} should be {why:?}: {line}",
            from(host)
        );
        eprintln!("{line}");
    }
    // Still serving: a sender with the key gets its answer (a refusal of
    // an offer in another protocol).
    let sender = inside(ns, || connect_from(from(6), to));
    sender
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut ch = Channel::connect(sender, &key).unwrap();
    ch.send_json(&serde_json::json!({
        "protocol": 0, "engine": "docker", "name": "x", "namespace": "",
        "image": "busybox", "image_digest": ""
    }))
    .unwrap();
    let answer: serde_json::Value = ch.recv_json().unwrap();
    assert_eq!(answer["ok"], false, "{answer}");
    assert!(
        answer["error"].as_str().unwrap_or("").contains("protocol"),
        "{answer}"
    );
    assert!(serve.running(), "the agent ended:\n{}", serve.log());
    assert_cli_left_nothing(&b);
}

/// Runs `f` on a thread inside network namespace `ns`: the sockets it
/// opens stay in `ns` (the rest of the test stays where it is).
pub fn inside<T: Send>(ns: &Netns, f: impl FnOnce() -> T + Send) -> T {
    let path = ns.path();
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).unwrap();
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A TCP connection to `to` from local address `from`, made within 5 s.
fn connect_from(from: Ipv4Addr, to: SocketAddrV4) -> TcpStream {
    use nix::sys::socket::{
        bind, connect, getsockopt, socket, sockopt, AddressFamily, SockFlag, SockType, SockaddrIn,
    };
    let fd: OwnedFd = socket(
        AddressFamily::Inet,
        SockType::Stream,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    bind(
        fd.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(from, 0)),
    )
    .unwrap();
    match connect(fd.as_raw_fd(), &SockaddrIn::from(to)) {
        Ok(()) | Err(nix::errno::Errno::EINPROGRESS) => {}
        Err(e) => panic!("connect {from} -> {to}: {e}"),
    }
    let mut ready = [nix::poll::PollFd::new(
        fd.as_fd(),
        nix::poll::PollFlags::POLLOUT,
    )];
    let n = nix::poll::poll(&mut ready, 5000u16).unwrap();
    assert_eq!(n, 1, "connect {from} -> {to}: no answer within 5 s");
    let error = getsockopt(&fd, sockopt::SocketError).unwrap();
    assert_eq!(error, 0, "connect {from} -> {to}: errno {error}");
    let stream = TcpStream::from(fd);
    stream.set_nonblocking(false).unwrap();
    stream
}

/// Whether the agent has closed `stream` (a read now finds its end).
fn closed_by_peer(stream: &TcpStream) -> bool {
    stream.set_nonblocking(true).unwrap();
    let closed = match (&*stream).read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
    };
    stream.set_nonblocking(false).unwrap();
    closed
}

/// Whether the agent closes `stream` within `wait`.
fn wait_closed(stream: &TcpStream, wait: Duration) -> bool {
    crate::support::cmd::poll(wait, || closed_by_peer(stream).then_some(())).is_some()
}

/// A peer sending a handshake's bytes one at a time, `every` apart, until
/// the agent closes the connection (at most a minute).
struct Trickle(JoinHandle<Option<Duration>>);

impl Trickle {
    fn start(ns: &Netns, from: Ipv4Addr, to: SocketAddrV4, every: Duration) -> Trickle {
        let stream = inside(ns, || connect_from(from, to));
        let started = Instant::now();
        Trickle(std::thread::spawn(move || {
            let mut stream = stream;
            stream.set_read_timeout(Some(every)).unwrap();
            let bytes = [0u8, 48].into_iter().chain(std::iter::repeat(0x55));
            for byte in bytes.take(60) {
                if stream.write_all(&[byte]).is_err() {
                    return Some(started.elapsed());
                }
                match stream.read(&mut [0u8; 64]) {
                    Ok(0) => return Some(started.elapsed()),
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => return Some(started.elapsed()),
                }
                if started.elapsed() > Duration::from_secs(60) {
                    break;
                }
            }
            None
        }))
    }

    /// How long the agent held it.
    fn wait(self) -> Duration {
        self.0
            .join()
            .unwrap()
            .expect("the agent never closed the slow sender's connection")
    }
}

/// `serve` keeps working after its own binary is replaced (what every
/// scripts/install.sh does under a running agent): each migration starts
/// its guard from the running program, not from the path it came from.
#[test]
fn migrate_to_a_serve_whose_binary_was_replaced() {
    let a = Daemons::with_docker("migrate_upgraded_a");
    let b = Daemons::with_docker_with("migrate_upgraded_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &[]);
    }
    let cli = b.path("bin/lazarus");
    std::fs::create_dir_all(cli.parent().unwrap()).unwrap();
    std::fs::copy(crate::support::config::lazarus_cli(), &cli).unwrap();
    let serve = Serve::start_from(&b, &key, &cli);
    // The upgrade: a new file renamed over the old one, as install(1) does.
    let new = b.path("bin/lazarus.new");
    std::fs::write(
        &new,
        "#!/bin/sh\necho 'not the running agent' >&2; exit 97\n",
    )
    .unwrap();
    std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::rename(&new, &cli).unwrap();
    let out = migrate(&a, &name, &serve.addr, &key, &[]).ok();
    assert_counts_on(&b, &name, last_tick(&a, &name));
    assert!(
        !serve.log().contains("not the running agent"),
        "{}\n{out}",
        serve.log()
    );
    assert_cli_left_nothing(&b);
}
