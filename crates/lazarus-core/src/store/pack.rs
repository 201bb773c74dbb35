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
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
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
/// snapshot commits).
pub struct PackWriter {
    out: BufWriter<File>,
    path: PathBuf,
    written: u64,
    frame: Vec<u8>,
    pending: Vec<(Digest, u32, u32)>,
    pub index: Vec<(Digest, Location)>,
}

impl PackWriter {
    pub fn create(path: &Path) -> Result<PackWriter> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(Error::io(format!("create {}", path.display())))?;
        Ok(PackWriter {
            out: BufWriter::with_capacity(1 << 20, f),
            path: path.to_path_buf(),
            written: 0,
            frame: Vec::with_capacity(FRAME_BYTES),
            pending: Vec::new(),
            index: Vec::new(),
        })
    }

    /// Adds a block the store does not hold yet.
    pub fn add(&mut self, digest: Digest, block: &[u8]) -> Result<()> {
        if self.frame.len() + block.len() > FRAME_BYTES {
            self.flush_frame()?;
        }
        self.pending
            .push((digest, self.frame.len() as u32, block.len() as u32));
        self.frame.extend_from_slice(block);
        Ok(())
    }

    fn flush_frame(&mut self) -> Result<()> {
        if self.frame.is_empty() {
            return Ok(());
        }
        let context = || format!("write {}", self.path.display());
        let packed = zstd::bulk::compress(&self.frame, 1).map_err(Error::io(context()))?;
        let compressed = packed.len() < self.frame.len() - self.frame.len() / 8;
        let bytes = if compressed { &packed } else { &self.frame };
        self.out.write_all(bytes).map_err(Error::io(context()))?;
        for (digest, offset, len) in self.pending.drain(..) {
            self.index.push((
                digest,
                Location {
                    frame_offset: self.written,
                    frame_len: bytes.len() as u32,
                    compressed,
                    offset,
                    len,
                },
            ));
        }
        self.written += bytes.len() as u64;
        self.frame.clear();
        Ok(())
    }

    /// Writes the last frame, fsyncs the pack, writes and fsyncs its index
    /// beside it; returns the pack's size on disk.
    pub fn finish(mut self) -> Result<u64> {
        self.flush_frame()?;
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
pub struct PackReader {
    name: String,
    file: BufReader<File>,
    frame_at: Option<u64>,
    frame: Vec<u8>,
}

impl PackReader {
    pub fn open(path: &Path, name: &str) -> Result<PackReader> {
        let f = File::open(path).map_err(Error::io(format!("open {}", path.display())))?;
        Ok(PackReader {
            name: name.to_string(),
            file: BufReader::with_capacity(FRAME_BYTES, f),
            frame_at: None,
            frame: Vec::new(),
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
        if self.frame_at != Some(loc.frame_offset) {
            self.frame_at = None;
            let mut raw = vec![0u8; loc.frame_len as usize];
            self.file
                .seek(SeekFrom::Start(loc.frame_offset))
                .and_then(|_| self.file.read_exact(&mut raw))
                .map_err(|e| damaged(&format!("cannot read it: {e}")))?;
            self.frame = match loc.compressed {
                true => zstd::bulk::decompress(&raw, FRAME_BYTES)
                    .map_err(|e| damaged(&format!("it does not decompress: {e}")))?,
                false => raw,
            };
            self.frame_at = Some(loc.frame_offset);
        }
        let (start, end) = (loc.offset as usize, (loc.offset + loc.len) as usize);
        let block = self
            .frame
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
            w.add(digest(b), b).unwrap();
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
        w.add(digest(&block), &block).unwrap();
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
