//! CRIU's page servers accept the first connection to their port, whoever
//! makes it; so CRIU never listens on the network during a migration: its
//! page servers listen on 127.0.0.1, and the bytes cross in Lazarus's page
//! tunnel, whose door on the receiver takes only the migration's peer (a
//! packet filter rule, INPUT, reset every source but the peer, tagged
//! `lazarus-PID-START-PORT`) holding the key and the session id. During a
//! migration, in either mode, every CRIU listener on both hosts is on
//! loopback, nothing answers at a CRIU port from the other host, a
//! stranger at the door is refused, the migration goes through, and no
//! rule outlives it (not after success, not after migrate is killed).

use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::faults::kills::SLOW;
use crate::migrate::moves::{assert_refused_by_runtime, last_tick, spawn_migrate};
use crate::migrate::postcopy::criu_daemon;
use crate::migrate::serve::inside;
use crate::support::cmd::{run, wait_until, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::lazarus::{keygen, Serve, B_HOST};
use crate::support::netns::Netns;
use std::collections::HashSet;
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

/// How often the tests look for a page server's port: the window between
/// its listening and the peer's connection can be a fraction of a second.
const TIGHT: Duration = Duration::from_millis(10);

/// A process stopped (SIGSTOP) until this is dropped (SIGCONT).
struct Stopped(nix::unistd::Pid);

impl Stopped {
    fn now(pid: i32) -> Stopped {
        let pid = nix::unistd::Pid::from_raw(pid);
        nix::sys::signal::kill(pid, nix::sys::signal::SIGSTOP).expect("stop migrate");
        Stopped(pid)
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::SIGCONT);
    }
}

/// [`crate::support::cmd::wait_until`], polling every [`TIGHT`].
fn wait_tight<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(TIGHT);
    }
}

/// The TCP ports process `pid` listens on: its sockets (by inode) in state
/// LISTEN in its network namespace's /proc/PID/net/tcp and tcp6.
fn listening_ports(pid: i32) -> Vec<u16> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap_or("");
                ports.extend(u16::from_str_radix(port, 16).ok());
            }
        }
    }
    ports
}

/// `program ARGS` in namespace `ns` (None: this one), which must work.
fn in_ns(ns: Option<&Netns>, program: &str, args: &[&str]) -> String {
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.path())).arg("--").arg(program);
            c
        }
        None => Command::new(program),
    };
    run(cmd.args(args)).ok().stdout
}

/// The INPUT rules of both families in `ns` whose comment is a Lazarus
/// page server tag, as `-S` prints them.
fn filter_rules(ns: Option<&Netns>) -> Vec<String> {
    ["iptables", "ip6tables"]
        .iter()
        .flat_map(|p| {
            in_ns(ns, p, &["-w", "5", "-S", "INPUT"])
                .lines()
                .filter(|l| l.contains("lazarus-"))
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The rules in `ns` tagged by owner `pid` (`lazarus-PID-...`).
fn rules_of(ns: Option<&Netns>, pid: u32) -> Vec<String> {
    let tag = format!("lazarus-{pid}-");
    filter_rules(ns)
        .into_iter()
        .filter(|r| r.contains(&tag))
        .collect()
}

/// How many packets the IPv4 Lazarus rule for `port` in `ns` has reset
/// (its counter in `iptables -L -v -x`); None without such a rule.
fn rejected(ns: Option<&Netns>, port: u16) -> Option<u64> {
    let listing = in_ns(
        ns,
        "iptables",
        &["-w", "5", "-L", "INPUT", "-v", "-x", "-n"],
    );
    let dpt = format!("dpt:{port} ");
    listing
        .lines()
        .find(|l| l.contains("lazarus-") && l.contains(&dpt))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
}

/// A stranger's connection to `ip:port` from namespace `ns` (None: this
/// one): held open if it is made.
fn stranger(ns: Option<&Netns>, ip: &str, port: u16) -> std::io::Result<TcpStream> {
    let to: SocketAddr = format!("{ip}:{port}").parse().unwrap();
    let connect = move || TcpStream::connect_timeout(&to, Duration::from_secs(5));
    match ns {
        Some(ns) => inside(ns, connect),
        None => connect(),
    }
}

/// This side's address on `ns`'s veth pair (A's, as B sees it).
fn outside(ns: &Netns) -> String {
    let (net, _) = ns.inside.rsplit_once('.').unwrap();
    format!("{net}.1")
}

/// A spawned migrate's end, within `timeout`.
fn wait_output(mut migrate: Child, timeout: Duration) -> Output {
    wait_until("migrate to end", timeout, || migrate.try_wait().unwrap());
    migrate.wait_with_output().unwrap()
}

/// Waits until `name` ticks on on `a`: a dump of it that migrate left
/// frozen is called off once migrate's lease is 30 s old.
fn source_ticks_on(a: &Daemons, name: &str) {
    let past = last_tick(a, name) + 2;
    wait_until("the source to tick on", SLOW, || {
        let logs = a.docker(&["logs", name]).ok().stdout;
        (crate::support::cmd::ticks(&logs).last() > Some(&past)).then_some(())
    });
}

/// A counter on host A (Docker) and its name, ticking.
fn counter_on(a: &Daemons) -> String {
    let name = a.name("counter");
    run_sh_detached(a, &name, COUNTER);
    wait_ticks_past(a, &name, 2);
    name
}

/// A counter moving from A to B (where `serve` runs): the hosts, and the
/// pid of the `migrate` moving it.
struct Move {
    a: Daemons,
    b: Daemons,
    name: String,
    _serve: Serve,
    owner: u32,
}

/// Starts the move of a counter from a new host A to a new host B in
/// `mode` (`migrate --json`, spawned); under runc, None after checking
/// that migrate refuses the container.
fn start_move(test: &str, mode: &str) -> Option<(Move, Child)> {
    let a = Daemons::with_docker(&format!("{test}_a"));
    let b = Daemons::with_docker_with(&format!("{test}_b"), &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = counter_on(&a);
    if !a.is_lazarus() {
        assert_refused_by_runtime(&a, &name, &key, &["--mode", mode]);
        return None;
    }
    let serve = Serve::start(&b, &key);
    let migration = spawn_migrate(&a, &name, &serve.addr, &key, &["--mode", mode, "--json"]);
    let owner = migration.id();
    let moving = Move {
        a,
        b,
        name,
        _serve: serve,
        owner,
    };
    Some((moving, migration))
}

/// The local addresses (as /proc/net/tcp writes them) of every TCP
/// socket `pid` listens on.
fn listening_addresses(pid: i32) -> Vec<String> {
    let inodes: HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut out = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                out.push(f[1].to_string());
            }
        }
    }
    out
}

/// 127.0.0.1, as /proc/net/tcp writes it (host order, hex).
const LOOPBACK: &str = "0100007F";

/// Every TCP listener of every CRIU process of both hosts (now) is on
/// 127.0.0.1; returns how many there were.
fn assert_criu_on_loopback(m: &Move) -> usize {
    let mut seen = 0;
    for (host, d) in [("A", &m.a), ("B", &m.b)] {
        for pid in d.processes_named("criu") {
            for addr in listening_addresses(pid) {
                assert!(
                    addr.starts_with(&format!("{LOOPBACK}:")),
                    "{host}'s CRIU (pid {pid}) listens on {addr}, not on loopback"
                );
                seen += 1;
            }
        }
    }
    seen
}

/// Every address in `addrs` (from /proc/net/tcp) is 127.0.0.1.
fn assert_all_loopback(what: &str, addrs: &[String]) {
    for a in addrs {
        assert!(
            a.starts_with(&format!("{LOOPBACK}:")),
            "{what} listens on {a}, not on loopback"
        );
    }
}

/// Nothing answers at `port` on the other host's side of the link (the
/// CRIU listener's port, from the other network namespace).
fn assert_unreachable(ns: Option<&Netns>, ip: &str, port: u16) {
    match stranger(ns, ip, port) {
        Ok(_) => panic!("{ip}:{port} (a CRIU page server's port) took a connection"),
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionRefused,
            "{ip}:{port}: {e}"
        ),
    }
}

/// B's tunnel door: the one Lazarus rule in B's namespace and its port.
pub fn door_rule(b: &Daemons) -> (Vec<String>, u16) {
    let rules = wait_tight("B's page tunnel door", SLOW, || {
        let r = filter_rules(b.netns());
        (!r.is_empty()).then_some(r)
    });
    let port = rules[0]
        .split_whitespace()
        .skip_while(|w| *w != "--dport")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .expect("the rule's port");
    (rules, port)
}

/// A stranger on B (B's own address, not the peer's) at the door: reset.
fn stranger_at_the_door(b: &Daemons, port: u16) {
    let ns = b.netns().unwrap();
    match stranger(Some(ns), &ns.inside, port) {
        Ok(_) => panic!("a stranger got a connection to B's page tunnel door"),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}"),
    }
}

impl Move {
    /// After the strangers tried (`rules` and `reset` read meanwhile on B,
    /// which holds the door): exactly one rule, for `port`, reset at least
    /// `strangers` packets; the migration went through in `mode`, the
    /// counter ticks on on B, and no rule is left on either host.
    fn finish(
        self,
        migration: Child,
        port: u16,
        rules: &[String],
        reset: Option<u64>,
        strangers: u64,
        mode: &str,
    ) {
        let out = wait_output(migration, SLOW);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(rules.len(), 1, "the rule for port {port}: {rules:?}");
        assert!(rules[0].contains(&format!("--dport {port} ")), "{rules:?}");
        assert!(
            reset >= Some(strangers),
            "the rule reset {reset:?} packets, not the {strangers} strangers'"
        );
        assert!(out.status.success(), "migrate failed: {stderr}");
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["mode"], mode, "{report:#}");
        wait_ticks_past(&self.b, &self.name, last_tick(&self.a, &self.name));
        assert_eq!(
            rules_of(None, self.owner),
            Vec::<String>::new(),
            "A kept a rule"
        );
        assert_eq!(
            filter_rules(self.b.netns()),
            Vec::<String>::new(),
            "B kept a rule"
        );
        self.b.docker(&["rm", "-f", &self.name]).ok();
    }
}

/// Post-copy: A's CRIU dump serves the memory on A's 127.0.0.1 only; B's
/// lazy-pages daemon reaches it through the tunnel. While the dump
/// listens, every CRIU listener of A and B is on loopback, nothing answers
/// at its port on A's address from B's namespace, a stranger at B's
/// tunnel door is reset by serve's rule (its counter says so), the
/// migration goes through, the counter ticks on on B, no rule is left.
#[test]
fn migrate_postcopy_no_criu_socket_is_reachable_from_the_other_host() {
    let Some((m, migration)) = start_move("migrate_filter_pc", "postcopy") else {
        return;
    };
    let ns = m.b.netns().unwrap();
    let (rules, door) = door_rule(&m.b);
    stranger_at_the_door(&m.b, door);
    let reset = rejected(Some(ns), door);
    // CRIU's listener lives from the dump's readiness until `migrate`'s
    // tunnel connects to it: on containerd 2.1 a few milliseconds, which a
    // poll of /proc on a busy host missed (CI, 2026-12-07). So `migrate`
    // is stopped as soon as A's CRIU appears, well before its dump is
    // ready (it freezes and dumps the container first), and the listener
    // waits to be read; `migrate` goes on once it was (or the test failed).
    let mut criu = wait_tight("A's dump to start", SLOW, || {
        let criu = m.a.processes_named("criu");
        (!criu.is_empty()).then_some(criu)
    });
    let held = Stopped::now(migration.id() as i32);
    // The first CRIU may be the shim's version check: the walk of /proc is
    // redone every 100 ms (slow on a busy host); between walks only those
    // processes' own sockets are read.
    let mut polls = 0u32;
    let (port, addrs) = wait_tight("A's page server to listen", SLOW, || {
        if polls % 10 == 9 {
            criu = m.a.processes_named("criu");
        }
        polls += 1;
        criu.iter().find_map(|&p| {
            let port = *listening_ports(p).first()?;
            Some((port, listening_addresses(p)))
        })
    });
    assert_all_loopback("A's lazy dump", &addrs);
    assert_criu_on_loopback(&m);
    assert_unreachable(Some(ns), &outside(ns), port);
    drop(held);
    m.finish(migration, door, &rules, reset, 1, "postcopy");
}

/// Stop-copy: B's `criu page-server` listens on B's 127.0.0.1 only; A's
/// dump pushes to A's tunnel end, on A's loopback. While it listens, every
/// CRIU listener of A and B is on loopback, nothing answers at its port on
/// B's address from A, a stranger at B's door is reset, the migration
/// goes through, the counter ticks on on B, and no rule is left.
#[test]
fn migrate_stopcopy_no_criu_socket_is_reachable_from_the_other_host() {
    let Some((m, migration)) = start_move("migrate_filter_sc", "stopcopy") else {
        return;
    };
    let ns = m.b.netns().unwrap();
    let (server, port) = wait_tight("B's page server", SLOW, || {
        criu_daemon(m.b.processes_named("criu"), "page-server")
    });
    // It stops listening once the tunnel connected: read while it listens
    // (its command line says the address it was given, too).
    let addrs = wait_tight("B's page server to listen", SLOW, || {
        let addrs = listening_addresses(server);
        (!addrs.is_empty()).then_some(addrs)
    });
    assert_all_loopback("B's page server", &addrs);
    let cmdline = std::fs::read(format!("/proc/{server}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
    assert!(cmdline.contains("--address 127.0.0.1 "), "{cmdline}");
    assert_criu_on_loopback(&m);
    assert_unreachable(None, &ns.inside, port);
    let (rules, door) = door_rule(&m.b);
    stranger_at_the_door(&m.b, door);
    let reset = rejected(Some(ns), door);
    m.finish(migration, door, &rules, reset, 1, "stopcopy");
}

/// migrate killed (SIGKILL) as soon as B's tunnel door is open: the
/// migration B was receiving fails with it, serve removes its rule, and
/// the source runs on (its dump, if it had begun, is called off once its
/// lease runs out). A never had a rule. (The sweep of rules a killed agent
/// and its guard left is unit-tested through a fake iptables.)
#[test]
fn migrate_killed_leaves_no_page_tunnel_filter() {
    let a = Daemons::with_docker("migrate_filter_kill_a");
    let b = Daemons::with_docker_with("migrate_filter_kill_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = counter_on(&a);
    let args = ["--mode", "postcopy"];
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &args);
    }
    let serve = Serve::start(&b, &key);
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    let owner = migration.id();
    wait_tight("B's door rule", SLOW, || {
        (!filter_rules(b.netns()).is_empty()).then_some(())
    });
    migration.kill().unwrap();
    migration.wait().unwrap();
    let killed = Instant::now();
    wait_until("B to remove its rule", Duration::from_secs(60), || {
        filter_rules(b.netns()).is_empty().then_some(())
    });
    eprintln!(
        "migrate killed: B's rule removed within {:?}",
        killed.elapsed()
    );
    assert_eq!(rules_of(None, owner), Vec::<String>::new(), "A has a rule");
    source_ticks_on(&a, &name);
    // The next migration goes through.
    let out = wait_output(spawn_migrate(&a, &name, &serve.addr, &key, &args), SLOW);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the next migrate failed: {stderr}");
    assert_eq!(inspect(&b, &name, "{{.State.Running}}"), "true");
    assert_eq!(
        filter_rules(b.netns()),
        Vec::<String>::new(),
        "B has a rule"
    );
    b.docker(&["rm", "-f", &name]).ok();
}
