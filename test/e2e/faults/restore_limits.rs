//! A restore that would never end: CRIU reading a damaged image (a
//! truncated `pages-1.img`) loops, its debug log growing by gigabytes a
//! minute. Lazarus bounds CRIU's log (`criu_log_max_mib`) and its time
//! (`criu_timeout_seconds`), kills CRIU and everything it restored, and
//! keeps a bounded copy of the log.

use crate::checkpoint::flows::{docker_try_start_checkpoint, wait_status};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::cmd::{poll, Proc, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::{Daemons, Setup};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::thread::sleep;
use std::time::{Duration, Instant};

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// The bound the test gives CRIU's log, so the loop is caught in seconds.
const LOG_MAX_MIB: u64 = 8;

/// The cgroup directories of container `id` under the set's cgroup
/// parent, in every hierarchy.
pub fn cgroup_dirs(d: &Daemons, id: &str) -> Vec<PathBuf> {
    fs::read_dir("/sys/fs/cgroup")
        .unwrap()
        .flatten()
        .map(|h| h.path().join(&d.id).join(id))
        .filter(|p| p.exists())
        .collect()
}

/// Lines of /proc/mounts that mention `id`.
pub fn mounts_of(id: &str) -> Vec<String> {
    fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .filter(|l| l.contains(id))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_restore_from_a_damaged_image_ends_in_bounded_time() {
    let setup = Setup {
        // Raw pages: the damage must reach CRIU (a compressed page image
        // is checked, and refused, before CRIU runs: corrupt_tests).
        lazarus_config: Some(format!(
            "criu_log_max_mib = {LOG_MAX_MIB}\ncriu_timeout_seconds = 90\ncompress_pages = false\n"
        )),
        ..Default::default()
    };
    let d = Daemons::with_docker_with("restore_damaged", &setup);
    let name = d.name("c");
    run_sh_detached(&d, &name, COUNTER);
    wait_ticks_past(&d, &name, 3);
    d.docker(&["checkpoint", "create", &name, "cp"]).ok();
    wait_status(&d, &name, "exited");
    let id = inspect(&d, &name, "{{.Id}}");
    let cp = d
        .path("docker")
        .join("containers")
        .join(&id)
        .join("checkpoints/cp");
    let pages = cp.join("pages-1.img");
    let size = fs::metadata(&pages).unwrap().len();
    assert!(
        size > 4096,
        "pages-1.img is only {size} bytes: nothing to cut"
    );
    fs::OpenOptions::new()
        .write(true)
        .open(&pages)
        .unwrap()
        .set_len(4096)
        .unwrap();
    sleep(Duration::from_secs(3)); // past Docker's upload race
    if d.runtime() != LAZARUS {
        runc_lets_criu_loop(&d, &name);
        return;
    }
    let started = Instant::now();
    let out = docker_try_start_checkpoint(&d, &name, "cp", &[]);
    let took = started.elapsed();
    eprintln!("restore from a damaged image: {took:?}\n{out}");
    assert_ne!(out.code, Some(0), "a damaged image must not restore: {out}");
    assert!(
        took < Duration::from_secs(60),
        "the failed restore took {took:?}"
    );
    let text = out.all();
    assert!(
        text.contains("was killed"),
        "the error should say CRIU was stopped and why: {out}"
    );
    wait_status(&d, &name, "exited");
    // containerd's unpacked copy of the checkpoint, CRIU's work directory:
    // a CRIU killed mid-restore leaves its cgroup yard mounted there.
    let copy = text
        .split_whitespace()
        .find(|w| w.contains("/ctrd-checkpoint"))
        .unwrap_or_else(|| panic!("the error should name the image directory: {out}"))
        .to_string();
    let gone = poll(Duration::from_secs(20), || {
        (d.processes_named("criu").is_empty()
            && cgroup_dirs(&d, &id).is_empty()
            && mounts_of(&id).is_empty()
            && mounts_of(&copy).is_empty())
        .then_some(())
    });
    assert!(
        gone.is_some(),
        "left behind: CRIU {:?}, cgroups {:?}, mounts {:?} {:?}",
        d.processes_named("criu"),
        cgroup_dirs(&d, &id),
        mounts_of(&id),
        mounts_of(&copy)
    );
    assert!(
        !std::path::Path::new(&copy).exists(),
        "the failed restore left containerd's copy {copy}"
    );
    let kept = PathBuf::from("/run/lazarus/logs/moby")
        .join(&id)
        .join("restore.log");
    assert!(
        text.contains(kept.to_str().unwrap()),
        "the error should name {}: {out}",
        kept.display()
    );
    let meta = fs::metadata(&kept).unwrap_or_else(|e| panic!("{}: {e}", kept.display()));
    eprintln!("kept log {}: {} bytes", kept.display(), meta.len());
    assert!(
        meta.len() <= (8 << 20) + 4096,
        "kept log is {} bytes",
        meta.len()
    );
    assert_eq!(meta.mode() & 0o777, 0o600);
}

/// runc bounds neither CRIU's time nor its log: the reference shows why
/// Lazarus does. After a while CRIU is still at it; the test kills it
/// (its log, in containerd's temporary copy of the checkpoint, grows by
/// about 1.5 GB a minute).
fn runc_lets_criu_loop(d: &Daemons, name: &str) {
    let start = Proc::spawn(&mut d.docker_cmd(&["start", "--checkpoint", "cp", name]));
    sleep(RUNC_WATCH);
    let criu = d.processes_named("criu");
    for pid in &criu {
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let out = start.wait(Duration::from_secs(60));
    eprintln!("runc: CRIU processes {criu:?} still running after {RUNC_WATCH:?}; then {out}");
    assert!(
        !criu.is_empty(),
        "runc was seen to let CRIU loop on this image; now it did not: {out}"
    );
    assert_ne!(out.code, Some(0), "{out}");
}

/// How long runc's CRIU is watched looping.
const RUNC_WATCH: Duration = Duration::from_secs(10);
