//! Mounts as Kubernetes asks for them through the CRI, the cases critest
//! found: hostPath volumes with HostToContainer and Bidirectional
//! propagation (containerd then writes `rootfsPropagation: rslave` or
//! `rshared` into the spec), and recursively read-only volumes, which
//! containerd 2.1 allows only for a runtime whose features document (the
//! shim's `-info` answer) lists `rro`.

use crate::support::cmd::{run, wait_until};
use crate::support::cri::{CriHost, RUNC_TYPED};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// A host directory bind-mounted onto itself and made shared, as a node's
/// volume directories are (containerd refuses HostToContainer or
/// Bidirectional propagation from a private mount); what is mounted under
/// it is unmounted when the test ends, however it ends.
struct SharedDir(PathBuf);

impl SharedDir {
    fn new(path: PathBuf) -> SharedDir {
        std::fs::create_dir_all(&path).unwrap();
        let p = path.to_str().unwrap().to_string();
        run(Command::new("mount").args(["--bind", &p, &p])).ok();
        let dir = SharedDir(path);
        run(Command::new("mount").args(["--make-rshared", &p])).ok();
        dir
    }

    /// Mounts a tmpfs at `name` under the directory, with `file` in it.
    fn mount_tmpfs(&self, name: &str, file: &str, text: &str) -> PathBuf {
        let at = self.0.join(name);
        std::fs::create_dir_all(&at).unwrap();
        run(Command::new("mount").args(["-t", "tmpfs", "tmpfs", at.to_str().unwrap()])).ok();
        std::fs::write(at.join(file), text).unwrap();
        at
    }
}

impl Drop for SharedDir {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// A pod with one busybox container that sleeps, with `mount` given to
/// cri-client's `--mount`; returns the container's id once it runs.
fn sleeper_with_mount(h: &CriHost, pod_name: &str, mount: &str) -> String {
    let pod = h.run_pod(pod_name);
    let flags = ["--mount", mount];
    let id = h.create_with(&pod, "app", &h.image("busybox"), &flags, &["sleep", "1000"]);
    h.start_container(&id);
    id
}

#[test]
fn cri_host_to_container_and_bidirectional_volumes_see_the_hosts_mounts() {
    let h = CriHost::start("cri_propagation");
    for propagation in ["host-to-container", "bidirectional"] {
        let shared = SharedDir::new(h.d.path(&format!("vol-{propagation}")));
        let mount = format!("{}:/vol:{propagation}", shared.0.display());
        let id = sleeper_with_mount(&h, &format!("prop-{propagation}"), &mount);
        // Mounted on the host after the container started: only a slave
        // or shared mount in the container shows it.
        shared.mount_tmpfs("later", "hello", propagation);
        let seen = h.exec(&id, &["cat", "/vol/later/hello"]).ok();
        assert_eq!(seen.text(), propagation, "{propagation}: {seen}");
        let info = h.inspect(&id);
        assert_eq!(h.state(&id), "CONTAINER_RUNNING", "{info}");
    }
}

/// Handler `name`'s entry in containerd's Status.
fn handler_entry(h: &CriHost, name: &str) -> Option<Value> {
    let out = h.cri(&["handlers"]).ok();
    let list: Value = serde_json::from_str(&out.stdout).expect("handlers JSON");
    list.as_array()?.iter().find(|e| e["name"] == name).cloned()
}

/// Whether containerd's CRI offers recursive read-only mounts for handler
/// `name` (None: the handler is not listed).
fn offers_rro(h: &CriHost, name: &str) -> Option<bool> {
    let entry = handler_entry(h, name)?;
    Some(entry["recursive_read_only_mounts"] == true)
}

/// The handler that gets recursive read-only mounts from containerd 2.1:
/// runc, or Lazarus's shim under runc's type (containerd 2.1 asks no other
/// runtime type for its features).
fn rro_handler(h: &CriHost) -> &'static str {
    match h.d.is_lazarus() {
        true => RUNC_TYPED,
        false => h.handler(),
    }
}

#[test]
fn cri_handlers_offer_recursive_read_only_mounts_on_containerd_2_1() {
    let h = CriHost::start("cri_features");
    if h.d.cfg.containerd_version == "1.7" {
        // 1.7 asks no runtime for its features.
        for name in ["runc", "lazarus", RUNC_TYPED] {
            assert_ne!(offers_rro(&h, name), Some(true), "1.7, {name}");
        }
        return;
    }
    assert_eq!(offers_rro(&h, rro_handler(&h)), Some(true));
    // The type that 2.1 does not introspect (2.4 does): the documented
    // reason for the runc-typed configuration.
    assert_eq!(offers_rro(&h, "lazarus"), Some(false));
}

/// Whether `touch PATH` in the container fails because the file system is
/// read-only.
fn read_only(h: &CriHost, id: &str, path: &Path) -> bool {
    let out = h.exec(id, &["touch", path.to_str().unwrap()]);
    match out.code {
        Some(0) => false,
        _ if out.all().contains("Read-only file system") => true,
        _ => panic!("touch {}: {out}", path.display()),
    }
}

/// The program of the shim serving container `id` (the parent of its
/// init process).
fn shim_of(h: &CriHost, id: &str) -> String {
    let pid = h.inspect(id)["pid"].as_u64().expect("the container's pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let ppid = status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .map(|p| p.trim().to_string())
        .expect("PPid");
    let exe = std::fs::read_link(format!("/proc/{ppid}/exe")).unwrap();
    exe.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn cri_recursive_read_only_volumes_are_read_only_all_the_way_down() {
    let h = CriHost::start("cri_rro");
    let shared = SharedDir::new(h.d.path("vol-rro"));
    shared.mount_tmpfs("sub", "hello", "below");
    let mount = format!("{}:/vol:rro", shared.0.display());
    let handler = rro_handler(&h);
    let pod = h.run_pod_on("rro", handler);
    let flags = ["--mount", mount.as_str()];
    let id = h.create_with(&pod, "app", &h.image("busybox"), &flags, &["sleep", "1000"]);
    h.start_container(&id);
    wait_until("the volume to be there", Duration::from_secs(10), || {
        (h.exec(&id, &["cat", "/vol/sub/hello"]).text() == "below").then_some(())
    });
    if h.d.is_lazarus() {
        assert_eq!(shim_of(&h, &id), "containerd-shim-lazarus-v2");
    }
    assert!(read_only(&h, &id, Path::new("/vol/top")), "the volume");
    let sub = Path::new("/vol/sub/x");
    match h.d.cfg.containerd_version.as_str() {
        // 1.7's CRI does not know the field: a plain read-only bind, whose
        // submounts stay writable, for every runtime.
        "1.7" => assert!(!read_only(&h, &id, sub), "1.7 made the submount read-only"),
        _ => assert!(read_only(&h, &id, sub), "the submount under an rro volume"),
    }
}
