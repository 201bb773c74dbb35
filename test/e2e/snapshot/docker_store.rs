//! Store-backed Docker checkpoints (config `docker_checkpoints = "store"`):
//! `docker checkpoint create` leaves a reference where the pages were (they
//! stay in the host's snapshot store), `docker start --checkpoint`
//! resolves it, also typed back to back; a reference copied to a host
//! whose store lacks the snapshot is refused at once, naming `lazarus
//! checkpoint --export`; `docker checkpoint rm` and `docker rm` release the
//! snapshot at the next store-backed checkpoint's sweep.
//!
//! runc has no store: under runc each case checks that the setting leaves
//! Docker's checkpoint as it was (page images, no reference), says that
//! the rest is Lazarus's only, and ends.

use crate::checkpoint::apps::checkpoints_dir;
use crate::checkpoint::flows::{counter_checkpointed, wait_status};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::cmd::{ticks, COUNTER};
use crate::support::harness::{Daemons, Setup};
use crate::support::lazarus::{lazarus, store_root};
use std::fs;
use std::path::Path;

const REF_FILE: &str = "lazarus-store-ref.json";

/// A Docker set whose shims keep Docker's checkpoints in the set's store
/// (the same one its CLI reads).
fn store_backed(test: &str) -> Option<Daemons> {
    let setup = Setup {
        lazarus_config: Some(
            "docker_checkpoints = \"store\"\nstore_root = \"{SET_DIR}/lazarus-store\"\n".into(),
        ),
        ..Default::default()
    };
    let d = Daemons::with_docker_with(test, &setup);
    if !d.is_lazarus() {
        runc_keeps_its_pages(&d);
        eprintln!(
            "{test}: the rest is Lazarus's only: under {} the setting leaves Docker's \
             checkpoint as it was (checked), and there is no store to test",
            d.runtime()
        );
        return None;
    }
    Some(d)
}

/// The reference runtime under the same settings: its `docker checkpoint
/// create` holds its page images and no reference (the setting is read by
/// Lazarus's shim only).
fn runc_keeps_its_pages(d: &Daemons) {
    let name = d.name("c");
    counter_checkpointed(d, &name, COUNTER, 3, "cp1");
    let cp = checkpoints_dir(d, &name).join("cp1");
    let names: Vec<String> = fs::read_dir(&cp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("pages-")) && !names.iter().any(|n| n == REF_FILE),
        "{}'s checkpoint: {names:?}",
        d.runtime()
    );
}

/// The snapshot a Docker checkpoint's reference names; the checkpoint
/// holds no page image and is small.
fn referenced_snapshot(cp: &Path) -> String {
    let names: Vec<String> = fs::read_dir(cp)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !names.iter().any(|n| n.starts_with("pages-")),
        "page images in a store-backed checkpoint: {names:?}"
    );
    let r: serde_json::Value =
        serde_json::from_slice(&fs::read(cp.join(REF_FILE)).unwrap()).unwrap();
    r["snapshot"].as_str().unwrap().to_string()
}

fn stored_snapshots(d: &Daemons) -> Vec<String> {
    let out = lazarus(d, &["snapshots", "--json"]).ok();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let list = v.as_array().or_else(|| v["snapshots"].as_array()).unwrap();
    list.iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

fn assert_consecutive(all: &[u64]) {
    for (i, t) in all.iter().enumerate() {
        assert_eq!(*t, i as u64, "ticks are not one unbroken run: {all:?}");
    }
}

/// Checkpoint, then restore from the reference alone: the counter counts
/// on, and the store holds the pages (0600 files).
#[test]
fn store_backed_docker_checkpoint_restores_the_counter() {
    let Some(d) = store_backed("docker_store_cp") else {
        return;
    };
    let name = d.name("c");
    let last = counter_checkpointed(&d, &name, COUNTER, 3, "cp1");
    let cp = checkpoints_dir(&d, &name).join("cp1");
    let snapshot = referenced_snapshot(&cp);
    assert!(stored_snapshots(&d).contains(&snapshot));
    let size: u64 = fs::read_dir(&cp)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".img"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(size < 1 << 20, "CRIU's images without pages: {size} bytes");

    crate::checkpoint::flows::docker_start_checkpoint(&d, &name, "cp1", &[]);
    wait_ticks_past(&d, &name, last + 3);
    assert_consecutive(&ticks(&d.docker(&["logs", &name]).ok().stdout));
}

/// `docker checkpoint create` and at once `docker start --checkpoint`,
/// three rounds: each restores on the first try.
#[test]
fn store_backed_docker_checkpoint_typed_back_to_back() {
    let Some(d) = store_backed("docker_store_b2b") else {
        return;
    };
    let name = d.name("c");
    run_sh_detached(&d, &name, COUNTER);
    for round in 1..=3u64 {
        wait_ticks_past(&d, &name, round * 2);
        let cp = format!("cp{round}");
        d.docker(&["checkpoint", "create", &name, &cp]).ok();
        let out = d.docker(&["start", "--checkpoint", &cp, &name]);
        assert_eq!(out.code, Some(0), "round {round}: {out}");
        wait_status(&d, &name, "running");
    }
    let all = ticks(&d.docker(&["logs", &name]).ok().stdout);
    assert!(all.len() > 6, "{all:?}");
}

/// The checkpoint directory copied to a second host (its own Docker and
/// store): `docker start --checkpoint` fails at once, naming the export.
#[test]
fn a_copied_store_reference_is_refused_naming_the_export() {
    let Some(a) = store_backed("docker_store_copy_a") else {
        return;
    };
    let b = store_backed("docker_store_copy_b").unwrap();
    let name = a.name("c");
    let last = counter_checkpointed(&a, &name, COUNTER, 2, "cp");
    let snapshot = referenced_snapshot(&checkpoints_dir(&a, &name).join("cp"));
    // The same container on b, stopped, with a's checkpoint copied in.
    let mut args =
        crate::docker::lifecycle::docker_run_args(&b, &["--name", &name], &["sh", "-c", COUNTER]);
    args[0] = "create";
    b.docker(&args).ok();
    let dest = checkpoints_dir(&b, &name);
    fs::create_dir_all(&dest).unwrap();
    let ok = std::process::Command::new("cp")
        .arg("-a")
        .arg(checkpoints_dir(&a, &name).join("cp"))
        .arg(&dest)
        .status()
        .unwrap();
    assert!(ok.success());
    let started = std::time::Instant::now();
    let out = d_start(&b, &name, "cp");
    assert_ne!(out.code, Some(0), "{out}");
    let all = out.all();
    assert!(all.contains("lazarus checkpoint --export"), "{out}");
    assert!(all.contains(&snapshot), "{out}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "refused only after {:?}",
        started.elapsed()
    );
    assert!(
        fs::read_dir(store_root(&b).join("snapshots"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "b's store holds nothing"
    );

    // The way the refusal names: an archive of the Docker checkpoint,
    // pages read out of a's store, restored on b under another name.
    let file = a.path("cp.tar.zst");
    let file_s = file.to_str().unwrap();
    let export = [
        "checkpoint",
        "--export",
        file_s,
        &name,
        "--from-docker-checkpoint",
        "cp",
    ];
    lazarus(&a, &export).ok();
    let copy = b.name("copy");
    lazarus(&b, &["restore", "--import", file_s, "--name", &copy]).ok();
    let logs =
        crate::docker::lifecycle::wait_logs(&b, &copy, "ticks on b", |l| ticks(l).len() >= 2);
    assert!(ticks(&logs)[0] > last, "the count goes on on b: {logs}");
    // The store's snapshot itself is no archive.
    let out = lazarus(
        &a,
        &["checkpoint", "--export", file_s, "--snapshot", &snapshot],
    )
    .err();
    assert!(out.all().contains("--from-docker-checkpoint"), "{out}");
}

fn d_start(d: &Daemons, name: &str, cp: &str) -> crate::support::cmd::Out {
    d.docker(&["start", "--checkpoint", cp, name])
}

/// `docker checkpoint rm` releases a checkpoint's snapshot (at the next
/// store-backed checkpoint's sweep, once a sweep saw Docker hold it), and
/// so does `docker rm`; a checkpoint no sweep has seen held yet is kept
/// (the grace: Docker copies the reference only after the checkpoint).
#[test]
fn docker_checkpoint_rm_and_rm_release_the_store() {
    let Some(d) = store_backed("docker_store_release") else {
        return;
    };
    let name = d.name("c");
    let checkpoint = |cp: &str| {
        d.docker(&["checkpoint", "create", &name, cp]).ok();
        wait_status(&d, &name, "exited");
        referenced_snapshot(&checkpoints_dir(&d, &name).join(cp))
    };
    let start = |cp: &str| {
        crate::checkpoint::flows::docker_start_checkpoint(&d, &name, cp, &[]);
        wait_status(&d, &name, "running");
    };
    run_sh_detached(&d, &name, COUNTER);
    wait_ticks_past(&d, &name, 2);
    let s1 = checkpoint("cp1");
    start("cp1");
    let s2 = checkpoint("cp2"); // its sweep sees cp1 held
    d.docker(&["checkpoint", "rm", &name, "cp1"]).ok();
    start("cp2");
    let s3 = checkpoint("cp3"); // releases cp1, sees cp2 held
    let left = stored_snapshots(&d);
    assert!(!left.contains(&s1), "cp1 was removed: {left:?}");
    assert!(left.contains(&s2) && left.contains(&s3), "{left:?}");

    // `docker rm`: the next checkpoint (of another container) releases cp2.
    d.docker(&["rm", "-f", &name]).ok();
    let other = d.name("o");
    run_sh_detached(&d, &other, COUNTER);
    wait_ticks_past(&d, &other, 1);
    d.docker(&["checkpoint", "create", &other, "cpx"]).ok();
    let left = stored_snapshots(&d);
    assert!(!left.contains(&s2), "cp2 went with docker rm: {left:?}");
    assert!(
        left.contains(&s3),
        "cp3, never seen held, waits out the grace: {left:?}"
    );
}
