//! The parent of a container's next incremental snapshot, where the kernel
//! tracks dirty memory (see `checkpoint::incremental`):
//! `tracking/CONTAINER-ID/`, holding what CRIU reads of a parent and the
//! id of the snapshot its dump became (whose pages complete the next dump).
//!
//! A dump that tracks memory clears the kernel's dirty bits, so a record
//! must never outlive a dump that was not committed: the next dump would
//! leave pages written since the record's dump to a snapshot that does
//! not have them. So a snapshot claims the record before it dumps (moved
//! into its writer's directory, and gone with it, whatever happens), and
//! only a committed snapshot leaves a new one. With no record the dump is
//! whole (and tracks memory from there).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use super::{Snapshot, Store};
use crate::checkpoint::incremental;
use crate::error::{Error, Result};

const TRACKING: &str = "tracking";
/// The snapshot a record's dump became.
const SNAPSHOT_FILE: &str = "snapshot";

/// A claimed parent: CRIU's parent directory, and the snapshot holding
/// its pages.
pub struct Claimed {
    pub dir: PathBuf,
    pub snapshot: Snapshot,
}

impl Store {
    /// The container's record, for an id that is one safe file name.
    fn tracking_dir(&self, container_id: &str) -> Option<PathBuf> {
        let ok = crate::ids::check_name("container id", container_id).is_ok();
        ok.then(|| self.root.join(TRACKING).join(container_id))
    }

    /// Takes the container's parent record out of the store into `into`
    /// (a directory of the snapshot's writer, on the store's file system).
    /// None when there is none, or its snapshot is gone.
    pub fn claim_parent(&self, container_id: &str, into: &Path) -> Result<Option<Claimed>> {
        let Some(record) = self.tracking_dir(container_id) else {
            return Ok(None);
        };
        let dir = into.join(incremental::PARENT_LINK);
        match fs::rename(&record, &dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(Error::io(format!("claim {}", record.display()))(e));
            }
        }
        let id = fs::read_to_string(dir.join(SNAPSHOT_FILE)).unwrap_or_default();
        let snapshot = self.list()?.into_iter().find(|s| s.id == id.trim());
        Ok(snapshot.map(|snapshot| Claimed { dir, snapshot }))
    }

    /// Saves what CRIU will read of the complete dump in `images` as the
    /// container's next parent, not yet in effect: [`Self::keep_parent`]
    /// makes it the record once the snapshot is committed (the images may
    /// be gone by then). Returns whether it was saved.
    pub fn prepare_parent(&self, container_id: &str, images: &Path) -> Result<bool> {
        let Some(new) = self.new_record(container_id) else {
            return Ok(false);
        };
        let parent = self.root.join(TRACKING);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&parent)
            .map_err(Error::io(format!("make {}", parent.display())))?;
        let _ = fs::remove_dir_all(&new);
        let saved = incremental::save_parent(images, &new);
        if saved.is_err() {
            let _ = fs::remove_dir_all(&new);
        }
        saved.map(|()| true)
    }

    /// Makes the prepared parent the container's record, that of the
    /// committed snapshot `snapshot_id`.
    pub fn keep_parent(&self, container_id: &str, snapshot_id: &str) -> Result<()> {
        let (Some(record), Some(new)) = (
            self.tracking_dir(container_id),
            self.new_record(container_id),
        ) else {
            return Ok(());
        };
        let kept = crate::criu::write_private(&new.join(SNAPSHOT_FILE), snapshot_id.as_bytes())
            .and_then(|()| {
                let _ = fs::remove_dir_all(&record);
                fs::rename(&new, &record).map_err(Error::io(format!("make {}", record.display())))
            });
        if kept.is_err() {
            let _ = fs::remove_dir_all(&new);
        }
        kept
    }

    /// Where a parent is prepared (a killed snapshot's is replaced by the
    /// container's next one).
    fn new_record(&self, container_id: &str) -> Option<PathBuf> {
        self.tracking_dir(container_id)?;
        Some(
            self.root
                .join(TRACKING)
                .join(format!(".new-{container_id}")),
        )
    }
}
