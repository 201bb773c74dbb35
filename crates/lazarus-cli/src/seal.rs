//! Archives encrypted at rest, in age's format (age-encryption.org/v1):
//! `checkpoint --export F --encrypt RECIPIENTS` writes the archive into
//! the export's private scratch directory, then encrypts it into F;
//! `restore --import` and `inspect` of an encrypted F decrypt it with
//! `--identity FILE` into a private scratch directory first. An archive
//! holds process memory: encrypted, a copy that leaks (a backup, a bucket)
//! gives nothing away. The plain archive only ever exists where the
//! checkpoint's plain CRIU images already are (0700 scratch, root's).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use age::secrecy::ExposeSecret;

use crate::error::{Error, Result};
use lazarus_core::archive::atomic::AtomicFile;
use lazarus_core::Error as CoreError;

/// The first bytes of every age file.
const MAGIC: &[u8] = b"age-encryption.org/v1";

/// Whether `path` is an age-encrypted file.
pub fn is_encrypted(path: &Path) -> bool {
    let mut head = [0u8; MAGIC.len()];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| head == MAGIC)
}

/// Writes a new identity to `path` (0600, never overwritten) and its
/// recipient to `path.pub`; returns the recipient.
pub fn keygen(path: &Path) -> Result<(String, PathBuf)> {
    let public = lazarus_core::archive::signature::public_path(path);
    if public.exists() {
        return Err(Error::Refused(format!(
            "{} already exists: choose another name for the key",
            public.display()
        )));
    }
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(CoreError::io(format!("create {}", path.display())))?;
    writeln!(
        f,
        "# public key: {recipient}\n{}",
        identity.to_string().expose_secret()
    )
    .map_err(CoreError::io(format!("write {}", path.display())))?;
    fs::write(&public, format!("{recipient}\n"))
        .map_err(CoreError::io(format!("write {}", public.display())))?;
    Ok((recipient, public))
}

/// The recipients in `path`: `age1…` keys, one a line, `#` comments.
pub fn recipients(path: &Path) -> Result<Vec<age::x25519::Recipient>> {
    let text = fs::read_to_string(path).map_err(CoreError::io(format!(
        "read recipients {} (the .pub file `lazarus keygen --age` wrote)",
        path.display()
    )))?;
    let keys: Vec<_> = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim())
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.parse::<age::x25519::Recipient>().map_err(|e| {
                Error::Refused(format!(
                    "{}: {l:?} is not an age recipient: {e}",
                    path.display()
                ))
            })
        })
        .collect::<Result<_>>()?;
    if keys.is_empty() {
        return Err(Error::Refused(format!(
            "{} holds no recipient",
            path.display()
        )));
    }
    Ok(keys)
}

/// Encrypts `plain` to the recipients in `recipients_file`, into `dest`
/// atomically (an unnamed file beside it, 0600, named when whole).
pub fn encrypt(plain: &Path, dest: &Path, recipients_file: &Path) -> Result<()> {
    let keys = recipients(recipients_file)?;
    let context = format!("encrypt {} into {}", plain.display(), dest.display());
    let encryptor = age::Encryptor::with_recipients(keys.iter().map(|k| k as &dyn age::Recipient))
        .map_err(|e| Error::Refused(format!("{context}: {e}")))?;
    let copy = |out: &mut dyn Write| -> std::io::Result<()> {
        let mut writer = encryptor.wrap_output(BufWriter::with_capacity(1 << 20, out))?;
        io::copy(&mut File::open(plain)?, &mut writer)?;
        writer.finish()?.flush()
    };
    if dest == Path::new("-") {
        // `--export -`: straight into the pipe.
        copy(&mut io::stdout().lock()).map_err(CoreError::io(&context))?;
        return Ok(());
    }
    let tmp = AtomicFile::beside(dest, ".lazarus-archive-", &context)?;
    let mut file = tmp.as_file().try_clone().map_err(CoreError::io(&context))?;
    copy(&mut file).map_err(CoreError::io(&context))?;
    tmp.persist(dest, &context)?;
    Ok(())
}

/// Decrypts `sealed` with the identities in `identity_file` into the new
/// file `dest` (0600).
pub fn decrypt(sealed: &Path, dest: &Path, identity_file: Option<&Path>) -> Result<()> {
    let Some(identity_file) = identity_file else {
        return Err(Error::Refused(format!(
            "{} is encrypted (age): give the key it was encrypted to with --identity FILE",
            sealed.display()
        )));
    };
    let identities = age::IdentityFile::from_file(identity_file.to_string_lossy().into_owned())
        .and_then(|f| f.into_identities().map_err(io::Error::other))
        .map_err(|e| {
            Error::Refused(format!(
                "cannot read the identity {}: {e}",
                identity_file.display()
            ))
        })?;
    let context = format!("decrypt {}", sealed.display());
    let input = BufReader::with_capacity(
        1 << 20,
        File::open(sealed).map_err(CoreError::io(&context))?,
    );
    let decryptor = age::Decryptor::new(input)
        .map_err(|e| Error::Refused(format!("{context}: not a valid age file: {e}")))?;
    let mut reader = decryptor
        .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
        .map_err(|e| {
            Error::Refused(format!(
                "{context} with {}: {e} (it was encrypted to another key?)",
                identity_file.display()
            ))
        })?;
    let out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dest)
        .map_err(CoreError::io(format!("create {}", dest.display())))?;
    let mut out = BufWriter::with_capacity(1 << 20, out);
    io::copy(&mut reader, &mut out)
        .and_then(|_| out.flush())
        .map_err(|e| match e.kind() {
            io::ErrorKind::InvalidData => Error::Refused(format!(
                "{context}: the file is damaged or was changed ({e})"
            )),
            _ => CoreError::io(&context)(e).into(),
        })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_archive_round_trips_and_only_its_key_opens_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        keygen(&p("mine")).unwrap();
        keygen(&p("theirs")).unwrap();
        fs::write(p("plain"), b"process memory").unwrap();
        encrypt(&p("plain"), &p("sealed"), &p("mine.pub")).unwrap();
        assert!(is_encrypted(&p("sealed")) && !is_encrypted(&p("plain")));
        let mode = fs::metadata(p("sealed")).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        decrypt(&p("sealed"), &p("back"), Some(&p("mine"))).unwrap();
        assert_eq!(fs::read(p("back")).unwrap(), b"process memory");
        let e = decrypt(&p("sealed"), &p("x"), Some(&p("theirs")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("another key"), "{e}");
        let e = decrypt(&p("sealed"), &p("y"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--identity"), "{e}");
        let mut bytes = fs::read(p("sealed")).unwrap();
        let last = bytes.len() - 5;
        bytes[last] ^= 1;
        fs::write(p("flipped"), bytes).unwrap();
        let e = decrypt(&p("flipped"), &p("z"), Some(&p("mine")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("damaged"), "{e}");
    }
}
