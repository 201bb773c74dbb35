//! The one seam between the flows and the engines: [`Engine`] (what the
//! engine that owns a container knows of it: whether a name is taken, its
//! image, its removal) and [`Tasks`] (containerd's Task API, through which
//! every container, a Docker one too, is checkpointed, paused, killed).
//! [`Selected`] is the engine a container's flow was given, chosen once
//! where the container is found ([`crate::flows::export::Source::engine`],
//! or the engine a migration offer names).
//!
//! Flows whose steps are more than engine calls (an export writes an
//! archive, a group freeze locks networks, a restore through Docker replays
//! a create request) keep their own step traits: those are their seams for
//! unit tests, and their real steps call the engines. The flows that are
//! only engine calls (a migration's call-off and release, the receiver's
//! checks, the sender's `--rm`) are written against these traits, so that
//! one fake engine ([`super::fake`], in tests) serves them all.

use super::containerd::{CheckpointOptions, Containerd, Status};
use super::docker::Docker;
use crate::error::Result;

/// Whether an engine has a container's image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFound {
    /// Here, by this reference (its name, or for Docker its id when only
    /// the id is the same image).
    Here(String),
    /// An image of that name is here, but it is this other one.
    Different { found: String },
    /// Neither the name nor the digest is here.
    Missing,
}

/// What the engine that owns a container knows of it.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Engine {
    /// `docker` or `containerd`, as archives and reports name engines.
    fn kind(&self) -> &'static str;
    /// Whether a container is known by `name` (Docker: a name or id;
    /// containerd: an id in the client's namespace).
    async fn exists(&self, name: &str) -> Result<bool>;
    /// Whether the image `name` (with `digest`, when known) is here.
    async fn find_image(&self, name: &str, digest: &str) -> Result<ImageFound>;
    /// Removes the container and what the engine made for it (its task,
    /// its snapshot); one already gone is not an error for Docker.
    async fn remove(&self, id: &str) -> Result<()>;
}

/// containerd's Task API on a container's task (a Docker container's too,
/// in Docker's `moby` namespace): through it the shim checkpoints.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Tasks {
    /// The task's status, None when the container has no task.
    async fn task_status(&self, id: &str) -> Result<Option<Status>>;
    /// The shim's checkpoint of the task into `options.image_path`.
    async fn checkpoint(&self, id: &str, options: &CheckpointOptions) -> Result<()>;
    async fn pause(&self, id: &str) -> Result<()>;
    async fn resume(&self, id: &str) -> Result<()>;
    /// SIGKILL to every process of the task.
    async fn kill_all(&self, id: &str) -> Result<()>;
}

/// The engine a flow was given, chosen once.
#[derive(Clone, Copy)]
pub enum Selected<'a> {
    Docker(&'a Docker),
    Containerd(&'a Containerd),
}

impl Engine for Selected<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Selected::Docker(d) => d.kind(),
            Selected::Containerd(c) => c.kind(),
        }
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        match self {
            Selected::Docker(d) => d.exists(name).await,
            Selected::Containerd(c) => c.exists(name).await,
        }
    }

    async fn find_image(&self, name: &str, digest: &str) -> Result<ImageFound> {
        match self {
            Selected::Docker(d) => d.find_image(name, digest).await,
            Selected::Containerd(c) => c.find_image(name, digest).await,
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        match self {
            Selected::Docker(d) => Engine::remove(*d, id).await,
            Selected::Containerd(c) => c.remove(id).await,
        }
    }
}

impl Engine for Docker {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        Ok(self.container(name).await?.is_some())
    }

    /// By name when that is the same image, else by its id.
    async fn find_image(&self, name: &str, digest: &str) -> Result<ImageFound> {
        let by_name = match name.is_empty() {
            true => None,
            false => self.image(name).await?,
        };
        let name_id = by_name
            .as_ref()
            .and_then(|v| v["Id"].as_str())
            .unwrap_or("")
            .to_string();
        if digest.is_empty() || name_id == digest {
            if by_name.is_some() {
                return Ok(ImageFound::Here(name.to_string()));
            }
        } else if self.image(digest).await?.is_some() {
            return Ok(ImageFound::Here(digest.to_string()));
        }
        Ok(match by_name {
            Some(_) => ImageFound::Different { found: name_id },
            None => ImageFound::Missing,
        })
    }

    /// `docker rm -f`.
    async fn remove(&self, id: &str) -> Result<()> {
        Docker::remove(self, id).await
    }
}

impl Engine for Containerd {
    fn kind(&self) -> &'static str {
        "containerd"
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        match self.container(name).await {
            Ok(_) => Ok(true),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn find_image(&self, name: &str, digest: &str) -> Result<ImageFound> {
        Ok(match self.image_target(name).await? {
            None => ImageFound::Missing,
            Some((_, found)) if !digest.is_empty() && found != digest => {
                ImageFound::Different { found }
            }
            Some(_) => ImageFound::Here(name.to_string()),
        })
    }

    /// Its task, its record, then its snapshot (where the record says).
    async fn remove(&self, id: &str) -> Result<()> {
        let c = self.container(id).await?;
        self.remove_task(id).await?;
        self.remove_container(id).await?;
        self.remove_snapshot(&c.snapshotter, &c.snapshot_key).await
    }
}

impl Tasks for Containerd {
    async fn task_status(&self, id: &str) -> Result<Option<Status>> {
        Containerd::task_status(self, id).await
    }

    async fn checkpoint(&self, id: &str, options: &CheckpointOptions) -> Result<()> {
        Containerd::checkpoint(self, id, options).await
    }

    async fn pause(&self, id: &str) -> Result<()> {
        Containerd::pause(self, id).await
    }

    async fn resume(&self, id: &str) -> Result<()> {
        Containerd::resume(self, id).await
    }

    async fn kill_all(&self, id: &str) -> Result<()> {
        Containerd::kill_all(self, id).await
    }
}
