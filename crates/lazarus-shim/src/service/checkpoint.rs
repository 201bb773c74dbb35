//! The Checkpoint RPC and restore-at-Start, on top of `crate::checkpoint`.

use std::path::{Path, PathBuf};

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::TaskCheckpointed;
use oci_spec::runtime::Spec;

use super::{get, TaskService};
use lazarus_core::checkpoint::dump::{self, DumpPaths, DumpTarget};
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::request::should_exit;
use lazarus_core::checkpoint::restore::{RestorePlan, RestoreTarget};
use lazarus_core::host::cgroup;

use crate::container::{self, Container};
use crate::error::{Error, Result};
use crate::io::{self, PendingIo, StdioPaths};
use crate::process::Status;

/// How long the processes a failed restore left get to die.
const RESTORE_CLEANUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// A container created from a checkpoint, waiting for Start.
pub struct PendingRestore {
    plan: RestorePlan,
    spec: Spec,
    /// Pipes for the restored init (None with a terminal: CRIU hands back
    /// the terminal's master).
    io: Option<PendingIo>,
}

impl PendingRestore {
    pub fn new(
        plan: RestorePlan,
        spec: Spec,
        stdio: &StdioPaths,
        console_dir: &Path,
    ) -> Result<Self> {
        let io = match stdio.terminal {
            true => None,
            false => Some(PendingIo::prepare(stdio, console_dir)?),
        };
        Ok(PendingRestore { plan, spec, io })
    }
}

impl TaskService {
    pub fn checkpoint(&self, req: &CheckpointTaskRequest) -> Result<()> {
        let mut request = crate::options::decode_checkpoint(req.options.as_ref())?;
        // Held throughout: the init's exit (with `exit`) is handled after.
        let containers = self.containers();
        let c = get(&containers, &req.id)?;
        if !c.init.is_alive() {
            return Err(Error::FailedPrecondition(format!(
                "cannot checkpoint container {}: it is not running",
                req.id
            )));
        }
        let spec = container::load_spec(&c.bundle)?;
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
            id: &req.id,
            pid: c.init.pid,
            bundle: &c.bundle,
            spec: &spec,
            terminal: c.init.stdio.terminal,
        };
        let started = std::time::Instant::now();
        let kept_log = self.settings.logs.join(&req.id).join(image::DUMP_LOG);
        let paths = DumpPaths {
            images: &images,
            work: &work,
            keep_failed_log: Some(&kept_log),
        };
        let dumped = dump::dump(self.criu.as_ref(), &target, &request, exit, &paths);
        if dumped.is_err() && c.init.status == Status::Running {
            // CRIU thaws on failure; make sure, since a frozen container
            // would look running and answer nothing.
            cgroup::thaw(&cgroup::path_of(&spec, &req.id));
        }
        dumped?;
        let stats =
            image::read_stats(&image::stats_file(&images, &work, "stats-dump")).unwrap_or_default();
        log::info!(
            "checkpoint {} into {} ({}) in {:?}: {stats:?}",
            req.id,
            images.display(),
            if exit { "exit" } else { "leave running" },
            started.elapsed()
        );
        drop(containers);
        self.publish(TaskCheckpointed {
            container_id: req.id.clone(),
            checkpoint: images.to_string_lossy().into_owned(),
            ..Default::default()
        });
        Ok(())
    }

    /// Start of a container created from a checkpoint: CRIU restores its
    /// tree as our child; then it is an ordinary running init.
    pub(super) fn start_restored(&self, c: &mut Container) -> Result<i32> {
        let pending = c.restore.take().expect("checked by the caller");
        let stdio_fds = pending.io.as_ref().and_then(|io| io.process_fds());
        let started = std::time::Instant::now();
        let kept_log = self.settings.logs.join(&c.id).join(image::RESTORE_LOG);
        let target = RestoreTarget {
            id: &c.id,
            bundle: &c.bundle,
            spec: &pending.spec,
            stdio: stdio_fds,
            keep_failed_log: Some(&kept_log),
        };
        let restored = pending
            .plan
            .restore(self.criu.as_ref(), &target, &mut |pid| {
                self.runtime
                    .restore_network(&c.id, &c.bundle, pid)
                    .map_err(|e| lazarus_core::Error::Other(e.to_string()))
            });
        let restored = match restored {
            Ok(r) => r,
            Err(e) => {
                let cgroup = cgroup::path_of(&pending.spec, &c.id);
                let left = cgroup::destroy(&cgroup, RESTORE_CLEANUP_TIMEOUT);
                if !left.is_empty() {
                    log::error!("failed restore of {}: pids {left:?} would not die", c.id);
                }
                pending.plan.discard_temporary_images();
                c.restore = Some(pending);
                return Err(e.into());
            }
        };
        let streams = match (pending.io, restored.pts_master) {
            (Some(io), _) => io.connect(),
            (None, Some(master)) => io::console_streams(&c.init.stdio, master),
            (None, None) => Err(Error::Runtime("restored terminal has no master".into())),
        };
        if let Err(e) = self.runtime.adopt(&c.id, &c.bundle, restored.pid) {
            // Without runtime state the container cannot be managed: do not
            // leave an unmanageable process behind.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(restored.pid),
                nix::sys::signal::SIGKILL,
            );
            return Err(e);
        }
        // The dump ran under CRIU's freezer and the restored cgroup comes
        // back with that state: a restored container must run.
        cgroup::thaw(&cgroup::path_of(&pending.spec, &c.id));
        c.init.pid = restored.pid;
        c.init.status = Status::Running;
        match streams {
            Ok(s) => c.init.streams = Some(s),
            Err(e) => log::error!("stdio of restored {}: {e}", c.id),
        }
        let stats = image::read_stats(&image::stats_file(
            &pending.plan.images,
            &pending.plan.work,
            "stats-restore",
        ))
        .unwrap_or_default();
        pending.plan.discard_temporary_images();
        log::info!(
            "restored {} (pid {}) in {:?}: {stats:?}",
            c.id,
            restored.pid,
            started.elapsed()
        );
        Ok(restored.pid)
    }
}
