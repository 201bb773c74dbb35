//! Named volumes carried in an archive, as Podman carries them: each
//! volume's data directory as a plain tar, `volumes/NAME.tar`, unpacked
//! into the volume of that name made afresh on import.
//!
//! The tar keeps what a service's data needs: files, directories and
//! symlinks with their modes, owners and times. Unpacking never writes
//! outside the volume (`tar`'s own checks: no `..`, no absolute paths, no
//! writing through a symlink the archive made), and the archive around it
//! was verified entry by entry against its manifest first.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The archive's directory of volume tars.
pub const VOLUMES_DIR: &str = "volumes";

/// Whether `name` can be a volume's name here (Docker's rule:
/// `[a-zA-Z0-9][a-zA-Z0-9_.-]*`), so it is safe as a file name too.
pub fn is_volume_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Writes the contents of `data` (a volume's data directory) as a tar at
/// `out`; returns the bytes of the files in it.
pub fn pack(data: &Path, out: &Path) -> Result<u64> {
    let context = format!(
        "pack the volume at {} into {}",
        data.display(),
        out.display()
    );
    let file = File::create(out).map_err(Error::io(&context))?;
    let mut tar = tar::Builder::new(BufWriter::with_capacity(1 << 20, file));
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    tar.append_dir_all(".", data).map_err(Error::io(&context))?;
    tar.into_inner()
        .and_then(|mut w| w.flush())
        .map_err(Error::io(&context))?;
    Ok(file_bytes(data))
}

/// Unpacks the volume tar `tar` into `into` (an empty data directory),
/// owners, modes and times as they were.
pub fn unpack(tar: &Path, into: &Path) -> Result<()> {
    let context = format!("unpack {} into {}", tar.display(), into.display());
    let file = File::open(tar).map_err(Error::io(&context))?;
    let mut archive = tar::Archive::new(std::io::BufReader::with_capacity(1 << 20, file));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(false);
    archive.unpack(into).map_err(Error::io(&context))
}

/// The volume tars in an extracted archive's directory: (name, tar).
pub fn extracted(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let volumes = dir.join(VOLUMES_DIR);
    let Ok(read) = std::fs::read_dir(&volumes) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for entry in read {
        let entry = entry.map_err(Error::io(format!("read {}", volumes.display())))?;
        let file = entry.file_name();
        let name = file
            .to_str()
            .and_then(|n| n.strip_suffix(".tar"))
            .filter(|n| is_volume_name(n))
            .ok_or_else(|| {
                Error::InvalidArgument(format!(
                    "{}/{}: not a volume tar (NAME.tar)",
                    VOLUMES_DIR,
                    file.to_string_lossy()
                ))
            })?;
        out.push((name.to_string(), entry.path()));
    }
    out.sort();
    Ok(out)
}

fn file_bytes(dir: &Path) -> u64 {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    read.flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => file_bytes(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn a_volume_comes_back_as_it_was() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        fs::create_dir_all(data.join("sub/deeper")).unwrap();
        fs::write(data.join("dump.rdb"), b"REDIS0011").unwrap();
        fs::write(data.join("sub/deeper/x"), vec![7u8; 5000]).unwrap();
        fs::set_permissions(data.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
        symlink("dump.rdb", data.join("latest")).unwrap();
        let tar = t.path().join("v.tar");
        assert_eq!(pack(&data, &tar).unwrap(), 5009);
        let into = t.path().join("into");
        fs::create_dir(&into).unwrap();
        unpack(&tar, &into).unwrap();
        assert_eq!(fs::read(into.join("dump.rdb")).unwrap(), b"REDIS0011");
        assert_eq!(fs::read(into.join("sub/deeper/x")).unwrap().len(), 5000);
        let mode = fs::metadata(into.join("sub")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o750);
        assert_eq!(
            fs::read_link(into.join("latest")).unwrap(),
            Path::new("dump.rdb")
        );
    }

    #[test]
    fn nothing_is_written_outside_the_volume() {
        let t = tempfile::tempdir().unwrap();
        let tar_path = t.path().join("evil.tar");
        let mut b = tar::Builder::new(File::create(&tar_path).unwrap());
        // A symlink out of the volume, then a file through it.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "out", t.path()).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_mode(0o644);
        b.append_data(&mut h, "out/escaped", &b"evil"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        let into = t.path().join("into");
        fs::create_dir(&into).unwrap();
        assert!(unpack(&tar_path, &into).is_err());
        assert!(!t.path().join("escaped").exists());
    }

    #[test]
    fn volume_names_are_dockers() {
        for ok in ["redis-data", "a", "v1.2_x"] {
            assert!(is_volume_name(ok), "{ok}");
        }
        for bad in ["", "-x", "../x", "a/b", ".hidden", "a b"] {
            assert!(!is_volume_name(bad), "{bad}");
        }
    }
}
