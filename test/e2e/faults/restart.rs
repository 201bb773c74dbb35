//! containerd restarting (or crashing) under running containers: the shim and
//! the container carry on, and the restarted containerd reconnects to them.

use crate::containerd::ctr::{
    assert_no_shims, exec, remove_task, run_detached, task_status, wait_status,
};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::cmd::{run, ticks, wait_until, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use std::thread::sleep;
use std::time::Duration;

/// Stops containerd with `sig`, checks the shim outlives it, starts it again.
fn bounce_containerd(d: &mut Daemons, sig: i32) {
    let shims = d.shim_pids();
    assert!(
        !shims.is_empty(),
        "no shim process found before the restart"
    );
    d.stop_containerd(sig);
    sleep(Duration::from_secs(1));
    assert_eq!(
        d.shim_pids(),
        shims,
        "the shims must survive containerd going away"
    );
    d.start_containerd();
}

#[test]
fn containerd_restart_docker() {
    let mut d = Daemons::with_docker("containerd_restart_docker");
    let name = d.name("restart");
    run_sh_detached(&d, &name, COUNTER);
    let before = wait_ticks_past(&d, &name, 2);
    bounce_containerd(&mut d, libc::SIGTERM);
    wait_ticks_past(&d, &name, before + 5);
    // containerd sees the task through the shim again.
    let id = inspect(&d, &name, "{{.Id}}");
    let ls = run(&mut d.ctr_cmd_ns("moby", &["task", "ls"])).ok();
    assert!(
        ls.stdout
            .lines()
            .any(|l| l.starts_with(&id) && l.ends_with("RUNNING")),
        "{ls}"
    );
    // dockerd redials containerd with a back-off: until it has, its requests
    // fail with "Unavailable" (Docker's doing, not the runtime's).
    let out = wait_until(
        "dockerd to reconnect to containerd",
        Duration::from_secs(30),
        || {
            let out = d.docker(&["exec", &name, "echo", "after-restart"]);
            (!out.all().contains("unavailable")).then_some(out)
        },
    );
    assert_eq!(out.clone().ok().stdout, "after-restart\n", "{out}");
    d.docker(&["stop", "-t", "1", &name]).ok();
    assert_eq!(
        inspect(&d, &name, "{{.State.Status}} {{.State.ExitCode}}"),
        "exited 137"
    );
    d.docker(&["rm", &name]).ok();
    assert_no_shims(&d);
}

/// The task writes a counter into /tmp/count; read it through `ctr task exec`.
fn ctr_restart(test: &str, sig: i32) {
    let mut d = Daemons::containerd_only(test);
    let id = d.name("restart");
    let script = "i=0; while true; do echo tick-$i > /tmp/count; i=$((i+1)); sleep 0.2; done";
    run_detached(&d, &id, &["sh", "-c", script]);
    let mut n = 0;
    let mut count = |d: &Daemons| -> u64 {
        n += 1;
        let out = exec(d, &id, &format!("read{n}"), &["cat", "/tmp/count"]).ok();
        ticks(&out.stdout).last().copied().unwrap_or(0)
    };
    let before = wait_until("the counter to start", Duration::from_secs(20), || {
        Some(count(&d)).filter(|&c| c > 2)
    });
    bounce_containerd(&mut d, sig);
    assert_eq!(task_status(&d, &id).as_deref(), Some("RUNNING"));
    wait_until(
        "the counter to advance after the restart",
        Duration::from_secs(20),
        || Some(count(&d)).filter(|&c| c > before + 3),
    );
    remove_task(&d, &id);
    assert_no_shims(&d);
}

#[test]
fn containerd_restart_ctr() {
    ctr_restart("containerd_restart_ctr", libc::SIGTERM);
}

#[test]
fn containerd_crash_ctr() {
    ctr_restart("containerd_crash_ctr", libc::SIGKILL);
}

#[test]
fn containerd_restart_paused_ctr() {
    let mut d = Daemons::containerd_only("containerd_restart_paused_ctr");
    let id = d.name("paused");
    run_detached(&d, &id, &["sleep", "600"]);
    d.ctr(&["task", "pause", &id]).ok();
    bounce_containerd(&mut d, libc::SIGTERM);
    wait_status(&d, &id, "PAUSED");
    d.ctr(&["task", "resume", &id]).ok();
    assert_eq!(task_status(&d, &id).as_deref(), Some("RUNNING"));
    remove_task(&d, &id);
    assert_no_shims(&d);
}
