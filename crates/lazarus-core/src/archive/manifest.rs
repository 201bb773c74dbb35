//! `lazarus-manifest.json` read from an archive: its format version, its
//! entries' names and digests, and its signature checked before anything
//! else is believed (the manifest's data is `crate::manifest`, which the
//! snapshot store shares). Reading an archive checks each entry against
//! it, so nothing unlisted, altered or missing gets through.

use std::collections::HashSet;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::manifest::{Manifest, FORMAT, MANIFEST_FILE};

/// A manifest is small (one line per file); anything bigger is not one, and
/// must not be read into memory.
pub(super) const MAX_MANIFEST_BYTES: u64 = 16 << 20;

impl Manifest {
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
