//! A file written beside its destination that appears there only whole.
//!
//! Archives hold process memory and take seconds to write; a writer
//! killed midway (SIGKILL, a closed terminal) must leave neither a torn
//! archive nor a hidden temporary file of hundreds of MiB beside it for
//! good. So the file is made unnamed (`O_TMPFILE`) where the filesystem
//! allows it: the kernel frees it with its last descriptor, however the
//! writer dies, and it gets its name only when it is whole (`linkat`).
//! Where `O_TMPFILE` is not supported (some network filesystems), a
//! hidden named temporary file is used as before, removed on every path
//! but SIGKILL.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;

use crate::error::{Error, Result};

/// The file being written, 0600 from the start.
pub struct AtomicFile {
    file: File,
    /// Set when the filesystem had no unnamed files: the named temporary
    /// file, removed if this is dropped unpersisted.
    named: Option<tempfile::TempPath>,
    prefix: String,
}

impl AtomicFile {
    /// A new file in `dest`'s directory; `prefix` names the hidden
    /// temporary file where one is needed.
    pub fn beside(dest: &Path, prefix: &str, context: &str) -> Result<AtomicFile> {
        let dir = dir_of(dest);
        let unnamed = OpenOptions::new()
            .read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_TMPFILE)
            .open(dir);
        match unnamed {
            Ok(file) => {
                // The mode is masked by the umask; make sure.
                file.set_permissions(fs::Permissions::from_mode(0o600))
                    .map_err(Error::io(context))?;
                Ok(AtomicFile {
                    file,
                    named: None,
                    prefix: prefix.to_string(),
                })
            }
            Err(_) => {
                let tmp = tempfile::Builder::new()
                    .prefix(prefix)
                    .permissions(fs::Permissions::from_mode(0o600))
                    .tempfile_in(dir)
                    .map_err(Error::io(context))?;
                let (file, path) = tmp.into_parts();
                Ok(AtomicFile {
                    file,
                    named: Some(path),
                    prefix: prefix.to_string(),
                })
            }
        }
    }

    pub fn as_file(&self) -> &File {
        &self.file
    }

    /// Whether the file has no name until it is persisted.
    pub fn is_unnamed(&self) -> bool {
        self.named.is_none()
    }

    /// Makes the finished file `dest`, durably: its data synced, then
    /// named (replacing `dest` atomically if it exists), and the directory
    /// entry synced. A crash leaves the old file or the whole new one.
    pub fn persist(self, dest: &Path, context: &str) -> Result<()> {
        self.file.sync_all().map_err(Error::io(context))?;
        match self.named {
            Some(path) => {
                path.persist(dest)
                    .map_err(|e| Error::io(context)(e.error))?;
            }
            None => link_unnamed(&self.file, dest, &self.prefix).map_err(Error::io(context))?,
        }
        File::open(dir_of(dest))
            .and_then(|d| d.sync_all())
            .map_err(Error::io(context))
    }
}

/// Gives the unnamed `file` the name `dest`: directly when `dest` does
/// not exist; else under a hidden name first, renamed onto `dest` (a
/// rename is what replaces a file atomically).
fn link_unnamed(file: &File, dest: &Path, prefix: &str) -> std::io::Result<()> {
    match link_at(file, dest) {
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        done => return done,
    }
    let dir = dir_of(dest);
    for attempt in 0..16u32 {
        let hidden = dir.join(format!("{prefix}{}-{attempt}", std::process::id()));
        match link_at(file, &hidden) {
            Ok(()) => {
                return fs::rename(&hidden, dest).inspect_err(|_| {
                    let _ = fs::remove_file(&hidden);
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::from(std::io::ErrorKind::AlreadyExists))
}

/// linkat(2) of an open file through its /proc/self/fd link (which,
/// unlike AT_EMPTY_PATH, needs no CAP_DAC_READ_SEARCH).
fn link_at(file: &File, to: &Path) -> std::io::Result<()> {
    let from = CString::new(format!("/proc/self/fd/{}", file.as_raw_fd()))?;
    let to = CString::new(to.as_os_str().as_bytes())?;
    // SAFETY: both are valid NUL-terminated paths for the call's duration.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    match r {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The directory `dest` is in ("." for a bare name).
pub fn dir_of(dest: &Path) -> &Path {
    match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn the_file_has_no_name_until_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        let f = AtomicFile::beside(&dest, ".lazarus-archive-", "t").unwrap();
        assert!(f.is_unnamed(), "tmpfs and ext4 have O_TMPFILE");
        (&mut f.as_file()).write_all(b"whole").unwrap();
        assert!(names(dir.path()).is_empty(), "{:?}", names(dir.path()));
        f.persist(&dest, "t").unwrap();
        assert_eq!(names(dir.path()), ["a.tar"]);
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        let mode = fs::metadata(&dest).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn a_file_dropped_unfinished_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        let f = AtomicFile::beside(&dest, ".lazarus-archive-", "t").unwrap();
        (&mut f.as_file()).write_all(b"half").unwrap();
        drop(f);
        assert!(names(dir.path()).is_empty());
    }

    #[test]
    fn an_existing_destination_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("a.tar");
        fs::write(&dest, b"old").unwrap();
        let f = AtomicFile::beside(&dest, ".lazarus-archive-", "t").unwrap();
        (&mut f.as_file()).write_all(b"new").unwrap();
        f.persist(&dest, "t").unwrap();
        assert_eq!(names(dir.path()), ["a.tar"]);
        assert_eq!(fs::read(&dest).unwrap(), b"new");
    }
}
