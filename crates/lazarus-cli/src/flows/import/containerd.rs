//! A restore through containerd: a snapshot from the image, the archive's
//! root filesystem changes applied to it, the container, a task restored
//! from the images, started. If anything fails, what was made is removed
//! again, last made first: nothing is left behind.
//!
//! The steps are behind [`Steps`], so that the refusal and the rollback
//! are unit-tested on a fake containerd.

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use containerd_client::types::Mount;
use lazarus_core::archive::{self, ArchiveConfig};

use super::{apply_rootfs_diff, read_spec, ImportArgs, Restored, SNAPSHOTTER};
use crate::engine::containerd::{Containerd, NewContainer};
use crate::engine::endpoints::Endpoints;
use crate::engine::image_chain;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The containerd steps of a restore of container `id`.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Steps {
    async fn exists(&self, id: &str) -> Result<bool>;
    /// Prepares the container's snapshot on the image's; its mounts.
    async fn prepare(&self, id: &str) -> Result<Vec<Mount>>;
    /// Applies the archive's root filesystem changes through an overlay
    /// mount with these options.
    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()>;
    async fn create_container(&self, id: &str) -> Result<()>;
    /// Creates the task, restoring from the archive's images.
    async fn create_task(&self, id: &str, rootfs: Vec<Mount>) -> Result<()>;
    async fn start(&self, id: &str) -> Result<()>;
    async fn remove_task(&self, id: &str) -> Result<()>;
    async fn remove_container(&self, id: &str) -> Result<()>;
    async fn remove_snapshot(&self, id: &str) -> Result<()>;
}

pub(super) async fn into_containerd(
    args: &ImportArgs,
    endpoints: &Endpoints,
    ns: &str,
    cfg: &ArchiveConfig,
    dir: &Path,
    show: bool,
) -> Result<Restored> {
    let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
    let id = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    lazarus_core::ids::check_component("container name", &id)?;
    let live = Live {
        ctr: &ctr,
        cfg,
        dir,
        show,
        start_seconds: Cell::new(None),
    };
    restore(&live, &id, ns).await?;
    Ok(Restored {
        name: id.clone(),
        id,
        engine: "containerd",
        namespace: ns.into(),
        path: crate::report::PATH_CONTAINERD,
        start_seconds: live.start_seconds.get(),
    })
}

/// What was made so far, to be removed in reverse on failure.
#[derive(Debug, Clone, Copy)]
enum Made {
    Snapshot,
    Container,
    Task,
}

/// Restores container `id` in namespace `ns` (named in errors), or leaves
/// nothing of it.
pub async fn restore(steps: &impl Steps, id: &str, ns: &str) -> Result<()> {
    if steps.exists(id).await? {
        return Err(Error::Conflict(format!(
            "a container {id} already exists in namespace {ns}: give the restored one another \
             name with --name"
        )));
    }
    let mut made = Vec::new();
    let restored = async {
        let mounts = steps.prepare(id).await?;
        made.push(Made::Snapshot);
        let overlay = mounts
            .iter()
            .find(|m| m.r#type == "overlay")
            .ok_or_else(|| {
                Error::Refused(format!("snapshot of {id} is not an overlay: {mounts:?}"))
            })?;
        steps.apply_rootfs_diff(&overlay.options)?;
        steps.create_container(id).await?;
        made.push(Made::Container);
        steps.create_task(id, mounts).await?;
        made.push(Made::Task);
        steps.start(id).await
    }
    .await;
    let Err(e) = restored else {
        return Ok(());
    };
    let mut failed = Vec::new();
    for what in made.iter().rev() {
        let undone = match what {
            Made::Task => steps.remove_task(id).await,
            Made::Container => steps.remove_container(id).await,
            Made::Snapshot => steps.remove_snapshot(id).await,
        };
        if let Err(c) = undone {
            failed.push(c.to_string());
        }
    }
    Err(e.with_cleanup((!failed.is_empty()).then(|| failed.join("; "))))
}

/// The real steps, on this host's containerd, from the archive extracted
/// in `dir` (the root filesystem changes are applied as root).
struct Live<'a> {
    ctr: &'a Containerd,
    cfg: &'a ArchiveConfig,
    dir: &'a Path,
    show: bool,
    /// How long the task's start took: the runtime's restore.
    start_seconds: Cell<Option<f64>>,
}

impl Steps for Live<'_> {
    async fn exists(&self, id: &str) -> Result<bool> {
        match self.ctr.container(id).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn prepare(&self, id: &str) -> Result<Vec<Mount>> {
        let chain = image_chain::snapshot_parent(self.ctr, self.cfg).await?;
        self.ctr.prepare(SNAPSHOTTER, id, &chain).await
    }

    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()> {
        apply_rootfs_diff(self.dir, overlay)
    }

    async fn create_container(&self, id: &str) -> Result<()> {
        let spec = image_chain::respec(read_spec(self.dir)?, id, self.ctr.namespace());
        let labels = Default::default();
        self.ctr
            .create_container(NewContainer {
                id,
                image: &self.cfg.image_name,
                spec: &spec,
                snapshotter: SNAPSHOTTER,
                labels: &labels,
            })
            .await
    }

    async fn create_task(&self, id: &str, rootfs: Vec<Mount>) -> Result<()> {
        let images = self.dir.join(archive::CHECKPOINT_DIR);
        self.ctr.create_restoring_task(id, rootfs, &images).await
    }

    async fn start(&self, id: &str) -> Result<()> {
        let bar = Progress::stage(self.show, "restore");
        let t = Instant::now();
        let started = self.ctr.start_task(id).await;
        self.start_seconds.set(Some(t.elapsed().as_secs_f64()));
        bar.finish();
        started.map(drop)
    }

    async fn remove_task(&self, id: &str) -> Result<()> {
        self.ctr.remove_task(id).await
    }

    async fn remove_container(&self, id: &str) -> Result<()> {
        self.ctr.remove_container(id).await
    }

    async fn remove_snapshot(&self, id: &str) -> Result<()> {
        self.ctr.remove_snapshot(SNAPSHOTTER, id).await
    }
}

#[cfg(test)]
mod tests;
