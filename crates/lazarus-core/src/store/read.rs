//! Reading snapshots back (a file at a time, every block checked against
//! its digest and every file against the archive manifest's sha256), and
//! the garbage collection that keeps only blocks some snapshot uses.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::ingest::ZERO;
use super::pack::{self, Digest, Index, PackReader, PackWriter, BLOCK_BYTES};
use super::record::{self, EntryBlocks, Snapshot};
use super::{sync_dir, write_atomic, Collected, Store};
use crate::error::{Error, Result};
use crate::manifest::{Manifest, ManifestEntry, MANIFEST_FILE};

/// A snapshot's files, read out of the store.
pub struct SnapshotReader {
    snapshot: Snapshot,
    blocks: Vec<Digest>,
    index: Index,
    packs_dir: std::path::PathBuf,
    open: HashMap<u32, PackReader>,
}

/// Where blocks are found: the merged index and the packs' directory,
/// shared by the threads of a parallel read.
struct Blocks<'a> {
    index: &'a Index,
    packs_dir: &'a Path,
    snapshot: &'a Snapshot,
}

impl Blocks<'_> {
    /// Block `d`, through `open` (the caller's pack readers), checked.
    fn get<'o>(&self, open: &'o mut HashMap<u32, PackReader>, d: &Digest) -> Result<&'o [u8]> {
        let (p, loc) = *self.index.blocks.get(d).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "block {} of snapshot {} is in none of its packs ({}): the store is damaged",
                pack::hex(d),
                self.snapshot.id,
                self.snapshot.packs.join(", ")
            ))
        })?;
        let reader = match open.entry(p) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let name = &self.index.packs[p as usize];
                let path = self.packs_dir.join(format!("{name}.pack"));
                v.insert(PackReader::open(&path, name)?)
            }
        };
        reader.block(d, &loc)
    }
}

impl SnapshotReader {
    pub(super) fn new(store: &Store, snapshot: &Snapshot) -> Result<SnapshotReader> {
        let blocks = snapshot.block_list(&store.snapshots_dir())?;
        let packs_dir = store.packs_dir();
        let index = Index::load(&packs_dir, &snapshot.packs)?;
        Ok(SnapshotReader {
            snapshot: snapshot.clone(),
            blocks,
            index,
            packs_dir,
            open: HashMap::new(),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.snapshot.manifest
    }

    /// File `name`'s block digests, in order (all-zero for a zero block):
    /// a page image's page N is its block N.
    pub fn file_blocks(&self, name: &str) -> Option<&[Digest]> {
        let e = self.snapshot.entries.iter().find(|e| e.name == name)?;
        self.blocks
            .get(e.first as usize..(e.first + e.count) as usize)
    }

    /// Writes file `name` of the snapshot into `out`, checked block by
    /// block and then whole against the manifest.
    pub fn copy_file(&mut self, name: &str, out: &mut dyn Write) -> Result<u64> {
        let context = format!("write {name} of snapshot {}", self.snapshot.id);
        let mut file = self.file(name)?;
        let copied = io::copy(&mut file, out);
        match (file.error.take(), copied) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(Error::io(context)(e)),
            (None, Ok(n)) => Ok(n),
        }
    }

    /// File `name` of the snapshot as a reader: each block checked against
    /// its digest as it is read, the whole file against the manifest's
    /// sha256 at its end (a mismatch is a read error, and
    /// [`FileRead::error`] says which).
    pub fn file(&mut self, name: &str) -> Result<FileRead<'_>> {
        let (m, e) = self.entry(name)?;
        Ok(FileRead {
            next: e.first,
            end: e.first + e.count,
            left: m.size,
            sha256: m.sha256,
            name: m.name,
            // A verified block list and checked blocks make the file what
            // was stored; older records are checked whole.
            whole: self.snapshot.blocks_sha256.is_none().then(Sha256::new),
            buf: Vec::with_capacity(BLOCK_BYTES),
            pos: 0,
            reader: self,
            error: None,
        })
    }

    fn block(&mut self, d: &Digest) -> Result<&[u8]> {
        let blocks = Blocks {
            index: &self.index,
            packs_dir: &self.packs_dir,
            snapshot: &self.snapshot,
        };
        blocks.get(&mut self.open, d)
    }

    /// Writes file `name` into `out` (a new, empty file) on `threads`
    /// threads, each a contiguous share of its blocks written at their
    /// offsets; zero blocks stay holes. Every block is checked against its
    /// digest. A snapshot whose block list has no recorded sum is copied
    /// as [`Self::copy_file`] does (its files are checked whole).
    pub fn write_file(&mut self, name: &str, out: &File, threads: usize) -> Result<u64> {
        let (m, e) = self.entry(name)?;
        let (size, first, count) = (m.size, e.first, e.count);
        let context = format!("write {name} of snapshot {}", self.snapshot.id);
        if self.snapshot.blocks_sha256.is_none() {
            let mut w = io::BufWriter::with_capacity(1 << 20, out);
            let n = self.copy_file(name, &mut w)?;
            w.flush().map_err(Error::io(&context))?;
            return Ok(n);
        }
        out.set_len(size).map_err(Error::io(&context))?;
        let list = self
            .blocks
            .get(first as usize..(first + count) as usize)
            .ok_or_else(|| self.damaged("its block list is short"))?;
        if count * BLOCK_BYTES as u64 != size.next_multiple_of(BLOCK_BYTES as u64) {
            return Err(self.damaged(&format!("{name} has {count} blocks for {size} bytes")));
        }
        let blocks = Blocks {
            index: &self.index,
            packs_dir: &self.packs_dir,
            snapshot: &self.snapshot,
        };
        let share = list.len().div_ceil(threads.max(1)).max(1);
        std::thread::scope(|s| {
            let workers: Vec<_> = list
                .chunks(share)
                .enumerate()
                .map(|(i, part)| {
                    let blocks = &blocks;
                    let context = &context;
                    s.spawn(move || write_part(blocks, part, i * share, size, out, context))
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(Error::Other(format!(
                        "{context}: a reading thread panicked"
                    )))
                })
            })
        })?;
        Ok(size)
    }

    /// File `name`'s manifest entry and its range in the block list.
    fn entry(&self, name: &str) -> Result<(ManifestEntry, EntryBlocks)> {
        let m = self
            .snapshot
            .manifest
            .entries
            .iter()
            .find(|e| e.name == name && !e.dir)
            .ok_or_else(|| {
                Error::NotFound(format!("snapshot {} has no file {name}", self.snapshot.id))
            })?;
        let e = self
            .snapshot
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| self.damaged(&format!("its record lists no blocks for {name}")))?;
        Ok((m.clone(), e.clone()))
    }

    fn damaged(&self, why: &str) -> Error {
        Error::InvalidArgument(format!(
            "snapshot {} is damaged ({why}); it cannot be restored",
            self.snapshot.id
        ))
    }

    /// Writes the snapshot's files into `dest` (a new directory, 0700, files
    /// 0600), laid out as an extracted archive (with its manifest), so the
    /// import restores from it as from an archive. `dest` appears whole or
    /// not at all.
    pub fn materialize(&mut self, dest: &Path, progress: &mut dyn FnMut(u64)) -> Result<()> {
        let context = format!(
            "restore snapshot {} into {}",
            self.snapshot.id,
            dest.display()
        );
        let parent = dest.parent().unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".lazarus-snapshot-")
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(parent)
            .map_err(Error::io(&context))?;
        let mut done = 0u64;
        let entries = self.snapshot.manifest.entries.clone();
        for m in &entries {
            let path = tmp.path().join(&m.name);
            if m.dir {
                private_dirs(&path).map_err(Error::io(&context))?;
                continue;
            }
            if let Some(p) = path.parent() {
                private_dirs(p).map_err(Error::io(&context))?;
            }
            let f = new_file(&path).map_err(Error::io(&context))?;
            done += self.write_file(&m.name, &f, pack::threads())?;
            f.sync_all().map_err(Error::io(&context))?;
            progress(done);
        }
        let json = serde_json::to_vec_pretty(&self.snapshot.manifest)
            .map_err(|e| Error::Other(e.to_string()))?;
        let mut f = new_file(&tmp.path().join(MANIFEST_FILE)).map_err(Error::io(&context))?;
        f.write_all(&json).map_err(Error::io(&context))?;
        fs::rename(tmp.path(), dest).map_err(Error::io(&context))?;
        let _ = tmp.keep();
        sync_dir(parent)
    }
}

/// One file of a snapshot, read block by block.
pub struct FileRead<'a> {
    reader: &'a mut SnapshotReader,
    name: String,
    next: u64,
    end: u64,
    left: u64,
    sha256: String,
    whole: Option<Sha256>,
    buf: Vec<u8>,
    pos: usize,
    /// Why the last read failed, when the store is at fault.
    pub error: Option<Error>,
}

impl FileRead<'_> {
    /// The next block into `buf`; false at the end of the file.
    fn fill(&mut self) -> Result<bool> {
        if self.next == self.end {
            let sha = self.whole.take().map(|w| pack::hex(&w.finalize().into()));
            if self.left != 0 || sha.is_some_and(|sha| sha != self.sha256) {
                return Err(self.reader.damaged(&format!(
                    "{} does not come back as it was stored",
                    self.name
                )));
            }
            return Ok(false);
        }
        let d = *self
            .reader
            .blocks
            .get(self.next as usize)
            .ok_or_else(|| self.reader.damaged("its block list is short"))?;
        let want = self.left.min(BLOCK_BYTES as u64) as usize;
        self.buf.clear();
        match d == ZERO {
            true => self.buf.resize(want, 0),
            false => {
                let block = self.reader.block(&d)?;
                let got = block.len();
                self.buf.extend_from_slice(block);
                if got != want {
                    return Err(self.reader.damaged(&format!(
                        "a block of {} has {got} bytes, not {want}",
                        self.name
                    )));
                }
            }
        }
        if let Some(w) = &mut self.whole {
            w.update(&self.buf);
        }
        self.left = self.left.saturating_sub(self.buf.len() as u64);
        self.next += 1;
        self.pos = 0;
        Ok(true)
    }
}

impl Read for FileRead<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos == self.buf.len() {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return Ok(0),
                Err(e) => {
                    let msg = e.to_string();
                    self.error = Some(e);
                    return Err(io::Error::other(msg));
                }
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// One thread's share of [`SnapshotReader::write_file`]: blocks `part`,
/// the first of which is block `first` of the file.
fn write_part(
    blocks: &Blocks<'_>,
    part: &[Digest],
    first: usize,
    size: u64,
    out: &File,
    context: &str,
) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut open = HashMap::new();
    let mut buf: Vec<u8> = Vec::with_capacity(1 << 20);
    let mut at = (first * BLOCK_BYTES) as u64;
    let flush = |buf: &mut Vec<u8>, at: &mut u64| -> Result<()> {
        out.write_all_at(buf, *at).map_err(Error::io(context))?;
        *at += buf.len() as u64;
        buf.clear();
        Ok(())
    };
    for (i, d) in part.iter().enumerate() {
        let offset = ((first + i) * BLOCK_BYTES) as u64;
        let want = (size - offset).min(BLOCK_BYTES as u64) as usize;
        if *d == ZERO {
            flush(&mut buf, &mut at)?;
            at = offset + want as u64;
            continue;
        }
        let block = blocks.get(&mut open, d)?;
        if block.len() != want {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} is damaged (a block of {} bytes where {want} belong); it cannot be \
                 restored",
                blocks.snapshot.id,
                block.len()
            )));
        }
        buf.extend_from_slice(block);
        if buf.len() >= 1 << 20 {
            flush(&mut buf, &mut at)?;
        }
    }
    flush(&mut buf, &mut at)
}

/// Directories 0700, as an extraction makes them (the runtime refuses a
/// checkpoint directory others can read).
fn private_dirs(path: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

fn new_file(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

/// [`Store::collect`], under the store's lock.
pub(super) fn collect(store: &Store) -> Result<Collected> {
    let packs_dir = store.packs_dir();
    let snapshots_dir = store.snapshots_dir();
    let mut snaps = store.list()?;
    let before = store.usage()?;
    let mut done = Collected::default();
    // Files in packs/ no snapshot names: packs whose commit died, packs a
    // removed snapshot alone used, a compaction's leftovers.
    let named: HashSet<String> = snaps.iter().flat_map(|s| s.packs.clone()).collect();
    for e in fs::read_dir(&packs_dir).map_err(Error::io(format!("read {}", packs_dir.display())))? {
        let e = e.map_err(Error::io(format!("read {}", packs_dir.display())))?;
        let file = e.file_name().to_string_lossy().to_string();
        let stem = file.split('.').next().unwrap_or_default().to_string();
        if !named.contains(&stem) {
            fs::remove_file(e.path())
                .map_err(Error::io(format!("remove {}", e.path().display())))?;
            if file.ends_with(".pack") {
                done.packs_removed += 1;
            }
        }
    }
    // Blocks some snapshot uses; a pack holding others is rewritten.
    let mut live: HashSet<Digest> = HashSet::new();
    for s in &snaps {
        live.extend(s.block_list(&snapshots_dir)?);
    }
    let mut names: Vec<String> = named.into_iter().collect();
    names.sort();
    for name in names {
        let idx = pack::read_index(&packs_dir.join(format!("{name}.idx")))?;
        let keep: Vec<_> = idx.iter().filter(|(d, _)| live.contains(d)).collect();
        if keep.len() == idx.len() {
            continue;
        }
        let replacement = match keep.is_empty() {
            true => None,
            false => {
                let new = record::new_id()?;
                let mut w = PackWriter::create(&packs_dir.join(format!("{new}.pack")))?;
                let mut r = PackReader::open(&packs_dir.join(format!("{name}.pack")), &name)?;
                for (d, loc) in keep {
                    w.add(*d, r.block(d, loc)?);
                }
                w.finish()?;
                Some(new)
            }
        };
        // Every record moves to the new pack before the old one goes.
        for s in snaps.iter_mut().filter(|s| s.packs.contains(&name)) {
            s.packs.retain(|p| p != &name);
            s.packs.extend(replacement.clone());
            let json = serde_json::to_vec_pretty(&*s).map_err(|e| Error::Other(e.to_string()))?;
            write_atomic(&snapshots_dir.join(format!("{}.json", s.id)), &json)?;
        }
        sync_dir(&snapshots_dir)?;
        for ext in ["pack", "idx"] {
            let p = packs_dir.join(format!("{name}.{ext}"));
            fs::remove_file(&p).map_err(Error::io(format!("remove {}", p.display())))?;
        }
        match replacement {
            Some(_) => done.packs_compacted += 1,
            None => done.packs_removed += 1,
        }
    }
    sync_dir(&packs_dir)?;
    done.bytes_freed = before.saturating_sub(store.usage()?);
    Ok(done)
}

/// A snapshot as the parent of an incremental dump: its images are the
/// snapshot's `checkpoint/` files, and its page N of a page image is the
/// file's block N.
impl crate::checkpoint::incremental::ParentPages for SnapshotReader {
    fn image(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        let name = format!("{IMAGES}/{name}");
        if self.entry(&name).is_err() {
            return Ok(None);
        }
        let mut out = Vec::new();
        self.copy_file(&name, &mut out)?;
        Ok(Some(out))
    }

    fn copy_pages(
        &mut self,
        name: &str,
        first: u64,
        count: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        let name = format!("{IMAGES}/{name}");
        let (m, e) = self.entry(&name)?;
        if (first + count) * BLOCK_BYTES as u64 > m.size {
            return Err(Error::InvalidArgument(format!(
                "snapshot {} has no page {} of {name} (it has {} bytes)",
                self.snapshot.id,
                first + count - 1,
                m.size
            )));
        }
        let context = format!("read {name} of snapshot {}", self.snapshot.id);
        for i in first..first + count {
            let d = *self
                .blocks
                .get((e.first + i) as usize)
                .filter(|_| i < e.count)
                .ok_or_else(|| self.damaged(&format!("its block list ends inside {name}")))?;
            match d == ZERO {
                true => out.write_all(&[0u8; BLOCK_BYTES]),
                false => {
                    let block = self.block(&d)?;
                    out.write_all(block)
                }
            }
            .map_err(Error::io(&context))?;
        }
        Ok(())
    }
}

/// Where a snapshot keeps CRIU's images (the archive's `checkpoint/`).
const IMAGES: &str = "checkpoint";

/// A snapshot written out as an archive (`archive::write_known`) without
/// being materialized first.
#[cfg(feature = "archive")]
impl crate::archive::KnownFiles for SnapshotReader {
    fn open(&mut self, name: &str) -> Result<Box<dyn Read + '_>> {
        Ok(Box::new(self.file(name)?))
    }
}
