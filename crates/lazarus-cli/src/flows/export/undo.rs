//! Docker's side of an export: copying a checkpoint Docker took, and
//! starting a Docker container a failed export stopped again from its
//! images.

use std::path::Path;

use crate::engine::docker::Docker;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::fs_tree;

/// The Docker checkpoint a container stopped by a failed export is
/// restored from.
pub const UNDO_CHECKPOINT: &str = "lazarus-export-undo";

/// Copies Docker's own checkpoint `name` of the container (taken with
/// `docker checkpoint create`) into `images`.
pub(super) async fn copy_docker_checkpoint(
    docker: &Docker,
    target: &Target,
    name: &str,
    images: &Path,
) -> Result<()> {
    let dir = docker.checkpoint_dir(&target.id, name).await?;
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} has no Docker checkpoint {name:?} (no {}): see `docker checkpoint ls {}`",
            target.name,
            dir.display(),
            target.name
        )));
    }
    fs_tree::copy_dir(&dir, images)
}

/// Starts the Docker container a checkpoint stopped again, from that
/// checkpoint's `images`, as itself: they are moved into its Docker
/// checkpoint directory, then `start?checkpoint=`.
pub(super) async fn restore_in_place(
    docker: &Docker,
    target: &Target,
    images: &Path,
) -> Result<()> {
    let dir = docker.checkpoint_dir(&target.id, UNDO_CHECKPOINT).await?;
    fs_tree::move_dir(images, &dir)?;
    docker
        .start_from_checkpoint(&target.id, UNDO_CHECKPOINT)
        .await?;
    let _ = docker.remove_checkpoint(&target.id, UNDO_CHECKPOINT).await;
    Ok(())
}
