//! The Checkpoint RPC on top of the core's dump: the container held in
//! Checkpointing while CRIU dumps it, a migration's dump, a Docker
//! checkpoint's pages into the store, and the cgroup put back as it was
//! after a failed dump. The restore a Start runs is `restore.rs`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api::CheckpointTaskRequest;
use containerd_shim_protos::events::task::TaskCheckpointed;
use oci_spec::runtime::Spec;

use super::TaskService;
use lazarus_core::checkpoint::dump::{self, DumpPaths, DumpTarget};
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::incremental::Incremental;
use lazarus_core::checkpoint::request::{should_exit, CheckpointRequest};
use lazarus_core::checkpoint::{control, postcopy};
use lazarus_core::host::cgroup;

use crate::container;
use crate::error::{Error, Result};
use crate::process::Status;

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
        // `lazarus snapshot`'s, where the kernel tracks dirty memory.
        let incremental = Incremental::take(&images)?;
        let store_pages = self.stores_pages(&request, page_server.as_ref());
        // A store-backed dump is written into memory first; only what the
        // store does not take reaches containerd's directory.
        let memory = store_pages
            .then(|| super::stored_pages::dump_scratch(&self.settings.memory_root, c.pid))
            .flatten();
        let dump_images = memory.as_ref().map_or(images.clone(), |m| m.path().into());
        let dump_work = if work == images {
            dump_images.clone()
        } else {
            work.clone()
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
        // A migration's dump outlives the RPC that asked for it: its client
        // calls it off with a file, or by no longer renewing its lease.
        let called_off = || control::called_off(&images);
        let paths = DumpPaths {
            images: &dump_images,
            work: &dump_work,
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
            incremental: incremental.as_ref(),
        };
        let dumped = dump::dump(self.criu.as_ref(), &target, &request, exit, &paths);
        if dumped.is_err() {
            back_as_it_was(&spec, c);
        }
        dumped?;
        if store_pages {
            self.stash_pages(&dump_images, c.id, &spec);
        }
        if let Some(m) = memory {
            if let Err(e) = super::stored_pages::move_dump(m.path(), &images) {
                // The container may be gone (a checkpoint with exit): its
                // state stays where it is, named, rather than removed.
                return Err(lazarus_core::Error::Other(format!(
                    "checkpoint of {}: {e}; its images are kept in {}",
                    c.id,
                    m.keep().display()
                ))
                .into());
            }
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
