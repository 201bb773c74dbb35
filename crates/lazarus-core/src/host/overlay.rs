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

/// The upper directory of the overlay mounted at `mountpoint` (the last
/// mount there), from /proc/self/mountinfo: where the container's changes
/// to its image are. None when it is not an overlay.
pub fn upper_dir_of(mountpoint: &Path) -> Option<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    upper_in_mountinfo(&info, mountpoint)
}

fn upper_in_mountinfo(info: &str, mountpoint: &Path) -> Option<PathBuf> {
    let want = mountpoint.to_str()?;
    info.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let (fstype, _source, options) = (r.next()?, r.next()?, r.next()?);
            (point == want && fstype == "overlay").then_some(options)
        })
        .next_back()?
        .split(',')
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(|u| PathBuf::from(unescape(u)))
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let code = rest
            .get(i + 1..i + 4)
            .and_then(|o| u8::from_str_radix(o, 8).ok());
        match code {
            Some(c) => {
                out.push(c as char);
                rest = &rest[i + 4..];
            }
            None => {
                out.push('\\');
                rest = &rest[i + 1..];
            }
        }
    }
    out.push_str(rest);
    out
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

    #[test]
    fn the_upper_directory_is_read_from_mountinfo() {
        let info = "\
22 1 8:1 / / rw - ext4 /dev/vda rw
90 22 0:50 / /var/lib/docker/overlay2/abc/merged rw,relatime - overlay overlay rw,lowerdir=/l/1:/l/2,upperdir=/var/lib/docker/overlay2/abc/diff,workdir=/w
91 22 0:51 / /with\\040space rw - overlay overlay rw,lowerdir=/l,upperdir=/u\\040v,workdir=/w
92 22 0:52 / /tmpfs rw - tmpfs tmpfs rw
";
        assert_eq!(
            upper_in_mountinfo(info, Path::new("/var/lib/docker/overlay2/abc/merged")),
            Some(PathBuf::from("/var/lib/docker/overlay2/abc/diff"))
        );
        assert_eq!(
            upper_in_mountinfo(info, Path::new("/with space")),
            Some(PathBuf::from("/u v"))
        );
        assert_eq!(upper_in_mountinfo(info, Path::new("/tmpfs")), None);
        assert_eq!(upper_in_mountinfo(info, Path::new("/nowhere")), None);
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
