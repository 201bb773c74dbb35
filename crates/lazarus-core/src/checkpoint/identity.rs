//! What identifies the image a checkpoint was taken in, so that a restore
//! into a container of another image is refused instead of running
//! whatever happens to match (a busybox counter restored into a Redis
//! container runs: both images hold the same /bin/busybox).
//!
//! Neither Docker nor ctr tells the runtime the image's name, and layer
//! paths differ between hosts and between Docker's per-container layers.
//! What is the same for every container of an image and differs between
//! images is its programs: the identity is a digest, per directory of
//! executables, of what the rootfs holds there (names, types, sizes,
//! symlink targets). Containers rarely install programs at run time; one
//! that does is restored with [`SKIP_IMAGE_CHECK_ANNOTATION`].

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// On the container restored into: "true" restores even into a container
/// whose image differs from the checkpoint's.
pub const SKIP_IMAGE_CHECK_ANNOTATION: &str = "io.lazarus.restore.skip-image-check";

/// The rootfs directories whose listings identify an image.
const DIRS: [&str; 6] = [
    "bin",
    "sbin",
    "usr/bin",
    "usr/sbin",
    "usr/local/bin",
    "usr/local/sbin",
];

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// Per directory present in the rootfs: its entry count and the
    /// sha256 of its sorted listing.
    pub dirs: BTreeMap<String, DirDigest>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirDigest {
    pub entries: usize,
    pub sha256: String,
}

impl ImageIdentity {
    /// The identity of the image mounted at `rootfs` (the host's view of
    /// the container's root, without its volumes).
    pub fn of_rootfs(rootfs: &Path) -> Self {
        let mut dirs = BTreeMap::new();
        for dir in DIRS {
            if let Some(digest) = digest_dir(&rootfs.join(dir)) {
                dirs.insert(dir.to_string(), digest);
            }
        }
        ImageIdentity { dirs }
    }

    /// Refuses a restore into a rootfs of another image, naming the
    /// directories that differ.
    pub fn check(&self, now: &ImageIdentity, images: &Path) -> Result<()> {
        let names: std::collections::BTreeSet<&String> =
            self.dirs.keys().chain(now.dirs.keys()).collect();
        let differ: Vec<String> = names
            .into_iter()
            .filter(|d| self.dirs.get(*d) != now.dirs.get(*d))
            .map(|d| {
                let count = |i: &ImageIdentity| {
                    i.dirs
                        .get(d)
                        .map_or("absent".to_string(), |x| format!("{} entries", x.entries))
                };
                format!("/{d} (checkpoint: {}, here: {})", count(self), count(now))
            })
            .collect();
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::InvalidArgument(format!(
            "checkpoint {} was taken in a container of another image: its programs differ \
             from this container's in {}. Restore into a container of the checkpointed \
             container's image, or, if the image is the same and the container changed \
             these directories itself, create the container with the annotation \
             {SKIP_IMAGE_CHECK_ANNOTATION}=true",
            images.display(),
            differ.join(", ")
        )))
    }
}

/// The digest of one directory's listing; None when it does not exist.
fn digest_dir(dir: &Path) -> Option<DirDigest> {
    let meta = std::fs::symlink_metadata(dir).ok()?;
    let mut lines: Vec<String> = Vec::new();
    if meta.file_type().is_symlink() {
        // A merged-/usr image: /bin -> usr/bin.
        let target = std::fs::read_link(dir).ok()?;
        lines.push(format!("-> {}", target.display()));
    } else {
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Ok(m) = entry.path().symlink_metadata() else {
                continue;
            };
            let what = if m.file_type().is_symlink() {
                let target = std::fs::read_link(entry.path()).unwrap_or_default();
                format!("l {}", target.display())
            } else if m.is_dir() {
                "d".to_string()
            } else {
                format!("f {}", m.len())
            };
            lines.push(format!("{name}\t{what}"));
        }
        lines.sort();
    }
    let mut hash = Sha256::new();
    for l in &lines {
        hash.update(l.as_bytes());
        hash.update(b"\n");
    }
    let sha256 = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Some(DirDigest {
        entries: lines.len(),
        sha256,
    })
}

/// Whether the restoring container's annotations skip the check.
pub fn skip_requested(annotations: &std::collections::HashMap<String, String>) -> Result<bool> {
    match annotations
        .get(SKIP_IMAGE_CHECK_ANNOTATION)
        .map(String::as_str)
    {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Error::InvalidArgument(format!(
            "annotation {SKIP_IMAGE_CHECK_ANNOTATION}={other:?}: use \"true\" or \"false\""
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(root: &Path, programs: &[&str]) {
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("bin/busybox"), vec![0u8; 100]).unwrap();
        std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
        std::fs::create_dir_all(root.join("usr/bin")).unwrap();
        for p in programs {
            std::fs::write(root.join("usr/bin").join(p), b"program").unwrap();
        }
    }

    #[test]
    fn two_rootfs_of_one_image_match_and_another_image_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, other) = (
            dir.path().join("a"),
            dir.path().join("b"),
            dir.path().join("o"),
        );
        image(&a, &["tool"]);
        image(&b, &["tool"]);
        image(&other, &["tool", "redis-server"]);
        // What a container writes elsewhere does not count.
        std::fs::create_dir_all(b.join("tmp")).unwrap();
        std::fs::write(b.join("tmp/count"), b"42").unwrap();
        let recorded = ImageIdentity::of_rootfs(&a);
        assert_eq!(recorded.dirs.len(), 2, "{recorded:?}");
        recorded
            .check(&ImageIdentity::of_rootfs(&b), Path::new("/cp"))
            .unwrap();
        let err = recorded
            .check(&ImageIdentity::of_rootfs(&other), Path::new("/cp"))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        let text = err.to_string();
        assert!(
            text.contains("another image")
                && text.contains("/usr/bin (checkpoint: 1 entries, here: 2 entries)")
                && !text.contains(" /bin (")
                && text.contains(SKIP_IMAGE_CHECK_ANNOTATION),
            "{text}"
        );
    }

    #[test]
    fn the_skip_annotation_takes_true_or_false() {
        let mut ann = std::collections::HashMap::new();
        assert!(!skip_requested(&ann).unwrap());
        ann.insert(SKIP_IMAGE_CHECK_ANNOTATION.to_string(), "true".to_string());
        assert!(skip_requested(&ann).unwrap());
        ann.insert(SKIP_IMAGE_CHECK_ANNOTATION.to_string(), "yes".to_string());
        assert!(skip_requested(&ann).is_err());
    }
}
