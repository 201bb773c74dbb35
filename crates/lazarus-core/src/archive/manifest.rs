//! `lazarus-manifest.json`: the archive's format version and every other
//! entry's name, size and sha256. Reading an archive checks each entry
//! against it, so nothing unlisted, altered or missing gets through.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::MANIFEST_FILE;
use crate::error::{Error, Result};

/// The archive format this Lazarus writes and the newest it reads.
pub const FORMAT: u32 = 1;

/// A manifest is small (one line per file); anything bigger is not one, and
/// must not be read into memory.
pub(super) const MAX_MANIFEST_BYTES: u64 = 16 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub lazarus_version: String,
    pub entries: Vec<ManifestEntry>,
    /// Who signed it (see [`super::signature`]); older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<super::signature::ManifestSignature>,
}

/// One entry: a directory, or a file with its size and sha256 (lower-case
/// hex). Names are relative, `/`-separated, without `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub name: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dir: bool,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
}

impl ManifestEntry {
    pub fn dir(name: &str) -> Self {
        ManifestEntry {
            name: name.into(),
            dir: true,
            size: 0,
            sha256: String::new(),
        }
    }

    pub fn file(name: &str, size: u64, sha256: String) -> Self {
        ManifestEntry {
            name: name.into(),
            dir: false,
            size,
            sha256,
        }
    }
}

impl Manifest {
    pub fn new(entries: Vec<ManifestEntry>) -> Self {
        Manifest {
            format: FORMAT,
            lazarus_version: env!("CARGO_PKG_VERSION").into(),
            entries,
            signature: None,
        }
    }

    /// Total bytes of all files (the work a verify or extract does).
    pub fn total_size(&self) -> u64 {
        // Saturating: the sizes are an archive's word, and may be anything.
        self.entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.size))
    }

    /// Parses and checks a manifest. The version is read on its own first,
    /// so a newer format is named as such even if its layout changed.
    pub fn parse(bytes: &[u8]) -> Result<Manifest> {
        #[derive(Deserialize)]
        struct Version {
            format: u32,
        }
        let invalid =
            |e: serde_json::Error| Error::InvalidArgument(format!("invalid {MANIFEST_FILE}: {e}"));
        let version: Version = serde_json::from_slice(bytes).map_err(invalid)?;
        if version.format > FORMAT {
            return Err(Error::FailedPrecondition(format!(
                "the archive has format {}, newer than format {FORMAT} that this Lazarus ({}) \
                 reads: restore it with a newer Lazarus",
                version.format,
                env!("CARGO_PKG_VERSION"),
            )));
        }
        if version.format == 0 {
            return Err(Error::InvalidArgument(format!(
                "invalid {MANIFEST_FILE}: format 0 does not exist"
            )));
        }
        let manifest: Manifest = serde_json::from_slice(bytes).map_err(invalid)?;
        manifest.check()?;
        // A signature that does not hold is a changed archive, whoever
        // reads it: refused even where no signature is required.
        manifest.signer()?;
        Ok(manifest)
    }

    fn check(&self) -> Result<()> {
        let mut seen = HashSet::new();
        for e in &self.entries {
            let bad = |why: &str| {
                Error::InvalidArgument(format!("invalid {MANIFEST_FILE}: entry {:?} {why}", e.name))
            };
            if !is_safe_name(&e.name) {
                return Err(bad("is not a plain relative path"));
            }
            if e.name == MANIFEST_FILE {
                return Err(bad("lists the manifest itself"));
            }
            if !seen.insert(e.name.as_str()) {
                return Err(bad("is listed twice"));
            }
            let hex = e.sha256.len() == 64 && e.sha256.bytes().all(|b| b.is_ascii_hexdigit());
            if e.dir && (e.size != 0 || !e.sha256.is_empty()) {
                return Err(bad("is a directory with a size or digest"));
            }
            if !e.dir && !hex {
                return Err(bad("has no valid sha256"));
            }
        }
        Ok(())
    }
}

/// A name that stays inside whatever directory it is joined to: relative,
/// `/`-separated, no empty, `.` or `..` component, no NUL.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 4096
        && !name.contains('\0')
        && name
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
}

pub(super) fn hex(digest: &[u8]) -> String {
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
