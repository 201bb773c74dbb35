//! Portable checkpoints between two "hosts": two private daemon sets, each
//! with its own containerd, dockerd, roots and sockets, the images loaded
//! on both. `lazarus checkpoint --export` on host A, `lazarus restore
//! --import` on host B, found as docker and ctr find them (DOCKER_HOST,
//! CONTAINERD_ADDRESS). Bad archives are refused with nothing left behind.
//!
//! Under runc there is nothing to export: the CLI must refuse a runc
//! container by name, and leave it running.

use crate::checkpoint::apps::{
    checkpoints_dir, load_keys, redis_cli, run_redis, sample, seed, KEYS,
};
use crate::checkpoint::flows::docker_try_start_checkpoint;
use crate::containerd::ctr::{exec, run_detached, task_status, wait_status};
use crate::docker::lifecycle::{run_sh_detached, wait_logs, wait_ticks_past};
use crate::support::apps::{with_docker_and, App};
use crate::support::cmd::{poll, run, ticks, wait_until, COUNTER};
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::lazarus::{lazarus, memory_root, receive_root, work_root};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// Nothing of the CLI's left on `d`: no scratch directory, no mount.
pub fn assert_cli_left_nothing(d: &Daemons) {
    let left = cli_leftovers(d);
    assert!(left.is_empty(), "left by the CLI: {left:?}");
}

/// The CLI's scratch directories and mounts under `d`'s work root and
/// memory root.
pub fn cli_leftovers(d: &Daemons) -> Vec<String> {
    let scratch = work_root(d).join("work");
    let mut left: Vec<String> = [scratch, receive_root(d), memory_root(d)]
        .iter()
        .flat_map(|dir| fs::read_dir(dir).into_iter().flatten().flatten())
        .filter(|e| e.file_name() != "serve.lock")
        .map(|e| e.path().display().to_string())
        .collect();
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap();
    for root in [work_root(d), memory_root(d)] {
        let root = root.to_str().unwrap().to_string();
        left.extend(
            mounts
                .lines()
                .filter(|l| l.contains(&root))
                .map(|l| format!("mount {l}")),
        );
    }
    left
}

/// The restored counter `name` on `d` counts on from `last` (its first tick
/// there within 3 of it), not from 0.
pub fn assert_counts_on(d: &Daemons, name: &str, last: u64) {
    let logs = wait_logs(d, name, "ticks after the restore", |l| ticks(l).len() >= 3);
    let after = ticks(&logs);
    assert!(
        after[0] > last && after[0] <= last + 3,
        "the count must go on from {last}, not start again: {after:?}"
    );
}

/// Starts `id` on `d` with `ctr run`: it writes `/made.txt`, then counts in
/// `/count` every 0.2 s; returns once it counts, with the reader of the
/// count of `id` on a host (through an exec of the given id).
pub fn start_ctr_counter(d: &Daemons, id: &str) -> impl Fn(&Daemons, &str) -> u64 {
    let script =
        "echo made > /made.txt; i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.2; done";
    run_detached(d, id, &["sh", "-c", script]);
    let id = id.to_string();
    let count = move |d: &Daemons, exec_id: &str| -> u64 {
        let out = exec(d, &id, exec_id, &["cat", "/count"]);
        out.stdout.trim().parse().unwrap_or(0)
    };
    wait_until("the counter to count", Duration::from_secs(20), || {
        (count(d, "c0") > 2).then_some(())
    });
    count
}

pub fn docker_names(d: &Daemons) -> Vec<String> {
    let out = d.docker(&["ps", "-a", "--format", "{{.Names}}"]).ok();
    out.stdout.lines().map(str::to_string).collect()
}

/// Under runc the CLI refuses, naming the runtime, and the container runs
/// on, unfrozen (its counter keeps counting).
fn assert_runc_refused(d: &Daemons, name: &str, args: &[&str], ticking: bool) {
    let out = lazarus(d, args).err();
    assert!(
        out.stderr.contains("io.containerd.runc.v2") && out.stderr.contains("not Lazarus"),
        "runc's container must be refused by runtime: {out}"
    );
    if ticking {
        let before = *ticks(&d.docker(&["logs", name]).ok().stdout)
            .last()
            .unwrap();
        wait_ticks_past(d, name, before + 2);
    }
    assert_cli_left_nothing(d);
}

/// A counter that also changed its root filesystem (added, modified,
/// deleted files) leaves host A as one archive and counts on on host B,
/// its files there; the restored container is an ordinary Docker container
/// (exec, a second checkpoint); the same archive restored twice more gives
/// two more independent containers.
#[test]
fn archive_moves_a_counter_and_its_files_to_another_host() {
    let a = Daemons::with_docker("archive_counter_a");
    let b = Daemons::with_docker("archive_counter_b");
    let name = a.name("counter");
    let script = format!(
        "echo made > /made.txt; echo extra >> /etc/group; rm /bin/vi; mkdir -p /var/data; \
         echo deep > /var/data/f; {COUNTER}"
    );
    run_sh_detached(&a, &name, &script);
    wait_ticks_past(&a, &name, 3);
    let file = a.path("counter.tar.zst");
    let file_s = file.to_str().unwrap();
    if a.runtime() != LAZARUS {
        assert_runc_refused(&a, &name, &["checkpoint", &name, "--export", file_s], true);
        assert!(!file.exists(), "an archive was written for runc");
        return;
    }

    let out = lazarus(&a, &["checkpoint", &name, "--export", file_s, "--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["engine"], "docker", "{v:#}");
    assert_eq!(v["stopped"], true, "{v:#}");
    assert!(v["pages_bytes"].as_u64().unwrap() > 0, "{v:#}");
    let mode = fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the archive holds memory: 0600");
    // Stopped, as podman container checkpoint does by default.
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "false");
    let last = *ticks(&a.docker(&["logs", &name]).ok().stdout)
        .last()
        .unwrap();
    assert_cli_left_nothing(&a);

    // What the archive holds, as checkpointctl would show it.
    let text = lazarus(&b, &["inspect", file_s]).ok().stdout;
    for want in [
        name.as_str(),
        "lazarus-test/busybox",
        "docker",
        "Rootfs diff",
        "sh",
    ] {
        assert!(text.contains(want), "inspect lacks {want:?}:\n{text}");
    }
    let json = lazarus(&b, &["inspect", "--json", file_s]).ok();
    let v: Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v["archive"]["config"]["name"], name.as_str(), "{v:#}");
    assert!(
        v["archive"]["deleted_files"].as_u64().unwrap() >= 1,
        "{v:#}"
    );

    let restored = lazarus(&b, &["restore", "--import", file_s]).ok();
    assert_eq!(restored.text(), name, "restore prints the container's name");
    // Its last stage ("ready") looked: the container runs.
    assert!(restored.stderr.contains("; it runs"), "{restored}");
    assert_counts_on(&b, &name, last);
    let files = b
        .docker(&[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /made.txt /var/data/f; grep -c extra /etc/group; test ! -e /bin/vi && echo vi-gone",
        ])
        .ok();
    assert_eq!(files.stdout, "made\ndeep\n1\nvi-gone\n", "{files}");
    assert_eq!(inspect(&b, &name, "{{.HostConfig.Runtime}}"), LAZARUS);
    // Restored at its first plain start from the extracted images, handed
    // over by annotation: no Docker checkpoint was made for it.
    let handed = inspect(
        &b,
        &name,
        "{{index .HostConfig.Annotations \"io.lazarus.import.images\"}}",
    );
    assert!(
        handed.starts_with('/'),
        "no hand-off annotation: {handed:?}"
    );
    let listed = b.docker(&["checkpoint", "ls", &name]).ok().stdout;
    assert_eq!(
        listed.lines().count(),
        1,
        "a Docker checkpoint was made: {listed}"
    );

    // An ordinary container now: checkpointed and restored again by Docker.
    b.docker(&["checkpoint", "create", &name, "again"]).ok();
    let before = *ticks(&b.docker(&["logs", &name]).ok().stdout)
        .last()
        .unwrap();
    docker_try_start_checkpoint(&b, &name, "again", &[]).ok();
    let restored_at = wait_ticks_past(&b, &name, before + 2);
    // Stopped and started plainly, it runs afresh (its spent hand-off
    // restores nothing), as a container once restored by Docker does.
    b.docker(&["stop", "-t", "1", &name]).ok();
    b.docker(&["start", &name]).ok();
    let fresh = wait_logs(&b, &name, "a fresh count", |l| {
        let t = ticks(l);
        t.windows(2).any(|w| w[1] < w[0]) && t.last().is_some_and(|&n| n >= 2)
    });
    assert!(
        *ticks(&fresh).last().unwrap() < restored_at,
        "not a fresh start: {fresh}"
    );

    // The same archive twice more: independent containers, each counting.
    for n in ["second", "third"] {
        let other = b.name(n);
        lazarus(&b, &["restore", "--import", file_s, "--name", &other]).ok();
        wait_ticks_past(&b, &other, last + 2);
    }
    let ids: std::collections::BTreeSet<String> = docker_names(&b)
        .iter()
        .map(|n| inspect(&b, n, "{{.Id}}"))
        .collect();
    assert_eq!(ids.len(), 3, "three restored containers");
    assert_cli_left_nothing(&b);
    for n in docker_names(&b) {
        b.docker(&["rm", "-f", &n]).ok();
    }
}

/// Repacks an archive's entries with its manifest's format raised, as a
/// newer Lazarus would write it.
fn newer_format(file: &Path, out: &Path) {
    let dir = out.with_extension("d");
    fs::create_dir(&dir).unwrap();
    run(Command::new("tar").arg("-C").arg(&dir).arg("-xf").arg(file)).ok();
    let manifest = dir.join("lazarus-manifest.json");
    let mut v: Value = serde_json::from_slice(&fs::read(&manifest).unwrap()).unwrap();
    v["format"] = 999.into();
    fs::write(&manifest, serde_json::to_vec(&v).unwrap()).unwrap();
    let mut names = vec!["lazarus-manifest.json".to_string()];
    for e in fs::read_dir(&dir).unwrap().flatten() {
        let n = e.file_name().into_string().unwrap();
        if n != "lazarus-manifest.json" {
            names.push(n);
        }
    }
    run(Command::new("tar")
        .arg("-C")
        .arg(&dir)
        .arg("-cf")
        .arg(out)
        .args(&names))
    .ok();
}

/// Truncated, a flipped byte, a newer format, not an archive at all, and an
/// archive whose image host B does not have: each refused with a message
/// that says what is wrong, and nothing created on B.
#[test]
fn archive_bad_inputs_are_refused_and_leave_nothing() {
    let a = Daemons::with_docker("archive_bad_a");
    let b = Daemons::with_docker("archive_bad_b");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 2);

    let not_archive = b.path("not-an-archive.tar");
    fs::write(&not_archive, b"hello").unwrap();
    let mut cases: Vec<(PathBuf, &str)> = vec![(not_archive, "not a Lazarus checkpoint archive")];
    if a.runtime() == LAZARUS {
        let good = a.path("good.tar.zst");
        lazarus(
            &a,
            &["checkpoint", &name, "--export", good.to_str().unwrap()],
        )
        .ok();
        let bytes = fs::read(&good).unwrap();
        let truncated = b.path("truncated.tar.zst");
        fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
        let flipped = b.path("flipped.tar.zst");
        let mut f = bytes.clone();
        let at = f.len() / 2;
        f[at] ^= 0x40;
        fs::write(&flipped, &f).unwrap();
        // An uncompressed archive of a second counter (the export stopped
        // the first), repacked as a newer format.
        let second = a.name("second");
        run_sh_detached(&a, &second, COUNTER);
        wait_ticks_past(&a, &second, 2);
        let uncompressed = a.path("uncompressed.tar");
        let u = uncompressed.to_str().unwrap();
        lazarus(
            &a,
            &["checkpoint", &second, "--export", u, "--compress", "none"],
        )
        .ok();
        let newer = b.path("newer.tar");
        newer_format(&uncompressed, &newer);
        cases.extend([
            (truncated.clone(), "truncated or corrupt"),
            (flipped, "corrupt"),
            (newer, "format 999"),
        ]);
        assert_refused(&b, &cases);
        // What would refuse the archive anyway is said before it is
        // verified (a damaged archive is then refused for that, not for
        // its damage): the name taken on B...
        b.docker(&["create", "--name", &name, IMAGE_DOCKER, "true"])
            .ok();
        let taken = lazarus(&b, &["restore", "--import", truncated.to_str().unwrap()]).err();
        assert!(
            taken
                .stderr
                .contains(&format!("a container named {name} already exists")),
            "{taken}"
        );
        b.docker(&["rm", &name]).ok();
        // ... and the image missing on B: named, with what to do.
        b.docker(&["rmi", IMAGE_DOCKER]).ok();
        cases = vec![
            (
                good,
                "is not on this host: docker pull lazarus-test/busybox",
            ),
            (
                truncated,
                "is not on this host: docker pull lazarus-test/busybox",
            ),
        ];
    } else {
        assert_runc_refused(
            &a,
            &name,
            &[
                "checkpoint",
                &name,
                "--export",
                a.path("x").to_str().unwrap(),
            ],
            true,
        );
    }
    assert_refused(&b, &cases);
}

/// Each archive is refused on `b` with an error that says `want`, and
/// nothing is left there.
fn assert_refused(b: &Daemons, cases: &[(PathBuf, &str)]) {
    for (file, want) in cases {
        let out = lazarus(b, &["restore", "--import", file.to_str().unwrap()]).err();
        assert!(
            out.stderr.contains(want),
            "{}: want {want:?} in the error: {out}",
            file.display()
        );
        assert!(docker_names(b).is_empty(), "a container was left on B");
        assert_cli_left_nothing(b);
    }
}

/// Redis with 100k keys moves between hosts: every key there after the
/// import, the values a random sample read back identical.
#[test]
fn archive_moves_redis_with_its_keys() {
    let a = with_docker_and("archive_redis_a", &[App::Redis]);
    let name = a.name("redis");
    run_redis(&a, &name, &[]);
    let s = seed();
    load_keys(&a, &name, s);
    let file = a.path("redis.tar.zst");
    let file_s = file.to_str().unwrap();
    if a.runtime() != LAZARUS {
        assert_runc_refused(&a, &name, &["checkpoint", &name, "--export", file_s], false);
        assert_eq!(
            redis_cli(&a, &name, &["DBSIZE"]).ok().text(),
            KEYS.to_string()
        );
        return;
    }
    let before = sample(&a, &name, s).ok().stdout;
    lazarus(&a, &["checkpoint", &name, "--export", file_s]).ok();
    let b = with_docker_and("archive_redis_b", &[App::Redis]);
    lazarus(&b, &["restore", "--import", file_s]).ok();
    let size = poll(Duration::from_secs(30), || {
        let out = redis_cli(&b, &name, &["DBSIZE"]);
        (out.code == Some(0)).then(|| out.stdout.trim().to_string())
    })
    .unwrap_or_else(|| panic!("restored redis does not answer"));
    assert_eq!(size, KEYS.to_string());
    assert_eq!(sample(&b, &name, s).ok().stdout, before, "values differ");
    assert_cli_left_nothing(&b);
}

/// A container of containerd alone (ctr, no Docker) moves the same way,
/// restored through containerd's API into host B's namespace.
#[test]
fn archive_moves_a_ctr_container_between_containerd_hosts() {
    let a = Daemons::containerd_only("archive_ctr_a");
    let b = Daemons::containerd_only("archive_ctr_b");
    let id = a.name("c");
    let count = start_ctr_counter(&a, &id);
    let file = a.path("c.tar");
    let file_s = file.to_str().unwrap();
    let args = ["checkpoint", "--namespace", &a.id, &id, "--export", file_s];
    if a.runtime() != LAZARUS {
        let out = lazarus(&a, &args).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        assert_eq!(task_status(&a, &id).as_deref(), Some("RUNNING"));
        return;
    }
    lazarus(&a, &args).ok();
    wait_status(&a, &id, "STOPPED");
    let last = count(&a, "c1");
    let out = lazarus(
        &b,
        &[
            "restore",
            "--import",
            file_s,
            "--namespace",
            &b.id,
            "--json",
        ],
    )
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(v["engine"], "containerd", "{v:#}");
    wait_status(&b, &id, "RUNNING");
    wait_until("the count to go on on B", Duration::from_secs(20), || {
        (count(&b, "b0") > last + 2).then_some(())
    });
    let made = exec(&b, &id, "b1", &["cat", "/made.txt"]).ok();
    assert_eq!(made.stdout, "made\n");
    assert_cli_left_nothing(&b);
}

/// Docker's own path into a new container (`docker checkpoint create`, the
/// checkpoint copied into a new container's checkpoints, `docker start
/// --checkpoint`): with Lazarus the new container gets the checkpointed
/// one's root filesystem changes too (the shim saves them with the dump);
/// with runc it gets the image's files only. Then Lazarus exports Docker's
/// checkpoint as it is (`--from-docker-checkpoint`) and host B restores it.
#[test]
fn docker_checkpoint_into_a_new_container_carries_the_files() {
    let a = Daemons::with_docker("archive_docker_cp_a");
    let name = a.name("counter");
    let script = format!("echo made > /made.txt; rm /bin/vi; {COUNTER}");
    run_sh_detached(&a, &name, &script);
    wait_ticks_past(&a, &name, 3);
    a.docker(&["checkpoint", "create", &name, "cp"]).ok();
    let last = *ticks(&a.docker(&["logs", &name]).ok().stdout)
        .last()
        .unwrap();

    let new = a.name("new");
    let cmd = ["sh", "-c", script.as_str()];
    let mut create = vec![
        "create",
        "--runtime",
        a.runtime(),
        "--name",
        &new,
        IMAGE_DOCKER,
    ];
    create.extend_from_slice(&cmd);
    a.docker(&create).ok();
    let dir = checkpoints_dir(&a, &new);
    fs::create_dir_all(&dir).unwrap();
    let from = checkpoints_dir(&a, &name).join("cp");
    run(Command::new("cp").arg("-a").arg(&from).arg(&dir)).ok();
    docker_try_start_checkpoint(&a, &new, "cp", &[]).ok();
    let logs = wait_logs(&a, &new, "ticks after the restore", |l| ticks(l).len() >= 2);
    assert!(ticks(&logs)[0] > last, "the count goes on: {logs}");
    let files = a
        .docker(&[
            "exec",
            &new,
            "sh",
            "-c",
            "cat /made.txt; test -e /bin/vi && echo vi-there",
        ])
        .stdout;
    if a.runtime() != LAZARUS {
        // runc restores the processes into the image's files only.
        assert_eq!(files, "vi-there\n", "runc carried files after all?");
        return;
    }
    assert_eq!(files, "made\n", "the new container has the changes");

    let b = Daemons::with_docker("archive_docker_cp_b");
    let file = a.path("from-docker.tar.zst");
    let file_s = file.to_str().unwrap();
    let args = [
        "checkpoint",
        &name,
        "--export",
        file_s,
        "--from-docker-checkpoint",
        "cp",
    ];
    lazarus(&a, &args).ok();
    lazarus(&b, &["restore", "--import", file_s]).ok();
    let logs = wait_logs(&b, &name, "ticks on B", |l| ticks(l).len() >= 2);
    assert!(ticks(&logs)[0] > last, "the count goes on on B: {logs}");
    let files = b.docker(&["exec", &name, "sh", "-c", "cat /made.txt; ls /bin/vi"]);
    assert_eq!(files.stdout, "made\n", "{files}");
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
}
