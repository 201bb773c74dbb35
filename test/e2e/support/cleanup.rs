//! Forceful clean-up of one daemon set: every process whose command line
//! mentions its private directory (dockerd, containerd, shims, clients, tmux),
//! every process in its cgroups, every mount under its directory, its cgroup
//! directories and finally the directory itself.

use std::fs;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Pids (other than ours) whose command line contains `needle`.
pub fn pids_mentioning(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(entries) = fs::read_dir("/proc") else {
        return vec![];
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .collect()
}

pub fn signal(pids: &[i32], sig: i32) {
    for &pid in pids {
        unsafe { libc::kill(pid, sig) };
    }
}

/// True while `pid` exists and is not a zombie.
/// The parent of `pid`, from /proc.
pub fn parent(pid: i32) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) state ppid ...": the comm may hold spaces.
    stat.rsplit(')')
        .next()?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `pid` and its ancestors, nearest first, up to (not including) init.
pub fn ancestry(pid: i32) -> Vec<i32> {
    let mut out = vec![pid];
    let mut at = pid;
    for _ in 0..64 {
        match parent(at) {
            Some(p) if p > 1 => {
                out.push(p);
                at = p;
            }
            _ => break,
        }
    }
    out
}

pub fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .map(|r| !r.trim_start().starts_with('Z'))
            .unwrap_or(false),
        Err(_) => false,
    }
}

/// Waits until none of `pids` is alive; false on timeout.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(50));
    }
    true
}

/// Every directory of the cgroup subtree named `name` under each hierarchy,
/// children before parents.
fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, acc: &mut Vec<PathBuf>) {
        if let Ok(entries) = fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), acc);
                }
            }
        }
        acc.push(dir.to_path_buf());
    }
    let mut acc = Vec::new();
    if let Ok(hierarchies) = fs::read_dir(CGROUP_ROOT) {
        for h in hierarchies.flatten() {
            let top = h.path().join(name);
            if top.is_dir() {
                walk(&top, &mut acc);
            }
        }
    }
    acc
}

/// Thaws and SIGKILLs every process in the cgroup subtrees named `name`.
pub fn kill_cgroup_processes(name: &str) {
    let dirs = cgroup_dirs(name);
    for d in dirs.iter().filter(|d| d.join("freezer.state").exists()) {
        let _ = fs::write(d.join("freezer.state"), "THAWED");
    }
    let pids: Vec<i32> = dirs
        .iter()
        .filter_map(|d| fs::read_to_string(d.join("cgroup.procs")).ok())
        .flat_map(|s| {
            s.lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect::<Vec<i32>>()
        })
        .collect();
    signal(&pids, libc::SIGKILL);
    wait_gone(&pids, Duration::from_secs(10));
}

fn remove_cgroups(name: &str) {
    for d in cgroup_dirs(name) {
        let _ = fs::remove_dir(&d);
    }
}

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_octal(p)))
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    points
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape_octal(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push(u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn unmount_all_under(dir: &Path) {
    for _ in 0..5 {
        let points = mounts_under(dir);
        if points.is_empty() {
            return;
        }
        for p in points {
            if let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) {
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
    }
}

/// Unix socket paths under `/run/containerd/s/` (where containerd puts shim
/// sockets) that the processes `pids` hold open.
fn shim_sockets(pids: &[i32]) -> Vec<PathBuf> {
    let table = fs::read_to_string("/proc/net/unix").unwrap_or_default();
    let by_inode: std::collections::HashMap<&str, &str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((*f.get(6)?, *f.get(7)?))
        })
        .filter(|(_, path)| path.starts_with("/run/containerd/s/"))
        .collect();
    let mut paths = Vec::new();
    for pid in pids {
        let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let target = fs::read_link(fd.path()).unwrap_or_default();
            let target = target.to_string_lossy();
            let inode = target
                .strip_prefix("socket:[")
                .and_then(|r| r.strip_suffix(']'));
            if let Some(path) = inode.and_then(|i| by_inode.get(i)) {
                paths.push(PathBuf::from(path));
            }
        }
    }
    paths
}

/// Removes every trace of the daemon set living in `dir` with cgroup subtree
/// (and containerd namespace) `name`.
pub fn purge(dir: &Path, name: &str) {
    kill_cgroup_processes(name);
    kill_mentioning(dir);
    kill_cgroup_processes(name);
    unmount_all_under(dir);
    remove_cgroups(name);
    // A set's own network namespace (the veth pair goes with it).
    let _ = std::process::Command::new("ip")
        .args(["netns", "del", &crate::support::netns::netns_name(name)])
        .stderr(std::process::Stdio::null())
        .status();
    // A bridge network's interface outlives its dockerd.
    let _ = std::process::Command::new("ip")
        .args(["link", "del", &crate::support::harness::bridge_name(name)])
        .stderr(std::process::Stdio::null())
        .status();
    if let Err(e) = fs::remove_dir_all(dir) {
        eprintln!("e2e cleanup: cannot remove {}: {e}", dir.display());
    }
}

/// What a reboot ends of the set living in `dir`: every process whose
/// command line mentions it (its shims), their sockets in
/// `/run/containerd/s/` removed.
pub fn kill_mentioning(dir: &Path) {
    let needle = format!("{}/", dir.display());
    let pids = pids_mentioning(&needle);
    let sockets = shim_sockets(&pids);
    signal(&pids, libc::SIGKILL);
    wait_gone(&pids, Duration::from_secs(10));
    for s in sockets {
        let _ = fs::remove_file(s);
    }
}

/// Whether `name` is `<prefix><pid>x...`, made by a test process that is
/// gone: what the tests name after their process is theirs to remove.
pub fn owner_gone(name: &str, prefix: &str) -> bool {
    name.strip_prefix(prefix)
        .and_then(|r| r.split('x').next())
        .and_then(|p| p.parse::<i32>().ok())
        .is_some_and(|pid| !alive(pid))
}

/// Daemon-set directories are named `lz<pid>x<n>`: purge those whose test
/// process is gone (a run killed before its clean-up could run).
pub fn purge_stale(base: &Path) {
    crate::support::netns::purge_stale_segments();
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if owner_gone(&name, "lz") {
            eprintln!("e2e: purging stale daemon set {}", e.path().display());
            purge(&e.path(), &name);
        }
    }
}
