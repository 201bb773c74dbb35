//! Applying a diff to a fresh root filesystem, never writing outside it.
//! Every entry's parents are walked from the root with lstat: each must be
//! a real directory (or missing, then created). A symlink on the way is
//! refused, whether it came from the image or from an earlier tar entry:
//! a diff made from an overlay upper directory never needs one (overlayfs
//! resolves symlinks before it copies up), and following it could lead out
//! of the root filesystem. The last component is never followed: whatever
//! is there is removed and replaced.
//!
//! Not atomic: on an error the root filesystem is half-changed, so apply
//! to a fresh one and discard it if this fails.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, BufReader};
use std::os::unix::fs::{fchown, lchown, DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

use nix::sys::stat::{futimens, utimensat, UtimensatFlags};
use nix::sys::time::TimeSpec;

use super::components;
use crate::error::{Error, Result};

/// Deletes `deleted` (missing ones are fine), then extracts `diff_tar` into
/// `rootfs` with the modes, owners and modification times it records.
pub fn apply(diff_tar: &Path, deleted: &[String], rootfs: &Path) -> Result<()> {
    let meta =
        fs::symlink_metadata(rootfs).map_err(Error::io(format!("stat {}", rootfs.display())))?;
    if !meta.is_dir() {
        return Err(Error::InvalidArgument(format!(
            "{} is not a directory",
            rootfs.display()
        )));
    }
    let refuse = |why: String| {
        Error::InvalidArgument(format!(
            "refusing root filesystem diff for {}: {why}",
            rootfs.display()
        ))
    };
    // Deletions first: a directory both deleted and in the tar was replaced
    // by a new one (overlayfs' opaque directory).
    delete(deleted, rootfs, &refuse)?;
    extract(diff_tar, rootfs, &refuse)
}

/// Removes each of `deleted` under `rootfs`; a missing one is fine.
fn delete(deleted: &[String], rootfs: &Path, refuse: &dyn Fn(String) -> Error) -> Result<()> {
    for name in deleted {
        let parts = components(name, true)
            .filter(|p| !p.is_empty())
            .ok_or_else(|| refuse(format!("deleted file {name:?} is not a path inside it")))?;
        let (last, parents) = parts.split_last().expect("not empty");
        if let Some(dir) = parents_of(rootfs, parents, false, refuse)? {
            remove(&dir.join(last))?;
        }
    }
    Ok(())
}

/// Extracts every entry of `diff_tar` into `rootfs`, then sets the
/// directories' times (creating their children changed them).
fn extract(diff_tar: &Path, rootfs: &Path, refuse: &dyn Fn(String) -> Error) -> Result<()> {
    let file = File::open(diff_tar).map_err(Error::io(format!("open {}", diff_tar.display())))?;
    let mut archive = tar::Archive::new(BufReader::with_capacity(1 << 20, file));
    let corrupt = |e: io::Error| {
        Error::InvalidArgument(format!(
            "root filesystem diff {} is corrupt: {e}",
            diff_tar.display()
        ))
    };
    let mut dir_times = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let parts = std::str::from_utf8(&raw)
            .ok()
            .and_then(|n| components(n, false))
            .ok_or_else(|| refuse(format!("entry {name:?} is not a relative path inside it")))?;
        let Some((last, parents)) = parts.split_last() else {
            continue; // the root itself: it is the fresh root filesystem's
        };
        let dir = parents_of(rootfs, parents, true, refuse)?.expect("created");
        use tar::EntryType::{Continuous, Directory, Fifo, Regular, Symlink};
        let kind = entry.header().entry_type();
        if !matches!(kind, Directory | Regular | Continuous | Symlink | Fifo) {
            return Err(refuse(format!(
                "entry {name:?} is a {kind:?}; a root filesystem diff holds only files, \
                 directories, symlinks and fifos"
            )));
        }
        let attrs = Attrs::of(entry.header(), &corrupt)?;
        let context = || format!("apply {name} to {}", rootfs.display());
        let path = dir.join(last);
        match kind {
            Directory => {
                make_dir(&path, &attrs, &context)?;
                dir_times.push((path, attrs.mtime));
            }
            Regular | Continuous => {
                // A full disk is the root filesystem's, not the diff's fault.
                let size = entry.size();
                let full = |e: io::Error| match crate::error::no_space(
                    &e,
                    rootfs,
                    &format!("the root filesystem changes ({name})"),
                    Some(size),
                    "move the engine's data root (Docker's data-root, containerd's root) to a \
                     larger file system",
                ) {
                    Some(full) => full,
                    None => corrupt(e),
                };
                write_file(&mut entry, &path, &attrs, &full, &context)?
            }
            Symlink => {
                let target = entry
                    .link_name()
                    .map_err(corrupt)?
                    .ok_or_else(|| refuse(format!("symlink {name:?} has no target")))?;
                make_symlink(&target, &path, &attrs, &context)?;
            }
            Fifo => make_fifo(&path, &attrs, &context)?,
            _ => unreachable!("checked above"),
        }
    }
    for (path, mtime) in dir_times.iter().rev() {
        set_times(path, *mtime).map_err(Error::sys(format!("set times of {}", path.display())))?;
    }
    Ok(())
}

/// What an entry records about its file besides its content.
struct Attrs {
    mode: u32,
    uid: Option<u32>,
    gid: Option<u32>,
    mtime: TimeSpec,
}

impl Attrs {
    fn of(h: &tar::Header, corrupt: &dyn Fn(io::Error) -> Error) -> Result<Attrs> {
        Ok(Attrs {
            mode: h.mode().map_err(corrupt)? & 0o7777,
            uid: u32::try_from(h.uid().map_err(corrupt)?).ok(),
            gid: u32::try_from(h.gid().map_err(corrupt)?).ok(),
            mtime: TimeSpec::new(i64::try_from(h.mtime().map_err(corrupt)?).unwrap_or(0), 0),
        })
    }
}

/// A directory at `path` (kept if one is there), with `attrs` but its
/// times, which the caller sets once its children are in.
fn make_dir(path: &Path, attrs: &Attrs, context: &dyn Fn() -> String) -> Result<()> {
    if !fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) {
        remove(path)?;
        DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(Error::io(context()))?;
    }
    lchown(path, attrs.uid, attrs.gid).map_err(Error::io(context()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode)).map_err(Error::io(context()))
}

/// Replaces whatever is at `path` with a file holding the entry's content.
fn write_file(
    entry: &mut impl io::Read,
    path: &Path,
    attrs: &Attrs,
    corrupt: &dyn Fn(io::Error) -> Error,
    context: &dyn Fn() -> String,
) -> Result<()> {
    remove(path)?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(Error::io(context()))?;
    io::copy(entry, &mut f).map_err(corrupt)?;
    // Owner before mode: chown clears set-user-ID bits.
    fchown(&f, attrs.uid, attrs.gid).map_err(Error::io(context()))?;
    f.set_permissions(fs::Permissions::from_mode(attrs.mode))
        .map_err(Error::io(context()))?;
    futimens(f.as_raw_fd(), &attrs.mtime, &attrs.mtime).map_err(Error::sys(context()))
}

/// Replaces whatever is at `path` with a symlink to `target`.
fn make_symlink(
    target: &Path,
    path: &Path,
    attrs: &Attrs,
    context: &dyn Fn() -> String,
) -> Result<()> {
    remove(path)?;
    std::os::unix::fs::symlink(target, path).map_err(Error::io(context()))?;
    lchown(path, attrs.uid, attrs.gid).map_err(Error::io(context()))?;
    set_times(path, attrs.mtime).map_err(Error::sys(context()))
}

/// Replaces whatever is at `path` with a fifo.
fn make_fifo(path: &Path, attrs: &Attrs, context: &dyn Fn() -> String) -> Result<()> {
    remove(path)?;
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(Error::sys(context()))?;
    lchown(path, attrs.uid, attrs.gid).map_err(Error::io(context()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(attrs.mode))
        .map_err(Error::io(context()))?;
    set_times(path, attrs.mtime).map_err(Error::sys(context()))
}

/// The directory `rootfs/parents…`, walked without following any symlink.
/// Missing directories are created (0755, root's) if `create`, else None.
fn parents_of(
    rootfs: &Path,
    parents: &[&str],
    create: bool,
    refuse: &dyn Fn(String) -> Error,
) -> Result<Option<PathBuf>> {
    let mut dir = rootfs.to_path_buf();
    for (i, part) in parents.iter().enumerate() {
        dir.push(part);
        let shown = parents[..=i].join("/");
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(m) if m.file_type().is_symlink() => {
                return Err(refuse(format!(
                    "{shown} is a symlink; writing through it could leave the root filesystem"
                )))
            }
            Ok(_) => return Err(refuse(format!("{shown} is not a directory"))),
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                DirBuilder::new()
                    .mode(0o755)
                    .create(&dir)
                    .map_err(Error::io(format!("create {}", dir.display())))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("stat {}", dir.display()))(e)),
        }
    }
    Ok(Some(dir))
}

/// Removes whatever is at `path` without following it: a symlink is
/// removed itself, a directory with everything below it.
fn remove(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(Error::io(format!("remove {}", path.display())))
}

fn set_times(path: &Path, mtime: TimeSpec) -> nix::Result<()> {
    utimensat(None, path, &mtime, &mtime, UtimensatFlags::NoFollowSymlink)
}
