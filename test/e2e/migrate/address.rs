//! A TCP connection from outside the container survives a migration when
//! the network moves the container's address with it: hosts A and B (each
//! its own network namespace with its own daemons) and a client host C on
//! one layer-2 segment; the container on Docker's macvlan network with a
//! fixed address (Docker derives its MAC from the address, so both move).

use crate::archive::export_import::{assert_cli_left_nothing, docker_names};
use crate::checkpoint::apps::redis_cli;
use crate::migrate::moves::{assert_refused_by_runtime, migrate};
use crate::support::apps::{with_docker_and_with, App, REDIS_IMAGE};
use crate::support::cmd::{poll, wait_until};
use crate::support::harness::inspect;
use crate::support::lazarus::{keygen, Serve, B_HOST};
use crate::support::netns::{Netns, Segment};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Redis on A's macvlan address; a client in C sends `INCR n` every 100 ms
/// on one connection before, during and after `lazarus migrate
/// --tcp-established` to B (post-copy), and back to A (stop-and-copy):
/// every command gets its reply in order (1, 2, 3, ... with none missing),
/// the connection is never reset, and on B Redis has the same client
/// (CLIENT ID), and at the end the client's count.
#[test]
fn migrate_keeps_an_outside_clients_connection_to_a_moved_address() {
    let segment = Segment::new("10.220.0");
    let a = with_docker_and_with("migrate_addr_a", &B_HOST, &[App::Redis]);
    let b = with_docker_and_with("migrate_addr_b", &B_HOST, &[App::Redis]);
    let c = Netns::new(&format!("{}c", a.id));
    let a_addr = segment.plug(a.netns().unwrap(), 11);
    let b_addr = segment.plug(b.netns().unwrap(), 12);
    segment.plug(&c, 100);
    let service = format!("{}.50", segment.prefix);
    for d in [&a, &b] {
        d.docker(&[
            "network",
            "create",
            "-d",
            "macvlan",
            "--subnet",
            &format!("{}.0/24", segment.prefix),
            "-o",
            "parent=l2",
            "mv",
        ])
        .ok();
    }
    let name = a.name("redis");
    a.docker(&[
        "run",
        "-d",
        "--runtime",
        a.runtime(),
        "--name",
        &name,
        "--network",
        "mv",
        "--ip",
        &service,
        REDIS_IMAGE,
    ])
    .ok();
    wait_until("redis to answer on A", Duration::from_secs(30), || {
        (redis_cli(&a, &name, &["PING"]).text() == "PONG").then_some(())
    });
    let key = keygen(&a, "migration.key");
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &["--tcp-established"]);
    }

    let client = Client::start(&c, &format!("{service}:6379"));
    wait_until(
        "the client's first replies",
        Duration::from_secs(10),
        || (client.replies() >= 5).then_some(()),
    );
    let id = redis_cli(&a, &name, &["CLIENT", "LIST"]).ok().stdout;
    let serve = Serve::start_at(&b, &key, &format!("{b_addr}:7470"));
    let before = client.replies();
    let out = migrate(&a, &name, &serve.addr, &key, &["--tcp-established"]).ok();
    eprintln!("{}", out.stdout.trim());
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "false");
    assert_eq!(inspect(&b, &name, "{{.State.Running}}"), "true");
    // On after the move: well past the replies before it.
    let target = client.replies() + 20;
    let reached = poll(Duration::from_secs(30), || {
        (client.replies() >= target).then_some(())
    });
    // Asked while the client is still connected.
    let on_b = redis_cli(&b, &name, &["CLIENT", "LIST"]).ok().stdout;

    // And back to A, stop-and-copy (a longer downtime: more of the
    // client's retransmissions land while no host has the socket).
    let serve_a = Serve::start_at(&a, &key, &format!("{a_addr}:7470"));
    a.docker(&["rm", &name]).ok();
    let out = migrate(
        &b,
        &name,
        &serve_a.addr,
        &key,
        &["--tcp-established", "--mode", "stopcopy"],
    )
    .ok();
    eprintln!("{}", out.stdout.trim());
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
    let target = client.replies() + 20;
    let back = poll(Duration::from_secs(30), || {
        (client.replies() >= target).then_some(())
    });
    let (replies, longest_wait, error) = client.stop();
    assert!(
        reached.is_some() && back.is_some() && error.is_none(),
        "the client's connection did not survive the move: {} replies ({before} before the \
         migration), then {error:?}",
        replies.len()
    );
    for (i, r) in replies.iter().enumerate() {
        assert_eq!(*r, i as u64 + 1, "replies out of order: {replies:?}");
    }
    let client_id = |list: &str| {
        list.lines()
            .find(|l| l.contains(&format!("addr={}.100:", segment.prefix)))
            .and_then(|l| l.split_whitespace().next().map(str::to_string))
    };
    assert_eq!(
        client_id(&on_b),
        client_id(&id),
        "the same client, on B: {on_b}"
    );
    assert!(client_id(&on_b).is_some(), "{on_b}");
    assert_eq!(
        redis_cli(&a, &name, &["GET", "n"]).ok().text(),
        replies.len().to_string()
    );
    eprintln!(
        "outside client: {} replies, {before} before the migration, none lost, its longest wait \
         for one {longest_wait:?}; A at {a_addr}, B at {b_addr}",
        replies.len()
    );
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
    assert_eq!(docker_names(&a), vec![name]);
}

/// The client's replies, its longest wait for one, and the error that
/// ended it.
type Outcome = (Vec<u64>, Duration, Option<String>);

/// A Redis client on one TCP connection, in network namespace `ns`: `INCR
/// n` every 100 ms, each reply read before the next command.
struct Client {
    stop: Arc<AtomicBool>,
    count: Arc<std::sync::atomic::AtomicU64>,
    thread: Option<JoinHandle<Outcome>>,
}

impl Client {
    fn start(ns: &Netns, to: &str) -> Client {
        let (stop, count) = (Arc::new(AtomicBool::new(false)), Arc::default());
        let (path, to): (String, SocketAddr) = (ns.path(), to.parse().unwrap());
        let (stop2, count2): (_, Arc<std::sync::atomic::AtomicU64>) =
            (stop.clone(), Arc::clone(&count));
        let thread = std::thread::spawn(move || {
            let (mut replies, mut longest) = (Vec::new(), Duration::ZERO);
            let error = (|| -> std::io::Result<()> {
                // This thread only: the rest of the test stays where it is.
                let ns = std::fs::File::open(&path)?;
                nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET)?;
                let mut conn = TcpStream::connect_timeout(&to, Duration::from_secs(5))?;
                conn.set_read_timeout(Some(Duration::from_secs(30)))?;
                let mut reader = BufReader::new(conn.try_clone()?);
                while !stop2.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    conn.write_all(b"INCR n\r\n")?;
                    let mut line = String::new();
                    reader.read_line(&mut line)?;
                    let n = line
                        .trim()
                        .strip_prefix(':')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| std::io::Error::other(format!("reply {line:?}")))?;
                    replies.push(n);
                    longest = longest.max(sent.elapsed());
                    count2.store(replies.len() as u64, Ordering::Relaxed);
                    std::thread::sleep(Duration::from_millis(100).saturating_sub(sent.elapsed()));
                }
                Ok(())
            })()
            .err()
            .map(|e| e.to_string());
            (replies, longest, error)
        });
        Client {
            stop,
            count,
            thread: Some(thread),
        }
    }

    fn replies(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn stop(mut self) -> Outcome {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
