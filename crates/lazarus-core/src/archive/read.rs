//! Reading an archive: the manifest first, then every entry checked against
//! it as it streams by (name listed, type, size, sha256), and at the end
//! nothing missing. Extraction writes into a private temp directory next to
//! the destination and renames it into place only when all of that held.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use super::hashing::hash_copy;
use super::manifest::{is_safe_name, MAX_MANIFEST_BYTES};
use super::sink::{Discard, Output, Sink, ToDir};
use super::{Limits, Manifest, ManifestEntry, MANIFEST_FILE};
use crate::error::{Error, Result};

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Reads only the manifest (the archive's first entry).
pub fn read_manifest(path: &Path) -> Result<Manifest> {
    let mut archive = open(path)?;
    let mut entries = archive.entries().map_err(corrupt(path))?;
    first_entry(path, &mut entries)
}

/// The small entries `names` of the archive, each checked against the
/// manifest (size and sha256), read before the rest is verified so that
/// what would refuse the archive anyway (a name taken, an image missing)
/// is said at once. Archives written by Lazarus 0.2 and later hold them
/// right after the manifest; the reading stops at the first entry that is
/// not one of them, so an older archive (they come after the images)
/// yields none, at no cost. Entries over `max_bytes` are not read.
pub fn read_leading(
    path: &Path,
    names: &[&str],
    max_bytes: u64,
) -> Result<HashMap<String, Vec<u8>>> {
    let mut archive = open(path)?;
    let mut entries = archive.entries().map_err(corrupt(path))?;
    let manifest = first_entry(path, &mut entries)?;
    let mut found = HashMap::new();
    for entry in entries {
        let mut entry = entry.map_err(corrupt(path))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let listed = manifest.entries.iter().find(|e| e.name == name);
        let (true, Some(listed)) = (names.contains(&name.as_str()), listed) else {
            break;
        };
        if listed.size > max_bytes || entry.size() != listed.size {
            break;
        }
        let mut bytes = Vec::with_capacity(listed.size as usize);
        let (_, digest) = hash_copy(&mut entry, &mut bytes, &mut |_| {}).map_err(corrupt(path))?;
        if digest != listed.sha256 {
            return Err(refuse(
                path,
                format!("its {name} differs from what its manifest says (sha256)"),
            ));
        }
        found.insert(name, bytes);
    }
    Ok(found)
}

/// Reads the whole archive and checks every entry against the manifest.
pub fn verify(path: &Path) -> Result<Manifest> {
    verify_with(path, &mut |_| {})
}

/// [`verify`], calling `progress` with the content bytes checked so far (of
/// [`Manifest::total_size`]).
pub fn verify_with(path: &Path, progress: &mut dyn FnMut(u64)) -> Result<Manifest> {
    walk(path, &mut Discard, progress)
}

/// Verifies and extracts the archive into `dest`, which must not exist. On
/// any error nothing is left behind: not `dest`, not the temp directory.
/// Files are 0600 and directories 0700 whatever the archive says.
pub fn extract(path: &Path, dest: &Path) -> Result<Manifest> {
    extract_with(path, dest, &Limits::default(), &|_| true, &mut |_| {})
}

/// [`extract`] of only the entries `wanted` names (the others are still
/// read and checked, so a corrupt archive is refused all the same; e.g.
/// `inspect` leaves out the memory pages), calling `progress` with the
/// content bytes done so far.
pub fn extract_with(
    path: &Path,
    dest: &Path,
    limits: &Limits,
    wanted: &dyn Fn(&str) -> bool,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest> {
    if fs::symlink_metadata(dest).is_ok() {
        return Err(Error::FailedPrecondition(format!(
            "{} already exists; extract a checkpoint archive into a new directory",
            dest.display()
        )));
    }
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    check_limits(path, &read_manifest(path)?, parent, limits, wanted)?;
    let context = format!("extract {} to {}", path.display(), dest.display());
    // 0700, and removed with everything in it when dropped on an error.
    let tmp = tempfile::Builder::new()
        .prefix(".lazarus-extract-")
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(parent)
        .map_err(Error::io(&context))?;
    let mut sink = Only {
        wanted,
        inner: ToDir(tmp.path().to_path_buf()),
    };
    let manifest = walk(path, &mut sink, progress)?;
    // Kept, so the extracted directory still says what it was made from.
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    let mut out = ToDir(tmp.path().to_path_buf())
        .file(MANIFEST_FILE)
        .map_err(Error::io(&context))?;
    out.write_all(&json)
        .and_then(|()| out.finish())
        .map_err(Error::io(&context))?;
    fs::rename(tmp.path(), dest).map_err(Error::io(&context))?;
    // Renamed: there is nothing left for the TempDir to remove.
    let _ = tmp.keep();
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(&context))?;
    Ok(manifest)
}

/// Refuses, before anything is unpacked, an archive whose manifest lists
/// more entries than `limits` allow, unpacks to more bytes per byte of its
/// file than they allow, or whose `wanted` entries would leave less than
/// the margin free on the file system of `parent`.
pub fn check_limits(
    path: &Path,
    manifest: &Manifest,
    parent: &Path,
    limits: &Limits,
    wanted: &dyn Fn(&str) -> bool,
) -> Result<()> {
    let entries = manifest.entries.len() as u64;
    if entries > limits.max_entries {
        return Err(refuse(
            path,
            format!(
                "it lists {entries} entries, more than the {} allowed (max_entries in the \
                 [import] section of the config)",
                limits.max_entries
            ),
        ));
    }
    let needed: u64 = manifest
        .entries
        .iter()
        .filter(|e| wanted(&e.name))
        .fold(0u64, |sum, e| sum.saturating_add(e.size));
    let stat = nix::sys::statvfs::statvfs(parent)
        .map_err(Error::sys(format!("statfs {}", parent.display())))?;
    let free = stat.blocks_available().saturating_mul(stat.fragment_size());
    if needed.saturating_add(limits.free_margin_bytes) > free {
        return Err(Error::FailedPrecondition(format!(
            "not enough space to unpack checkpoint archive {}: it needs {} MiB in {}, which has \
             {} MiB free and must keep {} MiB (free_margin_mib); free some space there or point \
             work_root (TMPDIR for inspect) at a larger file system",
            path.display(),
            needed >> 20,
            parent.display(),
            free >> 20,
            limits.free_margin_bytes >> 20
        )));
    }
    let unpacked = manifest.total_size();
    let packed = fs::metadata(path)
        .map_err(Error::io(format!("stat {}", path.display())))?
        .len()
        .max(1);
    if unpacked > packed.saturating_mul(limits.max_ratio) {
        return Err(refuse(
            path,
            format!(
                "its {packed} bytes unpack to {unpacked}, more than {} times as many \
                 (max_ratio in the [import] section of the config)",
                limits.max_ratio
            ),
        ));
    }
    Ok(())
}

/// A full disk while unpacking, said as such (not as a corrupt archive).
fn disk_full(e: &io::Error, name: &str, path: &Path, dir: &Path, needed: u64) -> Option<Error> {
    crate::error::no_space(
        e,
        dir,
        &format!("{name} of checkpoint archive {}", path.display()),
        Some(needed),
        "set work_root (TMPDIR for inspect) to a larger file system",
    )
}

fn corrupt(path: &Path) -> impl Fn(io::Error) -> Error + '_ {
    move |e| {
        // A full disk is never the archive's fault, wherever it surfaces.
        let dir = path.parent().unwrap_or(Path::new("."));
        if let Some(full) = crate::error::no_space(&e, dir, "the archive", None, "retry") {
            return full;
        }
        Error::InvalidArgument(format!(
            "checkpoint archive {} is truncated or corrupt: {e}",
            path.display()
        ))
    }
}

fn refuse(path: &Path, why: String) -> Error {
    Error::InvalidArgument(format!(
        "refusing checkpoint archive {}: {why}",
        path.display()
    ))
}

/// A tar, plain or zstd-compressed (told apart by their first bytes).
pub(crate) fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read>>> {
    let file = File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let head = reader
        .fill_buf()
        .map_err(Error::io(format!("read {}", path.display())))?;
    let stream: Box<dyn Read> = if head.starts_with(&ZSTD_MAGIC) {
        let z = zstd::Decoder::with_buffer(reader).map_err(corrupt(path))?;
        Box::new(z)
    } else if head.starts_with(&GZIP_MAGIC) {
        return Err(refuse(
            path,
            "it is gzip-compressed; Lazarus reads zstd-compressed or plain tar archives".into(),
        ));
    } else if head.len() < 512 || &head[257..262] != b"ustar" {
        // Neither compressed nor a tar (whose header says so at byte 257).
        return Err(refuse(
            path,
            "it is neither zstd-compressed nor a tar: not a Lazarus checkpoint archive \
             (made by `lazarus checkpoint --export`)"
                .into(),
        ));
    } else {
        Box::new(reader)
    };
    Ok(tar::Archive::new(stream))
}

type Entries<'a> = tar::Entries<'a, Box<dyn Read>>;

fn first_entry(path: &Path, entries: &mut Entries) -> Result<Manifest> {
    let not_ours = |what: String| {
        refuse(
            path,
            format!("{what}, not {MANIFEST_FILE}: not a Lazarus checkpoint archive"),
        )
    };
    let mut entry = match entries.next() {
        None => return Err(not_ours("it holds no entry".into())),
        Some(e) => e.map_err(corrupt(path))?,
    };
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if name != MANIFEST_FILE || !entry.header().entry_type().is_file() {
        return Err(not_ours(format!("its first entry is {name:?}")));
    }
    if entry.size() > MAX_MANIFEST_BYTES {
        return Err(refuse(
            path,
            format!("its {MANIFEST_FILE} is {} bytes", entry.size()),
        ));
    }
    let mut bytes = Vec::new();
    (&mut entry)
        .take(MAX_MANIFEST_BYTES)
        .read_to_end(&mut bytes)
        .map_err(corrupt(path))?;
    if bytes.len() as u64 != entry.size() {
        return Err(corrupt(path)(io::ErrorKind::UnexpectedEof.into()));
    }
    Manifest::parse(&bytes).map_err(|e| match e {
        Error::FailedPrecondition(m) => {
            Error::FailedPrecondition(format!("{}: {m}", path.display()))
        }
        e => refuse(path, e.to_string()),
    })
}

/// The entry's name as the manifest spells it: directories lose their
/// trailing `/`; anything not a plain relative path is refused.
fn entry_name(path: &Path, entry: &tar::Entry<Box<dyn Read>>) -> Result<String> {
    let raw = entry.path_bytes();
    let name = std::str::from_utf8(&raw).map_err(|_| {
        refuse(
            path,
            format!("entry {:?} is not UTF-8", String::from_utf8_lossy(&raw)),
        )
    })?;
    let trimmed = match entry.header().entry_type() {
        tar::EntryType::Directory => name.strip_suffix('/').unwrap_or(name),
        _ => name,
    };
    if !is_safe_name(trimmed) {
        return Err(refuse(
            path,
            format!("entry {name:?} is not a plain relative path"),
        ));
    }
    Ok(trimmed.to_owned())
}

/// The entries `wanted` names go to `inner`, the others are discarded.
struct Only<'a, S> {
    wanted: &'a dyn Fn(&str) -> bool,
    inner: S,
}

impl<S: Sink> Sink for Only<'_, S> {
    fn dir(&mut self, name: &str) -> io::Result<()> {
        match (self.wanted)(name) {
            true => self.inner.dir(name),
            false => Discard.dir(name),
        }
    }

    fn file(&mut self, name: &str) -> io::Result<Box<dyn Output>> {
        match (self.wanted)(name) {
            true => self.inner.file(name),
            false => Discard.file(name),
        }
    }

    fn root(&self) -> &Path {
        self.inner.root()
    }
}

/// Every entry after the manifest goes to `sink`, each checked against its
/// line in the manifest as it streams by; at the end none may be missing.
fn walk(path: &Path, sink: &mut dyn Sink, progress: &mut dyn FnMut(u64)) -> Result<Manifest> {
    let mut archive = open(path)?;
    let mut entries = archive.entries().map_err(corrupt(path))?;
    let manifest = first_entry(path, &mut entries)?;
    let mut expected: HashMap<&str, &ManifestEntry> = manifest
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let mut done = 0u64;
    for entry in entries {
        let mut entry = entry.map_err(corrupt(path))?;
        let name = entry_name(path, &entry)?;
        let listed = take_listed(path, &manifest, &mut expected, &name)?;
        let at = Extracting {
            archive: path,
            name: &name,
            root: sink.root().to_path_buf(),
            left: manifest.total_size().saturating_sub(done),
        };
        match (entry.header().entry_type(), listed.dir) {
            (tar::EntryType::Directory, true) => sink.dir(&name).map_err(|e| at.io(e))?,
            (tar::EntryType::Regular | tar::EntryType::Continuous, false) => {
                let size =
                    extract_file(&at, &mut entry, listed, sink, &mut |n| progress(done + n))?;
                done += size;
            }
            (kind, _) => return Err(neither_file_nor_dir(path, &name, kind, listed.dir)),
        }
    }
    none_missing(path, &manifest, &expected)?;
    Ok(manifest)
}

/// The manifest's line for entry `name`, taken out of `expected` so that
/// an entry seen twice is refused the second time.
fn take_listed<'m>(
    path: &Path,
    manifest: &Manifest,
    expected: &mut HashMap<&str, &'m ManifestEntry>,
    name: &str,
) -> Result<&'m ManifestEntry> {
    if let Some(listed) = expected.remove(name) {
        return Ok(listed);
    }
    let why = if manifest.entries.iter().any(|e| e.name == name) {
        "appears twice"
    } else {
        "is not listed in its manifest"
    };
    Err(refuse(path, format!("entry {name:?} {why}")))
}

/// The entry being extracted, for its errors: a full disk is said with
/// what is still to be written (`left`) and where (`root`).
struct Extracting<'a> {
    archive: &'a Path,
    name: &'a str,
    root: PathBuf,
    left: u64,
}

impl Extracting<'_> {
    /// A failure to write the entry out.
    fn io(&self, e: io::Error) -> Error {
        match self.disk_full(&e) {
            Some(full) => full,
            None => Error::io(format!(
                "extract {} from {}",
                self.name,
                self.archive.display()
            ))(e),
        }
    }

    fn disk_full(&self, e: &io::Error) -> Option<Error> {
        disk_full(e, self.name, self.archive, &self.root, self.left)
    }
}

/// Copies a regular file's entry to `sink`, refusing it unless its size and
/// sha256 are the manifest's; returns the bytes copied.
fn extract_file(
    at: &Extracting,
    entry: &mut tar::Entry<Box<dyn Read>>,
    listed: &ManifestEntry,
    sink: &mut dyn Sink,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let (path, name) = (at.archive, at.name);
    if entry.size() != listed.size {
        return Err(refuse(
            path,
            format!(
                "entry {name:?} is {} bytes, its manifest says {}",
                entry.size(),
                listed.size
            ),
        ));
    }
    let mut out = sink.file(name).map_err(|e| at.io(e))?;
    let (size, digest) = hash_copy(entry, &mut out, progress)
        .map_err(|e| at.disk_full(&e).unwrap_or_else(|| corrupt(path)(e)))?;
    if size != listed.size {
        return Err(corrupt(path)(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "entry {name:?} ends after {size} of its {} bytes",
                listed.size
            ),
        )));
    }
    if digest != listed.sha256 {
        return Err(refuse(
            path,
            format!("entry {name:?} does not match its sha256 in the manifest (corrupt)"),
        ));
    }
    out.finish().map_err(|e| at.io(e))?;
    Ok(size)
}

/// Links, devices and the like are refused, and so is a file where the
/// manifest lists a directory or the other way round.
fn neither_file_nor_dir(path: &Path, name: &str, kind: tar::EntryType, dir: bool) -> Error {
    let listed_as = if dir { "directory" } else { "file" };
    refuse(
        path,
        format!(
            "entry {name:?} is a {kind:?} where its manifest lists a {listed_as}; \
             only files and directories are accepted (no links, no devices)"
        ),
    )
}

/// The archive ended: any entry of the manifest not seen is missing.
fn none_missing(
    path: &Path,
    manifest: &Manifest,
    expected: &HashMap<&str, &ManifestEntry>,
) -> Result<()> {
    let Some(missing) = manifest
        .entries
        .iter()
        .find(|e| expected.contains_key(e.name.as_str()))
    else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "checkpoint archive {} is truncated or incomplete: {} of its {} entries are missing, \
         first {:?}",
        path.display(),
        expected.len(),
        manifest.entries.len(),
        missing.name
    )))
}
