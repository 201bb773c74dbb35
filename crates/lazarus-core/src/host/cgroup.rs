//! A container's cgroup on this host.
//!
//! The spec's `cgroupsPath` comes in two forms: a cgroupfs path
//! (`/docker/abc`, relative to each hierarchy's root) and the systemd
//! driver's `slice:prefix:name` (Kubernetes nodes). Both are resolved to the
//! directory under each hierarchy, since that is what the freezer, CRIU's
//! cgroup options and clean-up work on.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::Spec;

const ROOT: &str = "/sys/fs/cgroup";

/// The cgroup path relative to each hierarchy's root, e.g. `/docker/abc`:
/// the spec's `cgroupsPath` resolved, or libcontainer's default.
pub fn path_of(spec: &Spec, id: &str) -> String {
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned());
    match given {
        Some(p) => resolve(&p),
        None => format!("/youki/{id}"),
    }
}

/// `slice:prefix:name` (systemd driver) to `/slice/prefix-name.scope`;
/// a cgroupfs path is returned as is.
pub fn resolve(path: &str) -> String {
    let parts: Vec<&str> = path.split(':').collect();
    match parts.as_slice() {
        [slice, prefix, name] if !path.starts_with('/') => {
            let slice = if slice.is_empty() {
                "system.slice"
            } else {
                slice
            };
            let scope = if prefix.is_empty() {
                format!("{name}.scope")
            } else {
                format!("{prefix}-{name}.scope")
            };
            format!("/{}/{scope}", expand_slice(slice))
        }
        _ => path.to_string(),
    }
}

/// systemd nests `a-b-c.slice` as `a.slice/a-b.slice/a-b-c.slice`.
fn expand_slice(slice: &str) -> String {
    let stem = slice.trim_end_matches(".slice");
    if stem.is_empty() || !stem.contains('-') {
        return slice.to_string();
    }
    let mut out = Vec::new();
    let mut acc = String::new();
    for part in stem.split('-') {
        if !acc.is_empty() {
            acc.push('-');
        }
        acc.push_str(part);
        out.push(format!("{acc}.slice"));
    }
    out.join("/")
}

/// cgroup v1's cpuset gives a new directory no CPUs and no memory nodes,
/// so nothing can be placed under it: CRIU, restoring a container on a host
/// where nothing ran under its parent yet (another host, a new namespace),
/// creates that parent and then cannot write the container's own cpuset.
/// Creates the missing ancestors of `cgroup_path` with their parent's cpus
/// and mems, as libcontainer does for a container it creates. Nothing to do
/// on cgroup v2.
pub fn prepare_cpuset_parents(cgroup_path: &str) -> std::io::Result<()> {
    let mut dir = Path::new(ROOT).join("cpuset");
    if !dir.join("cpuset.cpus").exists() {
        return Ok(());
    }
    let parts: Vec<&str> = cgroup_path.split('/').filter(|p| !p.is_empty()).collect();
    let Some((_, ancestors)) = parts.split_last() else {
        return Ok(());
    };
    for part in ancestors {
        let parent = dir.clone();
        dir.push(part);
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        for file in ["cpuset.cpus", "cpuset.mems"] {
            if std::fs::read_to_string(dir.join(file))?.trim().is_empty() {
                let inherited = std::fs::read_to_string(parent.join(file))?;
                std::fs::write(dir.join(file), inherited.trim())?;
            }
        }
    }
    Ok(())
}

/// Whether the host runs the unified (v2) hierarchy only.
pub fn is_v2() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The directory CRIU freezes the tree with: the v1 freezer hierarchy, or
/// the v2 cgroup (which has `cgroup.freeze`).
pub fn freezer_dir(cgroup_path: &str) -> Option<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    let v1 = Path::new(ROOT).join("freezer").join(rel);
    if v1.exists() {
        return Some(v1);
    }
    let v2 = Path::new(ROOT).join(rel);
    v2.join("cgroup.freeze").exists().then_some(v2)
}

/// Whether the container's cgroup is frozen (or freezing).
pub fn is_frozen(cgroup_path: &str) -> bool {
    let Some(dir) = freezer_dir(cgroup_path) else {
        return false;
    };
    match std::fs::read_to_string(dir.join("freezer.state")) {
        Ok(state) => state.trim() != "THAWED",
        Err(_) => std::fs::read_to_string(dir.join("cgroup.freeze"))
            .map(|s| s.trim() == "1")
            .unwrap_or(false),
    }
}

/// Thaws the container's cgroup: after a failed dump, and after a restore
/// (CRIU restores the freezer state it dumped under).
pub fn thaw(cgroup_path: &str) {
    set_frozen(cgroup_path, false)
}

/// Freezes the container's cgroup: a container that was paused before a
/// dump that failed is paused again (CRIU thaws a frozen cgroup to seize
/// its tasks, and a CRIU killed mid-dump leaves it thawed).
pub fn freeze(cgroup_path: &str) {
    set_frozen(cgroup_path, true)
}

fn set_frozen(cgroup_path: &str, frozen: bool) {
    let Some(dir) = freezer_dir(cgroup_path) else {
        return;
    };
    let (file, value) = match dir.join("freezer.state").exists() {
        true => (
            dir.join("freezer.state"),
            if frozen { "FROZEN" } else { "THAWED" },
        ),
        false => (dir.join("cgroup.freeze"), if frozen { "1" } else { "0" }),
    };
    if let Err(e) = std::fs::write(&file, value) {
        log::warn!("write {value} to {}: {e}", file.display());
    }
}

/// Every directory of this cgroup, in each hierarchy that has it.
fn dirs(cgroup_path: &str) -> Vec<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    if rel.is_empty() {
        return Vec::new(); // never the root
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(ROOT)
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path().join(rel))
        .filter(|d| d.is_dir())
        .collect();
    let v2 = Path::new(ROOT).join(rel);
    if v2.is_dir() && !out.contains(&v2) {
        out.push(v2);
    }
    out
}

/// The pids in this cgroup (and its children), from any hierarchy.
pub fn pids(cgroup_path: &str) -> Vec<i32> {
    let mut out = Vec::new();
    for dir in dirs(cgroup_path) {
        collect_pids(&dir, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) {
    if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            collect_pids(&sub.path(), out);
        }
    }
}

/// SIGKILLs every process in the cgroup (thawing it first: a frozen
/// process cannot die) and waits up to `timeout` for them to be gone.
/// Returns the pids still there.
pub fn kill_all(cgroup_path: &str, timeout: Duration) -> Vec<i32> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = pids(cgroup_path);
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        for pid in &left {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid), nix::sys::signal::SIGKILL);
        }
        thaw(cgroup_path);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether the cgroup exists in any hierarchy (never true for the root).
pub fn exists(cgroup_path: &str) -> bool {
    !dirs(cgroup_path).is_empty()
}

/// Moves process `pid` (all its threads) into the cgroup, in every
/// hierarchy where the cgroup exists, as containerd's runc shim places
/// itself in a client's shim cgroup. The cgroup must already exist: the
/// client made it and will look for the process there.
pub fn join(cgroup_path: &str, pid: i32) -> std::io::Result<()> {
    let dirs = dirs(cgroup_path);
    if dirs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("cgroup {cgroup_path} does not exist under {ROOT}: create it first"),
        ));
    }
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            std::io::Error::new(e.kind(), format!("write {pid} to {}: {e}", procs.display()))
        })?;
    }
    Ok(())
}

/// Kills every process in the cgroup, then removes its directories: what
/// a failed restore leaves (CRIU killed mid-restore leaves the processes it
/// had already restored, and a cgroup holding them cannot be removed).
/// Returns the pids that would not die within `timeout`.
pub fn destroy(cgroup_path: &str, timeout: Duration) -> Vec<i32> {
    let left = kill_all(cgroup_path, timeout);
    remove(cgroup_path);
    left
}

/// Removes the cgroup's (empty) directories, children first, in every
/// hierarchy. What cannot be removed (still populated) is left and logged.
pub fn remove(cgroup_path: &str) {
    for dir in dirs(cgroup_path) {
        remove_tree(&dir);
    }
}

fn remove_tree(dir: &Path) {
    for sub in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if sub.file_type().is_ok_and(|t| t.is_dir()) {
            remove_tree(&sub.path());
        }
    }
    if let Err(e) = std::fs::remove_dir(dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            log::warn!("remove cgroup {}: {e}", dir.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemd_paths_resolve_to_scopes() {
        assert_eq!(resolve("/docker/abc"), "/docker/abc");
        assert_eq!(
            resolve("system.slice:docker:abc"),
            "/system.slice/docker-abc.scope"
        );
        assert_eq!(
            resolve("kubepods-besteffort-pod12.slice:cri-containerd:abc"),
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod12.slice/cri-containerd-abc.scope"
        );
        assert_eq!(resolve(":lazarus:x"), "/system.slice/lazarus-x.scope");
    }

    #[test]
    fn the_default_path_is_libcontainers() {
        let spec = Spec::default();
        let want = spec
            .linux()
            .as_ref()
            .and_then(|l| l.cgroups_path().clone())
            .map(|p| resolve(&p.to_string_lossy()))
            .unwrap_or_else(|| "/youki/c1".into());
        assert_eq!(path_of(&spec, "c1"), want);
    }

    #[test]
    fn the_root_cgroup_is_never_touched() {
        assert!(dirs("/").is_empty());
        assert!(dirs("").is_empty());
        let err = join("/", 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn joining_a_missing_cgroup_says_which() {
        let err = join("/lazarus-test-no-such-cgroup/x", 1).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(
            err.to_string().contains("/lazarus-test-no-such-cgroup/x"),
            "{err}"
        );
    }
}
