//! Docker's side of an export: copying a checkpoint Docker took.

use std::path::Path;

use crate::engine::docker::Docker;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::fs_tree;

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
