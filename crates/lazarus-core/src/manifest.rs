//! The checkpoint manifest's data: every file of a checkpoint with its
//! size and sha256, under a format version. The archive carries it as
//! `lazarus-manifest.json` (`archive` parses and checks one read from an
//! archive, signature included, and signs one); the snapshot store keeps
//! the same manifest in each snapshot's record (`store`). A module of its
//! own, below both, so the store builds without the archive's reader and
//! its signatures (feature `store` without `archive`: the shim).

use serde::{Deserialize, Serialize};

/// The manifest's name in an archive (its first entry) and in an extracted
/// or materialized checkpoint directory.
pub const MANIFEST_FILE: &str = "lazarus-manifest.json";

/// The archive format this Lazarus writes and the newest it reads.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub lazarus_version: String,
    pub entries: Vec<ManifestEntry>,
    /// Who signed it (made and checked by the archive's `signature`);
    /// older readers ignore it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<ManifestSignature>,
}

/// The manifest's `signature`: the signer's public key and the signature,
/// both hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestSignature {
    pub key: String,
    pub sig: String,
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
}
