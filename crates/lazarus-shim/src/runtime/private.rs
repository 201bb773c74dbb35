//! The runtime's state is for root alone: a container's state names its
//! bundle and annotations, its youki_config.json the hooks with their
//! arguments and environment, the helper's files an exec's whole process
//! spec (environment included). libcontainer creates them under the umask
//! (0644), so the directories are made 0700 and the files 0600 once written;
//! the root being 0700 already, nothing is readable in between.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Makes `dir` (and missing parents) 0700, or makes an existing one 0700.
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("create {}", dir.display())))?;
    chmod(dir, 0o700)
}

/// Makes a container's state directory 0700 and its files 0600.
pub fn restrict(dir: &Path) -> Result<()> {
    chmod(dir, 0o700)?;
    let entries = std::fs::read_dir(dir).map_err(Error::io(format!("list {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(Error::io(format!("list {}", dir.display())))?;
        let is_file = entry
            .file_type()
            .map_err(Error::io(format!("stat {}", entry.path().display())))?
            .is_file();
        if is_file {
            chmod(&entry.path(), 0o600)?;
        }
    }
    Ok(())
}

/// Writes a new file readable by its owner only.
pub fn write_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(contents))
        .map_err(Error::io(format!("write {}", path.display())))
}

fn chmod(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(Error::io(format!("chmod {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn a_state_directory_and_its_files_become_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("c1");
        std::fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755).unwrap();
        for name in ["state.json", "youki_config.json"] {
            std::fs::write(dir.join(name), b"{}").unwrap();
            chmod(&dir.join(name), 0o644).unwrap();
        }
        let socket = std::os::unix::net::UnixListener::bind(dir.join("notify.sock")).unwrap();
        restrict(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("state.json")), 0o600);
        assert_eq!(mode(&dir.join("youki_config.json")), 0o600);
        drop(socket);
    }

    #[test]
    fn an_existing_root_is_made_private_too() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ns");
        std::fs::create_dir(&root).unwrap();
        chmod(&root, 0o755).unwrap();
        private_dir(&root.join(".helper")).unwrap();
        private_dir(&root).unwrap();
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(".helper")), 0o700);
        private_dir(&tmp.path().join("a/b")).unwrap();
        assert_eq!(mode(&tmp.path().join("a/b")), 0o700);
    }

    #[test]
    fn a_written_file_is_private_and_never_replaces_another() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("exec.json");
        write_file(&path, b"{}").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        assert!(write_file(&path, b"[]").is_err());
    }
}
