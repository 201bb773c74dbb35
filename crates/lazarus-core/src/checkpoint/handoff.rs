//! A restore handed to a Docker container's first plain start.
//!
//! Docker restores only through `docker start --checkpoint`, which tars
//! its checkpoint directory into containerd's content store for containerd
//! to unpack again: two full copies of the images before CRIU reads a
//! byte (most of a 1 GiB import's time). `lazarus restore --import` into a
//! Lazarus container skips them: it creates the container with the
//! annotation [`IMAGES_ANNOTATION`] naming its extracted image directory,
//! marks that directory for one restore ([`offer`]), and starts the
//! container plainly; the shim's Create then restores from the directory
//! where it lies ([`claim`]).
//!
//! One restore only: the annotation stays in the container's spec for
//! good, so the mark is taken by the first Create and a later start (`docker
//! start`, a restart policy) runs the container fresh, as Docker does with a
//! container once restored from a checkpoint.

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The container annotation naming the image directory its first start
/// restores from. Set by the `lazarus` CLI, not by users.
pub const IMAGES_ANNOTATION: &str = "io.lazarus.import.images";

/// The mark of a directory not restored yet; taken by the restore.
const MARK: &str = ".lazarus-restore-once";

/// Marks `images` for one restore (the CLI, before the container starts).
pub fn offer(images: &Path) -> Result<()> {
    let mark = images.join(MARK);
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&mark)
        .map(drop)
        .map_err(Error::io(format!("create {}", mark.display())))
}

/// The image directory a Create with these annotations restores from: the
/// annotated one while it still holds its mark, which is taken here; None
/// when there is no annotation, or the restore was done (or its directory
/// removed) already. A directory that is not root's alone is refused: the
/// restore runs its images' processes as whatever they were.
pub fn claim(annotations: &HashMap<String, String>) -> Result<Option<PathBuf>> {
    let Some(value) = annotations.get(IMAGES_ANNOTATION) else {
        return Ok(None);
    };
    let images = PathBuf::from(value);
    if !images.is_absolute() {
        return Err(Error::InvalidArgument(format!(
            "{IMAGES_ANNOTATION}={value:?}: not an absolute path"
        )));
    }
    let meta = match std::fs::symlink_metadata(&images) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("stat {}", images.display()))(e)),
    };
    if !meta.is_dir() || meta.uid() != 0 || meta.mode() & 0o077 != 0 {
        return Err(Error::InvalidArgument(format!(
            "{IMAGES_ANNOTATION}: {} is not a directory private to root (mode 0700): \
             refused as a checkpoint to restore",
            images.display()
        )));
    }
    match std::fs::remove_file(images.join(MARK)) {
        Ok(()) => Ok(Some(images)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!(
            "take the restore mark in {}",
            images.display()
        ))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn annotated(dir: &Path) -> HashMap<String, String> {
        HashMap::from([(IMAGES_ANNOTATION.to_string(), dir.display().to_string())])
    }

    fn private_dir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        d
    }

    #[test]
    fn without_the_annotation_there_is_nothing_to_claim() {
        assert_eq!(claim(&HashMap::new()).unwrap(), None);
    }

    #[test]
    fn an_offered_directory_is_claimed_once() {
        let d = private_dir();
        offer(d.path()).unwrap();
        assert!(offer(d.path()).is_err(), "one mark at a time");
        // (The tests run as root, as the shim does.)
        assert_eq!(
            claim(&annotated(d.path())).unwrap().as_deref(),
            Some(d.path())
        );
        assert_eq!(
            claim(&annotated(d.path())).unwrap(),
            None,
            "a second start runs fresh"
        );
    }

    #[test]
    fn a_removed_directory_means_a_fresh_start() {
        let d = private_dir();
        let gone = d.path().join("gone");
        assert_eq!(claim(&annotated(&gone)).unwrap(), None);
    }

    #[test]
    fn a_directory_others_can_read_or_a_relative_path_is_refused() {
        let d = private_dir();
        offer(d.path()).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let e = claim(&annotated(d.path())).unwrap_err().to_string();
        assert!(e.contains("private to root"), "{e}");
        assert!(d.path().join(MARK).exists(), "a refusal takes no mark");
        let e = claim(&annotated(Path::new("relative/dir")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("absolute"), "{e}");
    }
}
