//! Kubernetes' checkpoint and restore through containerd's CRI (KEP-2008):
//! a pod with RuntimeClass handler `lazarus` (`runc` on the reference
//! legs), `CheckpointContainer` to an archive while the container runs on,
//! then a new container created from that archive in a new pod, which
//! restores and continues with its state. containerd 2.1 does both halves;
//! 1.7 has no CheckpointContainer, and the tests assert its refusal there.

use crate::support::cmd::{poll, wait_until};
use crate::support::cri::CriHost;
use crate::support::lazarus::lazarus;
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::Duration;

pub(crate) const COUNTER: &str =
    "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.2; done";

pub(crate) fn count(h: &CriHost, id: &str) -> Option<u64> {
    let out = h.exec(id, &["cat", "/count"]);
    if out.code != Some(0) {
        return None;
    }
    out.stdout.trim().parse().ok()
}

/// The counter's value now. The shell rewrites `/count` in place (truncate,
/// then write), so one `cat` can land between the two and read nothing:
/// a torn read is retried, a counter that never answers fails the test.
pub(crate) fn current_count(h: &CriHost, id: &str) -> u64 {
    wait_until(
        &format!("{id}'s counter to answer"),
        Duration::from_secs(10),
        || count(h, id),
    )
}

/// The counter's value once it has reached `at_least`.
pub(crate) fn wait_count(h: &CriHost, id: &str, at_least: u64) -> u64 {
    wait_until(
        &format!("{id} to count to {at_least}"),
        Duration::from_secs(60),
        || count(h, id).filter(|&n| n >= at_least),
    )
}

/// Asserts the counter `id` moves on from `from` within a few seconds.
fn assert_counts_on(h: &CriHost, id: &str, from: u64) {
    let next = poll(Duration::from_secs(10), || {
        count(h, id).filter(|&n| n > from)
    });
    assert!(
        next.is_some(),
        "{id} stopped counting at {from} ({:?})",
        h.inspect(id)
    );
}

/// containerd 1.7: CheckpointContainer is refused as unimplemented, and
/// the container runs on untouched.
fn assert_refused_by_containerd_1_7(h: &CriHost, id: &str, archive: &Path) {
    let out = h.checkpoint(id, archive).err();
    assert!(
        out.all().contains("Unimplemented"),
        "want containerd 1.7's Unimplemented: {out}"
    );
    assert!(!archive.exists(), "1.7 left an archive");
    let now = current_count(h, id);
    assert_counts_on(h, id, now);
}

/// The archive's member names (`tar -tf`).
fn archive_names(archive: &Path) -> Vec<String> {
    let out = Command::new("tar")
        .arg("-tf")
        .arg(archive)
        .output()
        .expect("tar");
    assert!(out.status.success(), "tar -tf {}", archive.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .collect()
}

/// Checks what CheckpointContainer wrote: 0600, Podman/CRI layout, and
/// (for Lazarus) the shim's own images inside `checkpoint/`.
fn assert_archive(h: &CriHost, archive: &Path) {
    let mode = fs::metadata(archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "archive mode {mode:o}");
    let names = archive_names(archive);
    for want in [
        "spec.dump",
        "config.dump",
        "status.dump",
        "checkpoint/inventory.img",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    if h.d.is_lazarus() {
        assert!(
            names.iter().any(|n| n == "checkpoint/lazarus.json"),
            "the archive's images were not written by Lazarus: {names:?}"
        );
    }
}

/// The pod spec's RuntimeDefault seccomp profile reaches processes started
/// by ExecSync, as cri-tools' critest seccomp specs check: the exec'd
/// process has a filter (`Seccomp: 2`, as the container's own) and
/// `unshare -U`, which the default profile blocks, fails; on Lazarus as on
/// runc.
#[test]
fn cri_exec_runs_under_the_runtime_default_seccomp_profile() {
    let h = CriHost::start("cri_seccomp");
    let pod = h.run_pod("seccomp");
    let flags = ["--seccomp", "runtime/default"];
    let c = h.create_with(&pod, "sec", &h.image("busybox"), &flags, &["sleep", "600"]);
    h.start_container(&c);
    let status = h.exec(&c, &["grep", "Seccomp:", "/proc/self/status"]).ok();
    assert_eq!(
        status.stdout.split_whitespace().collect::<Vec<_>>(),
        ["Seccomp:", "2"],
        "the exec'd process has no seccomp filter: {status}"
    );
    let unshare = h.exec(&c, &["unshare", "-U", "true"]);
    assert_ne!(
        unshare.code,
        Some(0),
        "unshare -U succeeded in an exec'd process under runtime/default: {unshare}"
    );
}

#[test]
fn cri_checkpoint_and_restore_a_counter_into_a_new_pod() {
    let h = CriHost::start("cri_counter");
    let pod = h.run_pod("counter-a");
    let original = h.create(&pod, "counter", &h.image("busybox"), &["sh", "-c", COUNTER]);
    h.start_container(&original);
    assert_eq!(h.runtime_of(&original), h.d.runtime());
    // 30 ticks (6 s): a restore that silently started the program afresh
    // could not be back at this count in the second it is given below.
    let before = wait_count(&h, &original, 30);
    let archive = h.d.path("counter.tar");
    if !h.can_checkpoint() {
        assert_refused_by_containerd_1_7(&h, &original, &archive);
        return;
    }
    h.checkpoint(&original, &archive).ok();
    assert_archive(&h, &archive);
    // Kubernetes' checkpoint is forensic: the container runs on.
    assert_eq!(h.state(&original), "CONTAINER_RUNNING");
    assert_counts_on(&h, &original, before);

    let pod2 = h.run_pod("counter-b");
    let restored = h.create(&pod2, "counter", archive.to_str().unwrap(), &[]);
    h.start_container(&restored);
    assert_eq!(h.state(&restored), "CONTAINER_RUNNING");
    assert_eq!(h.runtime_of(&restored), h.d.runtime());
    let first = current_count(&h, &restored);
    assert!(
        first >= before,
        "the restored counter is at {first}, below {before} before the checkpoint: \
         it was started afresh, not restored"
    );
    assert_counts_on(&h, &restored, first);
    // One shim per pod (its sandbox and its container), as runc's shim.
    assert_eq!(
        h.d.shim_pids().len(),
        2,
        "two pods, want two shims: {:?}",
        h.d.shim_pids()
    );
    // Two independent copies now: stopping the original leaves the other.
    h.cri(&["stop", &original]).ok();
    thread::sleep(Duration::from_millis(500));
    let now = current_count(&h, &restored);
    assert_counts_on(&h, &restored, now);
}

#[test]
fn cri_restores_redis_with_its_keys_into_a_new_pod() {
    let h = CriHost::start("cri_redis");
    let pod = h.run_pod("redis-a");
    let original = h.create(&pod, "redis", &h.image("redis"), &[]);
    h.start_container(&original);
    let cli = |id: &str, args: &[&str]| {
        let mut cmd = vec!["redis-cli"];
        cmd.extend(args);
        h.exec(id, &cmd)
    };
    wait_until("redis to answer", Duration::from_secs(30), || {
        (cli(&original, &["ping"]).text() == "PONG").then_some(())
    });
    // 100,000 real SETs in Redis's protocol, generated in the container.
    let load = r#"awk 'BEGIN { for (i = 0; i < 100000; i++) { k = "key:" i; v = "val:" i;
        printf "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", length(k), k, length(v), v } }' |
        redis-cli --pipe"#;
    let out = h.exec(&original, &["sh", "-c", load]).ok();
    assert!(out.stdout.contains("errors: 0, replies: 100000"), "{out}");
    cli(&original, &["set", "marker", "kept-across-pods"]).ok();
    assert_eq!(cli(&original, &["dbsize"]).ok().text(), "100001");
    let archive = h.d.path("redis.tar");
    if !h.can_checkpoint() {
        let out = h.checkpoint(&original, &archive).err();
        assert!(out.all().contains("Unimplemented"), "{out}");
        assert_eq!(cli(&original, &["dbsize"]).ok().text(), "100001");
        return;
    }
    h.checkpoint(&original, &archive).ok();
    assert_archive(&h, &archive);
    assert_eq!(cli(&original, &["ping"]).ok().text(), "PONG");

    let pod2 = h.run_pod("redis-b");
    let restored = h.create(&pod2, "redis", archive.to_str().unwrap(), &[]);
    h.start_container(&restored);
    assert_eq!(h.runtime_of(&restored), h.d.runtime());
    assert_eq!(cli(&restored, &["dbsize"]).ok().text(), "100001");
    assert_eq!(
        cli(&restored, &["get", "marker"]).ok().text(),
        "kept-across-pods"
    );
    assert_eq!(
        cli(&restored, &["get", "key:99999"]).ok().text(),
        "val:99999"
    );
    // The copies are independent: a write to one is not in the other.
    cli(&restored, &["set", "only", "restored"]).ok();
    assert_eq!(cli(&original, &["exists", "only"]).ok().text(), "0");
}

#[test]
fn cri_pod_containers_checkpoint_together_and_run_on() {
    let h = CriHost::start("cri_pod_group");
    let pod = h.run_pod("shop");
    let members: Vec<String> = ["first", "second"]
        .iter()
        .map(|name| {
            let id = h.create(&pod, name, &h.image("busybox"), &["sh", "-c", COUNTER]);
            h.start_container(&id);
            id
        })
        .collect();
    let before: Vec<u64> = members.iter().map(|id| wait_count(&h, id, 5)).collect();
    let archive = h.d.path("shop.tar");
    let archive_s = archive.to_str().unwrap();
    // As `kubectl` would name it: the pod, in its Kubernetes namespace.
    let args = [
        "checkpoint",
        "--pod",
        "default/shop",
        "--leave-running",
        "--export",
        archive_s,
        "--json",
    ];
    if !h.d.is_lazarus() {
        let out = lazarus(&h.d, &args).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
    } else {
        let out = lazarus(&h.d, &args).ok();
        let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("--json");
        let ids: Vec<&str> = report["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m["id"].as_str())
            .collect();
        assert_eq!(
            ids, members,
            "the pod's containers, oldest first (no sandbox)"
        );
        assert_eq!(report["stopped"], false);
        let shown = lazarus(&h.d, &["inspect", archive_s]).ok();
        assert!(
            members.iter().all(|id| shown.stdout.contains(id.as_str())),
            "{shown}"
        );
    }
    // Either way both run on, unlocked.
    for (id, n) in members.iter().zip(before) {
        assert_eq!(h.state(id), "CONTAINER_RUNNING");
        assert_counts_on(&h, id, n);
        let pid = h.inspect(id)["pid"].as_u64().expect("a pid");
        let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
        assert!(
            !netlock::is_locked(&netns, &DirectWait).unwrap(),
            "{id} still locked"
        );
    }
}
