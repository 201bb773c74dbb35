//! The record a restore under way leaves in the bundle, and the clean-up
//! after a shim killed mid-restore that reads it (containerd's `delete` of
//! a dead shim): CRIU's cgroup yard unmounted, containerd's temporary copy
//! of the checkpoint removed.

use std::path::{Path, PathBuf};

use super::RestorePlan;
use crate::checkpoint::image;
use crate::criu;
use crate::error::{Error, Result};

/// Where a restore under way works, recorded in the bundle so that the
/// clean-up after a shim killed mid-restore (containerd's `delete` of a
/// dead shim) finds what the dead shim can no longer clean: CRIU's cgroup
/// yard mounted in the work directory, containerd's unpacked copy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RestoreRecord {
    images: PathBuf,
    work: PathBuf,
    temporary: bool,
}

const RESTORE_RECORD: &str = ".lazarus-restore.json";

impl RestorePlan {
    /// Writes the record [`clean_after_dead_shim`] reads.
    pub fn record_in(&self, bundle: &Path) -> Result<()> {
        let record = RestoreRecord {
            images: self.images.clone(),
            work: self.work.clone(),
            temporary: self.temporary,
        };
        let path = bundle.join(RESTORE_RECORD);
        std::fs::write(&path, serde_json::to_vec(&record)?)
            .map_err(Error::io(format!("write {}", path.display())))
    }
}

/// After a shim died during a restore: unmounts the cgroup yard a killed
/// CRIU left and removes containerd's temporary copy of the checkpoint.
pub fn clean_after_dead_shim(bundle: &Path) {
    let Ok(text) = std::fs::read(bundle.join(RESTORE_RECORD)) else {
        return; // no restore was under way
    };
    let Ok(record) = serde_json::from_slice::<RestoreRecord>(&text) else {
        return;
    };
    criu::yard::remove_left_yard(&record.work);
    if record.temporary {
        image::remove_temporary(&record.images);
    }
}
