//! The lock that serialises the starts of one shim group (a pod's
//! containers share one shim), so that a second container finds the first
//! one's shim serving rather than racing it.
//!
//! A file per group under the state root's `groups/`, flocked. The holder
//! removes the file before it lets go, so that files do not pile up, one
//! per pod, for the life of the host. That is safe because a taker checks,
//! once it holds the lock, that the file it locked is still the one at the
//! path: a start that opened the file just before it was removed finds it
//! gone and takes the lock anew.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// A group's lock, held until dropped (its file removed then).
pub struct GroupLock {
    path: PathBuf,
    _lock: Flock<File>,
}

impl Drop for GroupLock {
    fn drop(&mut self) {
        // Removed while still held: see the module doc.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Takes the lock of group `name` in `dir`, waiting at most `timeout` for
/// another start to let go (never for ever: a start stuck with it fails
/// this one rather than hang containerd).
pub fn lock(dir: &Path, name: &str, timeout: Duration) -> Result<GroupLock, String> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("create {}: {e}", dir.display()))?;
    let path = dir.join(format!("{name}.lock"));
    let deadline = Instant::now() + timeout;
    loop {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| format!("open {}: {e}", path.display()))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err((_, Errno::EWOULDBLOCK)) => {
                return Err(format!("another start held it for over {timeout:?}"))
            }
            Err((_, e)) => return Err(e.to_string()),
        };
        if still_at(&lock, &path) {
            return Ok(GroupLock { path, _lock: lock });
        }
        // Removed by the holder we waited for: take the new one.
    }
}

/// Whether `file` is the file now at `path`.
fn still_at(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(now)) => held.ino() == now.ino() && held.dev() == now.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn a_lock_leaves_no_file_behind() {
        let dir = tempfile::tempdir().unwrap();
        let l = lock(dir.path(), "pod", Duration::from_secs(1)).unwrap();
        assert!(dir.path().join("pod.lock").exists());
        drop(l);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_second_start_waits_then_fails_after_its_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock(dir.path(), "pod", Duration::from_secs(1)).unwrap();
        let e = lock(dir.path(), "pod", Duration::from_millis(200))
            .err()
            .unwrap();
        assert!(e.contains("another start held it"), "{e}");
    }

    #[test]
    fn starts_of_one_group_never_hold_it_together() {
        let dir = Arc::new(tempfile::tempdir().unwrap());
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (dir, inside) = (dir.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let l = lock(dir.path(), "pod", Duration::from_secs(30)).unwrap();
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        std::thread::sleep(Duration::from_micros(200));
                        inside.fetch_sub(1, Ordering::SeqCst);
                        drop(l);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
