//! The archive of a checkpoint: the root filesystem diff (saved by the
//! shim, or taken from the overlay upper directory), a Docker container's
//! local named volumes (as Podman carries them, unless --ignore-volumes;
//! host paths and other drivers' volumes are named as not carried), the
//! container's configuration and image, CRIU's images, as one (signed)
//! file.

use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use containerd_client::services::v1::Container;
use lazarus_core::archive::{self, volumes, ArchiveConfig, ArchiveInput, RootfsDiff};
use lazarus_core::checkpoint::image;

use super::ExportArgs;
use crate::engine::containerd::{Containerd, LAZARUS_RUNTIME};
use crate::engine::docker;
use crate::engine::docker_config;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::progress::{self, Progress};
use crate::report::CarriedVolume;

/// What the archive holds beyond CRIU's images.
#[derive(Debug)]
pub struct Archived {
    pub manifest: archive::Manifest,
    /// (deleted files, rootfs diff bytes) when there is a diff.
    pub diff: Option<(usize, u64)>,
    pub volumes: Vec<CarriedVolume>,
    pub not_carried: Vec<String>,
    /// The archive's bytes when it went to standard output (`--export -`).
    pub streamed_bytes: Option<u64>,
}

/// Root filesystem diff, volumes, configuration and archive.
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
    let mounts = Mounts::of(target);
    let (volumes, carried) = mounts.pack(scratch, args.ignore_volumes)?;
    let dump_log = images.join(image::DUMP_LOG);
    let input = ArchiveInput {
        images_dir: &images,
        spec_json: &spec,
        config: &config,
        rootfs_diff: Some(&diff),
        dump_log: dump_log.is_file().then_some(dump_log.as_path()),
        network_status: network.as_deref(),
        engine_config: engine_config.as_deref(),
        volumes: &volumes,
    };
    let volume_bytes: u64 = volumes
        .iter()
        .map(|(_, t)| fs::metadata(t).map(|m| m.len()).unwrap_or(0))
        .sum();
    let total: u64 = progress::dir_bytes(&images) + diff_bytes + volume_bytes;
    let bar = Progress::bytes(progress::wanted(args.json), "export", total);
    let signer = args
        .sign
        .as_deref()
        .map(archive::Signer::load)
        .transpose()?;
    let (manifest, streamed) = write_archive(args, &input, signer.as_ref(), &mut |n| bar.set(n));
    bar.finish();
    Ok(Archived {
        manifest: manifest?,
        diff: Some((diff.deleted.len(), diff_bytes)),
        volumes: carried,
        not_carried: mounts.not_carried(args.ignore_volumes),
        streamed_bytes: streamed,
    })
}

/// Writes the archive to `args.export`, or to standard output
/// (`--export -`), then with the bytes that went there; or hands the
/// content to `args.into` (a snapshot: no archive at all).
fn write_archive(
    args: &ExportArgs,
    input: &ArchiveInput,
    signer: Option<&archive::Signer>,
    progress: &mut dyn FnMut(u64),
) -> (lazarus_core::Result<archive::Manifest>, Option<u64>) {
    if let Some(sink) = &args.into {
        return (sink.take(input), None);
    }
    let compression = args.compress.compression();
    if !super::is_stdout(&args.export) {
        let written = archive::write_signed(input, &args.export, compression, signer, progress);
        return (written, None);
    }
    let mut out = Counted::new(std::io::stdout().lock());
    let written = archive::write_signed_to(input, &mut out, compression, signer, progress);
    (written, Some(out.bytes))
}

/// A writer that counts what went through it.
pub struct Counted<W> {
    inner: W,
    pub bytes: u64,
}

impl<W> Counted<W> {
    pub fn new(inner: W) -> Counted<W> {
        Counted { inner, bytes: 0 }
    }
}

impl<W: std::io::Write> std::io::Write for Counted<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.bytes += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A volume's name and the tar of its data.
type VolumeTar = (String, PathBuf);

/// A Docker container's mounts, as `docker inspect` lists them.
struct Mounts {
    /// Local named volumes: (name, data directory, destination).
    local_volumes: Vec<(String, PathBuf, String)>,
    /// The others, described ("bind /srv/data at /data").
    others: Vec<String>,
}

impl Mounts {
    fn of(target: &Target) -> Mounts {
        let mut m = Mounts {
            local_volumes: Vec::new(),
            others: Vec::new(),
        };
        let Some(v) = &target.docker else {
            return m;
        };
        for mount in v["Mounts"].as_array().into_iter().flatten() {
            let s = |k: &str| mount[k].as_str().unwrap_or("").to_string();
            let (kind, dest) = (s("Type"), s("Destination"));
            match (kind.as_str(), s("Driver").as_str()) {
                ("volume", "local") if volumes::is_volume_name(&s("Name")) => m
                    .local_volumes
                    .push((s("Name"), PathBuf::from(s("Source")), dest)),
                ("volume", driver) => m
                    .others
                    .push(format!("volume {} (driver {driver}) at {dest}", s("Name"))),
                ("bind", _) => m
                    .others
                    .push(format!("host path {} at {dest}", s("Source"))),
                (kind, _) => m.others.push(format!("{kind} mount at {dest}")),
            }
        }
        m
    }

    /// Tars each local volume's data into `scratch/volumes/` (none when
    /// `ignore`): what the archive carries, and the report's lines.
    fn pack(&self, scratch: &Path, ignore: bool) -> Result<(Vec<VolumeTar>, Vec<CarriedVolume>)> {
        if ignore || self.local_volumes.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let dir = scratch.join(volumes::VOLUMES_DIR);
        fs::create_dir(&dir)
            .map_err(lazarus_core::Error::io(format!("create {}", dir.display())))?;
        let mut tars = Vec::new();
        let mut carried = Vec::new();
        for (name, data, dest) in &self.local_volumes {
            let tar = dir.join(format!("{name}.tar"));
            let bytes = volumes::pack(data, &tar)?;
            tars.push((name.clone(), tar));
            carried.push(CarriedVolume {
                name: name.clone(),
                destination: dest.clone(),
                bytes,
            });
        }
        Ok((tars, carried))
    }

    /// What the archive leaves behind, each named.
    fn not_carried(&self, ignore: bool) -> Vec<String> {
        let mut out = self.others.clone();
        if ignore {
            out.extend(
                self.local_volumes
                    .iter()
                    .map(|(name, _, dest)| format!("volume {name} at {dest} (--ignore-volumes)")),
            );
        }
        out
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker_target(mounts: serde_json::Value) -> Target {
        Target {
            id: "0123".into(),
            name: "db".into(),
            namespace: "moby".into(),
            docker: Some(json!({ "Mounts": mounts })),
        }
    }

    #[test]
    fn local_volumes_travel_and_the_rest_is_named() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("dump.rdb"), b"REDIS").unwrap();
        let target = docker_target(json!([
            {"Type": "volume", "Name": "db-data", "Driver": "local",
             "Source": data, "Destination": "/data"},
            {"Type": "volume", "Name": "remote", "Driver": "nfs-plugin",
             "Source": "", "Destination": "/nfs"},
            {"Type": "bind", "Source": "/srv/conf", "Destination": "/conf"},
            {"Type": "tmpfs", "Destination": "/cache"},
        ]));
        let m = Mounts::of(&target);
        let scratch = t.path().join("scratch");
        fs::create_dir(&scratch).unwrap();
        let (tars, carried) = m.pack(&scratch, false).unwrap();
        assert_eq!(tars.len(), 1);
        assert_eq!(tars[0].0, "db-data");
        assert!(tars[0].1.is_file());
        assert_eq!(
            carried,
            [CarriedVolume {
                name: "db-data".into(),
                destination: "/data".into(),
                bytes: 5
            }]
        );
        assert_eq!(
            m.not_carried(false),
            [
                "volume remote (driver nfs-plugin) at /nfs",
                "host path /srv/conf at /conf",
                "tmpfs mount at /cache"
            ]
        );
    }

    #[test]
    fn ignore_volumes_carries_none_and_says_so() {
        let target = docker_target(json!([
            {"Type": "volume", "Name": "db-data", "Driver": "local",
             "Source": "/nonexistent", "Destination": "/data"},
        ]));
        let m = Mounts::of(&target);
        let (tars, carried) = m.pack(Path::new("/nonexistent"), true).unwrap();
        assert!(tars.is_empty() && carried.is_empty());
        assert_eq!(
            m.not_carried(true),
            ["volume db-data at /data (--ignore-volumes)"]
        );
    }

    #[test]
    fn a_containerd_container_has_no_volumes_to_carry() {
        let target = Target {
            id: "c".into(),
            name: "c".into(),
            namespace: "default".into(),
            docker: None,
        };
        let m = Mounts::of(&target);
        assert!(m.local_volumes.is_empty() && m.others.is_empty());
    }
}
