//! How much memory a container uses and how much the host has to spare:
//! what decides whether a dump may be written into memory (a tmpfs) rather
//! than onto disk (`scratch::in_memory`).

use std::path::{Path, PathBuf};

/// Bytes the memory cgroup of `pid` uses: cgroup v1's memory controller
/// (memory.usage_in_bytes, page cache included) where it is mounted, as on
/// hybrid hosts, else cgroup v2's memory.current.
pub fn cgroup_memory(pid: u32) -> Option<u64> {
    let groups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let file = cgroup_memory_file(&groups)?;
    std::fs::read_to_string(file).ok()?.trim().parse().ok()
}

/// The file that holds a memory cgroup's use, from /proc/PID/cgroup.
fn cgroup_memory_file(groups: &str) -> Option<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let v1 = groups.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        controllers
            .split(',')
            .any(|c| c == "memory")
            .then_some(path)
    });
    match v1 {
        Some(path) => Some(
            root.join("memory")
                .join(path.trim_start_matches('/'))
                .join("memory.usage_in_bytes"),
        ),
        None => {
            let path = groups.lines().find_map(|l| l.strip_prefix("0::"))?;
            Some(
                root.join(path.trim_start_matches('/'))
                    .join("memory.current"),
            )
        }
    }
}

/// /proc/meminfo's MemAvailable, in bytes.
pub fn available() -> Option<u64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kib = info
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse::<u64>()
        .ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_containers_memory_use_is_read_from_its_memory_cgroup_v1_or_v2() {
        let hybrid = "9:name=systemd:/x\n4:memory:/lz1/abc\n1:cpu:/\n0::/\n";
        assert_eq!(
            cgroup_memory_file(hybrid).unwrap(),
            Path::new("/sys/fs/cgroup/memory/lz1/abc/memory.usage_in_bytes")
        );
        let joined = "3:cpu,memory:/a\n";
        assert!(cgroup_memory_file(joined)
            .unwrap()
            .starts_with("/sys/fs/cgroup/memory/a"));
        assert_eq!(
            cgroup_memory_file("0::/system.slice/docker-1.scope\n").unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/docker-1.scope/memory.current")
        );
        assert_eq!(cgroup_memory_file(""), None);
    }

    /// This process's own cgroup and the host's meminfo, as a shim or the
    /// CLI reads a container's.
    #[test]
    fn this_processs_memory_use_and_the_hosts_spare_memory_are_read() {
        assert!(cgroup_memory(std::process::id()).is_some_and(|b| b > 0));
        assert!(available().is_some_and(|b| b > 0));
    }
}
