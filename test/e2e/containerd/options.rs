//! runc's task options reaching the shim as containerd's Go client sends
//! them (its own suite's TestShimInCgroup): `WithShimCgroup(path)` puts the
//! shim process in a cgroup the client made. The client sends runc.v1's
//! Options to runtimes named `io.containerd.runc*` and, in 1.7, the legacy
//! `containerd.linux.runc.CreateOptions` to every other runtime; containerd
//! hands them to `shim start` on its stdin.

use crate::containerd::api::Api;
use crate::support::config::IMAGE_CTR;
use crate::support::harness::Daemons;
use containerd_client::services::v1::CreateTaskRequest;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::Options;
use std::path::{Path, PathBuf};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The legacy CreateOptions numbers shim_cgroup 9 (runc.v1's Options: 3).
const LEGACY_SHIM_CGROUP: u32 = 9;

/// The create options with `shim_cgroup`, typed as the Go client of this
/// containerd would type them for the runtime under test.
fn shim_cgroup_options(d: &Daemons, path: &str) -> prost_types::Any {
    if d.cfg.containerd_version == "1.7" && !d.runtime().starts_with("io.containerd.runc") {
        let mut o = Empty::new();
        o.special_fields
            .mut_unknown_fields()
            .add_length_delimited(LEGACY_SHIM_CGROUP, path.as_bytes().to_vec());
        return prost_types::Any {
            type_url: "containerd.linux.runc.CreateOptions".into(),
            value: o.write_to_bytes().unwrap(),
        };
    }
    let o = Options {
        shim_cgroup: path.into(),
        ..Default::default()
    };
    prost_types::Any {
        type_url: "containerd.runc.v1.Options".into(),
        value: o.write_to_bytes().unwrap(),
    }
}

/// Makes cgroup `path` in every hierarchy (cgroup v1 here; on v2 the one);
/// returns the directories. Under the set's own subtree, so the set's
/// clean-up removes them.
fn make_cgroup(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    // v1's cpuset gives a new cgroup no CPUs: nothing could join it.
    lazarus_core::host::cgroup::prepare_cpuset_parents(&format!("{path}/leaf")).unwrap();
    let mut dirs = Vec::new();
    for hierarchy in std::fs::read_dir(CGROUP_ROOT).unwrap().flatten() {
        if hierarchy.path().join("cgroup.procs").is_file() {
            let dir = hierarchy.path().join(rel);
            std::fs::create_dir_all(&dir).unwrap();
            dirs.push(dir);
        }
    }
    if dirs.is_empty() {
        let dir = Path::new(CGROUP_ROOT).join(rel);
        std::fs::create_dir_all(&dir).unwrap();
        dirs.push(dir);
    }
    dirs
}

/// The programs of the processes in a cgroup directory.
fn programs_in(dir: &Path) -> Vec<String> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
    procs
        .lines()
        .filter_map(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok())
        .map(|exe| exe.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn api_shim_cgroup_option_puts_the_shim_in_that_cgroup_scored_above_containerd() {
    let d = Daemons::containerd_only("api_shim_cgroup");
    let id = d.name("a");
    let path = format!("/{}/shim", d.id);
    let dirs = make_cgroup(&path);
    let api = Api::connect(&d);
    let create = [
        "container",
        "create",
        "--runtime",
        d.runtime(),
        IMAGE_CTR,
        &id,
    ];
    d.ctr(&[&create[..], &["sleep", "600"]].concat()).ok();
    let request = CreateTaskRequest {
        container_id: id.clone(),
        rootfs: api.rootfs(&id),
        options: Some(shim_cgroup_options(&d, &path)),
        ..Default::default()
    };
    api.call("Tasks.Create", api.tasks().create(api.req(request)));
    let shim = match d.runtime() {
        "io.containerd.lazarus.v2" => "containerd-shim-lazarus-v2",
        _ => "containerd-shim-runc-v2",
    };
    // Where containerd's own test looks: v1's devices hierarchy, or v2's.
    let dir = dirs
        .iter()
        .find(|d| d.starts_with(Path::new(CGROUP_ROOT).join("devices")))
        .unwrap_or(&dirs[0]);
    let programs = programs_in(dir);
    // The shim, and while it works its single-threaded runtime helper.
    assert!(
        !programs.is_empty() && programs.iter().all(|p| p == shim),
        "{}: {programs:?}",
        dir.display()
    );
    // containerd's TestShimOOMScore: the shim scores one above containerd,
    // so that the kernel kills a shim before the containerd it serves.
    let score = |pid: &str| {
        std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj"))
            .unwrap()
            .trim()
            .parse::<i32>()
            .unwrap()
    };
    let want = score(&d.containerd_pid().to_string()) + 1;
    for pid in std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap()
        .lines()
    {
        assert_eq!(score(pid), want, "oom_score_adj of {pid} ({shim})");
    }
    api.kill_and_delete(&id);
}
