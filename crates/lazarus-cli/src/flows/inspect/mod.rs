//! `lazarus inspect FILE|DIR`: Lazarus's record of the checkpoint
//! (lazarus.json) beside what CRIU's own images hold; for an archive also
//! its config.dump, sizes, volumes and what it asks of the host that
//! imports it; for a group archive its index.
//!
//! The command returns a typed report ([`Inspected`]); `--json` prints it
//! as JSON, otherwise its text (`render.rs`).

use std::path::{Path, PathBuf};

use lazarus_core::archive::{self, group::GroupIndex, ArchiveConfig, Manifest};
use lazarus_core::checkpoint::image::{Metadata, METADATA_FILE};
use lazarus_core::config::Config;
use lazarus_core::inspect::{summarize, ImageSummary};
use lazarus_core::security::authority::{self, Item};
use lazarus_core::security::creds::{self, ThreadCreds};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::progress::{self, Progress};
use crate::report::pages_bytes;
use crate::seal;

mod render;

/// What `lazarus inspect` found.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Inspected {
    Checkpoint(Box<CheckpointReport>),
    Group(GroupReport),
}

/// A checkpoint: a directory of images, or an archive's.
#[derive(Debug, Serialize)]
pub struct CheckpointReport {
    /// lazarus.json; None for a plain CRIU dump.
    pub lazarus: Option<Metadata>,
    pub criu: ImageSummary,
    pub credentials: Vec<ThreadCreds>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveInfo>,
    /// The images' directory (what is shown when there is no archive).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// What an archive says around the images.
#[derive(Debug, Serialize)]
pub struct ArchiveInfo {
    pub file: PathBuf,
    pub format: u32,
    pub written_by: String,
    pub config: Option<ArchiveConfig>,
    pub archive_bytes: u64,
    pub content_bytes: u64,
    pub pages_bytes: u64,
    pub pages_stored_bytes: u64,
    pub rootfs_diff_bytes: u64,
    pub deleted_files: usize,
    pub volumes: Vec<VolumeInfo>,
    pub entries: usize,
    pub signed_by: Option<String>,
    pub asks_for: AsksFor,
}

/// A named volume the archive carries.
#[derive(Debug, Serialize)]
pub struct VolumeInfo {
    pub name: String,
    /// The size of its tar in the archive.
    pub bytes: u64,
}

/// What the archive's recorded configuration asks of the host that imports
/// it (see lazarus_core::security::authority): `engine.dump`'s items for a
/// Docker archive, `spec.dump`'s for the rest, as `restore --import` checks
/// them.
#[derive(Debug, Serialize)]
pub struct AsksFor {
    pub docker: Option<Vec<Item>>,
    pub oci: Option<Vec<Item>>,
}

/// A group archive (`checkpoint --group`): its index, every member checked
/// against it on the way.
#[derive(Debug, Serialize)]
pub struct GroupReport {
    pub file: PathBuf,
    pub group: GroupIndex,
}

/// Inspects the archive or directory at `path` (an encrypted archive is
/// opened with `identity`).
pub fn run(path: &Path, json: bool, identity: Option<&Path>) -> Result<Inspected> {
    if !path.exists() {
        return Err(Error::NotFound(format!(
            "{} does not exist: give a checkpoint archive or directory",
            path.display()
        )));
    }
    if seal::is_encrypted(path) {
        // Decrypted into a private directory, removed when done.
        let tmp = private_tempdir()?;
        let plain = tmp.path().join("archive.tar");
        seal::decrypt(path, &plain, identity)?;
        return run(&plain, json, None);
    }
    if path.is_dir() {
        return Ok(Inspected::Checkpoint(Box::new(images(path, None)?)));
    }
    if archive::group::is_group(path) {
        let tmp = private_tempdir()?;
        let (index, _) = archive::group::extract_group(path, &tmp.path().join("members"))?;
        return Ok(Inspected::Group(GroupReport {
            file: path.to_path_buf(),
            group: index,
        }));
    }
    // The whole archive is read and checked; only the memory pages are not
    // written out (their sizes are in the manifest).
    let tmp = private_tempdir()?;
    let dir = tmp.path().join("archive");
    let manifest = archive::read_manifest(path)?;
    let bar = Progress::bytes(progress::wanted(json), "verify", manifest.total_size());
    let pages = format!("{}/pages-", archive::CHECKPOINT_DIR);
    // The same limits as an import's: inspect is what a user runs on an
    // archive before trusting it.
    let limits = Config::load()?.import.limits();
    let extracted =
        archive::extract_with(path, &dir, &limits, &|n| !n.starts_with(&pages), &mut |n| {
            bar.set(n)
        });
    bar.finish();
    let manifest = extracted?;
    let info = archive_info(path, &dir, &manifest)?;
    Ok(Inspected::Checkpoint(Box::new(images(
        &dir.join(archive::CHECKPOINT_DIR),
        Some(info),
    )?)))
}

/// What the extracted archive in `dir` (from `path`) says around its images.
fn archive_info(path: &Path, dir: &Path, manifest: &Manifest) -> Result<ArchiveInfo> {
    let size = |name: &str| {
        manifest
            .entries
            .iter()
            .find(|e| e.name == name)
            .map_or(0, |e| e.size)
    };
    let deleted = lazarus_core::checkpoint::rootfs::read_deleted(
        &dir.join(lazarus_core::checkpoint::rootfs::DELETED_FILES),
    )
    .map(|d| d.len())
    .unwrap_or(0);
    let compressed_pages = Metadata::load(&dir.join(archive::CHECKPOINT_DIR))
        .map(|m| m.compressed_pages)
        .unwrap_or_default();
    Ok(ArchiveInfo {
        file: path.to_path_buf(),
        format: manifest.format,
        written_by: manifest.lazarus_version.clone(),
        config: std::fs::read(dir.join(archive::CONFIG_DUMP))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok()),
        archive_bytes: std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        content_bytes: manifest.total_size(),
        pages_bytes: pages_bytes(manifest, &compressed_pages),
        pages_stored_bytes: pages_bytes(manifest, &[]),
        rootfs_diff_bytes: size(archive::ROOTFS_DIFF_TAR),
        deleted_files: deleted,
        volumes: volumes_in(manifest),
        entries: manifest.entries.len(),
        signed_by: manifest.signer()?,
        asks_for: asks_for(dir),
    })
}

/// The summary of the images in `dir`; `archive` is what the archive says
/// around them.
fn images(dir: &Path, archive: Option<ArchiveInfo>) -> Result<CheckpointReport> {
    let mut criu = summarize(dir)?;
    if let Some(a) = &archive {
        // The pages were verified but not written out: count them from the
        // manifest.
        criu.total_bytes += a.pages_stored_bytes.saturating_sub(criu.pages_stored_bytes);
        criu.pages_bytes = a.pages_bytes;
        criu.pages_stored_bytes = a.pages_stored_bytes;
    }
    // A plain CRIU dump has no lazarus.json; say so rather than fail.
    let lazarus = match dir.join(METADATA_FILE).exists() {
        true => Some(Metadata::load(dir)?),
        false => None,
    };
    if let Some(m) = &lazarus {
        // CRIU's log is where the images name CRIU's version; a checkpoint
        // whose log was not kept still has Lazarus's record.
        criu.criu_version
            .get_or_insert_with(|| m.criu_version.clone());
    }
    Ok(CheckpointReport {
        lazarus,
        criu,
        credentials: creds::read_creds(dir)?,
        archive,
        dir: dir.to_path_buf(),
    })
}

/// The named volumes the archive carries: name and tar size each.
fn volumes_in(manifest: &Manifest) -> Vec<VolumeInfo> {
    let prefix = format!("{}/", archive::volumes::VOLUMES_DIR);
    manifest
        .entries
        .iter()
        .filter_map(|e| {
            let name = e.name.strip_prefix(&prefix)?.strip_suffix(".tar")?;
            Some(VolumeInfo {
                name: name.to_string(),
                bytes: e.size,
            })
        })
        .collect()
}

fn asks_for(dir: &Path) -> AsksFor {
    let read = |name: &str| -> Option<serde_json::Value> {
        serde_json::from_slice(&std::fs::read(dir.join(name)).ok()?).ok()
    };
    AsksFor {
        docker: read(archive::ENGINE_DUMP).map(|b| authority::of_docker(&b)),
        oci: read(archive::SPEC_DUMP).map(|s| authority::of_oci_spec(&s)),
    }
}

/// A private (0700) temporary directory in TMPDIR, removed when dropped.
fn private_tempdir() -> Result<tempfile::TempDir> {
    Ok(tempfile::Builder::new()
        .prefix("lazarus-inspect-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir()
        .map_err(lazarus_core::Error::io("create a temporary directory"))?)
}
