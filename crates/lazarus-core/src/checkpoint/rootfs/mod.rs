//! The container's root filesystem changes, as Podman carries them: a tar
//! of the added and changed files (`rootfs-diff.tar`) and a JSON list of
//! deleted paths (`deleted.files`, written `/etc/motd`-style, as Podman
//! does), made from an overlayfs upper directory and applied to a fresh
//! root filesystem made from the same image.
//!
//! What the diff does not carry (each worth a follow-up if it matters):
//! extended attributes (file capabilities, SELinux labels), hard links
//! (each name becomes its own copy), sockets, FIFOs and device nodes (left
//! out with a warning: a container's own devices come from its spec).

mod apply;
mod diff;

#[cfg(test)]
pub(crate) mod tests;

use std::path::{Path, PathBuf};

pub use apply::apply;
pub use diff::diff_from_overlay_upper;

use crate::error::{Error, Result};

/// Beside the images (and in the archive, at its top): the tar of added and
/// changed files.
pub const ROOTFS_DIFF_TAR: &str = "rootfs-diff.tar";
/// Beside the images (and in the archive, at its top): the deleted paths.
pub const DELETED_FILES: &str = "deleted.files";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsDiff {
    /// A plain tar of added and changed files, directories, symlinks, fifos,
    /// with their modes, owners and modification times.
    pub tar: PathBuf,
    /// Deleted paths, `/`-prefixed, relative to the root filesystem. A
    /// directory listed here and also present in the tar was replaced
    /// (overlayfs' opaque directory): [`apply`] deletes before it extracts.
    pub deleted: Vec<String>,
}

/// Reads `deleted.files`.
pub fn read_deleted(path: &Path) -> Result<Vec<String>> {
    let bytes = std::fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} is not a JSON list of paths: {e}",
            path.display()
        ))
    })
}

/// Applies the root filesystem diff of an extracted archive, if it has one
/// (an archive made with the root filesystem left out has none).
pub fn apply_extracted(extracted: &Path, rootfs: &Path) -> Result<bool> {
    let tar = extracted.join(ROOTFS_DIFF_TAR);
    if !tar.exists() {
        return Ok(false);
    }
    let deleted = read_deleted(&extracted.join(DELETED_FILES))?;
    apply(&tar, &deleted, rootfs)?;
    Ok(true)
}

/// The components of a path inside the root filesystem. `.` and empty
/// components are dropped; `..` is refused, and so is a leading `/` unless
/// `rooted` (deleted.files spells paths from the container's `/`).
fn components(name: &str, rooted: bool) -> Option<Vec<&str>> {
    if name.starts_with('/') && !rooted {
        return None;
    }
    let parts: Vec<&str> = name
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    if parts.contains(&"..") || name.contains('\0') {
        return None;
    }
    Some(parts)
}
