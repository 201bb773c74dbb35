//! A container's root filesystem mounted for a moment, so that a checkpoint
//! archive's root filesystem changes go through overlayfs (which turns a
//! deletion into a whiteout in the upper directory) rather than into the
//! upper directory by hand.

use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::{Error, Result};

/// Linux limits mount options to a page.
const MAX_OPTIONS: usize = 4095;

/// An overlay mounted at a private directory; unmounted when dropped.
pub struct OverlayMount {
    target: PathBuf,
}

impl OverlayMount {
    /// Mounts an overlay with `options` (`lowerdir=…`, `upperdir=…`,
    /// `workdir=…`, as Docker and containerd record them) at `target`, an
    /// existing empty directory.
    pub fn mount(options: &[String], target: &Path) -> Result<OverlayMount> {
        let data = options.join(",");
        if data.len() > MAX_OPTIONS {
            return Err(Error::FailedPrecondition(format!(
                "the overlay of {} has {} bytes of mount options (more than a page: too many \
                 image layers for Lazarus to mount it)",
                target.display(),
                data.len()
            )));
        }
        for needed in ["lowerdir=", "upperdir=", "workdir="] {
            if !options.iter().any(|o| o.starts_with(needed)) {
                return Err(Error::InvalidArgument(format!(
                    "overlay options {options:?} have no {needed}"
                )));
            }
        }
        mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(data.as_str()),
        )
        .map_err(|source| Error::Sys {
            context: format!(
                "mount the container's root filesystem at {}",
                target.display()
            ),
            source,
        })?;
        Ok(OverlayMount {
            target: target.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        // Nothing keeps files open in it; a detach is the fallback so that
        // the directory never stays mounted.
        if umount2(&self.target, MntFlags::empty()).is_err() {
            let _ = umount2(&self.target, MntFlags::MNT_DETACH);
        }
    }
}

/// Docker's overlay2 record (`GraphDriver.Data`) as mount options.
pub fn docker_overlay_options(lower: &str, upper: &str, work: &str) -> Vec<String> {
    vec![
        format!("lowerdir={lower}"),
        format!("upperdir={upper}"),
        format!("workdir={work}"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_without_an_upper_directory_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let e = OverlayMount::mount(&["lowerdir=/a".into()], dir.path())
            .err()
            .unwrap();
        assert!(e.to_string().contains("upperdir="), "{e}");
    }

    #[test]
    fn options_longer_than_a_page_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let long = format!("lowerdir={}", "/l".repeat(3000));
        let e = OverlayMount::mount(
            &[long, "upperdir=/u".into(), "workdir=/w".into()],
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("more than a page"), "{e}");
    }

    /// Deleting through the mount leaves a whiteout in the upper directory.
    #[test]
    fn a_deletion_through_the_mount_is_a_whiteout_in_the_upper_directory() {
        let d = tempfile::tempdir().unwrap();
        let (lower, upper, work, merged) = (
            d.path().join("l"),
            d.path().join("u"),
            d.path().join("w"),
            d.path().join("m"),
        );
        for p in [&lower, &upper, &work, &merged] {
            std::fs::create_dir(p).unwrap();
        }
        std::fs::write(lower.join("gone"), "x").unwrap();
        let opts = docker_overlay_options(
            lower.to_str().unwrap(),
            upper.to_str().unwrap(),
            work.to_str().unwrap(),
        );
        let m = OverlayMount::mount(&opts, &merged).unwrap();
        std::fs::remove_file(m.path().join("gone")).unwrap();
        std::fs::write(m.path().join("new"), "y").unwrap();
        drop(m);
        use std::os::unix::fs::FileTypeExt;
        let white = std::fs::symlink_metadata(upper.join("gone")).unwrap();
        assert!(white.file_type().is_char_device());
        assert_eq!(std::fs::read(upper.join("new")).unwrap(), b"y");
        assert!(!merged.join("new").exists(), "unmounted");
    }
}
