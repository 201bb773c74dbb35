//! Writing an archive: every source is hashed first, so the manifest can be
//! the archive's first entry (a reader checks each entry as it streams by);
//! then everything is streamed into a temp file next to `dest`, hashed again
//! on the way (a file that changed in between is an error, not a corrupt
//! archive), fsynced and renamed into place.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use super::atomic::AtomicFile;
use super::hashing::{hash_copy, Hashing};
use super::manifest::hex;
use super::*;
use crate::error::{Error, Result};

/// What one archive entry holds.
pub enum Content {
    Dir,
    /// A file, read where it lies.
    File(PathBuf),
    /// Bytes made for the archive (its configuration, the annotated spec).
    Bytes(Vec<u8>),
}

/// One archive entry: its name in the archive, and what it holds.
pub struct Source {
    pub name: String,
    pub content: Content,
}

/// Writes the archive atomically to `dest` (replacing any file there; mode
/// 0600) and returns its manifest. `progress` is called with the bytes of
/// content written so far (of [`Manifest::total_size`]).
pub fn write(
    input: &ArchiveInput,
    dest: &Path,
    compression: Compression,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest> {
    write_signed(input, dest, compression, None, progress)
}

/// [`write`], the manifest signed by `signer` when one is given.
pub fn write_signed(
    input: &ArchiveInput,
    dest: &Path,
    compression: Compression,
    signer: Option<&signature::Signer>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest> {
    atomically(dest, |file, context| {
        write_stream(input, file, compression, signer, progress, context)
    })
}

/// [`write_signed`] as one stream into `out` (a pipe: `checkpoint
/// --export -`); whole once this returns Ok.
pub fn write_signed_to(
    input: &ArchiveInput,
    out: impl Write,
    compression: Compression,
    signer: Option<&signature::Signer>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest> {
    write_stream(
        input,
        out,
        compression,
        signer,
        progress,
        "write the checkpoint archive to the output",
    )
}

fn write_stream<W: Write>(
    input: &ArchiveInput,
    out: W,
    compression: Compression,
    signer: Option<&signature::Signer>,
    progress: &mut dyn FnMut(u64),
    context: &str,
) -> Result<Manifest> {
    let sources = sources(input)?;
    let mut entries = Vec::with_capacity(sources.len());
    for s in &sources {
        entries.push(match &s.content {
            Content::Dir => ManifestEntry::dir(&s.name),
            Content::File(p) => {
                let mut f = File::open(p).map_err(Error::io(format!("open {}", p.display())))?;
                let (size, digest) = hash_copy(&mut f, &mut io::sink(), &mut |_| {})
                    .map_err(Error::io(format!("read {}", p.display())))?;
                ManifestEntry::file(&s.name, size, digest)
            }
            Content::Bytes(b) => {
                ManifestEntry::file(&s.name, b.len() as u64, hex(&Sha256::digest(b)))
            }
        });
    }
    let mut manifest = Manifest::new(entries);
    if let Some(signer) = signer {
        signer.sign(&mut manifest);
    }

    let mut tar = tar::Builder::new(Out::new(out, compression, context)?);
    let now = SystemTime::now();
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    append_bytes(&mut tar, MANIFEST_FILE, &manifest_json, now).map_err(Error::io(context))?;
    let mut done = 0u64;
    for (s, m) in sources.iter().zip(&manifest.entries) {
        append(&mut tar, s, m, now, &mut done, progress)?;
    }
    // into_inner writes the end-of-archive blocks, finish ends the zstd
    // frame; both explicitly, so that their errors are not lost in a Drop.
    let out = tar.into_inner().map_err(Error::io(context))?;
    out.finish().map_err(Error::io(context))?;
    Ok(manifest)
}

/// The files of an archive whose manifest is already known (a snapshot in
/// the store), to write it again.
pub trait KnownFiles {
    /// File `name`, from its start.
    fn open(&mut self, name: &str) -> Result<Box<dyn Read + '_>>;
}

/// Writes the archive `manifest` describes, each file from `files` checked
/// against it on the way, atomically to `dest` (mode 0600); signed by
/// `signer` when given (any earlier signature is dropped: it signed
/// another writing).
pub fn write_known(
    manifest: &Manifest,
    files: &mut dyn KnownFiles,
    dest: &Path,
    compression: Compression,
    signer: Option<&signature::Signer>,
    progress: &mut dyn FnMut(u64),
) -> Result<Manifest> {
    atomically(dest, |file, context| {
        write_known_stream(
            manifest,
            files,
            file,
            compression,
            signer,
            progress,
            context,
        )
    })
}

fn write_known_stream(
    manifest: &Manifest,
    files: &mut dyn KnownFiles,
    file: File,
    compression: Compression,
    signer: Option<&signature::Signer>,
    progress: &mut dyn FnMut(u64),
    context: &str,
) -> Result<Manifest> {
    let mut manifest = manifest.clone();
    manifest.signature = None;
    if let Some(signer) = signer {
        signer.sign(&mut manifest);
    }
    let mut tar = tar::Builder::new(Out::new(file, compression, context)?);
    let now = SystemTime::now();
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    append_bytes(&mut tar, MANIFEST_FILE, &json, now).map_err(Error::io(context))?;
    let mut done = 0u64;
    for m in &manifest.entries {
        let entry_context = || format!("archive {}", m.name);
        if m.dir {
            let mut h = header(tar::EntryType::Directory, 0, now);
            tar.append_data(&mut h, format!("{}/", m.name), io::empty())
                .map_err(Error::io(entry_context()))?;
            continue;
        }
        let source = files.open(&m.name)?;
        let mut h = header(tar::EntryType::Regular, m.size, now);
        let mut reader = Hashing::new(source.take(m.size), done, progress);
        tar.append_data(&mut h, &m.name, &mut reader)
            .map_err(Error::io(entry_context()))?;
        let (size, digest) = reader.finish();
        done += size;
        if size != m.size || digest != m.sha256 {
            return Err(Error::InvalidArgument(format!(
                "{} did not come back as its manifest says; the archive is not written",
                m.name
            )));
        }
    }
    let out = tar.into_inner().map_err(Error::io(context))?;
    out.finish().map_err(Error::io(context))?;
    Ok(manifest)
}

/// Writes `dest` through `write` into an unnamed file beside it, made
/// 0600 and linked into place only once `write` succeeded.
fn atomically(dest: &Path, write: impl FnOnce(File, &str) -> Result<Manifest>) -> Result<Manifest> {
    let context = format!("write checkpoint archive {}", dest.display());
    let tmp = AtomicFile::beside(dest, ".lazarus-archive-", &context)?;
    let file = tmp.as_file().try_clone().map_err(Error::io(&context))?;
    let manifest = write(file, &context)?;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o600))
        .map_err(Error::io(&context))?;
    tmp.persist(dest, &context)?;
    Ok(manifest)
}

/// The archive's byte stream: plain, or through zstd.
enum Out<W: Write> {
    Plain(BufWriter<W>),
    Zstd(zstd::Encoder<'static, BufWriter<W>>),
}

impl<W: Write> Out<W> {
    fn new(out: W, compression: Compression, context: &str) -> Result<Out<W>> {
        let out = BufWriter::with_capacity(1 << 20, out);
        Ok(match compression {
            Compression::None => Out::Plain(out),
            Compression::Zstd { level, threads } => {
                let mut z = zstd::Encoder::new(out, level).map_err(Error::io(context))?;
                // A frame checksum: zstd itself notices corrupted compressed data.
                z.include_checksum(true).map_err(Error::io(context))?;
                if threads > 0 {
                    z.multithread(threads).map_err(Error::io(context))?;
                }
                Out::Zstd(z)
            }
        })
    }

    fn finish(self) -> io::Result<()> {
        let mut inner = match self {
            Out::Plain(w) => w,
            Out::Zstd(z) => z.finish()?,
        };
        inner.flush()
    }
}

impl<W: Write> Write for Out<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Out::Plain(w) => w.write(buf),
            Out::Zstd(z) => z.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Out::Plain(w) => w.flush(),
            Out::Zstd(z) => z.flush(),
        }
    }
}

/// What the archive holds, in order: the small descriptions first (an
/// import reads them before it verifies the rest: see
/// [`super::read_leading`]), then CRIU's images and the rest. (The store
/// takes a snapshot from the same list, without an archive in between.)
pub fn sources(input: &ArchiveInput) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    let config =
        serde_json::to_vec_pretty(input.config).map_err(|e| Error::Other(e.to_string()))?;
    out.push(bytes(CONFIG_DUMP, config));
    if let Some(engine) = input.engine_config {
        out.push(bytes(ENGINE_DUMP, engine.to_vec()));
    }
    out.push(bytes(SPEC_DUMP, annotated_spec(input.spec_json)?));
    out.push(Source {
        name: CHECKPOINT_DIR.into(),
        content: Content::Dir,
    });
    walk_images(input.images_dir, CHECKPOINT_DIR, &mut out)?;
    if let Some(diff) = input.rootfs_diff {
        out.push(file(ROOTFS_DIFF_TAR, diff.tar.clone()));
        let deleted = serde_json::to_vec(&diff.deleted).map_err(|e| Error::Other(e.to_string()))?;
        out.push(bytes(DELETED_FILES, deleted));
    }
    // checkpointctl and Podman look for CRIU's statistics at the top level.
    let stats = input.images_dir.join(STATS_DUMP);
    if stats.is_file() {
        out.push(file(STATS_DUMP, stats));
    }
    if let Some(status) = input.network_status {
        out.push(bytes(NETWORK_STATUS, status.to_vec()));
    }
    if let Some(log) = input.dump_log {
        out.push(file(DUMP_LOG, log.to_path_buf()));
    }
    if !input.volumes.is_empty() {
        out.push(Source {
            name: volumes::VOLUMES_DIR.into(),
            content: Content::Dir,
        });
        for (name, tar) in input.volumes {
            if !volumes::is_volume_name(name) {
                return Err(Error::InvalidArgument(format!(
                    "{name:?} is not a volume name"
                )));
            }
            out.push(file(
                &format!("{}/{name}.tar", volumes::VOLUMES_DIR),
                tar.clone(),
            ));
        }
    }
    Ok(out)
}

fn bytes(name: &str, b: Vec<u8>) -> Source {
    Source {
        name: name.into(),
        content: Content::Bytes(b),
    }
}

fn file(name: &str, p: PathBuf) -> Source {
    Source {
        name: name.into(),
        content: Content::File(p),
    }
}

/// CRIU's image directory: files and directories, sorted so that two
/// archives of the same images are the same. Anything else (a symlink, a
/// socket) is not CRIU's and is refused rather than silently dropped.
fn walk_images(dir: &Path, prefix: &str, out: &mut Vec<Source>) -> Result<()> {
    let read = fs::read_dir(dir).map_err(Error::io(format!("read {}", dir.display())))?;
    let mut names = read
        .map(|e| e.map(|e| e.file_name()))
        .collect::<io::Result<Vec<_>>>()
        .map_err(Error::io(format!("read {}", dir.display())))?;
    names.sort();
    for n in names {
        let path = dir.join(&n);
        let name = n.to_str().map(|n| format!("{prefix}/{n}"));
        let name = name.filter(|n| manifest::is_safe_name(n)).ok_or_else(|| {
            Error::InvalidArgument(format!("{}: a file name that is not UTF-8", path.display()))
        })?;
        let meta =
            fs::symlink_metadata(&path).map_err(Error::io(format!("stat {}", path.display())))?;
        if meta.is_dir() {
            out.push(Source {
                name: name.clone(),
                content: Content::Dir,
            });
            walk_images(&path, &name, out)?;
        } else if meta.is_file() {
            out.push(file(&name, path));
        } else {
            return Err(Error::InvalidArgument(format!(
                "{} is neither a file nor a directory; a checkpoint image holds only those",
                path.display()
            )));
        }
    }
    Ok(())
}

/// The spec with `io.container.manager=lazarus`, which checkpointctl reads.
fn annotated_spec(spec: &[u8]) -> Result<Vec<u8>> {
    let mut value: serde_json::Value = serde_json::from_slice(spec)
        .map_err(|e| Error::InvalidArgument(format!("the OCI spec is not JSON: {e}")))?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| Error::InvalidArgument("the OCI spec is not a JSON object".into()))?;
    let annotations = obj
        .entry("annotations")
        .or_insert_with(|| serde_json::Value::Object(Default::default()));
    let annotations = annotations.as_object_mut().ok_or_else(|| {
        Error::InvalidArgument("the OCI spec's annotations are not a JSON object".into())
    })?;
    annotations.insert(MANAGER_ANNOTATION.into(), MANAGER.into());
    serde_json::to_vec_pretty(&value).map_err(|e| Error::Other(e.to_string()))
}

fn header(kind: tar::EntryType, size: u64, mtime: SystemTime) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(if kind == tar::EntryType::Directory {
        0o700
    } else {
        0o600
    });
    h.set_uid(0);
    h.set_gid(0);
    let secs = mtime
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    h.set_mtime(secs);
    h
}

fn append_bytes<W: Write>(
    tar: &mut tar::Builder<W>,
    name: &str,
    b: &[u8],
    t: SystemTime,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, b.len() as u64, t);
    tar.append_data(&mut h, name, b)
}

fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    source: &Source,
    entry: &ManifestEntry,
    now: SystemTime,
    done: &mut u64,
    progress: &mut dyn FnMut(u64),
) -> Result<()> {
    let name = &source.name;
    let context = || format!("archive {name}");
    match &source.content {
        Content::Dir => {
            let mut h = header(tar::EntryType::Directory, 0, now);
            tar.append_data(&mut h, format!("{name}/"), io::empty())
                .map_err(Error::io(context()))
        }
        Content::Bytes(b) => append_bytes(tar, name, b, now).map_err(Error::io(context())),
        Content::File(path) => {
            let f = File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
            let mtime = f.metadata().and_then(|m| m.modified()).unwrap_or(now);
            let mut h = header(tar::EntryType::Regular, entry.size, mtime);
            // Never more than the manifest says: a file that grew is caught
            // below by its digest, not by a tar entry overrunning its header.
            let mut reader = Hashing::new(f.take(entry.size), *done, progress);
            tar.append_data(&mut h, name, &mut reader)
                .map_err(Error::io(context()))?;
            let (size, digest) = reader.finish();
            *done += size;
            if size != entry.size || digest != entry.sha256 {
                return Err(Error::FailedPrecondition(format!(
                    "{} changed while it was being archived; checkpoint again",
                    path.display()
                )));
            }
            Ok(())
        }
    }
}
