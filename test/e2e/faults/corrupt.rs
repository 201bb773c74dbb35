//! Damaged checkpoints at restore: a Docker checkpoint directory (under the
//! daemon set's data root) edited before `docker start --checkpoint`. Each
//! is refused with a message naming the problem, nothing starts and nothing
//! is left behind, and the container still restores from a good one.
//! runc has no lazarus.json: against it only the inventory.img case applies.

use crate::checkpoint::flows::{docker_start_checkpoint, docker_try_start_checkpoint, wait_status};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::cmd::{poll, ticks, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::leaks::{assert_no_leaks, assert_running_unfrozen, Container};
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// One way to damage a checkpoint, and what the refusal must say (Lazarus;
/// runc's words in `runc`, `None` where the case does not apply to runc).
struct Damage {
    name: &'static str,
    apply: fn(&Path),
    lazarus: &'static [&'static str],
    runc: Option<&'static [&'static str]>,
}

fn remove(dir: &Path, file: &str) {
    fs::remove_file(dir.join(file)).unwrap_or_else(|e| panic!("remove {file}: {e}"));
}

fn set_format(dir: &Path, format: u64) {
    let path = dir.join("lazarus.json");
    let mut meta: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
    meta["format"] = format.into();
    fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
}

/// Cuts every compressed page image to half: the restore must refuse it
/// by name before CRIU reads anything.
fn cut_compressed_pages(dir: &Path) {
    let mut cut = 0;
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("pages-") && name.ends_with(".img.zst") {
            let len = entry.metadata().unwrap().len();
            let f = fs::OpenOptions::new()
                .write(true)
                .open(entry.path())
                .unwrap();
            f.set_len(len / 2).unwrap();
            cut += 1;
        }
    }
    assert!(cut > 0, "no compressed page image in {}", dir.display());
}

const DAMAGES: &[Damage] = &[
    Damage {
        name: "no-inventory",
        apply: |dir| remove(dir, "inventory.img"),
        lazarus: &["inventory.img", "is missing"],
        runc: Some(&["criu failed"]),
    },
    Damage {
        name: "garbage-metadata",
        apply: |dir| fs::write(dir.join("lazarus.json"), b"\x00garbage{").unwrap(),
        lazarus: &["invalid", "lazarus.json"],
        runc: None,
    },
    Damage {
        name: "no-metadata",
        apply: |dir| remove(dir, "lazarus.json"),
        lazarus: &["not a complete Lazarus checkpoint", "lazarus.json"],
        runc: None,
    },
    Damage {
        name: "future-format",
        apply: |dir| set_format(dir, 99),
        lazarus: &["format 99", "reads format 1"],
        runc: None,
    },
    Damage {
        name: "cut-compressed-pages",
        apply: cut_compressed_pages,
        lazarus: &["pages-", ".img.zst is damaged", "cannot be restored"],
        runc: None,
    },
];

#[test]
fn fault_corrupt_checkpoints_are_refused() {
    let started = Instant::now();
    let d = Daemons::with_docker("fault_corrupt");
    let name = d.name("c");
    run_sh_detached(&d, &name, COUNTER);
    wait_ticks_past(&d, &name, 2);
    let c = Container::docker(&d, &name);
    d.docker(&["checkpoint", "create", &name, "good"]).ok();
    wait_status(&d, &name, "exited");
    let logs = || d.docker(&["logs", &name]).ok().stdout;
    let last = *ticks(&logs()).last().unwrap();
    let checkpoints = d
        .path("docker/containers")
        .join(inspect(&d, &name, "{{.Id}}"))
        .join("checkpoints");

    let mut restores = 0;
    for damage in DAMAGES {
        let words = match d.runtime() {
            LAZARUS => damage.lazarus,
            _ => match damage.runc {
                Some(w) => w,
                None => continue,
            },
        };
        let bad = checkpoints.join(damage.name);
        let cp = std::process::Command::new("cp")
            .arg("-a")
            .arg(checkpoints.join("good"))
            .arg(&bad)
            .status()
            .unwrap();
        assert!(cp.success());
        (damage.apply)(&bad);
        let out = docker_try_start_checkpoint(&d, &name, damage.name, &[]);
        assert_ne!(out.code, Some(0), "{}: must not start: {out}", damage.name);
        for w in words {
            assert!(
                out.all().contains(w),
                "{}: the error should say {w:?}: {out}",
                damage.name
            );
        }
        restores += 1;
        wait_status(&d, &name, "exited");
        // Nothing of the failed start is left: no process, cgroup, mount,
        // shim or runtime state of the container.
        assert_no_leaks(&d, &[&c], restores);
        let now = ticks(&logs());
        assert_eq!(
            now.last(),
            Some(&last),
            "{}: output after a refusal",
            damage.name
        );
        eprintln!("{}: refused: {}", damage.name, out.stderr.trim());
    }

    // The good checkpoint still restores: the counter runs on unbroken.
    docker_start_checkpoint(&d, &name, "good", &[]);
    wait_ticks_past(&d, &name, last + 3);
    let all = ticks(&logs());
    for (i, t) in all.iter().enumerate() {
        assert_eq!(*t, i as u64, "ticks are not one unbroken run: {all:?}");
    }
    assert_running_unfrozen(&d, &c);
    d.docker(&["rm", "-f", &name]).ok();
    let gone = poll(Duration::from_secs(10), || {
        (!d.docker(&["ps", "-a", "-q"])
            .ok()
            .stdout
            .contains(&c.id[..12]))
        .then_some(())
    });
    assert!(gone.is_some(), "{name} still listed");
    assert_no_leaks(&d, &[&c], restores + 1);
    eprintln!(
        "fault_corrupt_checkpoints_are_refused: {:?}",
        started.elapsed()
    );
}
