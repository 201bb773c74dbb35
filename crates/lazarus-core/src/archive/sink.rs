//! Where a verified entry goes: nowhere (verify) or into the private
//! directory an extraction renames into place once everything matched.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Where verified entries go.
pub(super) trait Sink {
    fn dir(&mut self, name: &str) -> io::Result<()>;
    fn file(&mut self, name: &str) -> io::Result<Box<dyn Output>>;
    /// Where the entries are written, for errors (a full disk).
    fn root(&self) -> &Path {
        Path::new(".")
    }
}

/// One file being written; `finish` is called once its digest matched.
pub(super) trait Output: Write {
    fn finish(self: Box<Self>) -> io::Result<()>;
}

impl Output for io::Sink {
    fn finish(self: Box<Self>) -> io::Result<()> {
        Ok(())
    }
}

impl Output for io::BufWriter<File> {
    /// Flushed and fsynced here, so that no error is lost in a Drop and the
    /// data is on disk before the rename makes the directory visible.
    fn finish(self: Box<Self>) -> io::Result<()> {
        let file = self.into_inner().map_err(|e| e.into_error())?;
        file.sync_all()
    }
}

pub(super) struct Discard;

impl Sink for Discard {
    fn dir(&mut self, _: &str) -> io::Result<()> {
        Ok(())
    }
    fn file(&mut self, _: &str) -> io::Result<Box<dyn Output>> {
        Ok(Box::new(io::sink()))
    }
}

/// Writes into a directory only this process knows about. Names were
/// checked (relative, no `..`) and only files and directories are ever
/// created in it, so no path can lead out of it.
pub(super) struct ToDir(pub(super) PathBuf);

fn mkdirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

impl Sink for ToDir {
    fn dir(&mut self, name: &str) -> io::Result<()> {
        mkdirs(&self.0.join(name))
    }

    fn root(&self) -> &Path {
        &self.0
    }

    fn file(&mut self, name: &str) -> io::Result<Box<dyn Output>> {
        let path = self.0.join(name);
        if let Some(parent) = path.parent() {
            mkdirs(parent)?;
        }
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        Ok(Box::new(io::BufWriter::with_capacity(1 << 20, f)))
    }
}
