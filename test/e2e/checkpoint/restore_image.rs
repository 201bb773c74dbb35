//! A checkpoint restored into a container of another image: Lazarus
//! refuses it (the checkpoint records what identifies its image) unless the
//! new container carries io.lazarus.restore.skip-image-check=true; runc,
//! the reference, restores whatever matches by chance (the Redis image
//! holds the same /bin/busybox the counter runs).

use crate::checkpoint::flows::{
    copy_checkpoint, counter_checkpointed, docker_try_start_checkpoint, wait_status,
};
use crate::docker::lifecycle::wait_ticks_past;
use crate::faults::restore_limits::{cgroup_dirs, mounts_of};
use crate::support::apps::{with_docker_and, App};
use crate::support::cmd::{poll, ticks, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use std::time::Duration;

const LAZARUS: &str = "io.containerd.lazarus.v2";
const SKIP: &str = "io.lazarus.restore.skip-image-check=true";

/// `docker create`s `name` from the Redis image (its own entrypoint).
fn create_redis(d: &Daemons, name: &str, annotations: &[&str]) {
    let mut args = vec!["create", "--runtime", d.runtime(), "--name", name];
    for a in annotations {
        args.extend_from_slice(&["--annotation", a]);
    }
    args.push(App::Redis.image());
    d.docker(&args).ok();
}

#[test]
fn a_checkpoint_restored_into_another_image_is_refused() {
    let d = with_docker_and("restore_other_image", &[App::Redis]);
    let (a, b) = (d.name("counter"), d.name("redis"));
    let last = counter_checkpointed(&d, &a, COUNTER, 3, "cp");
    create_redis(&d, &b, &[]);
    copy_checkpoint(&d, &a, &b, "cp");
    std::thread::sleep(Duration::from_secs(2)); // past Docker's upload race
    let out = docker_try_start_checkpoint(&d, &b, "cp", &[]);
    if d.runtime() != LAZARUS {
        assert_eq!(out.code, Some(0), "runc was seen to restore this: {out}");
        wait_ticks_past(&d, &b, last + 2);
        return;
    }
    assert_ne!(
        out.code,
        Some(0),
        "a restore into another image must be refused: {out}"
    );
    let text = out.all();
    assert!(
        text.contains("another image") && text.contains("io.lazarus.restore.skip-image-check"),
        "the error should say why and how to override: {out}"
    );
    // Never started: Docker keeps it created.
    wait_status(&d, &b, "created");
    let id = inspect(&d, &b, "{{.Id}}");
    let clean = poll(Duration::from_secs(20), || {
        (d.processes_named("criu").is_empty()
            && cgroup_dirs(&d, &id).is_empty()
            && mounts_of(&id).is_empty())
        .then_some(())
    });
    assert!(
        clean.is_some(),
        "left behind: CRIU {:?}, cgroups {:?}, mounts {:?}",
        d.processes_named("criu"),
        cgroup_dirs(&d, &id),
        mounts_of(&id)
    );
    assert!(
        ticks(&d.docker(&["logs", &b]).ok().stdout).is_empty(),
        "the refused restore ran the counter"
    );

    // An expert's override: the same restore, asked for explicitly, runs.
    let c = d.name("forced");
    create_redis(&d, &c, &[SKIP]);
    copy_checkpoint(&d, &a, &c, "cp");
    let out = docker_try_start_checkpoint(&d, &c, "cp", &[]);
    assert_eq!(out.code, Some(0), "{SKIP} should let it restore: {out}");
    wait_ticks_past(&d, &c, last + 2);
}
