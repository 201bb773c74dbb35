//! CRIU's cgroup yard: during a restore that manages cgroups, CRIU mounts
//! a tmpfs `.criu.cgyard.XXXXXX` in its work directory (each cgroup v1
//! hierarchy mounted inside) and unmounts it at the end. A CRIU killed
//! mid-restore (deadline, log bound) cannot: the mounts stay on the host
//! and pin the work directory.

use std::path::{Path, PathBuf};

const PREFIX: &str = ".criu.cgyard.";

/// Unmounts and removes any cgroup yard CRIU left in `work`.
pub fn remove_left_yard(work: &Path) {
    let work = work.canonicalize().unwrap_or_else(|_| work.to_path_buf());
    let mut points = yard_mounts(&work);
    // Deepest first: the hierarchies inside, then the tmpfs.
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for point in &points {
        if let Err(e) = detach(point) {
            log::warn!("unmount CRIU's cgroup yard {}: {e}", point.display());
        }
    }
    for entry in std::fs::read_dir(&work).into_iter().flatten().flatten() {
        if is_yard(&entry.file_name()) {
            // Only an empty (unmounted) directory goes.
            if let Err(e) = std::fs::remove_dir(entry.path()) {
                log::warn!("remove {}: {e}", entry.path().display());
            }
        }
    }
}

/// Lazily unmounts `point` (MNT_DETACH): gone from the tree now, freed once
/// nothing uses it.
fn detach(point: &Path) -> nix::Result<()> {
    nix::mount::umount2(point, nix::mount::MntFlags::MNT_DETACH)
}

fn is_yard(name: &std::ffi::OsStr) -> bool {
    name.to_string_lossy().starts_with(PREFIX)
}

/// Mount points in a yard directly under `work`.
fn yard_mounts(work: &Path) -> Vec<PathBuf> {
    let Ok(mounts) = procfs::process::Process::myself().and_then(|p| p.mountinfo()) else {
        return Vec::new();
    };
    mounts
        .iter()
        .map(|m| m.mount_point.clone())
        .filter(|p| {
            p.strip_prefix(work)
                .ok()
                .and_then(|rel| rel.components().next())
                .is_some_and(|first| is_yard(first.as_os_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_yard_directories_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".criu.cgyard.abc123")).unwrap();
        std::fs::create_dir(dir.path().join("other")).unwrap();
        std::fs::write(dir.path().join("pages-1.img"), b"x").unwrap();
        remove_left_yard(dir.path());
        assert!(!dir.path().join(".criu.cgyard.abc123").exists());
        assert!(dir.path().join("other").is_dir() && dir.path().join("pages-1.img").is_file());
        assert!(yard_mounts(dir.path()).is_empty());
    }
}
