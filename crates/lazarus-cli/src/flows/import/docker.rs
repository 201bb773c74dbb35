//! A restore through Docker, as the same container (Docker's create
//! request, recorded at export, replayed with this host's image and the
//! chosen runtime): created, its root filesystem changes applied, started
//! from the checkpoint. If anything fails after the container was
//! created, it is removed again.
//!
//! The steps are behind [`Steps`], so that the refusals and the rollback
//! are unit-tested on a fake Docker.

use std::cell::Cell;
use std::path::Path;
use std::time::Instant;

use lazarus_core::archive::{self, ArchiveConfig};
use lazarus_core::checkpoint::handoff;
use serde_json::Value;

use super::{apply_rootfs_diff, ImportArgs, Restored, IMPORT_CHECKPOINT};
use crate::engine::containerd::LAZARUS_RUNTIME;
use crate::engine::docker::{self, Docker};
use crate::engine::docker_config;
use crate::engine::endpoints::{self, DOCKER_NAMESPACE};
use crate::engine::runtimes::Runtimes;
use crate::engine::{Engine, ImageFound};
use crate::error::{Error, Result};
use crate::fs_tree;
use crate::progress::Progress;
use crate::report::{PATH_DOCKER_CHECKPOINT, PATH_HAND_OFF};

/// The Docker steps of a restore.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Steps {
    /// The runtimes this Docker has registered (its `GET /info`).
    async fn runtimes(&self) -> Result<Runtimes>;
    /// How this host names the archive's image (see [`docker_image`]).
    async fn image(&self, cfg: &ArchiveConfig) -> Result<String>;
    /// Creates the container; its id.
    async fn create(&self, name: &str, body: &Value) -> Result<String>;
    /// The new container's overlay mount options.
    async fn overlay(&self, id: &str, name: &str) -> Result<Vec<String>>;
    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()>;
    /// Starts it; Lazarus restores from the images it was handed.
    async fn start(&self, id: &str) -> Result<()>;
    /// Moves `images` into its Docker checkpoint and starts from that.
    async fn start_from_checkpoint(&self, id: &str, images: &Path) -> Result<()>;
    async fn remove(&self, id: &str) -> Result<()>;
}

pub(super) async fn into_docker(
    args: &ImportArgs,
    docker: &Docker,
    cfg: &ArchiveConfig,
    recorded: &Value,
    dir: &Path,
    show: bool,
) -> Result<Restored> {
    let live = Live {
        docker,
        dir,
        show,
        start_seconds: Cell::new(None),
    };
    let name = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    let (id, path) = restore(&live, args.runtime.as_deref(), cfg, recorded, dir, &name).await?;
    Ok(Restored {
        name,
        id,
        engine: "docker",
        namespace: DOCKER_NAMESPACE.into(),
        path,
        start_seconds: live.start_seconds.get(),
    })
}

/// Restores the archive extracted in `dir` as Docker container `name`;
/// its id, and which way it was restored ([`PATH_HAND_OFF`] or
/// [`PATH_DOCKER_CHECKPOINT`]). Nothing of it is left on failure.
///
/// The runtime is `runtime` (--runtime), else the recorded one when this
/// Docker knows that name, else Lazarus by its type (which Docker takes
/// as it is). Any name this Docker resolves to Lazarus (`lazarus`,
/// `io.containerd.lazarus.v2`, an alias in daemon.json) is handed the
/// images directly.
pub async fn restore(
    steps: &impl Steps,
    runtime: Option<&str>,
    cfg: &ArchiveConfig,
    recorded: &Value,
    dir: &Path,
    name: &str,
) -> Result<(String, &'static str)> {
    let image = steps.image(cfg).await?;
    let runtimes = steps.runtimes().await?;
    let runtime = match (runtime, docker_config::runtime(recorded)) {
        (Some(asked), _) => asked,
        (None, Some(recorded)) if runtimes.knows(recorded) => recorded,
        _ => LAZARUS_RUNTIME,
    };
    let mut body = docker_config::for_import(recorded, &image, runtime);
    // Lazarus restores from the extracted images where they lie (see
    // lazarus_core::checkpoint::handoff); another runtime only through
    // Docker's own checkpoint, which Docker copies twice before it starts.
    let images = dir.join(archive::CHECKPOINT_DIR);
    let hand_off = runtimes.is_lazarus(runtime);
    if hand_off {
        handoff::offer(&images)?;
        docker_config::hand_off(&mut body, &images);
    }
    let id = steps.create(name, &body).await.map_err(|e| match e {
        Error::Docker { status: 409, .. } => Error::Conflict(format!(
            "a container named {name} already exists on this host: give the restored one another \
             name with --name"
        )),
        Error::Docker { message, .. } if message.contains("runtime") => Error::Refused(format!(
            "Docker here does not know the runtime {runtime:?} ({message}): register it in \
             daemon.json, or give --runtime {LAZARUS_RUNTIME}"
        )),
        e => e,
    })?;
    let restored = async {
        steps.apply_rootfs_diff(&steps.overlay(&id, name).await?)?;
        match hand_off {
            true => steps.start(&id).await,
            false => steps.start_from_checkpoint(&id, &images).await,
        }
    }
    .await;
    if let Err(e) = restored {
        let cleanup = steps.remove(&id).await.err().map(|c| c.to_string());
        return Err(e.with_cleanup(cleanup));
    }
    let path = match hand_off {
        true => PATH_HAND_OFF,
        false => PATH_DOCKER_CHECKPOINT,
    };
    Ok((id, path))
}

/// The real steps, on this host's Docker, from the archive extracted in
/// `dir` (the root filesystem changes are applied as root).
struct Live<'a> {
    docker: &'a Docker,
    dir: &'a Path,
    show: bool,
    /// How long Docker's start took: the runtime's restore.
    start_seconds: Cell<Option<f64>>,
}

impl Steps for Live<'_> {
    async fn runtimes(&self) -> Result<Runtimes> {
        let info = self.docker.info().await?;
        let config = endpoints::dockerd_args(self.docker)
            .map(|args| endpoints::dockerd_config(&args, |p| std::fs::read_to_string(p).ok()))
            .unwrap_or_default();
        Ok(Runtimes::from_docker(&info, &config))
    }

    async fn image(&self, cfg: &ArchiveConfig) -> Result<String> {
        docker_image(self.docker, &cfg.image_name, &cfg.image_digest).await
    }

    async fn create(&self, name: &str, body: &Value) -> Result<String> {
        self.docker.create(name, body).await
    }

    async fn overlay(&self, id: &str, name: &str) -> Result<Vec<String>> {
        let v = self
            .docker
            .container(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Docker lost the new container {name}")))?;
        docker::overlay_options(&v, name)
    }

    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()> {
        apply_rootfs_diff(self.dir, overlay)
    }

    async fn start(&self, id: &str) -> Result<()> {
        let bar = Progress::stage(self.show, "restore");
        let t = Instant::now();
        let started = self.docker.start(id).await;
        self.start_seconds.set(Some(t.elapsed().as_secs_f64()));
        bar.finish();
        started
    }

    async fn start_from_checkpoint(&self, id: &str, images: &Path) -> Result<()> {
        // Docker restores only from its own checkpoint directory.
        let checkpoint = self.docker.checkpoint_dir(id, IMPORT_CHECKPOINT).await?;
        fs_tree::move_dir(images, &checkpoint)?;
        let bar = Progress::stage(self.show, "restore");
        let t = Instant::now();
        let started = self
            .docker
            .start_from_checkpoint(id, IMPORT_CHECKPOINT)
            .await;
        self.start_seconds.set(Some(t.elapsed().as_secs_f64()));
        bar.finish();
        started?;
        // Docker copied it for containerd; its own copy is not needed again.
        if let Err(e) = self.docker.remove_checkpoint(id, IMPORT_CHECKPOINT).await {
            eprintln!("lazarus: warning: {e}");
        }
        Ok(())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.docker.remove(id).await
    }
}

/// How this host's Docker names the archive's image: by its name when that
/// is the same image, else by its id. Missing or different: an error naming
/// both, before anything is created.
pub async fn docker_image(docker: &Docker, image_name: &str, want: &str) -> Result<String> {
    match docker.find_image(image_name, want).await? {
        ImageFound::Here(reference) => Ok(reference),
        ImageFound::Different { found } => Err(image_refusal(image_name, want, Some(&found))),
        ImageFound::Missing => Err(image_refusal(image_name, want, None)),
    }
}

/// Why Docker cannot restore from image `image_name` (`want`): another
/// image of that name is here (`different`, its id), or none.
pub fn image_refusal(image_name: &str, want: &str, different: Option<&str>) -> Error {
    match different {
        Some(found) => Error::Refused(format!(
            "image {image_name} on this host is {found}, but the checkpoint was taken on {want}: \
             load the same image (docker save on the source, docker load here), then try again"
        )),
        None => Error::NotFound(format!(
            "image {} ({}) is not on this host: docker pull {} (or docker load it), then try again",
            image_name,
            if want.is_empty() {
                "no digest recorded"
            } else {
                want
            },
            image_name
        )),
    }
}

#[cfg(test)]
mod tests;
