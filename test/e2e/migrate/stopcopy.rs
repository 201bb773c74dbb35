//! Stop-copy migration's page stream: the source's dump pushes the memory
//! to B's CRIU page server (prepared, listening, before the freeze), and a
//! failure while it does so leaves the source running, unfrozen, with its
//! heap, and nothing on B; a heap that moves arrives whole.

use crate::archive::export_import::{assert_cli_left_nothing, docker_names};
use crate::faults::kills::{memhog, start_memhog, SLOW};
use crate::migrate::moves::{assert_refused_by_runtime, spawn_migrate, wait_failed};
use crate::migrate::postcopy::{
    assert_a_heap_moves, assert_not_running_on, assert_source_runs_on, criu_daemon, pgrep, Throttle,
};
use crate::support::cmd::{run, wait_until};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::lazarus::{keygen, receive_root, Serve, B_HOST};
use std::process::Command;

/// memhog (1 GiB on the heavy legs) moves stop-copy to B and ticks on
/// there from the next tick with the same checksum of its whole heap:
/// every page went from A's dump to B's page server and into the restore.
#[test]
fn migrate_stopcopy_moves_a_heap_with_its_checksum() {
    assert_a_heap_moves("stopcopy", "migrate_push_heap");
}

/// memhog's heap, large enough that its push outlasts the kills below with
/// the link throttled.
const HEAP_MIB: u64 = 256;

/// While A's dump pushes memhog's heap to B (the link throttled so that
/// the push lasts):
/// 1. B's page server killed: A's dump fails, migrate says the container
///    runs on here, and it does, unfrozen, with its heap;
/// 2. A's CRIU killed: the same.
///
/// B keeps nothing either time.
#[test]
fn migrate_stopcopy_stream_failures_leave_the_source_running() {
    let a = Daemons::with_docker("migrate_push_a");
    let b = Daemons::with_docker_with("migrate_push_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = a.name("memhog");
    start_memhog(&a, &name, HEAP_MIB);
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &["--mode", "stopcopy"]);
    }
    let sum = memhog(&a, &name)[0].1.clone();
    let serve = Serve::start(&b, &key);
    let args = ["--mode", "stopcopy"];
    let pid = inspect(&a, &name, "{{.State.Pid}}");
    let dump_pattern = format!("criu: dump --rpc -t {pid}");
    let _throttle = Throttle::all(b.netns().unwrap().veth());

    for killed in ["B's page server", "A's CRIU"] {
        let mut migration = spawn_migrate(&a, &name, &serve.addr, &key, &args);
        let (server, _) = wait_until("B's page server", SLOW, || {
            criu_daemon(b.processes_named("criu"), "page-server")
        });
        let dump = wait_until("A's CRIU dump", SLOW, || pgrep(&dump_pattern));
        // Into the push itself: a CRIU killed while its parasite is being
        // put into the task leaves the task to die of the trap (CRIU's
        // own hazard, seen once in CI), which is not what this case is
        // about. Pages arriving on B mean the parasite is in and working:
        // a MiB of them, not the first bytes (B's page server, reached by
        // its tunnel before the freeze, may write before any page comes).
        wait_until("pages to arrive on B", SLOW, || {
            (bytes_under(&receive_root(&b), 4) > 1 << 20).then_some(())
        });
        let victim = match killed {
            "A's CRIU" => dump,
            _ => server,
        };
        run(Command::new("kill").args(["-9", &victim.to_string()])).ok();
        let stderr = wait_failed(&mut migration, SLOW);
        eprintln!("{killed} killed: {}", stderr.trim());
        assert!(stderr.contains("runs on here"), "{killed}: {stderr}");
        assert_source_runs_on(&a, &name, &sum);
        assert_not_running_on(&b, &name);
        assert!(docker_names(&b).is_empty(), "B kept a container");
        assert_cli_left_nothing(&a);
        wait_until("B's agent to clean up", SLOW, || {
            crate::archive::export_import::cli_leftovers(&b)
                .is_empty()
                .then_some(())
        });
    }
}

/// The bytes of the regular files under `dir`, `depth` levels down.
fn bytes_under(dir: &std::path::Path, depth: usize) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() && depth > 0 => bytes_under(&e.path(), depth - 1),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
