//! The CLI's scratch directories: private (0700), removed when the
//! operation ends, and removed by a later operation when their owner was
//! killed before it could.
//!
//! They hold checkpoint images (process memory, secrets), so one left by a
//! `lazarus migrate` or `checkpoint --export` killed mid-way must not stay
//! on disk for good. Each scratch directory holds an `.owner` file that its
//! operation keeps locked (flock) for as long as it runs; the kernel drops
//! the lock when the process dies, however it dies. Creating a scratch
//! directory first removes its siblings whose `.owner` is unlocked and in
//! which nothing has changed for [`QUIET`]: long enough for a shim still
//! serving a dump whose migrate died to call it off (its lease is 30 s).
//! Directories without an `.owner` (the shim's own scratch shares the
//! parent) are never touched. Nor is anything through a mount: whatever
//! is mounted in an abandoned directory (the overlay of an import killed
//! while it applied the root filesystem changes, which is a container's
//! own filesystem) is unmounted first, and a directory where that fails
//! is left alone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

const OWNER: &str = ".owner";
/// How long an abandoned scratch directory must have been still.
pub const QUIET: Duration = Duration::from_secs(120);

/// One operation's scratch directory, held until dropped.
#[derive(Debug)]
pub struct Scratch {
    // Dropped first: the directory goes before its lock is released.
    dir: tempfile::TempDir,
    _owner: Flock<File>,
}

impl Scratch {
    /// A new `WHAT-XXXXXX` in `parent`, after removing the abandoned ones.
    pub fn new_in(parent: &Path, what: &str) -> Result<Scratch> {
        remove_abandoned(parent, QUIET);
        let context = format!("create a scratch directory in {}", parent.display());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{what}-"))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(Error::io(&context))?;
        let owner = OpenOptions::new()
            .create_new(true)
            .write(true)
            .mode(0o600)
            .open(dir.path().join(OWNER))
            .map_err(Error::io(&context))?;
        // Waited for: another operation's remove_abandoned may hold this
        // new owner for the moment it takes to see the directory is fresh
        // (two exports at once failed with EAGAIN here).
        let owner = Flock::lock(owner, FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(context)(std::io::Error::from(e)))?;
        Ok(Scratch { dir, _owner: owner })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Keeps the directory for good (it holds what the user must recover):
    /// without its `.owner` no later operation removes it.
    pub fn keep(self) -> PathBuf {
        let _ = std::fs::remove_file(self.dir.path().join(OWNER));
        self.dir.keep()
    }
}

/// A scratch directory in memory, in `parent` (the config's
/// `memory_root`, a directory on a tmpfs: /dev/shm/lazarus by default;
/// empty: never) for `bytes` of images, if its file system is a tmpfs and
/// both it and the host have room for them with a margin
/// ([`fits_in_memory`]); none otherwise (the caller writes to disk). CRIU
/// writes into memory several times faster than onto these hosts' disks
/// (1 GiB: 0.7 s against 1.7 s), and a container is frozen while it
/// writes. Only for images that do not need to outlive the host: a reboot
/// empties a tmpfs.
pub fn in_memory(parent: &Path, what: &str, bytes: u64) -> Option<Scratch> {
    if parent.as_os_str().is_empty() {
        return None;
    }
    // The file system it is (or will be) on: its nearest existing one.
    let on = parent.ancestors().find(|p| p.is_dir())?;
    let free = nix::sys::statvfs::statvfs(on)
        .ok()
        .map(|v| v.blocks_available() * v.fragment_size())?;
    let is_tmpfs = nix::sys::statfs::statfs(on)
        .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
    if !is_tmpfs || !fits_in_memory(bytes, free, crate::host::memory::available()?) {
        log::info!("{what} of {bytes} bytes of images: on disk, not in memory");
        return None;
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .recursive(true)
        .create(parent)
        .ok()?;
    Scratch::new_in(parent, what)
        .inspect_err(|e| log::warn!("no scratch in memory for a {what}: {e}"))
        .ok()
}

/// Whether `bytes` of images may go into memory: half as much again and
/// 256 MiB to spare, both in /dev/shm and in the host's available memory
/// (the images are there while the container's own memory is still in
/// use, or being made again).
fn fits_in_memory(bytes: u64, free_in_shm: u64, available: u64) -> bool {
    let need = bytes.saturating_mul(3) / 2 + (256 << 20);
    free_in_shm >= need && available >= need
}

/// Removes the directories in `parent` whose owner is gone and which have
/// been still for `quiet`; returns how many.
pub fn remove_abandoned(parent: &Path, quiet: Duration) -> usize {
    remove_abandoned_named(parent, "", quiet)
}

/// Removes at once the scratch directories in memory of operations
/// called `what` whose owner is gone (a `lazarus snapshot` killed
/// midway): nothing serves from them once their owner died, so they need
/// not be still first, and their memory is given back by the next
/// operation that looks rather than two minutes later.
pub fn remove_abandoned_in_memory(parent: &Path, what: &str) -> usize {
    remove_abandoned_named(parent, &format!("{what}-"), Duration::ZERO)
}

fn remove_abandoned_named(parent: &Path, prefix: &str, quiet: Duration) -> usize {
    let mut removed = 0;
    for entry in std::fs::read_dir(parent).into_iter().flatten().flatten() {
        if !entry.file_name().to_string_lossy().starts_with(prefix) {
            continue;
        }
        let dir = entry.path();
        let Ok(owner) = File::open(dir.join(OWNER)) else {
            continue;
        };
        // Held while we look: a live owner keeps it, so this fails.
        let Ok(_held) = Flock::lock(owner, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let still_for = newest_change(&dir, 3)
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .unwrap_or_default();
        if still_for >= quiet && unmount_under(&dir) && std::fs::remove_dir_all(&dir).is_ok() {
            removed += 1;
        }
    }
    removed
}

/// Unmounts (detached, deepest first) whatever is mounted at or under
/// `dir`; true only if nothing is mounted there any more, so that a
/// removal never goes through a mount into another filesystem.
pub fn unmount_under(dir: &Path) -> bool {
    let Ok(dir) = dir.canonicalize() else {
        return false;
    };
    let mounted = || -> Option<Vec<PathBuf>> {
        let info = procfs::process::Process::myself()
            .and_then(|p| p.mountinfo())
            .ok()?;
        let mut points: Vec<PathBuf> = info
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|p| p.starts_with(&dir))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        Some(points)
    };
    let Some(points) = mounted() else {
        return false;
    };
    for p in &points {
        let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
    }
    points.is_empty() || mounted().is_some_and(|left| left.is_empty())
}

/// The latest modification time under `path`, `depth` levels down.
fn newest_change(path: &Path, depth: usize) -> Option<SystemTime> {
    let meta = std::fs::symlink_metadata(path).ok()?;
    let mut newest = meta.modified().ok()?;
    if meta.is_dir() && depth > 0 {
        for entry in std::fs::read_dir(path).ok()?.flatten() {
            if let Some(t) = newest_change(&entry.path(), depth - 1) {
                newest = newest.max(t);
            }
        }
    }
    Some(newest)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn age(path: &Path, by: Duration) {
        let then = SystemTime::now() - by;
        for p in [path.join(OWNER), path.join("images"), path.to_path_buf()] {
            if p.exists() {
                File::open(&p).unwrap().set_modified(then).unwrap();
            }
        }
    }

    #[test]
    fn a_scratch_dir_is_private_and_goes_when_dropped() {
        let parent = tempfile::tempdir().unwrap();
        let s = Scratch::new_in(parent.path(), "migrate").unwrap();
        let mode = std::fs::metadata(s.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(s.path().join(OWNER).exists());
        let path = s.path().to_path_buf();
        drop(s);
        assert!(!path.exists());
    }

    #[test]
    fn a_live_owners_dir_is_kept_however_old() {
        let parent = tempfile::tempdir().unwrap();
        let s = Scratch::new_in(parent.path(), "migrate").unwrap();
        age(s.path(), Duration::from_secs(3600));
        assert_eq!(remove_abandoned(parent.path(), QUIET), 0);
        assert!(s.path().exists());
    }

    #[test]
    fn an_abandoned_dir_goes_once_still_for_the_quiet_time() {
        let parent = tempfile::tempdir().unwrap();
        let s = Scratch::new_in(parent.path(), "migrate").unwrap();
        std::fs::create_dir(s.path().join("images")).unwrap();
        // As if the owner died: the directory stays, its lock goes.
        let kept = s.dir.keep();
        drop(s._owner);
        assert_eq!(
            remove_abandoned(parent.path(), QUIET),
            0,
            "just abandoned: a shim may still be finishing in it"
        );
        age(&kept, QUIET + Duration::from_secs(1));
        assert_eq!(remove_abandoned(parent.path(), QUIET), 1);
        assert!(!kept.exists());
    }

    #[test]
    fn a_kept_dir_is_never_removed() {
        let parent = tempfile::tempdir().unwrap();
        let kept = Scratch::new_in(parent.path(), "migrate").unwrap().keep();
        age(&kept, Duration::from_secs(3600));
        assert_eq!(remove_abandoned(parent.path(), QUIET), 0);
        assert!(kept.exists());
    }

    #[test]
    fn images_go_into_memory_only_with_half_again_and_256_mib_to_spare() {
        const MIB: u64 = 1 << 20;
        let need = 1024 * MIB * 3 / 2 + 256 * MIB;
        assert!(fits_in_memory(1024 * MIB, need, need));
        assert!(!fits_in_memory(1024 * MIB, need - 1, u64::MAX));
        assert!(!fits_in_memory(1024 * MIB, u64::MAX, need - 1));
        assert!(!fits_in_memory(u64::MAX, u64::MAX / 2, u64::MAX / 2));
    }

    /// Only a tmpfs is memory; an empty root turns it off.
    #[test]
    fn a_scratch_in_memory_is_made_only_on_a_tmpfs() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let made = in_memory(&shm.path().join("a/b"), "import", 1 << 20).unwrap();
        assert!(made.path().starts_with(shm.path().join("a/b")));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(shm.path().join("a/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
        assert!(in_memory(Path::new(""), "import", 1 << 20).is_none());
        let here = tempfile::tempdir().unwrap();
        let tmpfs = nix::sys::statfs::statfs(here.path())
            .is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        assert_eq!(in_memory(here.path(), "import", 1 << 20).is_some(), tmpfs);
    }

    /// A killed snapshot's dump in memory goes at the next look, still or
    /// not; a live one, and another operation's, stay.
    #[test]
    fn a_dead_snapshots_dump_in_memory_goes_at_once() {
        let shm = tempfile::tempdir_in("/dev/shm").unwrap();
        let root = shm.path().join("lazarus");
        let live = in_memory(&root, "snapshot", 1 << 20).expect("room in /dev/shm");
        let dead = in_memory(&root, "snapshot", 1 << 20).unwrap();
        let other = in_memory(&root, "import", 1 << 20).unwrap();
        let (dead_dir, other_dir) = (dead.dir.keep(), other.dir.keep());
        drop((dead._owner, other._owner));
        assert_eq!(remove_abandoned_in_memory(&root, "snapshot"), 1);
        assert!(!dead_dir.exists(), "the dead one's dump is removed");
        assert!(live.path().exists(), "a live one's stays");
        assert!(other_dir.exists(), "another operation's stays");
        std::fs::remove_dir_all(other_dir).unwrap();
    }

    #[test]
    fn a_dir_without_an_owner_file_is_never_touched() {
        let parent = tempfile::tempdir().unwrap();
        let other = parent.path().join("restore-shim");
        std::fs::create_dir(&other).unwrap();
        age(&other, Duration::from_secs(3600));
        assert_eq!(remove_abandoned(parent.path(), QUIET), 0);
        assert!(other.exists());
    }

    /// Root only (CI runs as root): an import killed while the container's
    /// filesystem was mounted in its scratch directory. The clean-up
    /// unmounts it, then removes the directory; what was mounted there is
    /// untouched.
    #[test]
    fn an_abandoned_dir_is_unmounted_before_it_is_removed() {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test bind-mounts a directory: run it as root"
        );
        let parent = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::write(elsewhere.path().join("data"), b"the container's").unwrap();
        let s = Scratch::new_in(parent.path(), "import").unwrap();
        let rootfs = s.path().join("archive/rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        nix::mount::mount(
            Some(elsewhere.path()),
            &rootfs,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let kept = s.dir.keep();
        drop(s._owner);
        age(&kept, QUIET + Duration::from_secs(1));
        let then = SystemTime::now() - QUIET - Duration::from_secs(1);
        for p in [rootfs.join("data"), rootfs.clone(), kept.join("archive")] {
            File::open(&p).unwrap().set_modified(then).unwrap();
        }
        let rootfs = rootfs.canonicalize().unwrap();
        let removed = remove_abandoned(parent.path(), QUIET);
        let still_mounted = procfs::process::Process::myself()
            .unwrap()
            .mountinfo()
            .unwrap()
            .into_iter()
            .any(|m| m.mount_point == rootfs);
        if still_mounted {
            let _ = nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH);
        }
        assert!(!still_mounted, "left mounted");
        assert_eq!(removed, 1);
        assert!(!kept.exists());
        assert_eq!(
            std::fs::read(elsewhere.path().join("data")).unwrap(),
            b"the container's"
        );
    }
}
