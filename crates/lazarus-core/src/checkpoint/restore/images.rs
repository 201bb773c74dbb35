//! The image directory made ready for CRIU: the checkpointed container's
//! root filesystem changes applied to a new container, the root
//! filesystem's image checked against the checkpoint's, and compressed
//! page images made readable (in place, or in a private copy).

use std::path::Path;

use oci_spec::runtime::Spec;

use super::RestorePlan;
use crate::checkpoint::identity::{self, ImageIdentity};
use crate::error::Result;

/// The image directory CRIU reads: the checkpoint's own, or a private
/// copy with its pages decompressed (removed when dropped).
pub(super) enum Readable<'a> {
    Images(&'a Path),
    Copy(tempfile::TempDir),
}

impl Readable<'_> {
    pub(super) fn path(&self) -> &Path {
        match self {
            Readable::Images(p) => p,
            Readable::Copy(t) => t.path(),
        }
    }
}

impl RestorePlan {
    /// CRIU reads raw page images. Compressed ones are decompressed in
    /// place in containerd's temporary copy (discarded after the restore
    /// anyway); any other directory (a user's image path, a Docker
    /// checkpoint restored by the CLI) must stay as it is, so CRIU gets a
    /// private copy in `scratch_root`.
    pub(super) fn readable_images(&self, scratch_root: &Path) -> Result<Readable<'_>> {
        let files = &self.metadata.compressed_pages;
        if files.is_empty() {
            return Ok(Readable::Images(&self.images));
        }
        let started = std::time::Instant::now();
        let readable = match self.temporary {
            true => {
                crate::checkpoint::pages::decompress_in_place(&self.images, files)?;
                Readable::Images(&self.images)
            }
            false => Readable::Copy(crate::checkpoint::pages::decompressed_copy(
                &self.images,
                files,
                scratch_root,
            )?),
        };
        ::log::info!(
            "restore from {}: {} page images decompressed into {} in {:?}",
            self.images.display(),
            files.len(),
            readable.path().display(),
            started.elapsed()
        );
        Ok(readable)
    }
}

impl RestorePlan {
    /// Refuses a rootfs of another image than the checkpoint's, unless the
    /// new container's annotation says to skip the check.
    ///
    /// (Placed after [`Self::apply_rootfs_diff`]: the identity was taken
    /// of the root filesystem with the container's own changes.)
    pub(super) fn check_image(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        let Some(recorded) = &self.metadata.image else {
            return Ok(()); // taken by a Lazarus that did not record it
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        if identity::skip_requested(&annotations)? {
            ::log::warn!(
                "restore from {}: image check skipped ({})",
                self.images.display(),
                identity::SKIP_IMAGE_CHECK_ANNOTATION
            );
            return Ok(());
        }
        let now = ImageIdentity::of_rootfs(&crate::checkpoint::rootfs_path(spec, bundle));
        recorded.check(&now, &self.images)
    }
}

impl RestorePlan {
    /// A restore into another container than the checkpointed one (Docker's
    /// `start --checkpoint` of a new container, a copy on another host)
    /// first gets the checkpointed container's root filesystem changes,
    /// when the dump saved them. The same container still has them.
    pub(super) fn apply_rootfs_diff(&self, id: &str, spec: &Spec, bundle: &Path) -> Result<()> {
        let tar = self.images.join(crate::checkpoint::rootfs::ROOTFS_DIFF_TAR);
        if !self.metadata.rootfs_diff || self.metadata.container_id == id || !tar.is_file() {
            return Ok(());
        }
        let deleted = crate::checkpoint::rootfs::read_deleted(
            &self.images.join(crate::checkpoint::rootfs::DELETED_FILES),
        )?;
        let rootfs = crate::checkpoint::rootfs_path(spec, bundle);
        crate::checkpoint::rootfs::apply(&tar, &deleted, &rootfs)?;
        ::log::info!(
            "restore of {id}: applied {}'s root filesystem changes ({} deleted paths)",
            self.metadata.container_id,
            deleted.len()
        );
        Ok(())
    }
}
