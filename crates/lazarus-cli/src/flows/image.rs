//! Checkpoint OCI images: `lazarus checkpoint ... --export
//! oci-archive:FILE | oci:DIR`, or `--push REGISTRY/NAME:TAG`. The
//! checkpoint (of a container, a snapshot of the store, or an archive
//! given with --from-archive) is unpacked into a scratch directory and
//! written as the one layer of an OCI image (lazarus-core's
//! `archive::oci`), annotated so that checkpoint-aware engines know it.
//! A push copies the image with `skopeo` (what the test registry and
//! Podman's tooling use; Lazarus holds no registry client of its own).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use lazarus_core::archive::{self, oci, ArchiveConfig};
use lazarus_core::config::Config;
use serde::Serialize;

use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::export::{Compress, ExportArgs};
use crate::report::Summary;

/// Where a checkpoint image goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageDest {
    /// `oci-archive:FILE`
    Archive(PathBuf),
    /// `oci:DIR`
    Layout(PathBuf),
    /// `--push REGISTRY/NAME:TAG`
    Registry(String),
}

impl ImageDest {
    /// The image destination `--export` or `--push` names, if any.
    pub fn parse(export: &Path, push: Option<&str>) -> Option<ImageDest> {
        if let Some(r) = push {
            return Some(ImageDest::Registry(r.to_string()));
        }
        let s = export.to_str()?;
        if let Some(f) = s.strip_prefix("oci-archive:") {
            return Some(ImageDest::Archive(PathBuf::from(f)));
        }
        s.strip_prefix("oci:")
            .map(|d| ImageDest::Layout(PathBuf::from(d)))
    }

    fn describe(&self) -> String {
        match self {
            ImageDest::Archive(f) => format!("oci-archive:{}", f.display()),
            ImageDest::Layout(d) => format!("oci:{}", d.display()),
            ImageDest::Registry(r) => r.clone(),
        }
    }
}

/// What the image is made from.
pub enum ImageSource<'a> {
    Container(&'a ExportArgs),
    Snapshot(&'a str),
    Archive(&'a Path),
}

#[derive(Debug, Clone, Serialize)]
pub struct ImageReport {
    pub image: String,
    pub digest: String,
    pub container: String,
    pub seconds: f64,
}

impl Summary for ImageReport {
    fn summary(&self) -> String {
        format!(
            "{}: checkpoint image of {} ({})",
            self.image, self.container, self.digest
        )
    }
}

/// Writes the checkpoint image of `source` to `dest`.
pub async fn run(
    source: ImageSource<'_>,
    dest: &ImageDest,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<ImageReport> {
    let started = Instant::now();
    let scratch = config.scratch_dir("image")?;
    let tree = scratch.path().join("archive");
    match source {
        ImageSource::Snapshot(key) => {
            let store = crate::flows::snapshot::store(config)?;
            let snapshot = store.find(None, key)?;
            store.reader(&snapshot)?.materialize(&tree, &mut |_| {})?;
        }
        // A Lazarus archive is verified as it is unpacked; another
        // engine's (Kubernetes' CheckpointContainer, Podman's export) has
        // no manifest to verify against, and is unpacked as plain files.
        ImageSource::Archive(file) => match archive::read_manifest(file) {
            Ok(_) => {
                archive::extract_with(
                    file,
                    &tree,
                    &config.import.limits(),
                    &|_| true,
                    &mut |_| {},
                )?;
            }
            Err(_) => unpack_foreign(file, &tree)?,
        },
        ImageSource::Container(args) => {
            if args.is_group() {
                return Err(Error::Refused(
                    "a checkpoint image holds one container: export the group as an archive \
                     (--export FILE), or make an image of each member"
                        .into(),
                ));
            }
            let plain = scratch.path().join("archive.tar");
            let one = ExportArgs {
                export: plain.clone(),
                compress: Compress::None,
                encrypt: None,
                json: true,
                ..args.clone()
            };
            crate::flows::checkpoint(&one, endpoints, config).await?;
            if let Err(e) = archive::extract(&plain, &tree) {
                // The container may be stopped by now: its archive is all.
                let kept = scratch.keep();
                return Err(Error::Refused(format!(
                    "{e}; the checkpoint is kept as {} (restore it with `lazarus restore \
                     --import`)",
                    kept.join("archive.tar").display()
                )));
            }
        }
    }
    let (container, annotations) = described(&tree)?;
    let digest = match dest {
        ImageDest::Archive(file) => oci::write_archive(&tree, file, &annotations, &container)?,
        ImageDest::Layout(dir) => oci::write_layout(&tree, dir, &annotations, &container)?,
        ImageDest::Registry(reference) => {
            let layout = scratch.path().join("layout");
            let digest = oci::write_layout(&tree, &layout, &annotations, "checkpoint")?;
            push(&layout, reference)?;
            digest
        }
    };
    Ok(ImageReport {
        image: dest.describe(),
        digest,
        container,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The unpacked checkpoint in `tree`, described as checkpointctl's
/// annotations say (its container's name, as Kubernetes knows it when it
/// came from Kubernetes); the container's name and the annotations.
fn described(tree: &Path) -> Result<(String, BTreeMap<String, String>)> {
    let cfg: ArchiveConfig = serde_json::from_slice(
        &std::fs::read(tree.join(archive::CONFIG_DUMP))
            .map_err(lazarus_core::Error::io("read the checkpoint's config.dump"))?,
    )
    .map_err(|e| Error::Refused(format!("the checkpoint's config.dump is not valid: {e}")))?;
    let spec: serde_json::Value = std::fs::read(tree.join(archive::SPEC_DUMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let ann = |k: &str| spec["annotations"][k].as_str().unwrap_or("").to_string();
    let (pod, namespace) = (
        ann("io.kubernetes.cri.sandbox-name"),
        ann("io.kubernetes.cri.sandbox-namespace"),
    );
    let container = match ann("io.kubernetes.cri.container-name") {
        n if !n.is_empty() => n,
        _ => cfg.name.clone(),
    };
    let annotations = oci::annotations(&oci::ImageInfo {
        container: container.clone(),
        engine: cfg.engine.clone(),
        pod,
        namespace,
        rootfs_image_name: cfg.image_name.clone(),
        rootfs_image_ref: cfg.image_digest.clone(),
        criu_version: String::new(),
    });
    Ok((container, annotations))
}

/// Another engine's checkpoint archive (a tar, plain or zstd), its files
/// and directories only (links and devices are no part of one), each kept
/// inside `dest` (tar's `unpack_in` refuses `..` and absolute names).
fn unpack_foreign(file: &Path, dest: &Path) -> Result<()> {
    use std::io::{BufReader, Read};
    let context = format!("unpack the checkpoint archive {}", file.display());
    let io = |e| lazarus_core::Error::io(&context)(e);
    let mut f = BufReader::new(std::fs::File::open(file).map_err(io)?);
    let zstd = {
        let head = std::io::BufRead::fill_buf(&mut f).map_err(io)?;
        head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])
    };
    let reader: Box<dyn Read> = match zstd {
        true => Box::new(zstd::Decoder::with_buffer(f).map_err(io)?),
        false => Box::new(f),
    };
    std::fs::create_dir(dest).map_err(io)?;
    let mut tar = tar::Archive::new(reader);
    let mut files = 0;
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if kind.is_file() || kind.is_dir() {
            entry.set_preserve_permissions(false);
            entry.unpack_in(dest).map_err(io)?;
            files += kind.is_file() as usize;
        }
    }
    if files == 0 || !dest.join(archive::CONFIG_DUMP).is_file() {
        return Err(Error::Refused(format!(
            "{} is not a checkpoint archive (no {} in it)",
            file.display(),
            archive::CONFIG_DUMP
        )));
    }
    Ok(())
}

/// `skopeo copy oci:LAYOUT:checkpoint docker://REFERENCE`. A registry on
/// loopback is spoken to in plain HTTP, as Docker does for localhost.
fn push(layout: &Path, reference: &str) -> Result<()> {
    let host = reference.split('/').next().unwrap_or_default();
    let local = ["127.0.0.1", "localhost", "[::1]"]
        .iter()
        .any(|h| host == *h || host.starts_with(&format!("{h}:")));
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet"]);
    if local {
        cmd.arg("--dest-tls-verify=false");
    }
    cmd.arg(format!("oci:{}:checkpoint", layout.display()))
        .arg(format!("docker://{reference}"));
    let out = cmd.output().map_err(|e| {
        Error::Refused(format!(
            "--push needs skopeo ({e}); or write the image with --export oci-archive:FILE and \
             copy it with your own tools"
        ))
    })?;
    match out.status.success() {
        true => Ok(()),
        false => Err(Error::Refused(format!(
            "pushing the checkpoint image to {reference} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_destinations_are_told_from_archive_paths() {
        let p = |s: &str| ImageDest::parse(Path::new(s), None);
        assert_eq!(
            p("oci-archive:/x/c.tar"),
            Some(ImageDest::Archive("/x/c.tar".into()))
        );
        assert_eq!(
            p("oci:/x/layout"),
            Some(ImageDest::Layout("/x/layout".into()))
        );
        assert_eq!(p("/x/oci:c.tar"), None);
        assert_eq!(p("c.tar.zst"), None);
        assert_eq!(
            ImageDest::parse(Path::new("-"), Some("127.0.0.1:5000/c:1")),
            Some(ImageDest::Registry("127.0.0.1:5000/c:1".into()))
        );
    }
}
