//! A Docker counter snapshotted five times while it runs, then reverted to
//! the 2nd, the 4th and the 1st (by tag), copied from the 3rd beside it,
//! the 3rd exported and imported on a second host; a snapshot killed
//! midway, a damaged block, and pruning down to an empty store. A
//! containerd (`ctr`) counter reverted in place too.
//!
//! Which snapshot came back is read off the counter: the count it resumes
//! from lies between the last tick seen before that snapshot was taken and
//! the last seen after it returned (snapshots are seconds apart, so the
//! ranges do not overlap).
//!
//! Under runc there is nothing to snapshot: the CLI refuses by runtime.

use crate::archive::export_import::{assert_cli_left_nothing, start_ctr_counter};
use crate::docker::lifecycle::{last_tick, run_sh_detached, wait_logs, wait_ticks_past};
use crate::support::cmd::{ticks, wait_until, Proc, COUNTER};
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::{
    dead_scratches_in_memory, lazarus, lazarus_cmd, live_scratches_in_memory, store_root,
};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// One snapshot of the series: its id and the counter's range around it.
struct Taken {
    id: String,
    before: u64,
    after: u64,
    added: u64,
}

fn take(d: &Daemons, name: &str, extra: &[&str]) -> Taken {
    let before = wait_ticks_past(d, name, last_tick(d, name) + 4);
    let mut args = vec!["snapshot", name, "--json"];
    args.extend_from_slice(extra);
    let out = lazarus(d, &args).ok();
    let after = last_tick(d, name);
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["frozen_seconds"].as_f64().unwrap() > 0.0, "{v:#}");
    let dump = v["dump"].as_str().unwrap();
    assert!(dump.contains("deduplicated"), "{v:#}");
    // The kind of dump follows the kernel: incremental ones after the
    // first where it tracks dirty memory, said missing where it does not.
    match dirty_tracking() {
        true => assert!(
            dump.starts_with("incremental dump") || dump.contains("tracks dirty memory"),
            "{v:#}"
        ),
        false => assert!(dump.contains("has no memory dirty tracking"), "{v:#}"),
    }
    Taken {
        id: v["id"].as_str().unwrap().to_string(),
        before,
        after,
        added: v["bytes_added"].as_u64().unwrap(),
    }
}

/// Whether this host's kernel tracks dirty memory for CRIU.
fn dirty_tracking() -> bool {
    std::process::Command::new("criu")
        .args(["check", "--feature", "mem_dirty_track"])
        .output()
        .expect("run criu")
        .status
        .success()
}

/// The container `name` on `d` resumed from snapshot `t`: its first tick
/// after the restore is one past a count `t` held.
fn assert_resumed_from(d: &Daemons, name: &str, t: &Taken, which: &str) {
    let logs = wait_logs(d, name, "ticks after the revert", |l| ticks(l).len() >= 2);
    let first = ticks(&logs)[0];
    assert!(
        first > t.before && first <= t.after + 2,
        "{name} must resume from the {which} snapshot ({}..={}), not {first}: {logs}",
        t.before,
        t.after
    );
}

fn revert(d: &Daemons, name: &str, key: &str) {
    let out = lazarus(d, &["restore", name, "--snapshot", key, "--yes"]).ok();
    assert!(out.stdout.contains(name), "{out}");
}

/// Every file and directory of the store private.
fn assert_store_private(d: &Daemons) {
    let root = store_root(d);
    for sub in ["", "packs", "snapshots", "tmp"] {
        let dir = root.join(sub);
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for e in fs::read_dir(&dir).unwrap().flatten() {
            let m = e.metadata().unwrap();
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(m.permissions().mode() & 0o777, want, "{:?}", e.path());
        }
    }
}

fn packs(d: &Daemons) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(store_root(d).join("packs"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .collect();
    v.sort();
    v
}

#[test]
fn a_series_of_snapshots_reverts_to_any_copies_exports_and_prunes() {
    let a = Daemons::with_docker("snap_series_a");
    let name = a.name("counter");
    // ~8 MiB of random text in the shell's heap: memory that does not
    // change between snapshots, so the later ones must add little.
    let script = format!("x=$(head -c 6000000 /dev/urandom | base64); {COUNTER}");
    run_sh_detached(&a, &name, &script);
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        let out = lazarus(&a, &["snapshot", &name]).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        let before = last_tick(&a, &name);
        wait_ticks_past(&a, &name, before + 2);
        return;
    }

    // Five snapshots while it runs, the first tagged.
    let mut series = vec![take(&a, &name, &["--tag", "first"])];
    a.docker(&["exec", &name, "sh", "-c", "echo new > /new.txt; rm /bin/vi"])
        .ok();
    for _ in 1..5 {
        series.push(take(&a, &name, &[]));
    }
    // An unchanged container (a counter in a shell) adds little.
    for t in &series[1..] {
        assert!(
            t.added * 10 <= series[0].added,
            "a later snapshot added {} bytes, the first {}",
            t.added,
            series[0].added
        );
    }
    assert_store_private(&a);
    let listed = lazarus(&a, &["snapshots", &name, "--json"]).ok();
    let v: Value = serde_json::from_str(&listed.stdout).unwrap();
    let ids: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    let want: Vec<&str> = series.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, want, "oldest first");
    assert_eq!(v["snapshots"][0]["tag"], "first");
    assert!(
        v["snapshots"][0]["processes"].to_string().contains("sh"),
        "{v:#}"
    );
    let table = lazarus(&a, &["snapshots"]).ok().stdout;
    assert!(
        table.contains(&series[2].id) && table.contains("first"),
        "{table}"
    );

    // What changed between the first two: the counter's memory, the file
    // the exec made and the one it deleted.
    let out = lazarus(&a, &["diff", "first", &series[1].id, "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["memory_changed_bytes"].as_u64().unwrap() >= 4096, "{v:#}");
    let mappings = v["memory"].to_string();
    assert!(
        mappings.contains("[heap]") || mappings.contains("[stack]"),
        "{v:#}"
    );
    assert!(
        v["files_added"].to_string().contains("\"new.txt\""),
        "{v:#}"
    );
    assert_eq!(v["files_deleted"], serde_json::json!(["/bin/vi"]), "{v:#}");
    let text = lazarus(&a, &["diff", "first", &series[1].id]).ok().stdout;
    assert!(
        text.contains("of memory changed") && text.contains("new.txt"),
        "{text}"
    );

    // In place, in any order; the container keeps its name and engine.
    revert(&a, &name, &series[1].id);
    assert_resumed_from(&a, &name, &series[1], "2nd");
    revert(&a, &name, &series[3].id[..6]);
    assert_resumed_from(&a, &name, &series[3], "4th");
    revert(&a, &name, "first");
    assert_resumed_from(&a, &name, &series[0], "1st");
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");

    // No terminal and no --yes: refused, the container untouched.
    let running_id = inspect(&a, &name, "{{.Id}}");
    let out = lazarus(&a, &["restore", &name, "--snapshot", &series[2].id]).err();
    assert_eq!(out.code, Some(4), "{out}");
    assert!(out.stderr.contains("--yes"), "{out}");
    assert_eq!(inspect(&a, &name, "{{.Id}}"), running_id);

    // A copy from the 3rd beside it.
    let copy = a.name("copy");
    lazarus(
        &a,
        &[
            "restore",
            &name,
            "--snapshot",
            &series[2].id,
            "--name",
            &copy,
        ],
    )
    .ok();
    assert_resumed_from(&a, &copy, &series[2], "3rd (copy)");
    assert_eq!(
        inspect(&a, &name, "{{.Id}}"),
        running_id,
        "the original stays"
    );

    // The 3rd as an archive, imported on another host.
    let file = a.path("third.tar.zst");
    let file_s = file.to_str().unwrap();
    lazarus(
        &a,
        &[
            "checkpoint",
            "--export",
            file_s,
            "--snapshot",
            &series[2].id,
        ],
    )
    .ok();
    // The 3rd as a checkpoint OCI image, named for its container.
    let image = a.path("third-image.tar");
    lazarus(
        &a,
        &[
            "checkpoint",
            "--export",
            &format!("oci-archive:{}", image.display()),
            "--snapshot",
            &series[2].id,
        ],
    )
    .ok();
    let raw = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            &format!("oci-archive:{}", image.display()),
        ])
        .output()
        .unwrap();
    let manifest: Value = serde_json::from_slice(&raw.stdout).unwrap();
    assert_eq!(
        manifest["annotations"]["org.criu.checkpoint.container.name"],
        name.as_str()
    );
    let b = Daemons::with_docker("snap_series_b");
    lazarus(&b, &["restore", "--import", file_s]).ok();
    assert_resumed_from(&b, &name, &series[2], "3rd (on host B)");
    // The 3rd and the 4th into B's store: the 4th shares the 3rd's blocks
    // there too, and restores from it.
    let fourth = a.path("fourth.tar.zst");
    let fourth_s = fourth.to_str().unwrap();
    lazarus(
        &a,
        &[
            "checkpoint",
            "--export",
            fourth_s,
            "--snapshot",
            &series[3].id,
        ],
    )
    .ok();
    let imported = |f: &str| -> Value {
        let out = lazarus(&b, &["snapshot", "import", f, "--json"]).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
    };
    let (third_b, fourth_b) = (imported(file_s), imported(fourth_s));
    assert_eq!(third_b["container"], name.as_str(), "{third_b:#}");
    let (t, f) = (
        third_b["bytes_added"].as_u64().unwrap(),
        fourth_b["bytes_added"].as_u64().unwrap(),
    );
    assert!(
        f * 10 <= t,
        "the 4th added {f} bytes to B's store, the 3rd {t}"
    );
    let copy_b = b.name("fourth");
    let id_b = fourth_b["id"].as_str().unwrap();
    lazarus(
        &b,
        &["restore", &name, "--snapshot", id_b, "--name", &copy_b],
    )
    .ok();
    assert_resumed_from(&b, &copy_b, &series[3], "4th (from B's store)");
    drop(b);

    // A snapshot killed midway: the container runs on, the store is as it
    // was (the next command removes the dead writer's directory, and the
    // dump it left in memory). Once early, once as soon as its writer is
    // in the store's tmp/ (a fixed delay there raced the snapshot's end
    // once the store got faster), once as soon as its dump is in memory.
    let packs_before = packs(&a);
    let within_a_minute = |what: &str, done: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    };
    for when in ["early", "writing", "dumping"] {
        let dumps_before = live_scratches_in_memory(&a, "snapshot");
        let snap = Proc::spawn(lazarus_cmd(&a).args(["snapshot", &name]));
        match when {
            "early" => std::thread::sleep(Duration::from_millis(300)),
            "writing" => {
                let tmp = store_root(&a).join("tmp");
                within_a_minute("the snapshot never began writing into the store", &|| {
                    fs::read_dir(&tmp).map_or(0, |d| d.count()) > 0
                });
            }
            _ => within_a_minute("the snapshot's dump never went into memory", &|| {
                live_scratches_in_memory(&a, "snapshot")
                    .iter()
                    .any(|d| !dumps_before.contains(d))
            }),
        }
        crate::support::cleanup::signal(&[snap.pid()], libc::SIGKILL);
        let _ = snap.wait_or_kill(Duration::from_secs(10));
        let now = last_tick(&a, &name);
        wait_ticks_past(&a, &name, now + 2);
        let listed = lazarus(&a, &["snapshots", &name, "--json"]).ok();
        let v: Value = serde_json::from_str(&listed.stdout).unwrap();
        assert_eq!(v["snapshots"].as_array().unwrap().len(), 5, "{v:#}");
        let tmp: Vec<_> = fs::read_dir(store_root(&a).join("tmp")).unwrap().collect();
        assert!(
            tmp.is_empty(),
            "a killed snapshot's writer was left: {tmp:?}"
        );
        assert_eq!(packs(&a), packs_before, "a killed snapshot left a pack");
        let dead = dead_scratches_in_memory(&a, "snapshot");
        assert!(
            dead.is_empty(),
            "a killed snapshot's dump stayed in memory: {dead:?}"
        );
    }
    assert_cli_left_nothing(&a);

    // A damaged block is refused by name at the revert, the container
    // untouched.
    // The largest pack: the first snapshot's, which holds the heap every
    // later one shares.
    let pack = packs(&a)
        .into_iter()
        .filter(|p| p.ends_with(".pack"))
        .max_by_key(|p| {
            fs::metadata(store_root(&a).join("packs").join(p))
                .unwrap()
                .len()
        })
        .unwrap();
    let path = store_root(&a).join("packs").join(&pack);
    let mut bytes = fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();
    let out = lazarus(&a, &["restore", &name, "--snapshot", "first", "--yes"]).err();
    let stem = pack.trim_end_matches(".pack");
    assert!(
        out.stderr.contains(stem) && out.stderr.contains("damaged"),
        "{out}"
    );
    assert_eq!(inspect(&a, &name, "{{.Id}}"), running_id);
    assert_cli_left_nothing(&a);
    bytes[mid] ^= 0xff;
    fs::write(&path, &bytes).unwrap();

    // Removal and pruning: blocks no snapshot uses go at once.
    lazarus(&a, &["snapshot", "rm", &series[1].id]).ok();
    let out = lazarus(&a, &["snapshots", "prune", "--keep", "1", "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["removed"].as_array().unwrap().len(), 2, "{v:#}");
    let listed = lazarus(&a, &["snapshots", "--json"]).ok();
    let v: Value = serde_json::from_str(&listed.stdout).unwrap();
    let left: Vec<&str> = v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        [series[0].id.as_str(), series[4].id.as_str()],
        "the tagged one and the newest"
    );
    lazarus(&a, &["snapshots", "prune", "--keep", "0", "--tagged-too"]).ok();
    assert!(
        packs(&a).is_empty(),
        "blocks left with no snapshot: {:?}",
        packs(&a)
    );
}

/// A containerd container (no Docker): snapshotted twice, reverted in
/// place to the first, its count read through an exec.
#[test]
fn a_containerd_container_reverts_in_place() {
    let d = Daemons::containerd_only("snap_ctr");
    let id = d.name("ctr-counter");
    let count = start_ctr_counter(&d, &id);
    if !d.is_lazarus() {
        let out = lazarus(&d, &["snapshot", &id, "-n", &d.id]).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        return;
    }
    let before = count(&d, "c1");
    lazarus(&d, &["snapshot", &id, "-n", &d.id, "--tag", "one"]).ok();
    let after = count(&d, "c2");
    wait_until("the count to move on", Duration::from_secs(20), || {
        (count(&d, "c3") > after + 30).then_some(())
    });
    lazarus(&d, &["snapshot", &id, "-n", &d.id]).ok();
    lazarus(&d, &["restore", &id, "--snapshot", "one", "--yes"]).ok();
    let resumed = wait_until("the reverted counter", Duration::from_secs(20), || {
        let n = count(&d, "c4");
        (n > 0).then_some(n)
    });
    assert!(
        resumed >= before && resumed <= after + 20,
        "must resume from {before}..={after}, not {resumed}"
    );
    assert_cli_left_nothing(&d);
}
