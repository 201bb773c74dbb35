//! The archive on disk: verified and extracted (or a snapshot of the store
//! materialized) into the import's scratch directory, the memory a
//! stop-and-copy migration received moved in beside its images, and the
//! extracted files read back (the configuration, the OCI spec, the
//! engine's description, the root filesystem changes applied).

use std::path::Path;

use lazarus_core::archive::{self, ArchiveConfig};
use lazarus_core::config::Config;
use lazarus_core::host::overlay::OverlayMount;
use serde_json::Value;

use super::ImportArgs;
use crate::error::{Error, Result};
use crate::flows::restore_guard::RestoreGuard;
use crate::progress::{self, Progress};

/// Verifies and extracts the archive (or materializes the snapshot) into
/// a new scratch directory's `archive/` (the guard told of it first), and
/// moves in the memory a stop-and-copy migration received; the scratch
/// directory, and the bytes of memory moved in.
pub(super) fn extract(
    args: &ImportArgs,
    config: &Config,
    guard: Option<&RestoreGuard>,
    manifest: &archive::Manifest,
    from_store: Option<&mut lazarus_core::store::SnapshotReader>,
) -> Result<(lazarus_core::scratch::Scratch, Option<u64>)> {
    let scratch = match &args.scratch_in {
        Some(parent) => lazarus_core::scratch::Scratch::new_in(parent, "import")?,
        // Into memory when it fits: CRIU reads the images once, and they
        // need not outlive the host (the archive or the snapshot they come
        // from does). On disk, writing them out waits on the disk's
        // writeback, in the restore's downtime.
        None => match lazarus_core::scratch::in_memory(
            &config.memory_root,
            "import",
            manifest.total_size(),
        ) {
            Some(s) => s,
            None => config.scratch_dir("import")?,
        },
    };
    if let Some(g) = guard {
        g.scratch(scratch.path())?;
    }
    let dir = scratch.path().join("archive");
    let bar = Progress::bytes(progress::wanted(args.json), "verify", manifest.total_size());
    let limits = config.import.limits();
    let extracted = match from_store {
        Some(reader) => reader
            .materialize(&dir, &mut |n| bar.set(n))
            .map_err(Error::from),
        None => archive::extract_with(&args.file, &dir, &limits, &|_| true, &mut |n| bar.set(n))
            .map(drop)
            .map_err(Error::from),
    };
    bar.finish();
    extracted?;
    let pages_bytes = match &args.pages {
        Some(pages) => Some(move_pages(pages, &dir.join(archive::CHECKPOINT_DIR))?),
        None => None,
    };
    if let Some(slot) = &args.pump_plan {
        // Without them the tunnel still carries the daemon's requests one
        // by one: slower, not wrong.
        match lazarus_core::checkpoint::postcopy::lazy_runs(&dir.join(archive::CHECKPOINT_DIR)) {
            Ok(runs) => slot.set_runs(runs),
            Err(e) => eprintln!("lazarus: warning: the page pump is off: {e}"),
        }
    }
    Ok((scratch, pages_bytes))
}

/// Moves every file of `pages` (a page server's images directory) into the
/// extracted `images`, which must not have them already: an archive that
/// carried its own would be a different dump. Returns the bytes moved.
pub(super) fn move_pages(pages: &Path, images: &Path) -> Result<u64> {
    let read = |e| lazarus_core::Error::io(format!("read {}", pages.display()))(e);
    let mut bytes = 0;
    for entry in std::fs::read_dir(pages).map_err(read)? {
        let entry = entry.map_err(read)?;
        let to = images.join(entry.file_name());
        if to.symlink_metadata().is_ok() {
            return Err(Error::Refused(format!(
                "the archive has its own {} beside the memory the page server received: not \
                 one dump",
                to.display()
            )));
        }
        bytes += entry.metadata().map_err(read)?.len();
        std::fs::rename(entry.path(), &to).map_err(lazarus_core::Error::io(format!(
            "move {} into {}",
            entry.path().display(),
            images.display()
        )))?;
    }
    Ok(bytes)
}

pub(super) fn read_config(dir: &Path) -> Result<ArchiveConfig> {
    let path = dir.join(archive::CONFIG_DUMP);
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not what Lazarus writes: {e}",
            archive::CONFIG_DUMP
        ))
    })
}

/// The archive's OCI spec, as JSON (its shape is checked where used).
pub(super) fn read_spec(dir: &Path) -> Result<Value> {
    let bytes = std::fs::read(dir.join(archive::SPEC_DUMP)).map_err(lazarus_core::Error::io(
        format!("read {}", archive::SPEC_DUMP),
    ))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::SPEC_DUMP
        ))
    })
}

pub(super) fn read_engine_config(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join(archive::ENGINE_DUMP);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::ENGINE_DUMP
        ))
    })
}

/// Applies the archive's root filesystem changes to the new container's
/// root filesystem, mounted for this at a private directory.
pub(super) fn apply_rootfs_diff(dir: &Path, overlay: &[String]) -> Result<()> {
    let merged = dir.join("rootfs");
    std::fs::create_dir(&merged).map_err(lazarus_core::Error::io(format!(
        "create {}",
        merged.display()
    )))?;
    let mounted = OverlayMount::mount(overlay, &merged)?;
    lazarus_core::checkpoint::rootfs::apply_extracted(dir, mounted.path())?;
    Ok(())
}
