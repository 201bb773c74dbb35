//! The Checkpoint RPC and restore-at-Start, on top of `crate::checkpoint`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::{TaskCheckpointed, TaskStart};

use super::TaskService;
use lazarus_core::checkpoint::dump::{self, DumpPaths, DumpTarget};
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::request::{should_exit, CheckpointRequest};
use lazarus_core::checkpoint::restore::RestoreTarget;
use lazarus_core::host::cgroup;

use crate::container::{self, ContainerCell};
use crate::error::{Error, Result};
use crate::io;

use crate::process::Status;
use crate::state::PendingRestore;

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
        self.checkpoint_for(req, &|| false)
    }

    /// [`Self::checkpoint`] for a client that may go away: `client_gone` is
    /// asked while CRIU dumps, and true calls the dump off (CRIU stopped,
    /// the container left as it was) rather than finishing an image nobody
    /// will receive and, with `exit`, stopping the container for it.
    pub fn checkpoint_for(
        &self,
        req: &CheckpointTaskRequest,
        client_gone: &dyn Fn() -> bool,
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
        let dumped = self.dump(req, request, &target, client_gone);
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
        let target = DumpTarget {
            id: c.id,
            pid: c.pid,
            bundle: c.bundle,
            spec: &spec,
            terminal: c.terminal,
        };
        let started = std::time::Instant::now();
        let kept_log = self.settings.kept_log(c.id, image::DUMP_LOG)?;
        let paths = DumpPaths {
            images: &images,
            work: &work,
            keep_failed_log: Some(&kept_log),
            cancel: Some(client_gone),
            compress_pages: self.settings.compress_pages,
        };
        let dumped = dump::dump(self.criu.as_ref(), &target, &request, exit, &paths);
        if dumped.is_err() {
            // Back to what it was: CRIU thaws on failure (and a paused
            // cgroup to seize its tasks), but a container that was paused
            // must stay paused, and a running one must not look running
            // while frozen.
            let path = cgroup::path_of(&spec, c.id);
            match c.paused {
                true => cgroup::freeze(&path),
                false => cgroup::thaw(&path),
            }
        }
        dumped?;
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

    /// Start of a container created from a checkpoint (now Restoring): CRIU
    /// restores its tree as our child; then it is an ordinary running init.
    pub(super) fn start_restored(
        &self,
        cell: &Arc<ContainerCell>,
        pending: PendingRestore,
    ) -> Result<i32> {
        let (id, bundle, stdio) = {
            let c = cell.lock();
            (c.id.clone(), c.bundle.clone(), c.init.stdio.clone())
        };
        let stdio_fds = pending.io.as_ref().and_then(|io| io.process_fds());
        let started = std::time::Instant::now();
        let kept_log = self.settings.kept_log(&id, image::RESTORE_LOG)?;
        let target = RestoreTarget {
            id: &id,
            bundle: &bundle,
            spec: &pending.spec,
            stdio: stdio_fds,
            keep_failed_log: Some(&kept_log),
            scratch_root: &self.settings.restore_scratch,
        };
        // The restored init may die before its pid is registered.
        let spawn = self.pids.spawn();
        let restored = pending
            .plan
            .restore(self.criu.as_ref(), &target, &mut |pid| {
                self.runtime
                    .restore_network(&id, &bundle, pid)
                    .map_err(|e| lazarus_core::Error::Other(e.to_string()))
            });
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                // The core already killed what a failed CRIU left in the new
                // cgroup (before reading its log); this is the guard for the
                // other failures of a restore, and removes the directories.
                let cgroup = cgroup::path_of(&pending.spec, &id);
                let left = cgroup::destroy(&cgroup, RESTORE_CLEANUP_TIMEOUT);
                if !left.is_empty() {
                    log::error!("failed restore of {id}: pids {left:?} would not die");
                }
                pending.plan.discard_temporary_images();
                cell.lock().state.start_failed(Some(Box::new(pending)));
                return Err(e.into());
            }
        };
        let streams = match (pending.io, restored.pts_master) {
            (Some(io), _) => io.connect(),
            (None, Some(master)) => io::console_streams(&stdio, master),
            (None, None) => Err(Error::Runtime("restored terminal has no master".into())),
        };
        if let Err(e) = self.runtime.adopt(&id, &bundle, restored.pid) {
            // Without runtime state the container cannot be managed: do not
            // leave an unmanageable process behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(restored.pid),
                nix::sys::signal::SIGKILL,
            );
            cell.lock().state.start_failed(None);
            return Err(e);
        }
        // The dump ran under CRIU's freezer and the restored cgroup comes
        // back with that state: a restored container must run.
        cgroup::thaw(&cgroup::path_of(&pending.spec, &id));
        {
            let mut c = cell.lock();
            c.init.pid = restored.pid;
            match streams {
                Ok(s) => c.init.streams = Some(s),
                Err(e) => log::error!("stdio of restored {id}: {e}"),
            }
            self.publish(TaskStart {
                container_id: id.clone(),
                pid: restored.pid as u32,
                ..Default::default()
            });
            c.state.started();
        }
        self.watch_oom(&id);
        self.register(&spawn, cell, "", restored.pid);
        let stats = image::read_stats(&image::stats_file(
            &pending.plan.images,
            &pending.plan.work,
            "stats-restore",
        ))
        .unwrap_or_default();
        pending.plan.discard_temporary_images();
        log::info!(
            "restored {id} (pid {}) in {:?}: {stats:?}",
            restored.pid,
            started.elapsed()
        );
        Ok(restored.pid)
    }
}
