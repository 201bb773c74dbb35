//! The restore a Start runs for a container created from a checkpoint:
//! CRIU's restore of the tree as the shim's child (a group's network lock
//! taken around it), the restored init adopted as a running task, a
//! post-copy restore's lazy-pages daemon watched to its end, and every
//! failure undone. The Checkpoint RPC is `checkpoint.rs`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use containerd_shim_protos::events::task::TaskStart;

use super::TaskService;
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::restore::RestoreTarget;
use lazarus_core::host::cgroup;
use lazarus_core::host::netlock::{self, NetlockRequest};

use crate::container::ContainerCell;
use crate::error::{Error, Result};
use crate::io;
use crate::reaper::ReaperWait;
use crate::state::{InitState, PendingRestore};

/// How long the processes a failed restore left get to die.
const RESTORE_CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

impl TaskService {
    /// CRIU's restore of the tree; the network namespace CRIU makes is
    /// configured by the runtime's hooks (and, for a group restore that
    /// asks, locked first: `lock_into` receives where).
    fn restore_tree(
        &self,
        pending: &PendingRestore,
        target: &RestoreTarget,
        mut lock_into: Option<&mut Option<PathBuf>>,
    ) -> lazarus_core::Result<lazarus_core::checkpoint::restore::Restored> {
        pending
            .plan
            .restore(self.criu.as_ref(), target, &mut |pid| {
                if let Some(slot) = lock_into.as_mut() {
                    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
                    if netlock::lock(&netns, &ReaperWait)? {
                        **slot = Some(netns);
                    }
                }
                self.runtime
                    .restore_network(target.id, target.bundle, &pending.spec, pid)
                    .map_err(|e| lazarus_core::Error::Other(e.to_string()))
            })
    }

    /// Start of a container created from a checkpoint (now Restoring): CRIU
    /// restores its tree as our child; then it is an ordinary running init.
    /// A Kill meanwhile (`abort`) calls CRIU off, or kills the tree once it
    /// is back. However this ends (an error, a panic), Restoring ends.
    pub(super) fn start_restored(
        &self,
        cell: &Arc<ContainerCell>,
        pending: PendingRestore,
        abort: Arc<AtomicBool>,
    ) -> Result<i32> {
        let ending = EndRestoring {
            service: self,
            cell,
            abort: abort.clone(),
        };
        let result = self.restore_and_adopt(cell, pending, &abort);
        drop(ending);
        result
    }

    // Over 80 lines on purpose: every step of a restore is followed by
    // its own undo for a failure there (a plan back for a retry, the
    // network lock, the pid killed), in the order the task's state needs;
    // split apart, each undo would be read far from what it undoes.
    fn restore_and_adopt(
        &self,
        cell: &Arc<ContainerCell>,
        mut pending: PendingRestore,
        abort: &Arc<AtomicBool>,
    ) -> Result<i32> {
        let (id, bundle, stdio) = {
            let c = cell.lock();
            (c.id.clone(), c.bundle.clone(), c.init.stdio.clone())
        };
        let kept_log = match self.settings.kept_log(&id, image::RESTORE_LOG) {
            Ok(path) => path,
            Err(e) => {
                // Nothing was restored: the plan goes back for a retry.
                self.restore_failed(cell, Some(Box::new(pending)));
                return Err(e);
            }
        };
        let stdio_fds = pending.io.as_ref().and_then(|io| io.process_fds());
        let started = std::time::Instant::now();
        let cancel = || abort.load(Ordering::SeqCst);
        let target = RestoreTarget {
            id: &id,
            bundle: &bundle,
            spec: &pending.spec,
            stdio: stdio_fds,
            keep_failed_log: Some(&kept_log),
            scratch_root: &self.settings.restore_scratch,
            cancel: Some(&cancel),
        };
        // The restored init may die before its pid is registered.
        let spawn = self.pids.spawn();
        let (netlock, restored) = self.restore_locked(&pending, &target, &id);
        let mut restored = match restored {
            Ok(r) => r,
            Err(e) => {
                undo_restore(&pending, &id, netlock.as_ref().map(|(_, n)| n));
                self.restore_failed(cell, Some(Box::new(pending)));
                return Err(e.into());
            }
        };
        let mut lazy_pages = restored.lazy_pages.take();
        let streams = match (pending.io.take(), restored.pts_master) {
            (Some(io), _) => io.connect(),
            (None, Some(master)) => io::console_streams(&stdio, master),
            (None, None) => Err(Error::Runtime("restored terminal has no master".into())),
        };
        if let Err(e) = self.runtime.adopt(&id, &bundle, restored.pid) {
            // Without runtime state the container cannot be managed: do not
            // leave an unmanageable process behind, nor its cgroup, images
            // or network lock; the task ends Stopped with that exit.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(restored.pid),
                nix::sys::signal::SIGKILL,
            );
            if let Some(daemon) = lazy_pages.as_mut() {
                daemon.kill();
            }
            undo_restore(&pending, &id, netlock.as_ref().map(|(_, n)| n));
            self.restore_failed(cell, None);
            return Err(e);
        }
        // The dump ran under CRIU's freezer and the restored cgroup comes
        // back with that state: a restored container must run.
        cgroup::thaw(&cgroup::path_of(&pending.spec, &id));
        let killed_meanwhile = self.now_running(cell, restored.pid, streams, abort);
        self.watch_oom(&id);
        self.register(&spawn, cell, "", restored.pid);
        if killed_meanwhile {
            log::info!("{id} was killed while it was restored: killing it now");
            if let Err(e) = self.runtime.kill(&id, libc::SIGKILL, true) {
                log::error!("kill restored {id}: {e}");
            }
        }
        if let Some((request, netns)) = netlock {
            release_at_expiry(id.clone(), request, netns);
        }
        log_restored(
            &id,
            restored.pid,
            started,
            &pending.plan,
            lazy_pages.is_some(),
        );
        match lazy_pages {
            Some(daemon) => watch_lazy_pages(id, restored.pid, daemon, pending.plan),
            None => pending.plan.discard_temporary_images(),
        }
        Ok(restored.pid)
    }

    /// The restored init is the container's: its pid and stdio recorded,
    /// TaskStart published, Running. Returns whether a Kill came during the
    /// restore (the caller kills it now): under the lock, a Kill before
    /// this saw Restoring and set the flag; one after it sees Running and
    /// signals the runtime.
    fn now_running(
        &self,
        cell: &ContainerCell,
        pid: i32,
        streams: Result<io::ProcessStreams>,
        abort: &AtomicBool,
    ) -> bool {
        let mut c = cell.lock();
        c.init.pid = pid;
        match streams {
            Ok(s) => c.init.streams = Some(s),
            Err(e) => log::error!("stdio of restored {}: {e}", c.id),
        }
        self.publish(TaskStart {
            container_id: c.id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        let killed = abort.load(Ordering::SeqCst);
        c.state.started();
        killed
    }

    /// CRIU's restore, with the network lock a member of a group restore
    /// holds until the whole group is back (the client unlocks it, or the
    /// lock expires): the request and the namespace, when one was locked.
    fn restore_locked(
        &self,
        pending: &PendingRestore,
        target: &RestoreTarget,
        id: &str,
    ) -> (
        Option<(NetlockRequest, PathBuf)>,
        lazarus_core::Result<lazarus_core::checkpoint::restore::Restored>,
    ) {
        match group_netlock(pending) {
            Err(e) => (None, Err(e)),
            Ok(GroupLock::None) => (None, self.restore_tree(pending, target, None)),
            Ok(GroupLock::Held(request, netns)) => {
                let restored = self.restore_tree(pending, target, None);
                (Some((request, netns)), restored)
            }
            Ok(GroupLock::AtNetworkSetup(request)) => {
                // The namespace is made by the restore: locked as soon as it
                // exists, before its address comes up.
                let mut netns = None;
                let restored = self.restore_tree(pending, target, Some(&mut netns));
                if netns.is_none() && restored.is_ok() {
                    log::warn!("group restore of {id}: its network namespace was not locked");
                }
                (netns.map(|n| (request, n)), restored)
            }
        }
    }

    /// The restore failed: Restoring ends (back to CreatedFromCheckpoint
    /// with the plan, for a retry, unless a Kill asked it to stop; else
    /// Stopped), and an exit that comes of it is reported now.
    fn restore_failed(&self, cell: &ContainerCell, pending: Option<Box<PendingRestore>>) {
        let mut c = cell.lock();
        if let Some(exit) = c.state.start_failed(pending) {
            self.report_exit(&mut c, "", exit);
        }
    }
}

/// What a failed restore leaves, undone: the group's network lock, what a
/// failed CRIU or a killed tree left in the new cgroup (the core already
/// killed those processes before reading CRIU's log; this is the guard for
/// the other failures, and removes the directories), and containerd's
/// unpacked copy of the images.
fn undo_restore(pending: &PendingRestore, id: &str, netns: Option<&PathBuf>) {
    if let Some(netns) = netns {
        let _ = netlock::unlock(netns, &ReaperWait);
    }
    let cgroup = cgroup::path_of(&pending.spec, id);
    let left = cgroup::destroy(&cgroup, RESTORE_CLEANUP_TIMEOUT);
    if !left.is_empty() {
        log::error!("failed restore of {id}: pids {left:?} would not die");
    }
    pending.plan.discard_temporary_images();
}

/// Ends a container's Restoring if the restore left it there (an error
/// before any transition, a panic): Stopped, with the exit reported, so
/// Wait returns and Delete is allowed. The restore is told apart from any
/// later one by its abort flag.
struct EndRestoring<'a> {
    service: &'a TaskService,
    cell: &'a ContainerCell,
    abort: Arc<AtomicBool>,
}

impl Drop for EndRestoring<'_> {
    fn drop(&mut self) {
        let mut c = self.cell.lock_after_panic();
        let ours =
            matches!(&c.state, InitState::Restoring { abort } if Arc::ptr_eq(abort, &self.abort));
        if !ours {
            return;
        }
        log::error!(
            "restore of {} ended without a result: the task is stopped",
            c.id
        );
        if let Some(exit) = c.state.abandon() {
            self.service.report_exit(&mut c, "", exit);
        }
    }
}

/// The restore's line in the log, with CRIU's statistics.
fn log_restored(
    id: &str,
    pid: i32,
    started: std::time::Instant,
    plan: &lazarus_core::checkpoint::restore::RestorePlan,
    post_copy: bool,
) {
    let stats = image::read_stats(&image::stats_file(
        &plan.images,
        &plan.work,
        "stats-restore",
    ))
    .unwrap_or_default();
    log::info!(
        "restored {id} (pid {pid}) in {:?}{}: {stats:?}",
        started.elapsed(),
        if post_copy {
            " (post-copy: its memory follows)"
        } else {
            ""
        }
    );
}

/// The longest a post-copy restore waits for its memory: CRIU's own
/// default deadline; a gigabyte takes seconds.
const LAZY_PAGES_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// Watches a post-copy restore's lazy-pages daemon to its end. If it fails
/// (the source or the link died) the pages it had not fetched never will,
/// and the process would read zeroes there (the kernel drops a dead
/// daemon's userfaultfd): the container is killed instead, and the log says
/// why. The images are discarded only then: the daemon reads them.
fn watch_lazy_pages(
    id: String,
    pid: i32,
    mut daemon: Box<dyn lazarus_core::criu::LazyPages>,
    plan: lazarus_core::checkpoint::restore::RestorePlan,
) {
    let watch = move || {
        let started = std::time::Instant::now();
        let status = daemon.wait(LAZY_PAGES_TIMEOUT);
        if status == Some(0) {
            log::info!(
                "post-copy restore of {id}: all of its memory arrived {:?} after it resumed",
                started.elapsed()
            );
        } else {
            if status.is_none() {
                daemon.kill();
            }
            let excerpt = lazarus_core::criu::log::excerpt(daemon.log(), 10);
            log::error!(
                "post-copy restore of {id}: its memory stopped arriving (lazy-pages daemon {}: \
                 {}; log {}): killing the container (pid {pid}), whose missing pages would \
                 read as zeroes",
                match status {
                    Some(code) => format!("exit status {code}"),
                    None => format!("still running after {LAZY_PAGES_TIMEOUT:?}"),
                },
                excerpt.errors.join("; "),
                daemon.log().display()
            );
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
        }
        plan.discard_temporary_images();
    };
    if let Err(e) = std::thread::Builder::new()
        .name("lazy-pages".into())
        .spawn(watch)
    {
        log::error!("cannot watch a post-copy restore's memory: {e}");
    }
}

/// A group restore's network lock ([`netlock::NETLOCK_FILE`] in the
/// images), as far as it can be taken before CRIU runs.
enum GroupLock {
    /// Not a group restore, or the host's namespace (never locked).
    None,
    /// The spec names the namespace: locked now.
    Held(NetlockRequest, PathBuf),
    /// The restore makes the namespace (Docker's case): locked when CRIU
    /// has made it, before the runtime's hooks bring its address up.
    AtNetworkSetup(NetlockRequest),
}

fn group_netlock(pending: &PendingRestore) -> lazarus_core::Result<GroupLock> {
    let Some(request) = NetlockRequest::read(&pending.plan.images)? else {
        return Ok(GroupLock::None);
    };
    let Some(netns) = netlock::spec_netns(&pending.spec) else {
        return Ok(GroupLock::AtNetworkSetup(request));
    };
    Ok(match netlock::lock(&netns, &ReaperWait)? {
        true => GroupLock::Held(request, netns),
        false => GroupLock::None,
    })
}

/// Releases a group restore's network lock when it expires, if its client
/// has not (a client that died must not leave the container cut off).
fn release_at_expiry(id: String, request: NetlockRequest, netns: PathBuf) {
    let name = id.clone();
    let spawned = std::thread::Builder::new()
        .name("netlock-expiry".into())
        .spawn(move || {
            let now = chrono::Utc::now().timestamp();
            let wait = u64::try_from(request.expires_at - now).unwrap_or(0);
            std::thread::sleep(std::time::Duration::from_secs(wait));
            match netlock::unlock(&netns, &ReaperWait) {
                Ok(true) => log::warn!(
                    "{id}: the group restore's network lock expired before its client \
                     released it; released now"
                ),
                Ok(false) => {}
                Err(e) => log::error!("{id}: cannot release the expired network lock: {e}"),
            }
        });
    if let Err(e) = spawned {
        log::error!("{name}: no thread to release the network lock at its expiry: {e}");
    }
}
