//! One shim per pod: containers that carry the same CRI sandbox id
//! (`io.kubernetes.cri.sandbox-id`, which containerd's CRI sets on every
//! container of a pod) share one shim process, as runc's shim does; a
//! container without it has its own. The shim serves each container on
//! its own and exits with the last one.

use crate::containerd::ctr::{assert_no_shims, exec, remove_task, task_status, wait_status};
use crate::support::cmd::{poll, wait_until};
use crate::support::config::IMAGE_CTR;
use crate::support::harness::Daemons;
use std::time::Duration;

const SANDBOX: &str = "io.kubernetes.cri.sandbox-id";

fn run_in_pod(d: &Daemons, id: &str, pod: Option<&str>) {
    let annotation = pod.map(|p| format!("{SANDBOX}={p}"));
    let mut args = vec!["run", "-d", "--runtime", d.runtime()];
    if let Some(a) = &annotation {
        args.extend(["--annotation", a.as_str()]);
    }
    let script = "i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.2; done";
    args.extend([IMAGE_CTR, id, "sh", "-c", script]);
    d.ctr(&args).ok();
    wait_status(d, id, "RUNNING");
}

/// The shims of this daemon set, once their number has settled at `n`.
fn wait_shims(d: &Daemons, n: usize) -> Vec<i32> {
    poll(Duration::from_secs(10), || {
        let pids = d.shim_pids();
        (pids.len() == n).then_some(pids)
    })
    .unwrap_or_else(|| panic!("want {n} shims, have {:?}", d.shim_pids()))
}

fn count(d: &Daemons, id: &str, exec_id: &str) -> u64 {
    exec(d, id, exec_id, &["cat", "/count"])
        .stdout
        .trim()
        .parse()
        .unwrap_or(0)
}

#[test]
fn pod_containers_share_one_shim() {
    let d = Daemons::containerd_only("pod_one_shim");
    let pod = d.name("pod");
    let members: Vec<String> = (0..3).map(|i| d.name(&format!("m{i}"))).collect();
    for m in &members {
        run_in_pod(&d, m, Some(&pod));
    }
    let pod_shims = wait_shims(&d, 1);
    let alone = d.name("alone");
    run_in_pod(&d, &alone, None);
    let shims = wait_shims(&d, 2);
    assert!(
        shims.contains(&pod_shims[0]),
        "the pod's shim changed: {shims:?}"
    );

    // Each member is served on its own: pausing one stops only it.
    d.ctr(&["task", "pause", &members[0]]).ok();
    wait_status(&d, &members[0], "PAUSED");
    let before = count(&d, &members[1], "e0");
    wait_until(
        "the other members to count on",
        Duration::from_secs(10),
        || (count(&d, &members[1], "e1") > before + 2).then_some(()),
    );
    d.ctr(&["task", "resume", &members[0]]).ok();
    wait_status(&d, &members[0], "RUNNING");

    // Removing members one by one: the shim stays while any is left.
    remove_task(&d, &members[0]);
    assert_eq!(task_status(&d, &members[1]).as_deref(), Some("RUNNING"));
    assert!(
        d.shim_pids().contains(&pod_shims[0]),
        "the pod's shim left early"
    );
    remove_task(&d, &members[1]);
    remove_task(&d, &members[2]);
    let left = wait_shims(&d, 1);
    assert!(
        !left.contains(&pod_shims[0]),
        "the pod's shim outlived its pod"
    );
    remove_task(&d, &alone);
    assert_no_shims(&d);
}
