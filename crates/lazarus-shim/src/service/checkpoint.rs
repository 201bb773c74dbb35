//! The Checkpoint RPC and restore-at-Start, on top of `crate::checkpoint`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::{TaskCheckpointed, TaskStart};
use oci_spec::runtime::Spec;

use super::TaskService;
use lazarus_core::checkpoint::dump::{self, DumpPaths, DumpTarget};
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::request::{should_exit, CheckpointRequest};
use lazarus_core::checkpoint::restore::RestoreTarget;
use lazarus_core::checkpoint::{control, postcopy};
use lazarus_core::host::cgroup;
use lazarus_core::host::netlock::{self, NetlockRequest};

use crate::container::{self, ContainerCell};
use crate::error::{Error, Result};
use crate::io;

use crate::process::Status;
use crate::reaper::ReaperWait;
use crate::state::{InitState, PendingRestore};

/// How long the processes a failed restore left get to die.
const RESTORE_CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The container as it was when the Checkpoint began.
struct Dumped<'a> {
    id: &'a str,
    bundle: &'a Path,
    pid: i32,
    terminal: bool,
    /// Paused before the dump: leave it frozen whatever happens.
    paused: bool,
}

impl TaskService {
    /// Dumps the task with CRIU. The container is Checkpointing meanwhile
    /// (see `crate::state`): State, Pids, Kill, Connect and exit handling go
    /// on; Delete, Pause, Exec and a second Checkpoint are refused.
    pub fn checkpoint(&self, req: &CheckpointTaskRequest) -> Result<()> {
        self.checkpoint_for(req, &|| false, None)
    }

    /// The image directory of a migration's checkpoint request (one whose
    /// image path holds a page server request), else None.
    pub fn migration_images(&self, req: &CheckpointTaskRequest) -> Option<PathBuf> {
        let request = crate::options::decode_checkpoint(req.options.as_ref()).ok()?;
        let images = PathBuf::from(&request.image_path);
        (!request.image_path.is_empty() && control::is_requested(&images)).then_some(images)
    }

    /// A migration's checkpoint answers once the image directory is
    /// complete: post-copy, all but the memory, which CRIU now serves;
    /// stop-and-copy, everything, the memory having been pushed to the
    /// destination. The dump goes on in the background, the container
    /// frozen, until the destination has every page (post-copy) or the
    /// client releases it (stop-and-copy): then, with `exit`, the container
    /// ends as after any dump. Called off, it runs on, thawed. The container
    /// stays Checkpointing meanwhile. `images` is the request's image
    /// directory ([`Self::migration_images`]).
    pub fn checkpoint_migration(
        self: &Arc<Self>,
        req: CheckpointTaskRequest,
        images: PathBuf,
    ) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::channel::<Option<Result<()>>>();
        let service = Arc::clone(self);
        let ready = tx.clone();
        std::thread::Builder::new()
            .name("migration-dump".into())
            .spawn(move || {
                let ready = move || {
                    let _ = ready.send(None);
                };
                let result = service.checkpoint_for(&req, &|| false, Some(&ready));
                let how = match &result {
                    Ok(()) => {
                        let how = format!("migration dump of {}: every page was sent", req.id);
                        log::info!("{how}");
                        how
                    }
                    Err(e) => {
                        let how = format!("migration dump of {}: {e}; it runs on here", req.id);
                        log::error!("{how}");
                        how
                    }
                };
                control::say_ended(&images, &how);
                let _ = tx.send(Some(result));
            })
            .map_err(|e| Error::Runtime(format!("start the migration dump: {e}")))?;
        match rx.recv() {
            Ok(None) => Ok(()),
            Ok(Some(result)) => result,
            Err(_) => Err(Error::Runtime("the migration dump thread died".into())),
        }
    }

    /// [`Self::checkpoint`] for a client that may go away: `client_gone` is
    /// asked while CRIU dumps, and true calls the dump off (CRIU stopped,
    /// the container left as it was) rather than finishing an image nobody
    /// will receive and, with `exit`, stopping the container for it.
    pub fn checkpoint_for(
        &self,
        req: &CheckpointTaskRequest,
        client_gone: &dyn Fn() -> bool,
        ready: Option<&dyn Fn()>,
    ) -> Result<()> {
        let request = crate::options::decode_checkpoint(req.options.as_ref())?;
        let cell = self.get(&req.id)?;
        let (bundle, pid, terminal, paused) = {
            let _ops = cell.ops();
            let mut c = cell.lock();
            c.process("")?;
            let paused = c.state.status() == Status::Paused;
            c.state.checkpoint(&req.id)?;
            (c.bundle.clone(), c.init.pid, c.init.stdio.terminal, paused)
        };
        let target = Dumped {
            id: &req.id,
            bundle: &bundle,
            pid,
            terminal,
            paused,
        };
        let dumped = self.dump(req, request, &target, client_gone, ready);
        let mut c = cell.lock();
        if let Ok(images) = &dumped {
            // Before the state changes: an exit held meanwhile (the dump's
            // `exit`) is reported after it.
            self.publish(TaskCheckpointed {
                container_id: req.id.clone(),
                checkpoint: images.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        if let Some(exit) = c.state.checkpointed() {
            self.report_exit(&mut c, "", exit);
        }
        dumped.map(|_| ())
    }

    /// The dump itself, with no lock held. Returns the image directory.
    fn dump(
        &self,
        req: &CheckpointTaskRequest,
        mut request: CheckpointRequest,
        c: &Dumped,
        client_gone: &dyn Fn() -> bool,
        ready: Option<&dyn Fn()>,
    ) -> Result<PathBuf> {
        let spec = container::load_spec(c.bundle)?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        request.apply_annotations(&annotations)?;
        let exit = should_exit(
            &request,
            &annotations,
            &self.settings.checkpoint_exit,
            &self.settings.namespace,
        )?;
        let (images, work) = dump_dirs(req, &request)?;
        let page_server = postcopy::PageServer::read(&images)?;
        let store_pages = self.stores_pages(&request, page_server.as_ref());
        let target = DumpTarget {
            id: c.id,
            pid: c.pid,
            bundle: c.bundle,
            spec: &spec,
            terminal: c.terminal,
        };
        let started = std::time::Instant::now();
        let kept_log = self.settings.kept_log(c.id, image::DUMP_LOG)?;
        // A migration's dump outlives the RPC that asked for it: its client
        // calls it off with a file, or by no longer renewing its lease.
        let called_off = || control::called_off(&images);
        let paths = DumpPaths {
            images: &images,
            work: &work,
            keep_failed_log: Some(&kept_log),
            cancel: Some(match page_server {
                Some(_) => &called_off,
                None => client_gone,
            }),
            // Compressed pages pay where containerd and Docker copy the
            // directory (its own temporary one, tarred into the content
            // store: Docker, ctr, CRI). An image path is the client's own
            // directory, read where it lies: there CRIU's raw images are
            // written straight, at raw CRIU's speed, and restore reads
            // them without decompressing (runc writes the same files).
            compress_pages: self.settings.compress_pages
                && request.image_path.is_empty()
                && !store_pages,
            page_server: page_server.as_ref(),
            ready,
        };
        let dumped = dump::dump(self.criu.as_ref(), &target, &request, exit, &paths);
        if dumped.is_err() {
            back_as_it_was(&spec, c);
        }
        dumped?;
        if store_pages {
            self.stash_pages(&images, c.id, &spec);
        }
        if request.image_path.is_empty() && self.settings.namespace == DOCKER_NAMESPACE {
            mark_as_containerds_copy(&images)?;
        }
        let stats =
            image::read_stats(&image::stats_file(&images, &work, "stats-dump")).unwrap_or_default();
        log::info!(
            "checkpoint {} into {} ({}) in {:?}: {stats:?}",
            c.id,
            images.display(),
            if exit { "exit" } else { "leave running" },
            started.elapsed()
        );
        Ok(images)
    }

    /// Whether the dump's page images go to the snapshot store: those of
    /// Docker's own checkpoint (containerd's directory, not a client's
    /// image path, nor a migration's), when the settings say so.
    fn stores_pages(
        &self,
        request: &CheckpointRequest,
        page_server: Option<&postcopy::PageServer>,
    ) -> bool {
        self.settings.store_docker_checkpoints
            && request.image_path.is_empty()
            && self.settings.namespace == DOCKER_NAMESPACE
            && page_server.is_none()
    }

    /// A Docker checkpoint's page images into the snapshot store.
    fn stash_pages(&self, images: &Path, id: &str, spec: &Spec) {
        // The dump is done (and, with exit, the container gone): a
        // store that fails leaves the checkpoint as it is, pages
        // included, rather than failing it.
        if let Err(e) = super::stored_pages::stash(
            &self.settings.store_root,
            images,
            &self.settings.namespace,
            id,
            spec,
        ) {
            log::warn!("checkpoint of {id}: pages left in the checkpoint, not the store: {e}");
        }
    }

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
                    .restore_network(target.id, target.bundle, pid)
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

/// Where a dump writes its images (the request's image path, else the
/// task's checkpoint path), and CRIU's work directory (the images' unless
/// the request names one).
fn dump_dirs(
    req: &CheckpointTaskRequest,
    request: &CheckpointRequest,
) -> Result<(PathBuf, PathBuf)> {
    let images = PathBuf::from(if request.image_path.is_empty() {
        &req.path
    } else {
        &request.image_path
    });
    if images.as_os_str().is_empty() {
        return Err(Error::InvalidArgument(
            "checkpoint without a path or image_path".into(),
        ));
    }
    let work = if request.work_path.is_empty() {
        images.clone()
    } else {
        PathBuf::from(&request.work_path)
    };
    Ok((images, work))
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

/// After a failed dump, the container's cgroup as it was: CRIU thaws on
/// failure (and a paused cgroup to seize its tasks), but a container that
/// was paused must stay paused, and a running one must not look running
/// while frozen.
fn back_as_it_was(spec: &Spec, c: &Dumped) {
    let path = cgroup::path_of(spec, c.id);
    match c.paused {
        true => cgroup::freeze(&path),
        false => cgroup::thaw(&path),
    }
}

/// Docker's containerd namespace.
const DOCKER_NAMESPACE: &str = "moby";

/// A file that only containerd's copy of a Docker checkpoint carries.
///
/// `docker checkpoint create` copies the checkpoint out of containerd's
/// content store (where containerd tarred this directory) and deletes it;
/// `docker start --checkpoint` tars Docker's copy and uploads it again.
/// Until containerd's collector has removed its own blob, an identical
/// upload fails to commit with "already exists" (moby#42900), which is
/// what typing the two commands back to back meets. Docker extracts with
/// containerd's archive code, which reads a `.wh.` name as a whiteout and
/// never writes it: Docker's copy lacks this file, so its upload is
/// another blob and always commits.
const CONTAINERDS_COPY_MARKER: &str = ".wh.lazarus-content-store-copy";

fn mark_as_containerds_copy(images: &Path) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let path = images.join(CONTAINERDS_COPY_MARKER);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(b"containerd's copy of a Lazarus checkpoint (see the shim's service/checkpoint.rs)\n"))
        .map_err(Error::io(format!("write {}", path.display())))
}
