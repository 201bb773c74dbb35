//! The archive of a checkpoint: the root filesystem diff (saved by the
//! shim, or taken from the overlay upper directory), the container's
//! configuration and image, CRIU's images, as one (signed) file.

use std::fs;
use std::path::Path;

use chrono::{DateTime, Utc};
use containerd_client::services::v1::Container;
use lazarus_core::archive::{self, ArchiveConfig, ArchiveInput, RootfsDiff};
use lazarus_core::checkpoint::image;

use super::ExportArgs;
use crate::engine::containerd::{Containerd, LAZARUS_RUNTIME};
use crate::engine::docker;
use crate::engine::docker_config;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::progress::{self, Progress};

/// The archive's manifest, and (deleted files, rootfs diff bytes).
pub type Archived = (archive::Manifest, Option<(usize, u64)>);

/// Root filesystem diff, configuration and archive. Returns the manifest and
/// (deleted files, rootfs diff bytes) when there is a diff.
pub(super) async fn archive_it(
    args: &ExportArgs,
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
    scratch: &Path,
    checkpointed: DateTime<Utc>,
) -> Result<Archived> {
    let images = scratch.join(archive::CHECKPOINT_DIR);
    let diff = rootfs_diff(target, container, ctr, scratch).await?;
    let diff_bytes = fs::metadata(&diff.tar).map(|m| m.len()).unwrap_or(0);
    // Without a containerd record (a stopped Docker container) there is no
    // OCI spec to carry: Docker makes a new one from engine.dump.
    let spec = container
        .and_then(|c| c.spec.as_ref())
        .map(|s| s.value.clone())
        .unwrap_or_else(|| b"{}".to_vec());
    let config = archive_config(target, container, ctr, checkpointed).await?;
    let (engine_config, network) = match &target.docker {
        Some(v) => (
            Some(serde_json::to_vec_pretty(&docker_config::create_body(v)).expect("JSON")),
            Some(serde_json::to_vec_pretty(&v["NetworkSettings"]).expect("JSON")),
        ),
        None => (None, None),
    };
    let dump_log = images.join(image::DUMP_LOG);
    let input = ArchiveInput {
        images_dir: &images,
        spec_json: &spec,
        config: &config,
        rootfs_diff: Some(&diff),
        dump_log: dump_log.is_file().then_some(dump_log.as_path()),
        network_status: network.as_deref(),
        engine_config: engine_config.as_deref(),
    };
    let total: u64 = progress::dir_bytes(&images) + diff_bytes;
    let bar = Progress::bytes(progress::wanted(args.json), "export", total);
    let signer = args
        .sign
        .as_deref()
        .map(archive::Signer::load)
        .transpose()?;
    let manifest = archive::write_signed(
        &input,
        &args.export,
        args.compress.compression(),
        signer.as_ref(),
        &mut |n| bar.set(n),
    );
    bar.finish();
    Ok((manifest?, Some((diff.deleted.len(), diff_bytes))))
}

/// The root filesystem's changes: the diff the shim saved as the dump
/// ended (or Docker's checkpoint holds, of its own time), else taken now
/// from the container's overlay upper directory.
async fn rootfs_diff(
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
    scratch: &Path,
) -> Result<RootfsDiff> {
    let images = scratch.join(archive::CHECKPOINT_DIR);
    if let Some(diff) = saved_rootfs_diff(&images, scratch)? {
        return Ok(diff);
    }
    let upper = match (&target.docker, container) {
        (Some(v), _) => docker::upper_dir(v, &target.name)?,
        (None, Some(c)) => ctr.upper_dir(&c.snapshotter, &c.snapshot_key).await?,
        (None, None) => {
            return Err(Error::NotFound(format!(
                "no containerd container {}",
                target.name
            )))
        }
    };
    let tar = scratch.join(archive::ROOTFS_DIFF_TAR);
    Ok(lazarus_core::checkpoint::rootfs::diff_from_overlay_upper(
        &upper, &tar,
    )?)
}

/// The archive's config.dump: who the container is, its image, when it
/// was made and checkpointed.
async fn archive_config(
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
    checkpointed: DateTime<Utc>,
) -> Result<ArchiveConfig> {
    let (image_name, image_digest) = image_of(target, container, ctr).await?;
    let created = match &target.docker {
        Some(v) => v["Created"].as_str().and_then(|c| c.parse().ok()),
        None => container
            .and_then(|c| c.created_at.as_ref())
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32)),
    };
    Ok(ArchiveConfig {
        id: target.id.clone(),
        name: target.name.clone(),
        image_name,
        image_digest,
        runtime: LAZARUS_RUNTIME.into(),
        created: created.unwrap_or(checkpointed),
        checkpointed,
        engine: target.engine().into(),
        namespace: target.namespace.clone(),
    })
}

/// The container's image: its name and the digest that identifies it
/// (Docker's image id; containerd's manifest or index digest).
pub async fn image_of(
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
) -> Result<(String, String)> {
    if let Some(v) = &target.docker {
        return Ok((
            v["Config"]["Image"].as_str().unwrap_or("").to_string(),
            v["Image"].as_str().unwrap_or("").to_string(),
        ));
    }
    let c = container
        .ok_or_else(|| Error::NotFound(format!("no containerd container {}", target.name)))?;
    let digest = ctr
        .image_target(&c.image)
        .await?
        .map(|t| t.1)
        .unwrap_or_default();
    Ok((c.image.clone(), digest))
}

/// The root filesystem diff the shim saved among the images, moved out of
/// them (the archive carries it at its top level, where Podman's is).
pub(super) fn saved_rootfs_diff(images: &Path, scratch: &Path) -> Result<Option<RootfsDiff>> {
    let tar = images.join(archive::ROOTFS_DIFF_TAR);
    let deleted = images.join(archive::DELETED_FILES);
    if !tar.is_file() || !deleted.is_file() {
        return Ok(None);
    }
    let io = |p: &Path| lazarus_core::Error::io(format!("move {}", p.display()));
    let moved_tar = scratch.join(archive::ROOTFS_DIFF_TAR);
    fs::rename(&tar, &moved_tar).map_err(io(&tar))?;
    let deleted_list = lazarus_core::checkpoint::rootfs::read_deleted(&deleted)?;
    fs::remove_file(&deleted).map_err(io(&deleted))?;
    Ok(Some(RootfsDiff {
        tar: moved_tar,
        deleted: deleted_list,
    }))
}

/// The page images the shim stored compressed, as lazarus.json lists them
/// (none for a checkpoint without one: its pages count as stored).
pub(super) fn compressed_pages(
    images: &Path,
) -> Vec<lazarus_core::checkpoint::pages::CompressedFile> {
    image::Metadata::load(images)
        .map(|m| m.compressed_pages)
        .unwrap_or_default()
}
