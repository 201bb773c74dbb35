//! TaskOOM: the kernel's OOM-kill notifications for a container's memory
//! cgroup (cgroup v1: an eventfd registered on memory.oom_control).

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

/// Calls `on_oom` each time the cgroup at `dir` (a v1 memory cgroup) hits an
/// OOM; the watching thread ends when the cgroup is removed.
pub fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) {
    let spawned = std::thread::Builder::new()
        .name("oom".into())
        .spawn(move || {
            if let Err(e) = watch(&dir, on_oom) {
                log::warn!("OOM notifications for {}: {e}", dir.display());
            }
        });
    if let Err(e) = spawned {
        log::warn!("spawn OOM watcher: {e}");
    }
}

fn watch(dir: &std::path::Path, on_oom: impl Fn()) -> std::io::Result<()> {
    let control_path = dir.join("memory.oom_control");
    let control = File::open(&control_path)?;
    let mut event = new_eventfd()?;
    std::fs::write(
        dir.join("cgroup.event_control"),
        format!("{} {}", event.as_raw_fd(), control.as_raw_fd()),
    )?;
    let mut count = [0u8; 8];
    loop {
        event.read_exact(&mut count)?;
        // The eventfd also fires when the cgroup goes away.
        if !control_path.exists() {
            return Ok(());
        }
        on_oom();
    }
}

/// A new eventfd (counter 0, close-on-exec), owned by the File returned.
fn new_eventfd() -> std::io::Result<File> {
    // SAFETY: eventfd takes no pointer; it returns a new fd or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just opened here and nothing else owns it.
    Ok(unsafe { File::from_raw_fd(fd) })
}
