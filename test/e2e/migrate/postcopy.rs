//! Post-copy migration's memory: it all arrives (memhog's checksum of its
//! whole heap is the same on B), and when the page stream fails the
//! container is never left running with memory missing. memhog is 1 GiB on
//! the heavy legs, 256 MiB on the others.

use crate::archive::export_import::{assert_cli_left_nothing, docker_names};
use crate::faults::kills::{memhog, start_memhog, SLOW};
use crate::migrate::moves::{assert_refused_by_runtime, migrate, spawn_migrate, wait_failed};
use crate::support::cmd::{poll, run, wait_until};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::lazarus::{keygen, Serve, B_HOST};
use crate::support::leaks::{big_heap_turn, heap_mib};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;

/// memhog moves post-copy to B (its daemons and agent behind a veth) and ticks on there
/// from the next tick with the same checksum of its whole heap: every page
/// was fetched from A's page server.
#[test]
fn migrate_postcopy_moves_a_heap_with_its_checksum() {
    assert_a_heap_moves("postcopy", "migrate_heap");
}

/// memhog (1 GiB on the heavy legs) moves to B in `mode`, with `prefix`
/// for the daemon sets' names: the memory went through the page stream
/// (the report counts at least 90% of the heap there, and the archive
/// carried under a quarter of it), and memhog ticks on on B from A's next
/// tick with the same checksum of its whole heap.
pub fn assert_a_heap_moves(mode: &str, prefix: &str) {
    let Some(heap) = heap_on_a(prefix) else {
        return;
    };
    let HeapOnA {
        _turn,
        a,
        b,
        key,
        name,
        sum,
    } = heap;
    let mib = heap_mib();
    let serve = Serve::start(&b, &key);
    let out = migrate(&a, &name, &serve.addr, &key, &["--mode", mode, "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["mode"], mode, "{v:#}");
    let downtime = v["downtime_seconds"].as_f64().unwrap();
    let memory = v["memory_seconds"].as_f64();
    assert_eq!(memory.is_some(), mode == "postcopy", "{v:#}");
    eprintln!(
        "migrate {mode} {mib} MiB: downtime {downtime:.3}s, {} bytes of memory through the \
         page stream (after the resume: {memory:?} s)",
        v["memory_bytes"]
    );
    // Post-copy: the pages the dump left to the page server (its
    // pagemaps' count); stop-copy: the pages B's page server received.
    let streamed = v["memory_bytes"].as_u64().unwrap_or(0);
    assert!(
        streamed >= (mib << 20) * 9 / 10,
        "{streamed} bytes through the page stream: {v:#}"
    );
    // The page tunnel counted them (and a little of CRIU's protocol) on
    // their way out of A, with a throughput.
    let tunnel = &v["page_stream"];
    let sent = tunnel["sent_bytes"].as_u64().unwrap_or(0);
    assert!(
        sent >= streamed && tunnel["received_bytes"].as_u64() > Some(0),
        "the tunnel counted {sent} bytes out, {streamed} of memory: {v:#}"
    );
    eprintln!(
        "page tunnel: {sent} bytes out, {} back, {} s, {} MiB/s",
        tunnel["received_bytes"], tunnel["seconds"], tunnel["mib_per_second"]
    );
    // The archive carried the rest, not the heap.
    let archive = v["archive_bytes"].as_u64().unwrap();
    assert!(
        archive < (mib << 20) / 4,
        "{archive} bytes sent in the archive: {v:#}"
    );

    let last = memhog(&a, &name).last().expect("ticks on A").0;
    let on_b = wait_until("memhog to tick on B", SLOW, || {
        let t = memhog(&b, &name);
        (t.len() >= 2).then_some(t)
    });
    for (i, (n, s)) in on_b.iter().enumerate() {
        assert_eq!(
            *n,
            last + 1 + i as u64,
            "ticks on B do not follow A's: {on_b:?}"
        );
        assert_eq!(s, &sum, "the heap changed on the way (tick {n}): {on_b:?}");
    }
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "false");
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
    b.docker(&["rm", "-f", &name]).ok();
}

/// The page stream failing, before and after B resumed the container:
///
/// 1. A's CRIU killed as soon as B's lazy-pages daemon starts (B has not
///    confirmed): the migration fails, A's memhog runs on with its heap,
///    nothing of it runs on B.
/// 2. B's lazy-pages daemon killed after B resumed the container, while
///    the stream is held back by a throttle on B's page tunnel door: B's
///    copy is killed (its missing pages would read as zeroes), the
///    migration says so, and A's memhog thaws and runs on from where it was
///    frozen, with its heap.
#[test]
fn migrate_postcopy_stream_failures_never_leave_a_copy_without_memory() {
    let Some(heap) = heap_on_a("migrate_cut") else {
        return;
    };
    let HeapOnA {
        _turn,
        a,
        b,
        key,
        name,
        sum,
    } = heap;
    let serve = Serve::start(&b, &key);
    let args = ["--mode", "postcopy"];

    // 1. The source's CRIU killed before B confirms.
    let pid = inspect(&a, &name, "{{.State.Pid}}");
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    wait_until("B's lazy-pages daemon", SLOW, || lazy_pages_daemon(&b));
    let dump = wait_until("A's CRIU dump", SLOW, || {
        pgrep(&format!("criu: dump --rpc -t {pid}"))
    });
    run(Command::new("kill").args(["-9", &dump.to_string()])).ok();
    let stderr = wait_failed(&mut migration, SLOW);
    eprintln!("A's CRIU killed: {}", stderr.trim());
    assert!(stderr.contains("runs on here"), "{stderr}");
    assert_source_runs_on(&a, &name, &sum);
    assert_not_running_on(&b, &name);
    let _ = b.docker(&["rm", "-f", &name]);

    // 2. B's lazy-pages daemon killed after B resumed the container.
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
    let (daemon, _) = wait_until("B's lazy-pages daemon", SLOW, || lazy_pages_daemon(&b));
    // The pages cross in the tunnel, to B's door.
    let (_, door) = crate::migrate::filter::door_rule(&b);
    let throttle = Throttle::on_dest_port(b.netns().unwrap().veth(), door);
    wait_until("B to run the container", SLOW, || {
        (inspect_or_empty(&b, &name) == "true").then_some(())
    });
    run(Command::new("kill").args(["-9", &daemon.to_string()])).ok();
    let stderr = wait_failed(&mut migration, SLOW);
    drop(throttle);
    eprintln!("B's lazy-pages daemon killed: {}", stderr.trim());
    assert!(
        stderr.contains("memory stopped arriving") && stderr.contains("runs on here"),
        "{stderr}"
    );
    assert_not_running_on(&b, &name);
    assert_source_runs_on(&a, &name, &sum);
    assert_cli_left_nothing(&a);
    // `serve` removes the dead copy once its shim has stopped it.
    let removed = poll(Duration::from_secs(120), || {
        (b.docker(&["inspect", &name]).code != Some(0)).then_some(())
    });
    assert!(removed.is_some(), "B keeps the dead copy of {name}");
    for n in docker_names(&b) {
        b.docker(&["rm", "-f", &n]).ok();
    }
}

/// The receiving end of the page pump killed mid-stream: B's `serve` (its
/// side of the tunnel, which answers B's lazy-pages daemon) SIGKILLed after
/// B resumed the container, while the stream is held back by a throttle on
/// B's door. B's copy cannot get the rest of its memory, so it must not
/// run on; the source never confirmed gone, so A's memhog thaws and runs on
/// from where it was frozen, with its heap; nothing is left on either host.
#[test]
fn migrate_postcopy_receiver_killed_mid_memory_brings_the_source_back() {
    let Some(heap) = heap_on_a("migrate_rkill") else {
        return;
    };
    let HeapOnA {
        _turn,
        a,
        b,
        key,
        name,
        sum,
    } = heap;
    let mut serve = Serve::start(&b, &key);
    let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &["--mode", "postcopy"]);
    wait_until("B's lazy-pages daemon", SLOW, || lazy_pages_daemon(&b));
    let (_, door) = crate::migrate::filter::door_rule(&b);
    let throttle = Throttle::on_dest_port(b.netns().unwrap().veth(), door);
    wait_until("B to run the container", SLOW, || {
        (inspect_or_empty(&b, &name) == "true").then_some(())
    });
    serve.kill();
    let stderr = wait_failed(&mut migration, SLOW);
    drop(throttle);
    eprintln!("B's serve killed mid-memory: {}", stderr.trim());
    assert!(stderr.contains("runs on here"), "{stderr}");
    assert_not_running_on(&b, &name);
    assert_source_runs_on(&a, &name, &sum);
    assert_cli_left_nothing(&a);
    // B's copy is dead; its stopped container is the engine's to remove
    // (no agent is left to), and nothing of the CLI's stays on B.
    for n in docker_names(&b) {
        b.docker(&["rm", "-f", &n]).ok();
    }
    assert_cli_left_nothing(&b);
}

/// Every case's start: host A with memhog's heap (1 GiB on the heavy
/// legs, one such test at a time), host B behind its veth, their key, and
/// the heap's checksum. `None` on runc, once its refusal is checked
/// (post-copy is Lazarus's).
struct HeapOnA {
    a: Daemons,
    b: Daemons,
    key: String,
    name: String,
    sum: String,
    /// Bound first by the tests, so dropped last: the daemons are torn
    /// down before the next heap's turn.
    _turn: Option<std::sync::MutexGuard<'static, ()>>,
}

fn heap_on_a(tag: &str) -> Option<HeapOnA> {
    let mib = heap_mib();
    let _turn = big_heap_turn(mib);
    let a = Daemons::with_docker(&format!("{tag}_a"));
    let b = Daemons::with_docker_with(&format!("{tag}_b"), &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = a.name("memhog");
    start_memhog(&a, &name, mib);
    if !a.is_lazarus() {
        assert_refused_by_runtime(&a, &name, &key, &[]);
        return None;
    }
    let sum = memhog(&a, &name)[0].1.clone();
    Some(HeapOnA {
        a,
        b,
        key,
        name,
        sum,
        _turn,
    })
}

/// A's memhog runs, its ticks one unbroken run with the checksum `sum`.
pub fn assert_source_runs_on(a: &Daemons, name: &str, sum: &str) {
    assert_eq!(inspect(a, name, "{{.State.Running}}"), "true");
    let now = memhog(a, name).len();
    let all = wait_until("memhog to tick on on A", SLOW, || {
        let all = memhog(a, name);
        (all.len() >= now + 2).then_some(all)
    });
    for (i, (n, s)) in all.iter().enumerate() {
        assert_eq!(*n, i as u64, "memhog's ticks are not one run: {all:?}");
        assert_eq!(s, sum, "memhog's heap changed (tick {n}): {all:?}");
    }
}

/// Within 30 s nothing named `name` runs on `b` (it may be gone, or exited).
pub fn assert_not_running_on(b: &Daemons, name: &str) {
    let stopped = poll(Duration::from_secs(30), || {
        (inspect_or_empty(b, name) != "true").then_some(())
    });
    assert!(
        stopped.is_some(),
        "{name} still runs on B without its memory"
    );
}

fn inspect_or_empty(d: &Daemons, name: &str) -> String {
    d.docker(&["inspect", "-f", "{{.State.Running}}", name])
        .stdout
        .trim()
        .to_string()
}

/// The pid and page server port of a CRIU lazy-pages daemon working for
/// host `d` (a descendant of its daemons).
fn lazy_pages_daemon(d: &Daemons) -> Option<(i32, u16)> {
    criu_daemon(d.processes_named("criu"), "lazy-pages")
}

/// The pid and port of the first of `pids` that is `criu COMMAND`.
pub fn criu_daemon(pids: Vec<i32>, command: &str) -> Option<(i32, u16)> {
    for pid in pids {
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) != Some(command) {
            continue;
        }
        let port = args
            .iter()
            .position(|a| a == "--port")
            .and_then(|i| args.get(i + 1))
            .and_then(|p| p.parse().ok())?;
        return Some((pid, port));
    }
    None
}

/// The first process whose command line contains `pattern`.
pub fn pgrep(pattern: &str) -> Option<i32> {
    let out = Command::new("pgrep").args(["-f", pattern]).output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .and_then(|l| l.trim().parse().ok())
}

/// Holds back traffic leaving by `dev` (this side of B's veth pair: A's
/// page server sends B's lazy-pages daemon its pages across it, A's dump
/// pushes them to B's page server) to 16 Mbit/s, so that the page stream
/// outlasts the test's kill; removed when dropped (the veth is this test's
/// alone).
pub struct Throttle(String);

impl Throttle {
    /// All traffic to B.
    pub fn all(dev: &str) -> Throttle {
        Throttle::htb(dev, "20")
    }

    /// Traffic to one TCP port of B only.
    fn on_dest_port(dev: &str, port: u16) -> Throttle {
        let throttle = Throttle::htb(dev, "10");
        let tc = |args: &[&str]| run(Command::new("tc").args(args)).ok();
        tc(&[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:10", "htb", "rate", "10gbit",
        ]);
        tc(&[
            "filter",
            "add",
            "dev",
            dev,
            "parent",
            "1:",
            "protocol",
            "ip",
            "prio",
            "1",
            "u32",
            "match",
            "ip",
            "dport",
            &port.to_string(),
            "0xffff",
            "flowid",
            "1:20",
        ]);
        throttle
    }

    /// An htb root on `dev` whose class 1:20 holds traffic to 16 Mbit/s,
    /// and `default` the class unfiltered traffic takes. (htb and u32 are
    /// what this kernel has: no prio, no flower.)
    fn htb(dev: &str, default: &str) -> Throttle {
        let tc = |args: &[&str]| run(Command::new("tc").args(args)).ok();
        let _ = run(Command::new("tc").args(["qdisc", "del", "dev", dev, "root"]));
        tc(&[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", default, "r2q",
            "100000",
        ]);
        tc(&[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:20", "htb", "rate", "16mbit",
        ]);
        Throttle(dev.to_string())
    }
}

impl Drop for Throttle {
    fn drop(&mut self) {
        let _ = run(Command::new("tc").args(["qdisc", "del", "dev", &self.0, "root"]));
    }
}
