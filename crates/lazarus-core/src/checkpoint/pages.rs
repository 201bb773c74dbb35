//! CRIU's memory pages (`pages-*.img`) compressed with zstd after a dump,
//! and read back before a restore. Everything containerd and Docker copy
//! (tar into the content store, unpack again) gets smaller by the ratio;
//! files that would not shrink (random memory) stay raw, decided from a
//! sample so that they cost almost nothing.
//!
//! A compressed `pages-N.img` is stored as `pages-N.img.zst` (one zstd
//! frame that records the raw size) and listed in lazarus.json
//! ([`CompressedFile`]); restore needs each listed file back raw.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const SUFFIX: &str = ".zst";

/// Fast: the pages are compressed while the client waits; level 1 gets
/// most of the size win on typical memory (zero pages, repeated records).
const LEVEL: i32 = 1;
/// The sample: this many chunks spread over the file...
const SAMPLES: u64 = 8;
const SAMPLE_BYTES: usize = 256 << 10;
/// ...and a file is compressed only if they shrink to at most this share.
const WORTH_IT: f64 = 0.9;
/// Smaller files are left raw: not worth a frame and a listing entry.
const MIN_BYTES: u64 = 64 << 10;

/// One page image stored compressed, as lazarus.json lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompressedFile {
    /// The raw image's name (`pages-1.img`); stored as `<name>.zst`.
    pub name: String,
    pub raw_bytes: u64,
    pub stored_bytes: u64,
}

/// Whether `name` is one of CRIU's page images.
pub fn is_pages_image(name: &str) -> bool {
    name.starts_with("pages-") && name.ends_with(".img")
}

/// The page images (plain files) of the image directory `dir`, sorted.
pub fn page_images(dir: &Path) -> Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(Error::io(format!("list {}", dir.display())))?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| is_pages_image(n))
        .collect();
    names.sort();
    Ok(names)
}

/// Compresses the page images in `dir` that shrink, each replaced by its
/// `.zst`. Best effort per file: one that fails is left raw (and logged),
/// since the dump itself succeeded and its raw image restores.
pub fn compress_dir(dir: &Path) -> Result<Vec<CompressedFile>> {
    let names = page_images(dir)?;
    let mut out = Vec::new();
    for name in names {
        match compress_file(dir, &name) {
            Ok(Some(c)) => out.push(c),
            Ok(None) => {}
            Err(e) => log::warn!("{name} in {} left uncompressed: {e}", dir.display()),
        }
    }
    Ok(out)
}

/// Compresses `dir/name` into `dir/name.zst` (0600) and removes the raw
/// file, or leaves it raw (None) when it would not shrink enough.
pub fn compress_file(dir: &Path, name: &str) -> Result<Option<CompressedFile>> {
    let raw_path = dir.join(name);
    let mut raw =
        File::open(&raw_path).map_err(Error::io(format!("open {}", raw_path.display())))?;
    let raw_bytes = raw
        .metadata()
        .map_err(Error::io(format!("stat {}", raw_path.display())))?
        .len();
    if raw_bytes < MIN_BYTES || !worth_compressing(&mut raw, raw_bytes, &raw_path)? {
        return Ok(None);
    }
    let zst_path = dir.join(format!("{name}{SUFFIX}"));
    let stored_bytes = match write_compressed(&mut raw, raw_bytes, &zst_path) {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&zst_path);
            return Err(e);
        }
    };
    // The sample can mislead (a compressible start, random rest): the
    // whole file must have shrunk too, or the raw one is kept.
    if stored_bytes as f64 > raw_bytes as f64 * WORTH_IT {
        let _ = std::fs::remove_file(&zst_path);
        return Ok(None);
    }
    std::fs::remove_file(&raw_path).map_err(|e| {
        let _ = std::fs::remove_file(&zst_path);
        Error::Io {
            context: format!("remove {}", raw_path.display()),
            source: e,
        }
    })?;
    Ok(Some(CompressedFile {
        name: name.into(),
        raw_bytes,
        stored_bytes,
    }))
}

/// Compresses chunks spread over the file: random memory is found out
/// for the cost of compressing 2 MiB.
fn worth_compressing(raw: &mut File, len: u64, path: &Path) -> Result<bool> {
    let mut buf = vec![0u8; SAMPLE_BYTES];
    let (mut sampled, mut packed) = (0usize, 0usize);
    let step = (len / SAMPLES).max(SAMPLE_BYTES as u64);
    let mut at = 0;
    while at < len {
        raw.seek(SeekFrom::Start(at))
            .and_then(|_| read_up_to(raw, &mut buf))
            .map(|n| {
                sampled += n;
                packed += zstd::bulk::compress(&buf[..n], LEVEL)
                    .map(|c| c.len())
                    .unwrap_or(n);
            })
            .map_err(Error::io(format!("read {}", path.display())))?;
        at += step;
    }
    raw.seek(SeekFrom::Start(0))
        .map_err(Error::io(format!("read {}", path.display())))?;
    Ok(sampled > 0 && (packed as f64) <= sampled as f64 * WORTH_IT)
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The compressor's worker threads: the dump's client is waiting, so all
/// cores but not more than a few (the memory per worker adds up).
fn threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4) as u32)
}

fn write_compressed(raw: &mut File, raw_bytes: u64, to: &Path) -> Result<u64> {
    let ctx = |what: &str| format!("{what} {}", to.display());
    let out = create_private(to)?;
    let mut enc =
        zstd::stream::write::Encoder::new(out, LEVEL).map_err(Error::io(ctx("compress into")))?;
    enc.multithread(threads())
        .and_then(|_| enc.set_pledged_src_size(Some(raw_bytes)))
        .and_then(|_| enc.include_contentsize(true))
        // Damage a decoder would not notice (in literals) is caught too.
        .and_then(|_| enc.include_checksum(true))
        .map_err(Error::io(ctx("set up zstd for")))?;
    std::io::copy(raw, &mut enc).map_err(Error::io(ctx("compress into")))?;
    let out = enc.finish().map_err(Error::io(ctx("compress into")))?;
    out.metadata()
        .map(|m| m.len())
        .map_err(Error::io(ctx("stat")))
}

/// A new file, 0600 (it may hold memory), replacing any of the name.
pub(crate) fn create_private(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("create {}", path.display())))
}

/// Writes `from/<name>.zst` decompressed to `to/<name>` (0600), checking
/// the size lazarus.json recorded: a damaged image is refused here, by
/// name, not by CRIU halfway through a restore.
pub fn decompress_file(from: &Path, file: &CompressedFile, to: &Path) -> Result<()> {
    check_name(&file.name)?;
    let zst_path = from.join(format!("{}{SUFFIX}", file.name));
    let raw_path = to.join(&file.name);
    let bad = |why: String| {
        Error::InvalidArgument(format!(
            "checkpoint page image {} is damaged: {why}; the checkpoint cannot be restored",
            zst_path.display()
        ))
    };
    let zst = File::open(&zst_path).map_err(|e| bad(format!("cannot open it ({e})")))?;
    let result = (|| {
        let mut dec = zstd::stream::read::Decoder::new(zst).map_err(|e| bad(e.to_string()))?;
        let mut out = create_private(&raw_path)?;
        // Read errors are the image's (damaged, truncated, not zstd);
        // write errors are this host's (a full disk): said apart.
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0u64;
        loop {
            let k = match dec.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(bad(format!("not a valid zstd stream ({e})"))),
            };
            out.write_all(&buf[..k])
                .map_err(Error::io(format!("write {}", raw_path.display())))?;
            n += k as u64;
        }
        if n != file.raw_bytes {
            return Err(bad(format!(
                "it holds {n} bytes, lazarus.json says {}",
                file.raw_bytes
            )));
        }
        out.flush()
            .map_err(Error::io(format!("write {}", raw_path.display())))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&raw_path);
    }
    result
}

/// Decompresses each listed page image in place (its `.zst` replaced by
/// the raw file): for a directory that is a copy made for one restore.
/// Done before already (a retried start) is not done twice.
pub fn decompress_in_place(dir: &Path, files: &[CompressedFile]) -> Result<()> {
    for file in files {
        check_name(&file.name)?;
        let zst = dir.join(format!("{}{SUFFIX}", file.name));
        let raw = dir.join(&file.name);
        if !zst.exists() && raw.metadata().is_ok_and(|m| m.len() == file.raw_bytes) {
            continue;
        }
        decompress_file(dir, file, dir)?;
        std::fs::remove_file(&zst).map_err(Error::io(format!("remove {}", zst.display())))?;
    }
    Ok(())
}

/// A private copy of `images` for CRIU to read, the listed pages
/// decompressed: the directory itself (a user's, a Docker checkpoint)
/// stays as it was. Its own small files are copied; the stored `.zst`
/// files are not. Removed when the returned guard is dropped.
pub fn decompressed_copy(
    images: &Path,
    files: &[CompressedFile],
    scratch_root: &Path,
) -> Result<tempfile::TempDir> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let context = format!(
        "create a restore scratch directory in {}",
        scratch_root.display()
    );
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(scratch_root)
        .map_err(Error::io(&context))?;
    let scratch = tempfile::Builder::new()
        .prefix("restore-")
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir_in(scratch_root)
        .map_err(Error::io(&context))?;
    let stored: Vec<String> = files
        .iter()
        .map(|f| format!("{}{SUFFIX}", f.name))
        .collect();
    for entry in
        std::fs::read_dir(images).map_err(Error::io(format!("list {}", images.display())))?
    {
        let entry = entry.map_err(Error::io(format!("list {}", images.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // CRIU reads regular image files only; directories (a work dir's
        // leftovers) and symlinks (an incremental dump's parent) are not
        // part of a Lazarus checkpoint.
        if !entry.file_type().is_ok_and(|t| t.is_file()) || stored.contains(&name) {
            continue;
        }
        let to = scratch.path().join(&name);
        std::fs::copy(entry.path(), &to)
            .and_then(|_| std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600)))
            .map_err(Error::io(format!(
                "copy {} to {}",
                entry.path().display(),
                to.display()
            )))?;
    }
    for file in files {
        decompress_file(images, file, scratch.path())?;
    }
    Ok(scratch)
}

/// A listed name is a plain page image name: lazarus.json must not make a
/// restore read or write outside the directories it works in.
pub fn valid_name(name: &str) -> bool {
    is_pages_image(name) && !name.contains('/')
}

fn check_name(name: &str) -> Result<()> {
    if valid_name(name) {
        return Ok(());
    }
    Err(Error::InvalidArgument(format!(
        "compressed_pages: {name:?} is not a page image name (pages-N.img)"
    )))
}

/// The raw size of a `.zst` page image, from its frame header (written
/// with the size): for `inspect`, without decompressing.
pub fn raw_size_of(zst: &Path) -> Option<u64> {
    let mut head = [0u8; 18];
    let n = read_up_to(&mut File::open(zst).ok()?, &mut head).ok()?;
    zstd::zstd_safe::get_frame_content_size(&head[..n])
        .ok()
        .flatten()
}

#[cfg(test)]
#[path = "pages_tests.rs"]
mod tests;
