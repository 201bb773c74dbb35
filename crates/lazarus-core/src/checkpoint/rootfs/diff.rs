//! The diff from an overlayfs upper directory. The upper directory holds
//! exactly what the container changed: new and copied-up files as they
//! are, deleted ones as whiteouts (character devices 0/0), and directories
//! that replaced a lower one marked opaque (`trusted.overlay.opaque=y`).

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::RootfsDiff;
use crate::error::{Error, Result};

/// Walks `upper` and writes the tar of added/changed entries to `tar_out`
/// (a new file, 0600). Refuses an upper directory whose content lives
/// partly in the lower layers (overlayfs `redirect_dir` or `metacopy`).
pub fn diff_from_overlay_upper(upper: &Path, tar_out: &Path) -> Result<RootfsDiff> {
    let context = format!("write root filesystem diff {}", tar_out.display());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tar_out)
        .map_err(Error::io(&context))?;
    let mut deleted = Vec::new();
    let written = (|| {
        let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
        walk(upper, Path::new(""), &mut tar, &mut deleted)?;
        let file = tar
            .into_inner()
            .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
            .map_err(Error::io(&context))?;
        file.sync_all().map_err(Error::io(&context))
    })();
    if let Err(e) = written {
        // A half-written diff must not pass for a whole one.
        let _ = fs::remove_file(tar_out);
        return Err(e);
    }
    deleted.sort();
    Ok(RootfsDiff {
        tar: tar_out.to_path_buf(),
        deleted,
    })
}

type Tar = tar::Builder<BufWriter<File>>;

fn walk(dir: &Path, rel: &Path, tar: &mut Tar, deleted: &mut Vec<String>) -> Result<()> {
    let mut names = fs::read_dir(dir)
        .and_then(|d| {
            d.map(|e| e.map(|e| e.file_name()))
                .collect::<io::Result<Vec<_>>>()
        })
        .map_err(Error::io(format!("read {}", dir.display())))?;
    // Sorted: the same upper directory always gives the same tar.
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let rel = rel.join(&name);
        let io_err = Error::io(format!("archive {}", path.display()));
        let meta =
            fs::symlink_metadata(&path).map_err(Error::io(format!("stat {}", path.display())))?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            deleted.push(rooted(&rel)?);
            continue;
        }
        refuse_lower_content(&path)?;
        if kind.is_dir() {
            if xattr(&path, "trusted.overlay.opaque")?.as_deref() == Some(b"y") {
                // Replaced: whatever the lower layers had here is gone.
                deleted.push(rooted(&rel)?);
            }
            let mut h = header(&meta, tar::EntryType::Directory, 0);
            tar.append_data(&mut h, &rel, io::empty()).map_err(io_err)?;
            walk(&path, &rel, tar, deleted)?;
        } else if kind.is_file() {
            let f = File::open(&path).map_err(Error::io(format!("open {}", path.display())))?;
            let mut h = header(&meta, tar::EntryType::Regular, meta.len());
            let mut counted = Counted(f.take(meta.len()), 0);
            tar.append_data(&mut h, &rel, &mut counted)
                .map_err(io_err)?;
            if counted.1 != meta.len() {
                return Err(Error::FailedPrecondition(format!(
                    "{} shrank while it was being archived; is the container still running?",
                    path.display()
                )));
            }
        } else if kind.is_symlink() {
            let target =
                fs::read_link(&path).map_err(Error::io(format!("readlink {}", path.display())))?;
            let mut h = header(&meta, tar::EntryType::Symlink, 0);
            tar.append_link(&mut h, &rel, &target).map_err(io_err)?;
        } else if kind.is_fifo() {
            // A process may hold it open (a pipe between two of them): CRIU
            // reopens it by path at the restore.
            let mut h = header(&meta, tar::EntryType::Fifo, 0);
            tar.append_data(&mut h, &rel, io::empty()).map_err(io_err)?;
        } else {
            log::warn!(
                "root filesystem diff: leaving out {} (not a file, directory, symlink or fifo)",
                path.display()
            );
        }
    }
    Ok(())
}

fn header(meta: &fs::Metadata, kind: tar::EntryType, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    h
}

/// `/a/b` for deleted.files, which is JSON: a name that is not UTF-8 cannot
/// be listed, and is refused rather than silently left undeleted.
fn rooted(rel: &Path) -> Result<String> {
    rel.to_str().map(|s| format!("/{s}")).ok_or_else(|| {
        Error::InvalidArgument(format!(
            "deleted file {} has a name that is not UTF-8; deleted.files cannot list it",
            rel.display()
        ))
    })
}

/// With `redirect_dir` a renamed directory's content stays in the lower
/// layers under its old name; with `metacopy` a copied-up file's data does.
/// Either way the upper directory alone does not hold the change.
fn refuse_lower_content(path: &Path) -> Result<()> {
    for attr in ["trusted.overlay.redirect", "trusted.overlay.metacopy"] {
        if xattr(path, attr)?.is_some() {
            return Err(Error::FailedPrecondition(format!(
                "{} has {attr}: its content is in the overlay's lower layers, which a diff of \
                 the upper directory cannot carry (mount the overlay without redirect_dir and \
                 metacopy)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// An extended attribute of `path` itself (not a symlink's target), or
/// None if it has none or the filesystem has no xattrs.
pub(super) fn xattr(path: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let context = || format!("read xattr {name} of {}", path.display());
    let cpath = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidArgument(format!("{}: NUL in path", path.display())))?;
    let cname = CString::new(name).map_err(|_| Error::Other(context()))?;
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is valid for buf.len().
    let n = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) => Ok(None),
            // Longer than any value compared here: present, and not "y".
            Some(libc::ERANGE) => Ok(Some(Vec::new())),
            _ => Err(Error::io(context())(err)),
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// Counts what tar reads, to notice a file that shrank under it.
struct Counted<R>(R, u64);

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        self.1 += n as u64;
        Ok(n)
    }
}
