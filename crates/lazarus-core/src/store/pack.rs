//! Packs: where the store's blocks live. A pack is a file of frames, each
//! up to [`FRAME_BYTES`] of blocks laid end to end, zstd-compressed when
//! that saves at least an eighth (random memory is stored as it is); its
//! index (`.idx`) says, for every block, its digest and where it is.
//!
//! Blocks are kept in packs rather than a file each because a GiB of
//! memory is 262,144 pages: one file per page would cost seconds of file
//! creation per snapshot and an inode per page. A frame groups neighbours
//! (pages that change together are stored together), so a restore reads
//! and decompresses a frame once for all its blocks.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};

/// A block's identity: the sha256 of its bytes.
pub type Digest = [u8; 32];

/// Blocks are pages: CRIU's page images are page after page, so a page
/// that did not change between two snapshots is the same block.
pub const BLOCK_BYTES: usize = 4096;
/// Raw bytes per frame (64 pages).
pub const FRAME_BYTES: usize = 64 * BLOCK_BYTES;

const IDX_MAGIC: &[u8; 8] = b"LZIDX01\n";
/// digest, frame offset, frame length, compressed flag, offset in the
/// frame, block length.
const IDX_RECORD: usize = 32 + 8 + 4 + 1 + 4 + 4;

/// The digest of a block of `len` zero bytes is never stored: zero pages
/// are a large part of most memory, and cost nothing to make again.
pub fn is_zero(block: &[u8]) -> bool {
    block.iter().all(|b| *b == 0)
}

pub fn digest(block: &[u8]) -> Digest {
    Sha256::digest(block).into()
}

pub fn hex(d: &Digest) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Threads a pack is compressed, and a file read back, with: blocks are
/// independent, and their sums and (de)compression are most of the work.
pub fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(4))
}

/// Where one block is: in which pack, which frame, where in the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    pub frame_offset: u64,
    pub frame_len: u32,
    pub compressed: bool,
    pub offset: u32,
    pub len: u32,
}

/// A pack being written (in the writer's private directory until the
/// snapshot commits). Frames are filled as blocks come and compressed
/// several at a time, on as many threads ([`PackWriter::write_full`]):
/// compression was the largest part of an ingest.
pub struct PackWriter {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    frame: Frame,
    /// Filled frames waiting to be compressed and written, in order.
    full: Vec<Frame>,
    spare: Vec<Frame>,
    // One zstd context per thread, kept: making a context per frame cost
    // more than compressing it.
    zstd: Vec<zstd::bulk::Compressor<'static>>,
    pub index: Vec<(Digest, Location)>,
}

/// A frame's raw bytes, its blocks (digest, offset, length) and, once
/// compressed, what is written.
#[derive(Default)]
struct Frame {
    raw: Vec<u8>,
    packed: Vec<u8>,
    compressed: bool,
    blocks: Vec<(Digest, u32, u32)>,
}

impl Frame {
    fn compress(&mut self, zstd: &mut zstd::bulk::Compressor<'static>) -> io::Result<()> {
        self.packed.clear();
        self.packed
            .reserve(zstd::zstd_safe::compress_bound(self.raw.len()));
        zstd.compress_to_buffer(&self.raw, &mut self.packed)?;
        self.compressed = self.packed.len() < self.raw.len() - self.raw.len() / 8;
        Ok(())
    }
}

impl PackWriter {
    pub fn create(path: &Path) -> Result<PackWriter> {
        let context = format!("create {}", path.display());
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io(&context))?;
        let zstd = (0..threads())
            .map(|_| zstd::bulk::Compressor::new(1))
            .collect::<io::Result<_>>()
            .map_err(Error::io(&context))?;
        Ok(PackWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            path: path.to_path_buf(),
            written: 0,
            frame: Frame::default(),
            full: Vec::new(),
            spare: Vec::new(),
            zstd,
            index: Vec::new(),
        })
    }

    /// Adds a block the store does not hold yet. It is written by the next
    /// [`Self::write_full`] after its frame is full, or by `finish`.
    pub fn add(&mut self, digest: Digest, block: &[u8]) {
        if self.frame.raw.len() + block.len() > FRAME_BYTES {
            let next = self.spare.pop().unwrap_or_default();
            self.full.push(std::mem::replace(&mut self.frame, next));
        }
        let f = &mut self.frame;
        f.blocks
            .push((digest, f.raw.len() as u32, block.len() as u32));
        f.raw.extend_from_slice(block);
    }

    /// Compresses the full frames (a share per thread) and writes them.
    pub fn write_full(&mut self) -> Result<()> {
        let context = || format!("write {}", self.path.display());
        let share = self.full.len().div_ceil(self.zstd.len()).max(1);
        let mut parts = self.full.chunks_mut(share).zip(self.zstd.iter_mut());
        let compressed = std::thread::scope(|s| {
            let first = parts.next();
            let others: Vec<_> = parts
                .map(|(frames, z)| {
                    s.spawn(move || frames.iter_mut().try_for_each(|f| f.compress(z)))
                })
                .collect();
            let mine = first.map_or(Ok(()), |(frames, z)| {
                frames.iter_mut().try_for_each(|f| f.compress(z))
            });
            others.into_iter().fold(mine, |done, t| {
                done.and(
                    t.join()
                        .unwrap_or_else(|_| Err(io::Error::other("a zstd thread panicked"))),
                )
            })
        });
        compressed.map_err(Error::io(context()))?;
        for mut f in std::mem::take(&mut self.full) {
            let bytes = if f.compressed { &f.packed } else { &f.raw };
            self.out.write_all(bytes).map_err(Error::io(context()))?;
            for (digest, offset, len) in f.blocks.drain(..) {
                self.index.push((
                    digest,
                    Location {
                        frame_offset: self.written,
                        frame_len: bytes.len() as u32,
                        compressed: f.compressed,
                        offset,
                        len,
                    },
                ));
            }
            self.written += bytes.len() as u64;
            f.raw.clear();
            self.spare.push(f);
        }
        Ok(())
    }

    /// Writes the last frames, fsyncs the pack, writes and fsyncs its index
    /// beside it; returns the pack's size on disk.
    pub fn finish(mut self) -> Result<u64> {
        if !self.frame.raw.is_empty() {
            self.full.push(std::mem::take(&mut self.frame));
        }
        self.write_full()?;
        let context = format!("write {}", self.path.display());
        let file = self
            .out
            .into_inner()
            .map_err(|e| Error::io(&context)(e.into_error()))?;
        file.sync_all().map_err(Error::io(&context))?;
        write_index(&self.path.with_extension("idx"), &self.index)?;
        Ok(self.written)
    }
}

fn write_index(path: &Path, index: &[(Digest, Location)]) -> Result<()> {
    let context = format!("write {}", path.display());
    let mut buf = Vec::with_capacity(8 + index.len() * IDX_RECORD);
    buf.extend_from_slice(IDX_MAGIC);
    for (d, l) in index {
        buf.extend_from_slice(d);
        buf.extend_from_slice(&l.frame_offset.to_le_bytes());
        buf.extend_from_slice(&l.frame_len.to_le_bytes());
        buf.push(l.compressed as u8);
        buf.extend_from_slice(&l.offset.to_le_bytes());
        buf.extend_from_slice(&l.len.to_le_bytes());
    }
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(&context))?;
    f.write_all(&buf).map_err(Error::io(&context))?;
    f.sync_all().map_err(Error::io(&context))
}

/// Reads a pack's index.
pub fn read_index(path: &Path) -> Result<Vec<(Digest, Location)>> {
    let buf = fs::read(path).map_err(Error::io(format!("read {}", path.display())))?;
    let bad = || {
        Error::InvalidArgument(format!(
            "{} is not a Lazarus store index (damaged?); `lazarus snapshots prune` cannot \
             repair it: remove the pack and its index, and the snapshots that use them",
            path.display()
        ))
    };
    let body = buf.strip_prefix(IDX_MAGIC.as_slice()).ok_or_else(bad)?;
    if body.len() % IDX_RECORD != 0 {
        return Err(bad());
    }
    Ok(body
        .chunks_exact(IDX_RECORD)
        .map(|r| {
            let u32_at = |i: usize| u32::from_le_bytes(r[i..i + 4].try_into().unwrap());
            let mut d = [0u8; 32];
            d.copy_from_slice(&r[..32]);
            let loc = Location {
                frame_offset: u64::from_le_bytes(r[32..40].try_into().unwrap()),
                frame_len: u32_at(40),
                compressed: r[44] != 0,
                offset: u32_at(45),
                len: u32_at(49),
            };
            (d, loc)
        })
        .collect())
}

/// Reads blocks out of one pack, keeping the last frame it decompressed
/// (a restore asks for neighbours one after the other).
///
/// The pack is mapped, not read: a block of an uncompressed frame is
/// checked and copied straight from the page cache, and zstd reads a
/// compressed one there. Reading it copied every byte once more, and on
/// these machines that copy was the largest part of a restore's read.
/// Committed packs are never changed in place (a compaction writes a new
/// one and removes the old name), so the mapping cannot shrink under us.
pub struct PackReader {
    name: String,
    map: Option<Mapped>,
    frame_at: Option<u64>,
    frame: Vec<u8>,
    // Reused for every frame (see PackWriter).
    zstd: zstd::bulk::Decompressor<'static>,
}

/// A whole file mapped read-only.
pub(super) struct Mapped {
    at: std::ptr::NonNull<std::ffi::c_void>,
    len: usize,
}

// SAFETY: a read-only private mapping, only ever read through `bytes`.
unsafe impl Send for Mapped {}

impl Mapped {
    pub(super) fn new(file: &File, len: usize) -> io::Result<Mapped> {
        use nix::sys::mman::{mmap, MapFlags, ProtFlags};
        let size = std::num::NonZeroUsize::new(len).ok_or(io::ErrorKind::InvalidData)?;
        // SAFETY: a fresh read-only mapping of a file opened here; see
        // PackReader for why it stays valid.
        let at = unsafe {
            mmap(
                None,
                size,
                ProtFlags::PROT_READ,
                MapFlags::MAP_PRIVATE,
                file,
                0,
            )
        }?;
        Ok(Mapped { at, len })
    }

    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` bytes mapped readable at `at` until drop.
        unsafe { std::slice::from_raw_parts(self.at.as_ptr() as *const u8, self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly what `new` mapped; no slice outlives self.
        let _ = unsafe { nix::sys::mman::munmap(self.at, self.len) };
    }
}

impl PackReader {
    pub fn open(path: &Path, name: &str) -> Result<PackReader> {
        let context = format!("open {}", path.display());
        let f = File::open(path).map_err(Error::io(&context))?;
        let len = f.metadata().map_err(Error::io(&context))?.len() as usize;
        let map = match len {
            0 => None,
            _ => Some(Mapped::new(&f, len).map_err(Error::io(&context))?),
        };
        Ok(PackReader {
            name: name.to_string(),
            map,
            frame_at: None,
            frame: Vec::with_capacity(FRAME_BYTES),
            zstd: zstd::bulk::Decompressor::new().map_err(Error::io(context))?,
        })
    }

    /// The block at `loc`, checked against `digest`: a damaged store is
    /// refused by name, never restored from.
    pub fn block(&mut self, digest: &Digest, loc: &Location) -> Result<&[u8]> {
        let damaged = |why: &str| {
            Error::InvalidArgument(format!(
                "the snapshot store's block {} in pack {} is damaged ({why}); the snapshots \
                 that use it cannot be restored",
                hex(digest),
                self.name
            ))
        };
        let pack = self.map.as_ref().map(Mapped::bytes).unwrap_or_default();
        let raw = usize::try_from(loc.frame_offset)
            .ok()
            .and_then(|start| pack.get(start..start.checked_add(loc.frame_len as usize)?))
            .ok_or_else(|| damaged("the pack ends before its frame"))?;
        let frame = match loc.compressed {
            false => raw,
            true => {
                if self.frame_at != Some(loc.frame_offset) {
                    self.frame_at = None;
                    self.frame.clear();
                    self.frame.reserve(FRAME_BYTES);
                    self.zstd
                        .decompress_to_buffer(raw, &mut self.frame)
                        .map_err(|e| damaged(&format!("it does not decompress: {e}")))?;
                    self.frame_at = Some(loc.frame_offset);
                }
                &self.frame[..]
            }
        };
        let (start, end) = (loc.offset as usize, (loc.offset + loc.len) as usize);
        let block = frame
            .get(start..end)
            .ok_or_else(|| damaged("its frame is too short"))?;
        if &self::digest(block) != digest {
            return Err(damaged("its content does not match its digest"));
        }
        Ok(block)
    }
}

/// Every pack's index, merged: digest → (pack, location). Loaded when a
/// snapshot starts, so it dedups against everything committed before.
#[derive(Default)]
pub struct Index {
    pub blocks: HashMap<Digest, (u32, Location)>,
    pub packs: Vec<String>,
}

impl Index {
    pub fn load(dir: &Path, packs: &[String]) -> Result<Index> {
        let mut index = Index::default();
        for name in packs {
            let n = index.packs.len() as u32;
            for (d, loc) in read_index(&dir.join(format!("{name}.idx")))? {
                index.blocks.entry(d).or_insert((n, loc));
            }
            index.packs.push(name.clone());
        }
        Ok(index)
    }
}

/// The packs in `dir` that have an index (a pack without one is a write
/// that never finished).
pub fn list(dir: &Path) -> io::Result<Vec<String>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let name = e?.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(stem) = name.strip_suffix(".idx") {
            if dir.join(format!("{stem}.pack")).is_file() {
                out.push(stem.to_string());
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_come_back_verified_from_compressed_and_raw_frames() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let mut w = PackWriter::create(&path).unwrap();
        let text = vec![b'a'; BLOCK_BYTES];
        let mut random = vec![0u8; BLOCK_BYTES];
        let mut x = 0x9e3779b97f4a7c15u64;
        for b in random.iter_mut() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
        let mut blocks = Vec::new();
        for i in 0..100 {
            let mut b = if i % 2 == 0 {
                text.clone()
            } else {
                random.clone()
            };
            b[0] = i as u8;
            blocks.push(b);
        }
        blocks.push(b"short".to_vec());
        for b in &blocks {
            w.add(digest(b), b);
        }
        w.finish().unwrap();
        let index = read_index(&dir.path().join("p.idx")).unwrap();
        assert_eq!(index.len(), blocks.len());
        let mut r = PackReader::open(&path, "p").unwrap();
        for (b, (d, loc)) in blocks.iter().zip(&index) {
            assert_eq!(r.block(d, loc).unwrap(), b.as_slice());
        }
        assert_eq!(list(dir.path()).unwrap(), vec!["p".to_string()]);
    }

    #[test]
    fn a_damaged_block_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.pack");
        let mut w = PackWriter::create(&path).unwrap();
        let block = vec![7u8; BLOCK_BYTES];
        w.add(digest(&block), &block);
        w.finish().unwrap();
        let (d, loc) = read_index(&dir.path().join("p.idx")).unwrap()[0];
        // Raw: compressed frames fail in zstd instead, also by name.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        fs::write(&path, bytes).unwrap();
        let err = PackReader::open(&path, "p")
            .unwrap()
            .block(&d, &loc)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&hex(&d)) && err.contains("pack p"), "{err}");
    }

    #[test]
    fn a_pack_without_its_index_is_not_listed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("half.pack"), b"x").unwrap();
        assert!(list(dir.path()).unwrap().is_empty());
    }
}
