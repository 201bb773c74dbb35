//! Taking a snapshot into the store: a checkpoint archive (uncompressed,
//! as the export wrote it into the writer's private directory) cut into
//! blocks; only blocks the store does not hold yet are written, into the
//! writer's own pack; then the commit makes it a snapshot.

use std::collections::{BTreeSet, HashSet};
use std::fs::{self, DirBuilder, File, OpenOptions};
#[cfg(feature = "archive")]
use std::io::Read;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::Utc;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest as _, Sha256};

use super::pack::{self, Digest, Index, PackWriter, BLOCK_BYTES};
use super::record::{self, EntryBlocks, Snapshot};
use super::{sync_dir, write_atomic, Store};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
#[cfg(feature = "archive")]
use crate::manifest::MANIFEST_FILE;

pub(super) const WRITER_LOCK: &str = "lock";
/// A zero block in a block list: never stored, made again on the way out.
pub(super) const ZERO: Digest = [0u8; 32];

/// A snapshot being taken. Its directory (under the store's `tmp/`) is
/// flock'ed for as long as it lives; dropped without a commit, it is
/// removed.
pub struct Writer {
    store: Store,
    dir: PathBuf,
    name: String,
    _lock: Flock<File>,
    draft: Option<Draft>,
}

struct Draft {
    manifest: Manifest,
    entries: Vec<EntryBlocks>,
    blocks: Vec<Digest>,
    new_blocks: u64,
    zero_blocks: u64,
    /// Committed packs holding blocks it uses.
    uses: BTreeSet<String>,
    /// Its own pack's size, when it wrote one.
    pack_bytes: Option<u64>,
}

impl Writer {
    pub(super) fn new(store: &Store) -> Result<Writer> {
        let name = record::new_id()?;
        let dir = store.root.join(super::TMP).join(&name);
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(Error::io(format!("make {}", dir.display())))?;
        let lock_path = dir.join(WRITER_LOCK);
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(Error::io(format!("make {}", lock_path.display())))?;
        let lock = Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Sys {
            context: format!("lock {}", lock_path.display()),
            source: e,
        })?;
        Ok(Writer {
            store: store.clone(),
            dir,
            name,
            _lock: lock,
            draft: None,
        })
    }

    /// The writer's private directory (on the store's file system): where
    /// the archive to ingest is written.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The blocks the store holds now, to ingest against.
    fn index(&self, context: &str) -> Result<Index> {
        let packs_dir = self.store.packs_dir();
        let packs = pack::list(&packs_dir).map_err(Error::io(context))?;
        Index::load(&packs_dir, &packs)
    }

    fn pack_path(&self) -> PathBuf {
        self.dir.join(format!("{}.pack", self.name))
    }

    /// Cuts the archive at `archive` (plain or zstd) into blocks, each
    /// entry checked against the archive's manifest; writes the blocks the
    /// store lacks into this writer's pack. An archive from elsewhere is
    /// held to the import limits first (`archive::check_limits`).
    #[cfg(feature = "archive")]
    pub fn ingest_archive(&mut self, archive: &Path) -> Result<()> {
        let context = format!("read {} into the snapshot store", archive.display());
        let index = self.index(&context)?;
        let mut tar = crate::archive::open_tar(archive)?;
        let mut entries = tar.entries().map_err(Error::io(&context))?;
        let bad = |why: String| Error::InvalidArgument(format!("{}: {why}", archive.display()));
        let mut first = entries
            .next()
            .ok_or_else(|| bad("an empty archive".into()))?
            .map_err(Error::io(&context))?;
        if entry_name(&first)? != MANIFEST_FILE {
            return Err(bad(format!("its first entry is not {MANIFEST_FILE}")));
        }
        let mut json = Vec::new();
        first
            .by_ref()
            .take(16 << 20)
            .read_to_end(&mut json)
            .map_err(Error::io(&context))?;
        let manifest = Manifest::parse(&json)?;

        let mut pack = PackWriter::create(&self.pack_path())?;
        let mut ingest = Ingest::new(&index, &mut pack);
        let mut listed = Vec::new();
        for m in &manifest.entries {
            let mut entry = entries
                .next()
                .ok_or_else(|| bad(format!("it ends before {}", m.name)))?
                .map_err(Error::io(&context))?;
            if entry_name(&entry)? != m.name {
                return Err(bad(format!("{} is not where its manifest says", m.name)));
            }
            if m.dir {
                continue;
            }
            let first = ingest.blocks.len() as u64;
            let (size, sha) = ingest.file(&mut entry).map_err(Error::io(&context))??;
            if size != m.size || sha != m.sha256 {
                return Err(bad(format!("{} does not match its manifest", m.name)));
            }
            listed.push(EntryBlocks {
                name: m.name.clone(),
                first,
                count: ingest.blocks.len() as u64 - first,
            });
        }
        let ingested = ingest.done();
        self.keep_draft(pack, ingested, manifest, listed)
    }

    /// Cuts the files `names` of directory `dir` (a CRIU image directory's
    /// page images, read where CRIU wrote them: no archive in between) into
    /// blocks, as [`Self::ingest_archive`] does an archive's; the manifest
    /// lists them with the sizes and sha256 sums read on the way.
    pub fn ingest_files(&mut self, dir: &Path, names: &[String]) -> Result<()> {
        let context = format!("read {} into the snapshot store", dir.display());
        let index = self.index(&context)?;
        let mut pack = PackWriter::create(&self.pack_path())?;
        let mut ingest = Ingest::new(&index, &mut pack);
        let mut listed = Vec::new();
        let mut files = Vec::new();
        for name in names {
            let first = ingest.blocks.len() as u64;
            let (size, sha) = ingest.file_at(&dir.join(name))?;
            files.push(crate::manifest::ManifestEntry::file(name, size, sha));
            listed.push(EntryBlocks {
                name: name.clone(),
                first,
                count: ingest.blocks.len() as u64 - first,
            });
        }
        let spent = ingest.spent;
        let ingested = ingest.done();
        let started = Instant::now();
        let kept = self.keep_draft(pack, ingested, Manifest::new(files), listed);
        log::info!(
            "store ingest of {}: sums {:?}, lookups {:?}, compression and writes {:?}, \
             fsync {:?} ({} threads)",
            dir.display(),
            spent.digests,
            spent.lookups,
            spent.packing,
            started.elapsed(),
            pack::threads()
        );
        kept
    }

    /// Cuts what an archive of `input` would hold into blocks, each file
    /// read where it lies: no archive written and read back, so one pass
    /// over the memory's images instead of three (the archive's sums, the
    /// archive, the ingest). The manifest is made from the sizes and sums
    /// read on the way, in the archive's order, and returned: the snapshot
    /// is the one [`Self::ingest_archive`] makes of an archive of `input`.
    #[cfg(feature = "archive")]
    pub fn ingest_input(&mut self, input: &crate::archive::ArchiveInput) -> Result<Manifest> {
        use crate::archive::Content;
        use crate::manifest::ManifestEntry;
        let sources = crate::archive::sources(input)?;
        let context = "read a checkpoint into the snapshot store";
        let index = self.index(context)?;
        let mut pack = PackWriter::create(&self.pack_path())?;
        let mut ingest = Ingest::new(&index, &mut pack);
        let mut entries = Vec::with_capacity(sources.len());
        let mut listed = Vec::new();
        for s in &sources {
            let first = ingest.blocks.len() as u64;
            let (size, sha) = match &s.content {
                Content::Dir => {
                    entries.push(ManifestEntry::dir(&s.name));
                    continue;
                }
                Content::File(path) => ingest.file_at(path)?,
                Content::Bytes(b) => ingest.bytes(b)?,
            };
            entries.push(ManifestEntry::file(&s.name, size, sha));
            listed.push(EntryBlocks {
                name: s.name.clone(),
                first,
                count: ingest.blocks.len() as u64 - first,
            });
        }
        let ingested = ingest.done();
        let manifest = Manifest::new(entries);
        self.keep_draft(pack, ingested, manifest.clone(), listed)?;
        Ok(manifest)
    }

    /// After an ingest: its pack finished (or removed, when no block was
    /// new), and what the commit records kept as the draft.
    fn keep_draft(
        &mut self,
        pack: PackWriter,
        got: Ingested,
        manifest: Manifest,
        entries: Vec<EntryBlocks>,
    ) -> Result<()> {
        let pack_bytes = match got.new_blocks {
            0 => {
                drop(pack);
                let _ = fs::remove_file(self.pack_path());
                None
            }
            _ => Some(pack.finish()?),
        };
        self.draft = Some(Draft {
            manifest,
            entries,
            blocks: got.blocks,
            new_blocks: got.new_blocks,
            zero_blocks: got.zero_blocks,
            uses: got.uses,
            pack_bytes,
        });
        Ok(())
    }

    /// Makes the ingested archive a snapshot of `container`.
    pub fn commit(
        mut self,
        container: &str,
        tag: Option<&str>,
        info: serde_json::Value,
    ) -> Result<Snapshot> {
        if let Some(t) = tag {
            record::check_tag(t)?;
        }
        let draft = self.draft.take().ok_or_else(|| {
            Error::Other("internal: a snapshot committed before its ingest".into())
        })?;
        let _lock = self.store.lock()?;
        let packs_dir = self.store.packs_dir();
        none_collected(&packs_dir, &draft.uses)?;
        let existing = self.store.list()?;
        if let Some(t) = tag {
            tag_free(&existing, container, t)?;
        }
        let mut id = record::new_id()?;
        while existing.iter().any(|s| s.id == id) {
            id = record::new_id()?;
        }
        let mut packs: Vec<String> = draft.uses.into_iter().collect();
        if draft.pack_bytes.is_some() {
            self.move_pack_into(&packs_dir)?;
            packs.push(self.name.clone());
        }
        let snapshots = self.store.snapshots_dir();
        let list: Vec<u8> = draft.blocks.iter().flatten().copied().collect();
        write_atomic(&snapshots.join(format!("{id}.blocks")), &list)?;
        let snapshot = Snapshot {
            format: record::FORMAT,
            id: id.clone(),
            container: container.to_string(),
            tag: tag.map(str::to_string),
            created: Utc::now(),
            packs,
            bytes_added: draft.pack_bytes.unwrap_or(0),
            bytes_referenced: draft.manifest.total_size(),
            blocks: draft.blocks.len() as u64,
            new_blocks: draft.new_blocks,
            zero_blocks: draft.zero_blocks,
            manifest: draft.manifest,
            entries: draft.entries,
            blocks_sha256: Some(record::list_sha256(&list)),
            info,
        };
        let json = serde_json::to_vec_pretty(&snapshot).map_err(|e| Error::Other(e.to_string()))?;
        write_atomic(&snapshots.join(format!("{id}.json")), &json)?;
        sync_dir(&snapshots)?;
        Ok(snapshot)
    }

    /// The writer's pack among the store's committed ones.
    fn move_pack_into(&self, packs_dir: &Path) -> Result<()> {
        // The pack before its index: a pack without one is never used,
        // and the next collection removes it.
        let context = format!("move pack {} into {}", self.name, packs_dir.display());
        fs::rename(
            self.pack_path(),
            packs_dir.join(format!("{}.pack", self.name)),
        )
        .and_then(|()| {
            fs::rename(
                self.pack_path().with_extension("idx"),
                packs_dir.join(format!("{}.idx", self.name)),
            )
        })
        .map_err(Error::io(context))?;
        sync_dir(packs_dir)
    }
}

/// Refuses a commit whose blocks are partly in a pack collected since the
/// ingest (the store's lock is not held in between).
fn none_collected(packs_dir: &Path, uses: &BTreeSet<String>) -> Result<()> {
    match uses
        .iter()
        .find(|p| !packs_dir.join(format!("{p}.idx")).is_file())
    {
        Some(gone) => Err(Error::FailedPrecondition(format!(
            "pack {gone} of the snapshot store was collected while this snapshot was being \
             taken (a `snapshot rm` or `snapshots prune` at the same time); take it again"
        ))),
        None => Ok(()),
    }
}

/// Refuses a tag `container` has on one of its snapshots already.
fn tag_free(existing: &[Snapshot], container: &str, tag: &str) -> Result<()> {
    match existing
        .iter()
        .find(|s| s.container == container && s.tag.as_deref() == Some(tag))
    {
        Some(s) => Err(Error::FailedPrecondition(format!(
            "{container} already has a snapshot tagged {tag:?} ({}); remove it (`lazarus \
             snapshot rm {}`) or choose another tag",
            s.id, s.id
        ))),
        None => Ok(()),
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[cfg(feature = "archive")]
fn entry_name<R: Read>(entry: &tar::Entry<R>) -> Result<String> {
    let path = entry
        .path()
        .map_err(Error::io("read an archive entry's name"))?;
    Ok(path.to_string_lossy().trim_end_matches('/').to_string())
}

/// Where an ingest's time went (logged: the parts are what a slow
/// store-backed checkpoint is judged by).
#[derive(Default, Clone, Copy)]
struct Spent {
    digests: Duration,
    lookups: Duration,
    packing: Duration,
}

/// One ingest's state: what the store had, what this one wrote.
struct Ingest<'a> {
    spent: Spent,
    index: &'a Index,
    pack: &'a mut PackWriter,
    written: HashSet<Digest>,
    uses: BTreeSet<String>,
    blocks: Vec<Digest>,
    zero_blocks: u64,
}

/// What an ingest found, once its pack is no longer borrowed.
struct Ingested {
    new_blocks: u64,
    uses: BTreeSet<String>,
    blocks: Vec<Digest>,
    zero_blocks: u64,
}

impl<'a> Ingest<'a> {
    fn new(index: &'a Index, pack: &'a mut PackWriter) -> Ingest<'a> {
        Ingest {
            spent: Spent::default(),
            index,
            pack,
            written: HashSet::new(),
            uses: BTreeSet::new(),
            blocks: Vec::new(),
            zero_blocks: 0,
        }
    }

    fn done(self) -> Ingested {
        Ingested {
            new_blocks: self.written.len() as u64,
            uses: self.uses,
            blocks: self.blocks,
            zero_blocks: self.zero_blocks,
        }
    }

    /// One file, block by block; its size and sha256.
    #[cfg(feature = "archive")]
    fn file(&mut self, r: &mut dyn Read) -> std::io::Result<Result<(u64, String)>> {
        let mut whole = Sha256::new();
        let mut size = 0u64;
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = read_full(r, &mut buf)?;
            size += n as u64;
            if let Err(e) = self.chunk(&buf[..n], &mut whole) {
                return Ok(Err(e));
            }
            if n < CHUNK {
                break;
            }
        }
        Ok(Ok((size, pack::hex(&whole.finalize().into()))))
    }

    /// A file already in memory (mapped), as [`Self::file`] reads one.
    /// The file at `path`, mapped rather than read (see
    /// pack::PackReader): the images are the snapshot's alone until it
    /// commits.
    fn file_at(&mut self, path: &Path) -> Result<(u64, String)> {
        let open = format!("open {}", path.display());
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .map_err(Error::io(&open))?;
        let len = f.metadata().map_err(Error::io(&open))?.len() as usize;
        // (An empty file cannot be mapped, and has nothing to map.)
        let mapped = (len > 0)
            .then(|| pack::Mapped::new(&f, len))
            .transpose()
            .map_err(Error::io(&open))?;
        self.bytes(mapped.as_ref().map_or(&[][..], |m| m.bytes()))
    }

    fn bytes(&mut self, bytes: &[u8]) -> Result<(u64, String)> {
        let mut whole = Sha256::new();
        for chunk in bytes.chunks(CHUNK) {
            self.chunk(chunk, &mut whole)?;
        }
        Ok((bytes.len() as u64, pack::hex(&whole.finalize().into())))
    }

    /// The next part of a file. The file's sum is taken on a second thread
    /// while this one takes the blocks' digests (each is a pass of sha256
    /// over the whole file, and together they were most of an ingest).
    fn chunk(&mut self, chunk: &[u8], whole: &mut Sha256) -> Result<()> {
        let mut digests: Vec<Option<Digest>> = Vec::with_capacity(CHUNK / BLOCK_BYTES);
        let started = Instant::now();
        std::thread::scope(|s| {
            s.spawn(|| whole.update(chunk));
            digests.extend(
                chunk
                    .chunks(BLOCK_BYTES)
                    .map(|b| (!pack::is_zero(b)).then(|| pack::digest(b))),
            );
        });
        self.spent.digests += started.elapsed();
        let started = Instant::now();
        for (block, d) in chunk.chunks(BLOCK_BYTES).zip(digests) {
            let Some(d) = d else {
                self.blocks.push(ZERO);
                self.zero_blocks += 1;
                continue;
            };
            if let Some((p, _)) = self.index.blocks.get(&d) {
                self.uses.insert(self.index.packs[*p as usize].clone());
            } else if self.written.insert(d) {
                self.pack.add(d, block);
            }
            self.blocks.push(d);
        }
        self.spent.lookups += started.elapsed();
        let started = Instant::now();
        let written = self.pack.write_full();
        self.spent.packing += started.elapsed();
        written
    }
}

/// What an ingest reads at a time: 4 MiB.
const CHUNK: usize = 1024 * BLOCK_BYTES;

/// Reads until `buf` is full or the input ends.
#[cfg(feature = "archive")]
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
