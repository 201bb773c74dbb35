//! CRI exec as the kubelet (and critest) drive it: containerd waits on an
//! exec before it starts it, so an exec that cannot start must still end
//! that wait, or the shim's connection stays busy and the shim never exits
//! when its pod is removed (critest's HostIpc specs found shims left for
//! ever after an exec of a missing program).

use crate::support::cmd::poll;
use crate::support::cri::CriHost;
use std::time::Duration;

/// The pids of shim processes serving pod `pod` (a pod's containers share
/// one shim, started with `-id <pod id>`).
fn shims_of(pod: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let is_shim = args
            .first()
            .is_some_and(|a| String::from_utf8_lossy(a).contains("containerd-shim-"));
        if is_shim && args.contains(&pod.as_bytes()) {
            pids.push(pid);
        }
    }
    pids
}

#[test]
fn cri_a_pod_whose_exec_failed_to_start_leaves_no_shim_behind() {
    let h = CriHost::start("cri_exec_failed");
    let pod = h.run_pod("execfail");
    let id = h.create(&pod, "app", &h.image("busybox"), &["sleep", "1000"]);
    h.start_container(&id);
    assert!(!shims_of(&pod).is_empty(), "the pod's shim runs");
    let out = h.exec(&id, &["/no-such-program"]);
    assert_ne!(out.code, Some(0), "{out}");
    assert!(
        out.all().contains("no-such-program"),
        "the error names it: {out}"
    );
    // The container is unharmed and exec works on.
    assert_eq!(h.exec(&id, &["echo", "fine"]).ok().text(), "fine");
    h.cri(&["stopp", &pod]).ok();
    h.cri(&["rmp", &pod]).ok();
    let gone = poll(Duration::from_secs(20), || {
        shims_of(&pod).is_empty().then_some(())
    });
    assert!(
        gone.is_some(),
        "shims left for the removed pod: {:?}",
        shims_of(&pod)
    );
}
