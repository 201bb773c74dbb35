//! The after-checks of the fault cases: a container that survived a fault
//! runs unfrozen, and one that was removed left nothing behind. One check,
//! [`find_leaks`] / [`assert_no_leaks`], serves every case; plus finding
//! the CRIU that works for a daemon set, and the heavy/light sizes.

use crate::support::cleanup::{alive, pids_mentioning};
use crate::support::cmd::poll;
use crate::support::harness::{inspect, Daemons};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

const CGROUP_ROOT: &str = "/sys/fs/cgroup";
const LAZARUS: &str = "io.containerd.lazarus.v2";

/// `LAZARUS_E2E_HEAVY=1` (test/run-e2e.sh sets it on one containerd leg per
/// runtime): the fault cases use a 1 GiB heap and 50 containers; elsewhere
/// 64 MiB and 10. Each case prints which variant it ran.
pub fn heavy() -> bool {
    match std::env::var("LAZARUS_E2E_HEAVY").as_deref() {
        Ok("1") => true,
        Ok("") | Ok("0") | Err(_) => false,
        Ok(v) => panic!("LAZARUS_E2E_HEAVY={v:?}: use 1 or 0"),
    }
}

/// Held by a case while it runs a heap of `mib` MiB: cases with 1 GiB or
/// more take turns. Two at once hold several GiB of images on disk (the
/// dump, containerd's and Docker's copies) and load both cores for a
/// minute, which turns the kills' timing into luck. Declare it before the
/// case's daemons, so that it is released after their teardown.
pub fn big_heap_turn(mib: u64) -> Option<std::sync::MutexGuard<'static, ()>> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    // A case that panicked while holding it does not stop the others.
    (mib >= 1024).then(|| TURN.lock().unwrap_or_else(|e| e.into_inner()))
}

/// MiB of touched heap for the kill-mid-dump/restore cases.
pub fn heap_mib() -> u64 {
    // Not less than 256 MiB: a 64 MiB restore can end before a fault
    // case's kill lands (seen with runc on containerd 2.1).
    let mib = if heavy() { 1024 } else { 256 };
    eprintln!(
        "fault: {mib} MiB heap (LAZARUS_E2E_HEAVY={})",
        heavy() as u8
    );
    mib
}

/// A Docker container the after-checks look at: its containerd namespace
/// (`moby`), its id, and the rootfs Docker mounted for it.
#[derive(Debug, Clone)]
pub struct Container {
    pub ns: String,
    pub id: String,
    pub rootfs: Option<PathBuf>,
}

impl Container {
    /// A Docker container (namespace `moby`), looked up while it exists.
    pub fn docker(d: &Daemons, name: &str) -> Container {
        let merged = inspect(d, name, "{{.GraphDriver.Data.MergedDir}}");
        Container {
            ns: "moby".into(),
            id: inspect(d, name, "{{.Id}}"),
            rootfs: (!merged.is_empty()).then(|| PathBuf::from(merged)),
        }
    }

    /// Docker (`cgroup-parent` /<set>) puts a container at /<set>/<id>
    /// (as ctr does: `/<namespace>/<id>`, the namespace being the set's id).
    fn cgroup(&self, d: &Daemons) -> String {
        format!("/{}/{}", d.id, self.id)
    }

    /// Pids whose cgroup (in any hierarchy) is the container's or below it.
    pub fn procs(&self, d: &Daemons) -> Vec<i32> {
        let cg = self.cgroup(d);
        let below = format!("{cg}/");
        all_pids()
            .into_iter()
            .filter(|pid| {
                fs::read_to_string(format!("/proc/{pid}/cgroup"))
                    .unwrap_or_default()
                    .lines()
                    .filter_map(|l| l.splitn(3, ':').nth(2))
                    .any(|p| p == cg || p.starts_with(&below))
            })
            .filter(|&pid| alive(pid))
            .collect()
    }

    /// `freezer.state` of the container's cgroup, if it exists.
    pub fn freezer_state(&self, d: &Daemons) -> Option<String> {
        let p = format!("{CGROUP_ROOT}/freezer{}/freezer.state", self.cgroup(d));
        fs::read_to_string(p).ok().map(|s| s.trim().to_string())
    }

    /// Bytes charged to the container's memory cgroup (0 without one).
    pub fn memory_usage(&self, d: &Daemons) -> u64 {
        let p = format!(
            "{CGROUP_ROOT}/memory{}/memory.usage_in_bytes",
            self.cgroup(d)
        );
        fs::read_to_string(p)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// The runtime's own state directory for the container.
    pub fn state_dir(&self, d: &Daemons) -> PathBuf {
        let root = match d.runtime() {
            LAZARUS => "/run/lazarus",
            _ => "/run/containerd/runc",
        };
        Path::new(root).join(&self.ns).join(&self.id)
    }

    /// The live shim processes serving this container.
    pub fn shims(&self, d: &Daemons) -> Vec<i32> {
        let own = d.shim_pids();
        pids_mentioning(&format!("-id {} ", self.id))
            .into_iter()
            .filter(|p| own.contains(p))
            .collect()
    }
}

/// Asserts that `c` has processes and that its freezer cgroup is THAWED
/// (a container left FROZEN looks running but answers nothing).
pub fn assert_running_unfrozen(d: &Daemons, c: &Container) {
    let procs = c.procs(d);
    assert!(!procs.is_empty(), "{} has no process left", c.id);
    assert_eq!(
        c.freezer_state(d).as_deref(),
        Some("THAWED"),
        "{} (processes {procs:?}) is not thawed",
        c.id
    );
}

fn all_pids() -> Vec<i32> {
    fs::read_dir("/proc")
        .map(|r| {
            r.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

fn comm(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// True if one of `pid`'s ancestors is in `of`.
fn descends_from(pid: i32, of: &[i32]) -> bool {
    crate::support::cleanup::ancestry(pid)[1..]
        .iter()
        .any(|p| of.contains(p))
}

/// Live `criu` processes below this daemon set's shims (Lazarus runs
/// `criu swrk` itself, runc's shim through `runc`).
pub fn criu_pids(d: &Daemons) -> Vec<i32> {
    let shims = d.shim_pids();
    all_pids()
        .into_iter()
        .filter(|&p| comm(p) == "criu" && alive(p) && descends_from(p, &shims))
        .collect()
}

/// Live `criu` processes holding a file of this daemon set open (or
/// working in it): what a CRIU orphaned by a killed shim still holds.
fn criu_holding_files(d: &Daemons) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&p| comm(p) == "criu" && alive(p))
        .filter(|p| {
            let fds = fs::read_dir(format!("/proc/{p}/fd")).into_iter().flatten();
            let mut links = fds.flatten().filter_map(|e| fs::read_link(e.path()).ok());
            let cwd = fs::read_link(format!("/proc/{p}/cwd")).ok();
            links.any(|l| l.starts_with(&d.dir)) || cwd.is_some_and(|c| c.starts_with(&d.dir))
        })
        .collect()
}

/// Every cgroup directory at or below `/sys/fs/cgroup/*/<rel>`.
fn cgroup_dirs(rel: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, acc: &mut Vec<PathBuf>) {
        acc.push(dir.to_path_buf());
        for e in fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&e.path(), acc);
            }
        }
    }
    let mut acc = Vec::new();
    for h in fs::read_dir(CGROUP_ROOT).into_iter().flatten().flatten() {
        let top = h.path().join(rel.trim_start_matches('/'));
        if top.is_dir() {
            walk(&top, &mut acc);
        }
    }
    acc
}

fn mount_points() -> Vec<String> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .collect()
}

/// Entries of `dir` (none if it does not exist).
fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect()
}

/// CRIU mounts its cgroup yard (`.criu.cgyard.*`) in its work dir and
/// unmounts it as it exits: a killed CRIU leaves it mounted. Those under
/// the set's directory, deepest first.
pub fn criu_mounts(d: &Daemons) -> Vec<String> {
    let prefix = format!("{}/", d.dir.display());
    let mut found: Vec<String> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(&prefix) && m.contains("/.criu."))
        .collect();
    found.sort_by_key(|m| std::cmp::Reverse(m.len()));
    found
}

/// Removes the (empty) cgroup directories of `c`, children first.
pub fn remove_cgroups(d: &Daemons, c: &Container) {
    let mut dirs = cgroup_dirs(&c.cgroup(d));
    dirs.reverse();
    for dir in dirs {
        let _ = fs::remove_dir(dir);
    }
}

/// The entries of this set's containerd temp dir (checkpoint dirs).
pub fn containerd_temp_dirs(d: &Daemons) -> Vec<PathBuf> {
    entries(&d.tmp_dir())
}

/// What the daemon set still holds of the containers in `removed` (which
/// must be deleted by now), and what it holds that no finished operation
/// should: a containerd checkpoint temp dir, an unfinished content upload,
/// a frozen cgroup, a CRIU. Empty when clean.
///
/// `restores`: how many restores from a checkpoint in containerd's content
/// store (`docker start --checkpoint`, `ctr container restore`) reached
/// containerd's task Create. containerd 1.7 and 2.1 extract each into a
/// `ctrd-checkpoint*` temp dir there and never remove it (services/tasks
/// local.go Create: os.MkdirTemp with no RemoveAll; the runtime is handed
/// the path and cannot tell it from a user's): with runc that many are
/// containerd's own and expected. Lazarus removes that copy once the
/// restore is over (refused at Create, failed, done, or deleted unstarted),
/// so with Lazarus none may be left. Any other is a leak.
pub fn find_leaks(d: &Daemons, removed: &[&Container], restores: usize) -> Vec<String> {
    let mut leaks = Vec::new();
    let mounts = mount_points();
    for c in removed {
        let procs = c.procs(d);
        if !procs.is_empty() {
            leaks.push(format!("processes of {}: {procs:?}", c.id));
        }
        for dir in cgroup_dirs(&c.cgroup(d)) {
            leaks.push(format!("cgroup {}", dir.display()));
        }
        for m in mounts.iter().filter(|m| {
            m.contains(&c.id)
                || c.rootfs
                    .as_ref()
                    .is_some_and(|r| Path::new(m).starts_with(r))
        }) {
            leaks.push(format!("mount {m}"));
        }
        let shims = c.shims(d);
        if !shims.is_empty() {
            leaks.push(format!("shim of {}: {shims:?}", c.id));
        }
        let state = c.state_dir(d);
        if state.exists() {
            leaks.push(format!("runtime state {}", state.display()));
        }
        let bundle = d
            .path("state/io.containerd.runtime.v2.task")
            .join(&c.ns)
            .join(&c.id);
        if bundle.exists() {
            leaks.push(format!("bundle {}", bundle.display()));
        }
    }
    for m in criu_mounts(d) {
        leaks.push(format!("CRIU's mount {m}"));
    }
    let tmp = containerd_temp_dirs(d);
    let expected = match d.runtime() {
        "io.containerd.lazarus.v2" => 0,
        _ => restores,
    };
    if tmp.len() != expected {
        leaks.push(format!(
            "{} containerd temp dirs after {restores} restores ({expected} expected): {tmp:?}",
            tmp.len()
        ));
    }
    for i in entries(&d.path("root/io.containerd.content.v1.content/ingest")) {
        leaks.push(format!("unfinished content upload {}", i.display()));
    }
    for dir in cgroup_dirs(&format!("/{}", d.id)) {
        let state = fs::read_to_string(dir.join("freezer.state")).unwrap_or_default();
        if !state.is_empty() && state.trim() != "THAWED" {
            leaks.push(format!("{} is {}", dir.display(), state.trim()));
        }
    }
    let criu = criu_holding_files(d);
    if !criu.is_empty() {
        leaks.push(format!("CRIU processes {criu:?} hold files of {}", d.id));
    }
    leaks
}

/// Waits (20 s at most: removal is asynchronous in places) until
/// [`find_leaks`] finds nothing; panics listing what is left.
pub fn assert_no_leaks(d: &Daemons, removed: &[&Container], restores: usize) {
    let mut last = Vec::new();
    let clean = poll(Duration::from_secs(20), || {
        last = find_leaks(d, removed, restores);
        last.is_empty().then_some(())
    });
    assert!(clean.is_some(), "left behind:\n  {}", last.join("\n  "));
}
