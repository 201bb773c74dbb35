//! Checkpoint OCI images: a checkpoint archive's files as the one layer of
//! an OCI image, with the annotations checkpoint-aware engines look for.
//! containerd's CRI (2.1 to 2.3) restores a container whose image has
//! checkpointctl's `org.criu.checkpoint.container.name` on its manifest
//! (containerd v2.1.9, `checkIfCheckpointOCIImage`) as the checkpoint that
//! layer holds; CRI-O reads its own `io.kubernetes.cri-o.annotations.
//! checkpoint.name`. Both are written.
//!
//! Written as an OCI image layout (`oci:DIR`), or that layout as one tar
//! (`oci-archive:FILE`, what `skopeo` and `podman load` read). The layer
//! is an uncompressed tar: checkpoint images hold memory pages that
//! compress poorly, and a registry or transport can compress on its own.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use serde_json::json;
use sha2::{Digest, Sha256};

use super::manifest::hex;
use crate::error::{Error, Result};

/// The annotation containerd's CRI detects a checkpoint image by
/// (checkpointctl's `CheckpointAnnotationName`).
pub const CHECKPOINT_NAME: &str = "org.criu.checkpoint.container.name";
/// CRI-O's name for it.
pub const CRIO_CHECKPOINT_NAME: &str = "io.kubernetes.cri-o.annotations.checkpoint.name";

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

/// What a checkpoint image says about the checkpoint it holds, in
/// checkpointctl's keys (the empty ones left out).
#[derive(Debug, Default, Clone)]
pub struct ImageInfo {
    pub container: String,
    pub engine: String,
    pub pod: String,
    pub namespace: String,
    pub rootfs_image_name: String,
    pub rootfs_image_ref: String,
    pub criu_version: String,
}

/// The image's annotations for `info`.
pub fn annotations(info: &ImageInfo) -> BTreeMap<String, String> {
    [
        (CHECKPOINT_NAME, &info.container),
        (CRIO_CHECKPOINT_NAME, &info.container),
        ("org.criu.checkpoint.engine.name", &info.engine),
        ("org.criu.checkpoint.pod.name", &info.pod),
        ("org.criu.checkpoint.pod.namespace", &info.namespace),
        (
            "org.criu.checkpoint.rootfsImageName",
            &info.rootfs_image_name,
        ),
        ("org.criu.checkpoint.rootfsImageSha", &info.rootfs_image_ref),
        ("org.criu.checkpoint.criu.version", &info.criu_version),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.clone()))
    .collect()
}

/// Writes an OCI image layout into the new directory `dir` whose one layer
/// holds every file and directory under `src`; `tag` names it in the
/// layout's index. Returns the manifest's digest (`sha256:...`).
pub fn write_layout(
    src: &Path,
    dir: &Path,
    annotations: &BTreeMap<String, String>,
    tag: &str,
) -> Result<String> {
    let context = format!("write the checkpoint image {}", dir.display());
    let io = |e| Error::io(&context)(e);
    fs::DirBuilder::new().mode(0o700).create(dir).map_err(io)?;
    let blobs = dir.join("blobs/sha256");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&blobs)
        .map_err(io)?;
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).map_err(io)?;

    // The layer: streamed into a temp blob while hashed, then named.
    let tmp = blobs.join(".layer");
    let mut hashed = HashingWriter::new(BufWriter::new(File::create(&tmp).map_err(io)?));
    {
        let mut tar = tar::Builder::new(&mut hashed);
        tar.mode(tar::HeaderMode::Deterministic);
        tar.follow_symlinks(false);
        append_tree(&mut tar, src, Path::new("")).map_err(io)?;
        tar.finish().map_err(io)?;
    }
    let (layer_digest, layer_size) = hashed.finish().map_err(io)?;
    fs::rename(&tmp, blobs.join(&layer_digest)).map_err(io)?;

    let config = json!({
        "architecture": std::env::consts::ARCH.replace("x86_64", "amd64").replace("aarch64", "arm64"),
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_digest}")]},
        "config": {},
    });
    let (config_digest, config_size) = blob(&blobs, &config).map_err(io)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": format!("sha256:{config_digest}"), "size": config_size},
        "layers": [{"mediaType": LAYER, "digest": format!("sha256:{layer_digest}"), "size": layer_size}],
        "annotations": annotations,
    });
    let (manifest_digest, manifest_size) = blob(&blobs, &manifest).map_err(io)?;
    let mut entry_annotations = annotations.clone();
    entry_annotations.insert("org.opencontainers.image.ref.name".into(), tag.into());
    let index = json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST,
            "digest": format!("sha256:{manifest_digest}"),
            "size": manifest_size,
            "annotations": entry_annotations,
        }],
        "annotations": annotations,
    });
    fs::write(
        dir.join("index.json"),
        serde_json::to_vec(&index).expect("JSON"),
    )
    .map_err(io)?;
    private_files(dir).map_err(io)?;
    Ok(format!("sha256:{manifest_digest}"))
}

/// [`write_layout`] as one tar at `dest` (an OCI archive), written beside
/// it and renamed into place whole.
pub fn write_archive(
    src: &Path,
    dest: &Path,
    annotations: &BTreeMap<String, String>,
    tag: &str,
) -> Result<String> {
    let context = format!("write the checkpoint image {}", dest.display());
    let parent = super::atomic::dir_of(dest);
    let work = tempfile::Builder::new()
        .prefix(".lazarus-image-")
        .tempdir_in(parent)
        .map_err(Error::io(&context))?;
    let layout = work.path().join("layout");
    let digest = write_layout(src, &layout, annotations, tag)?;
    let file = super::atomic::AtomicFile::beside(dest, ".lazarus-image-", &context)?;
    {
        let out = file.as_file().try_clone().map_err(Error::io(&context))?;
        let mut tar = tar::Builder::new(BufWriter::new(out));
        tar.mode(tar::HeaderMode::Deterministic);
        append_tree(&mut tar, &layout, Path::new("")).map_err(Error::io(&context))?;
        tar.into_inner()
            .and_then(|mut w| w.flush())
            .map_err(Error::io(&context))?;
    }
    file.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(Error::io(&context))?;
    file.persist(dest, &context)?;
    Ok(digest)
}

/// Every file and directory under `dir`, sorted, at `prefix` in the tar.
fn append_tree<W: Write>(tar: &mut tar::Builder<W>, dir: &Path, prefix: &Path) -> io::Result<()> {
    let mut names: Vec<_> = fs::read_dir(dir)?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<_>>()?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = prefix.join(&n);
        let meta = fs::symlink_metadata(&path)?;
        if meta.is_dir() {
            tar.append_dir(&name, &path)?;
            append_tree(tar, &path, &name)?;
        } else if meta.is_file() {
            tar.append_path_with_name(&path, &name)?;
        }
    }
    Ok(())
}

/// A JSON document as a blob; its digest (hex) and size.
fn blob(blobs: &Path, value: &serde_json::Value) -> io::Result<(String, u64)> {
    let bytes = serde_json::to_vec(value).expect("JSON");
    let digest = hex(&Sha256::digest(&bytes));
    fs::write(blobs.join(&digest), &bytes)?;
    Ok((digest, bytes.len() as u64))
}

fn private_files(dir: &Path) -> io::Result<()> {
    for e in fs::read_dir(dir)? {
        let e = e?;
        let mode = if e.file_type()?.is_dir() {
            0o700
        } else {
            0o600
        };
        fs::set_permissions(e.path(), fs::Permissions::from_mode(mode))?;
        if e.file_type()?.is_dir() {
            private_files(&e.path())?;
        }
    }
    Ok(())
}

struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    size: u64,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn finish(mut self) -> io::Result<(String, u64)> {
        self.inner.flush()?;
        Ok((hex(&self.hasher.finalize()), self.size))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_layout_names_its_blobs_by_digest_and_carries_the_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir_all(src.join("checkpoint")).unwrap();
        fs::write(src.join("spec.dump"), b"{}").unwrap();
        fs::write(src.join("checkpoint/pages-1.img"), vec![7u8; 8192]).unwrap();
        let layout = dir.path().join("layout");
        let ann = annotations(&ImageInfo {
            container: "counter".into(),
            ..Default::default()
        });
        let digest = write_layout(&src, &layout, &ann, "ckpt").unwrap();
        let index: serde_json::Value =
            serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
        assert_eq!(index["manifests"][0]["digest"], digest.as_str());
        let manifest_path = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let bytes = fs::read(&manifest_path).unwrap();
        assert_eq!(format!("sha256:{}", hex(&Sha256::digest(&bytes))), digest);
        let manifest: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(manifest["annotations"][CHECKPOINT_NAME], "counter");
        assert_eq!(manifest["annotations"][CRIO_CHECKPOINT_NAME], "counter");
        assert!(manifest["annotations"]
            .get("org.criu.checkpoint.pod.name")
            .is_none());
        // The layer unpacks to the source's files.
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        let layer = layout
            .join("blobs/sha256")
            .join(layer.trim_start_matches("sha256:"));
        let mut tar = tar::Archive::new(File::open(layer).unwrap());
        let out = dir.path().join("out");
        tar.unpack(&out).unwrap();
        assert_eq!(
            fs::read(out.join("checkpoint/pages-1.img")).unwrap(),
            vec![7u8; 8192]
        );
        // And as one archive.
        let file = dir.path().join("img.tar");
        write_archive(&src, &file, &ann, "ckpt").unwrap();
        let mut names: Vec<String> = tar::Archive::new(File::open(&file).unwrap())
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().to_string())
            .collect();
        names.sort();
        assert!(names.contains(&"index.json".to_string()), "{names:?}");
        assert!(names.contains(&"oci-layout".to_string()), "{names:?}");
    }
}
