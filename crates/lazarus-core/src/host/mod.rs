//! Facts about the machine Lazarus runs on, in one place: where cgroups
//! are and how a container's cgroup is frozen, thawed, emptied and removed
//! (cgroup v1, as on this project's hosts, and v2), a container's overlay
//! mounted for a moment, a network namespace locked for a group's
//! checkpoint or restore, a container's memory use and the host's spare
//! memory, and the kernel version.

pub mod cgroup;
pub mod memory;
pub mod netlock;
pub mod overlay;

/// Whether the running kernel is at least `major.minor`.
pub fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else {
        return true;
    };
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}
