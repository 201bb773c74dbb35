//! The hosts' shared migration key: 32 random bytes, kept as 64 hex digits
//! in a file only its owner may read (it opens every migration's stream).

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{Error, Result};

pub struct Key([u8; 32]);

impl Key {
    /// A new key from the kernel's random source.
    pub fn generate() -> Result<Key> {
        let mut bytes = [0u8; 32];
        fs::File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut bytes))
            .map_err(Error::io("read /dev/urandom"))?;
        Ok(Key(bytes))
    }

    /// The same key, for another holder (a page tunnel's door).
    pub fn duplicate(&self) -> Key {
        Key(self.0)
    }

    /// Writes a new key to `path` (mode 0600); an existing file is never
    /// overwritten.
    pub fn create(path: &Path) -> Result<Key> {
        let key = Key::generate()?;
        write_secret(path, &key.0)?;
        Ok(key)
    }

    /// The key's bytes, for a key of another kind made from them.
    #[cfg(feature = "archive")]
    pub(crate) fn into_bytes(self) -> [u8; 32] {
        self.0
    }

    /// Reads the key in `path`, refusing a file others may read.
    pub fn load(path: &Path) -> Result<Key> {
        let meta = fs::metadata(path).map_err(Error::io(format!(
            "read key file {} (make one with `lazarus keygen FILE` and copy it to both hosts)",
            path.display()
        )))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(Error::InvalidArgument(format!(
                "key file {} has mode {mode:o}: it is a secret (a migration key opens \
                 migration streams, a signing key signs archives), so only its owner may read \
                 it (chmod 600 {})",
                path.display(),
                path.display()
            )));
        }
        let text = fs::read_to_string(path)
            .map_err(Error::io(format!("read key file {}", path.display())))?;
        Key::parse(text.trim()).map_err(|why| {
            Error::InvalidArgument(format!(
                "key file {} {why} (make one with `lazarus keygen FILE`)",
                path.display()
            ))
        })
    }

    /// 64 hex digits.
    pub fn parse(text: &str) -> std::result::Result<Key, String> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|e| format!("does not hold 64 hex digits ({e})"))?;
        Ok(Key(bytes))
    }

    pub(super) fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// Writes `secret` as hex to a new file `path` (mode 0600); an existing
/// file is never overwritten.
pub(crate) fn write_secret(path: &Path, secret: &[u8]) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("create key file {}", path.display())))?;
    writeln!(f, "{}", hex::encode(secret))
        .map_err(Error::io(format!("write key file {}", path.display())))
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}
