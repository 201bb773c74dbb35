//! Moving and copying checkpoint images between directories (Docker's
//! checkpoint directories, scratch directories), keeping them private.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use crate::error::Result;

/// Moves (or, across file systems, copies) the images in `from` to `to`,
/// a new directory.
pub fn move_dir(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(lazarus_core::Error::io(format!(
                "create {}",
                parent.display()
            )))?;
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => copy_dir(from, to),
        Err(e) => {
            Err(
                lazarus_core::Error::io(format!("move {} to {}", from.display(), to.display()))(e)
                    .into(),
            )
        }
    }
}

/// Copies the directory tree `from` to `to`, a new directory; every copy
/// private (0700/0600): these are checkpoint images.
pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let io = |what: &Path| lazarus_core::Error::io(format!("copy {}", what.display()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(io(to))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(io(&src))?;
            lazarus_core::checkpoint::image::make_private(&dst).map_err(io(&dst))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_moved_tree_arrives_whole_and_private() {
        let root = tempfile::tempdir().unwrap();
        let from = root.path().join("images");
        fs::create_dir_all(from.join("sub")).unwrap();
        fs::write(from.join("pages-1.img"), b"pages").unwrap();
        fs::write(from.join("sub/core.img"), b"core").unwrap();
        let to = root.path().join("a/b/checkpoint");
        move_dir(&from, &to).unwrap();
        assert!(!from.exists());
        assert_eq!(fs::read(to.join("sub/core.img")).unwrap(), b"core");
        let copy = root.path().join("copy");
        copy_dir(&to, &copy).unwrap();
        assert_eq!(fs::read(copy.join("pages-1.img")).unwrap(), b"pages");
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&copy), 0o700);
        assert_eq!(mode(&copy.join("sub/core.img")), 0o600);
        // The parent made for a move is private too.
        assert_eq!(mode(&root.path().join("a/b")), 0o700);
    }
}
