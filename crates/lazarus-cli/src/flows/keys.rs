//! `lazarus keygen`: a migration key (shared by both hosts), a signing key
//! for archives (`--sign`), or an age key for encrypted archives (`--age`).

use std::path::PathBuf;

use crate::error::Result;
use crate::flows::migration;
use crate::report::Summary;
use crate::seal;

/// The default signing key file.
pub const DEFAULT_SIGNING_KEY: &str = "/etc/lazarus/signing.key";
/// The default age identity file.
pub const DEFAULT_AGE_KEY: &str = "/etc/lazarus/archive.age";

/// Which key `keygen` makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Migration,
    Signing,
    Age,
}

/// The key files written.
#[derive(Debug)]
pub enum NewKey {
    Migration {
        file: PathBuf,
    },
    Signing {
        file: PathBuf,
        public: PathBuf,
        public_hex: String,
    },
    Age {
        file: PathBuf,
        public: PathBuf,
        recipient: String,
    },
}

/// Writes a new key of `kind` to `file` (never overwritten), or to the
/// kind's default file.
pub fn keygen(file: Option<PathBuf>, kind: KeyKind) -> Result<NewKey> {
    let file_or = |default: &str| file.clone().unwrap_or_else(|| PathBuf::from(default));
    match kind {
        KeyKind::Age => {
            let file = file_or(DEFAULT_AGE_KEY);
            let (recipient, public) = seal::keygen(&file)?;
            Ok(NewKey::Age {
                file,
                public,
                recipient,
            })
        }
        KeyKind::Migration => {
            let file = file_or(migration::DEFAULT_KEY);
            lazarus_core::channel::Key::create(&file)?;
            Ok(NewKey::Migration { file })
        }
        KeyKind::Signing => {
            let file = file_or(DEFAULT_SIGNING_KEY);
            let (signer, public) = lazarus_core::archive::Signer::create(&file)?;
            Ok(NewKey::Signing {
                file,
                public,
                public_hex: signer.public_hex(),
            })
        }
    }
}

impl Summary for NewKey {
    fn summary(&self) -> String {
        match self {
            NewKey::Migration { file } => file.display().to_string(),
            NewKey::Signing {
                file,
                public,
                public_hex,
            } => format!(
                "signing key  {} (secret: keep it here)\npublic key   {} ({public_hex}): give it \
                 to importing hosts",
                file.display(),
                public.display()
            ),
            NewKey::Age {
                file,
                public,
                recipient,
            } => format!(
                "identity     {} (secret: opens the archives)\nrecipient    {} ({recipient}): \
                 export with --encrypt {}",
                file.display(),
                public.display(),
                public.display()
            ),
        }
    }
}
