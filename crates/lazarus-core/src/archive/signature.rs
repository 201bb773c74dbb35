//! Who made an archive: an ed25519 signature over its manifest (which holds
//! every other entry's sha256, so it covers the whole archive). The
//! manifest's own sha256 sums only prove that nothing changed since it was
//! written; a signature by a key the importing host trusts proves who wrote
//! it. The signature travels inside the manifest (`signature`), over the
//! manifest serialised without it.

use std::path::{Path, PathBuf};

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};

use super::Manifest;
use crate::channel::Key;
use crate::error::{Error, Result};
pub use crate::manifest::ManifestSignature;

/// A signing key (`lazarus keygen --sign FILE`): 32 secret bytes as hex in
/// FILE (0600), the public key as hex in FILE.pub.
pub struct Signer(SigningKey);

impl Signer {
    /// Makes a new key at `path` and its public half at `path.pub`; neither
    /// file may exist.
    pub fn create(path: &Path) -> Result<(Signer, PathBuf)> {
        let public = public_path(path);
        if public.exists() {
            return Err(Error::FailedPrecondition(format!(
                "{} already exists: choose another name for the signing key",
                public.display()
            )));
        }
        let key = Key::generate()?.into_bytes();
        crate::channel::write_secret(path, &key)?;
        let signer = Signer(SigningKey::from_bytes(&key));
        std::fs::write(&public, format!("{}\n", signer.public_hex()))
            .map_err(Error::io(format!("write {}", public.display())))?;
        Ok((signer, public))
    }

    /// Reads a signing key file, refusing one that others may read.
    pub fn load(path: &Path) -> Result<Signer> {
        Ok(Signer(SigningKey::from_bytes(
            &Key::load(path)?.into_bytes(),
        )))
    }

    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().as_bytes())
    }

    /// Signs `manifest` (any signature it had is replaced).
    pub fn sign(&self, manifest: &mut Manifest) {
        manifest.signature = None;
        let sig = self.0.sign(&manifest.signed_bytes());
        manifest.signature = Some(ManifestSignature {
            key: self.public_hex(),
            sig: hex::encode(sig.to_bytes()),
        });
    }
}

/// Where `lazarus keygen --sign FILE` writes the public key.
pub fn public_path(secret: &Path) -> PathBuf {
    let mut name = secret.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

impl Manifest {
    /// What a signature covers: the manifest without its signature, in
    /// serde_json's compact form (fields in declaration order).
    fn signed_bytes(&self) -> Vec<u8> {
        let unsigned = Manifest {
            signature: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsigned).expect("a manifest serialises")
    }

    /// The signer's public key (hex) when the manifest is signed and the
    /// signature holds; `Ok(None)` when unsigned; an error when the
    /// signature does not match (the archive was changed after signing).
    pub fn signer(&self) -> Result<Option<String>> {
        let Some(s) = &self.signature else {
            return Ok(None);
        };
        let bad = |why: &str| {
            Error::InvalidArgument(format!(
                "the archive's signature {why}: it was changed after it was signed, or the \
                 signature was forged"
            ))
        };
        let key = parse_key(&s.key).map_err(|_| bad("names no valid key"))?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&s.sig, &mut sig).map_err(|_| bad("is not 128 hex digits"))?;
        key.verify_strict(
            &self.signed_bytes(),
            &ed25519_dalek::Signature::from_bytes(&sig),
        )
        .map_err(|_| bad("does not match its manifest"))?;
        Ok(Some(s.key.clone()))
    }
}

fn parse_key(hex_key: &str) -> std::result::Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_key.trim(), &mut bytes).map_err(|e| e.to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|e| e.to_string())
}

/// The public keys an import trusts (`--require-signed FILE`, the
/// `trusted_keys` setting): one hex key a line, `#` comments.
#[derive(Debug, Clone)]
pub struct TrustedKeys {
    from: PathBuf,
    keys: Vec<String>,
}

impl TrustedKeys {
    pub fn load(path: &Path) -> Result<TrustedKeys> {
        let text = std::fs::read_to_string(path).map_err(Error::io(format!(
            "read trusted keys {} (a signer's public key is the .pub file `lazarus keygen \
             --sign` wrote)",
            path.display()
        )))?;
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            parse_key(line).map_err(|e| {
                Error::InvalidArgument(format!(
                    "{} line {}: not an ed25519 public key in hex ({e})",
                    path.display(),
                    n + 1
                ))
            })?;
            keys.push(line.to_ascii_lowercase());
        }
        if keys.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{} holds no public key: every archive would be refused",
                path.display()
            )));
        }
        Ok(TrustedKeys {
            from: path.to_owned(),
            keys,
        })
    }

    /// Refuses an archive (`what`) that is unsigned or signed by a key not
    /// in this set.
    pub fn check(&self, manifest: &Manifest, what: &str) -> Result<()> {
        match manifest.signer()? {
            Some(key) if self.keys.contains(&key.to_ascii_lowercase()) => Ok(()),
            Some(key) => Err(Error::PermissionDenied(format!(
                "refusing {what}: it is signed by {key}, which is not among the trusted keys in {}",
                self.from.display()
            ))),
            None => Err(Error::PermissionDenied(format!(
                "refusing {what}: it is not signed, and only archives signed by a key in {} are \
                 imported (sign with `lazarus checkpoint --export FILE --sign KEY`)",
                self.from.display()
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::ManifestEntry;
    use super::*;

    fn manifest() -> Manifest {
        Manifest::new(vec![ManifestEntry::file("spec.dump", 2, "a".repeat(64))])
    }

    #[test]
    fn a_signed_manifest_names_its_signer_and_survives_a_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let (signer, public) = Signer::create(&dir.path().join("k")).unwrap();
        let mut m = manifest();
        assert_eq!(m.signer().unwrap(), None);
        signer.sign(&mut m);
        let text = serde_json::to_vec_pretty(&m).unwrap();
        let back = Manifest::parse(&text).unwrap();
        assert_eq!(back.signer().unwrap(), Some(signer.public_hex()));
        let trusted = TrustedKeys::load(&public).unwrap();
        trusted.check(&back, "a.tar").unwrap();
        let again = Signer::load(&dir.path().join("k")).unwrap();
        assert_eq!(again.public_hex(), signer.public_hex());
    }

    #[test]
    fn a_changed_entry_or_a_foreign_key_or_no_signature_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (mine, public) = Signer::create(&dir.path().join("mine")).unwrap();
        let (theirs, _) = Signer::create(&dir.path().join("theirs")).unwrap();
        let trusted = TrustedKeys::load(&public).unwrap();

        let mut tampered = manifest();
        mine.sign(&mut tampered);
        tampered.entries[0].sha256 = "b".repeat(64);
        let e = trusted.check(&tampered, "a.tar").unwrap_err().to_string();
        assert!(e.contains("does not match its manifest"), "{e}");

        let mut foreign = manifest();
        theirs.sign(&mut foreign);
        let e = trusted.check(&foreign, "a.tar").unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains(&theirs.public_hex()), "{e}");

        let e = trusted.check(&manifest(), "a.tar").unwrap_err().to_string();
        assert!(e.contains("is not signed"), "{e}");
    }

    #[test]
    fn a_keys_file_must_hold_keys_and_keys_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("trusted");
        std::fs::write(&path, "# nobody\n").unwrap();
        assert!(TrustedKeys::load(&path).is_err());
        std::fs::write(&path, "zz\n").unwrap();
        let e = TrustedKeys::load(&path).unwrap_err().to_string();
        assert!(e.contains("line 1"), "{e}");
        Signer::create(&dir.path().join("k")).unwrap();
        assert!(Signer::create(&dir.path().join("k")).is_err());
    }
}
