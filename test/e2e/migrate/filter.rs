//! CRIU's page servers accept the first connection to their port, whoever
//! makes it; Lazarus puts a packet filter rule before each (INPUT, reset
//! every source but the migration's peer, tagged `lazarus-PID-START-PORT`).
//! A stranger connecting first is refused, the migration goes through, and
//! no rule outlives it: not after success, not after migrate is killed
//! (its guard removes it), not after migrate and its guard are killed (the
//! next migrate start removes it).

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

/// The first of `pids` listening on a TCP port, with the port.
fn first_listening(pids: Vec<i32>) -> Option<(i32, u16)> {
    pids.into_iter()
        .find_map(|p| listening_ports(p).first().map(|port| (p, *port)))
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

/// Every stranger (`ns`, an address there) tries `port`, right after the
/// page server `pid` was seen listening on it: each must be refused, and
/// while none is held, the migration must not fail. Returns the
/// connections that were made (held until the caller drops them).
fn strangers_try(ns: Option<&Netns>, ips: &[String], port: u16, pid: i32) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for ip in ips {
        match stranger(ns, ip, port) {
            Ok(s) => held.push(s),
            Err(e) => assert_eq!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused,
                "{ip}:{port}: {e}"
            ),
        }
    }
    // Whether the refusal could have been the kernel's (no listener any
    // more: the peer came first and CRIU closed it) is said; the rule's
    // counter below is what shows the filter refused them.
    eprintln!(
        "strangers tried {ips:?}:{port}; the page server {}",
        match listening_ports(pid).contains(&port) {
            true => "still listened (the peer had not connected yet)",
            false => "no longer listened",
        }
    );
    held
}

/// Fails the test at once when a stranger's connection was made: CRIU
/// may have taken it for the peer's, and the migration would fail or wait
/// for it until CRIU's own deadline.
fn assert_none_held(held: &[TcpStream], mut migrate: Child, host: &str) -> Child {
    if held.is_empty() {
        return migrate;
    }
    let _ = migrate.kill();
    let out = migrate.wait_with_output().unwrap();
    panic!(
        "a stranger connected to {host}'s page server; migrate (killed): {}",
        String::from_utf8_lossy(&out.stderr)
    );
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

impl Move {
    /// After the strangers tried (`rules` and `reset` read meanwhile on the
    /// page server's host): exactly one rule, for `port`, reset at least
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

/// Post-copy: A's CRIU dump listens for B's lazy-pages daemon on every
/// address of A. Strangers on A (from 127.0.0.1, and from A's own address
/// on the link) connect as soon as it listens: both are reset by the rule
/// migrate inserted (its counter says so), the migration goes through, the
/// counter ticks on on B, and no rule is left on either host.
#[test]
fn migrate_postcopy_page_server_refuses_a_stranger_first() {
    let Some((m, migration)) = start_move("migrate_filter_pc", "postcopy") else {
        return;
    };
    let ns = m.b.netns().unwrap();
    let (dump, port) = wait_tight("A's page server to listen", SLOW, || {
        first_listening(m.a.processes_named("criu"))
    });
    let held = strangers_try(None, &["127.0.0.1".into(), outside(ns)], port, dump);
    let rules = rules_of(None, m.owner);
    let reset = rejected(None, port);
    let migration = assert_none_held(&held, migration, "A");
    m.finish(migration, port, &rules, reset, 2, "postcopy");
}

/// Stop-copy: B's `criu page-server` listens on B's address for A's dump.
/// A stranger on B (B's own address, not the peer's) connects as soon as
/// it listens: reset by the rule serve inserted, the migration goes
/// through, the counter ticks on on B, and no rule is left on either host.
#[test]
fn migrate_stopcopy_page_server_refuses_a_stranger_first() {
    let Some((m, migration)) = start_move("migrate_filter_sc", "stopcopy") else {
        return;
    };
    let ns = m.b.netns().unwrap();
    let (server, port) = wait_tight("B's page server", SLOW, || {
        criu_daemon(m.b.processes_named("criu"), "page-server")
    });
    wait_tight("B's page server to listen", SLOW, || {
        listening_ports(server).contains(&port).then_some(())
    });
    let held = strangers_try(Some(ns), std::slice::from_ref(&ns.inside), port, server);
    let rules = filter_rules(Some(ns));
    let reset = rejected(Some(ns), port);
    let migration = assert_none_held(&held, migration, "B");
    m.finish(migration, port, &rules, reset, 1, "stopcopy");
}

/// migrate killed (SIGKILL) as soon as its post-copy rule is in:
/// 1. alone: its guard (`lazarus filter-guard`) removes the rule;
/// 2. with its guard: the rule stays until the next migrate starts, which
///    removes it (and moves the container, which ran on here).
#[test]
fn migrate_killed_leaves_no_page_server_filter() {
    let a = Daemons::with_docker("migrate_filter_kill_a");
    let b = Daemons::with_docker_with("migrate_filter_kill_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = counter_on(&a);
    let args = ["--mode", "postcopy"];
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &args);
    }
    let serve = Serve::start(&b, &key);

    // 1. migrate alone.
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    let owner = migration.id();
    wait_tight("migrate's rule", SLOW, || {
        (!rules_of(None, owner).is_empty()).then_some(())
    });
    migration.kill().unwrap();
    migration.wait().unwrap();
    let killed = Instant::now();
    wait_until(
        "the guard to remove the rule",
        Duration::from_secs(20),
        || rules_of(None, owner).is_empty().then_some(()),
    );
    eprintln!(
        "migrate killed: its rule removed within {:?}",
        killed.elapsed()
    );
    // The source runs on (its dump, if it had begun, is called off once
    // the lease runs out).
    source_ticks_on(&a, &name);

    // 2. migrate and its guard.
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    let owner = migration.id();
    wait_tight("migrate's rule", SLOW, || {
        (!rules_of(None, owner).is_empty()).then_some(())
    });
    let guard = format!("filter-guard --tag lazarus-{owner}-");
    let guard = wait_until("migrate's filter guard", Duration::from_secs(10), || {
        crate::migrate::postcopy::pgrep(&guard)
    });
    run(Command::new("kill").args(["-9", &guard.to_string()])).ok();
    migration.kill().unwrap();
    migration.wait().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    // Nothing but a serve or migrate starting on this host removes it now;
    // with other tests migrating beside this one, their start may sweep it
    // first (the sweep itself is unit-tested through a fake iptables).
    let stale = rules_of(None, owner);
    assert!(stale.len() <= 1, "more than the one rule: {stale:?}");
    source_ticks_on(&a, &name);
    let swept_by_another = rules_of(None, owner).is_empty();
    let next = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    let next_owner = next.id();
    let out = wait_output(next, SLOW);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the next migrate failed: {stderr}");
    if swept_by_another {
        eprintln!("the stale rule was swept by another test's migration first");
    } else {
        assert!(
            stderr.contains("page server filter(s) left by an ended migration"),
            "{stderr}"
        );
    }
    assert_eq!(
        rules_of(None, owner),
        Vec::<String>::new(),
        "the stale rule"
    );
    assert_eq!(rules_of(None, next_owner), Vec::<String>::new());
    assert_eq!(inspect(&b, &name, "{{.State.Running}}"), "true");
    assert_eq!(
        filter_rules(b.netns()),
        Vec::<String>::new(),
        "B has a rule"
    );
    b.docker(&["rm", "-f", &name]).ok();
}
