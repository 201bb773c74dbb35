//! The snapshot store: a container's checkpoints kept on this host,
//! deduplicated. A snapshot is a checkpoint archive's content (CRIU's
//! images, the root filesystem changes, the configuration) cut into
//! page-sized blocks, each stored once for the whole store: a page that
//! did not change between two snapshots, or that two containers share,
//! takes no more space. What is new goes into a pack (see [`pack`]); the
//! snapshot itself is a small record (`snapshots/ID.json`: the archive's
//! manifest, which blocks make each file, which packs hold them) and its
//! block list (`snapshots/ID.blocks`).
//!
//! Layout under the root (0700, every file 0600):
//! - `packs/NAME.pack`, `packs/NAME.idx`;
//! - `snapshots/ID.json`, `snapshots/ID.blocks`;
//! - `tmp/WRITER/`: a snapshot being written, flock'ed by its writer. A
//!   writer that died leaves it unlocked; the next open removes it;
//! - `tracking/CONTAINER-ID/`: the parent of the container's next
//!   incremental dump, where the kernel tracks dirty memory (see
//!   `tracking.rs`);
//! - `store.lock`: held (flock) by a commit, a removal and the garbage
//!   collection, so none of them sees another half done.
//!
//! Crash safety: a pack and its index are written and fsynced in the
//! writer's directory, renamed into `packs/` under the lock, then the
//! block list and last the record (renamed into place): a snapshot exists
//! once its record does. A pack no record names (the commit died between
//! the two) is removed by the next collection.

mod ingest;
pub mod pack;
pub mod pages_ref;
mod read;
mod record;
pub mod release;
mod tracking;

#[cfg(test)]
mod pages_ref_tests;
// The store's own tests cut archives into it.
#[cfg(all(test, feature = "archive"))]
mod tests;

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};
use crate::files::write_atomic;

pub use ingest::Writer;
pub use read::{FileRead, SnapshotReader};
pub use record::{EntryBlocks, Snapshot};
pub use tracking::Claimed;

const PACKS: &str = "packs";
const SNAPSHOTS: &str = "snapshots";
const TMP: &str = "tmp";
const LOCK: &str = "store.lock";

/// The store at a root directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// What a collection removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Collected {
    /// Packs no snapshot uses, removed whole.
    pub packs_removed: usize,
    /// Packs rewritten without the blocks no snapshot uses.
    pub packs_compacted: usize,
    pub bytes_freed: u64,
}

impl Store {
    /// Opens (making it if needed) the store at `root`, and removes what
    /// writers that died left in `tmp/`.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in [
            root.to_path_buf(),
            root.join(PACKS),
            root.join(SNAPSHOTS),
            root.join(TMP),
        ] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(Error::io(format!(
                    "make the snapshot store {}",
                    dir.display()
                )))?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        store.remove_abandoned_writers();
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn packs_dir(&self) -> PathBuf {
        self.root.join(PACKS)
    }

    fn snapshots_dir(&self) -> PathBuf {
        self.root.join(SNAPSHOTS)
    }

    /// The store-wide lock (see the module's comment).
    fn lock(&self) -> Result<Flock<File>> {
        let path = self.root.join(LOCK);
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!("open {}", path.display())))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Sys {
            context: format!("lock {}", path.display()),
            source: e,
        })
    }

    fn remove_abandoned_writers(&self) {
        let Ok(entries) = fs::read_dir(self.root.join(TMP)) else {
            return;
        };
        for e in entries.flatten() {
            let dir = e.path();
            let held = File::open(dir.join(ingest::WRITER_LOCK))
                .ok()
                .map(|f| Flock::lock(f, FlockArg::LockExclusiveNonblock).is_err());
            // No lock file: a writer that died before it made one.
            if held != Some(true) {
                let _ = fs::remove_dir_all(&dir);
            }
        }
    }

    /// Every snapshot, oldest first.
    pub fn list(&self) -> Result<Vec<Snapshot>> {
        let dir = self.snapshots_dir();
        let mut out = Vec::new();
        for e in fs::read_dir(&dir).map_err(Error::io(format!("read {}", dir.display())))? {
            let e = e.map_err(Error::io(format!("read {}", dir.display())))?;
            let name = e.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            out.push(Snapshot::read(&dir, id)?);
        }
        out.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        Ok(out)
    }

    /// The snapshot `key` names: its id, a unique prefix of it, or its tag
    /// (of `container`'s snapshots when given).
    pub fn find(&self, container: Option<&str>, key: &str) -> Result<Snapshot> {
        let all = self.list()?;
        let of = |s: &&Snapshot| container.is_none_or(|c| s.container == c);
        if let Some(s) = all.iter().filter(of).find(|s| s.id == key) {
            return Ok(s.clone());
        }
        let tagged: Vec<_> = all
            .iter()
            .filter(of)
            .filter(|s| s.tag.as_deref() == Some(key))
            .collect();
        let matches = match tagged.is_empty() {
            false => tagged,
            true => all
                .iter()
                .filter(of)
                .filter(|s| s.id.starts_with(key))
                .collect(),
        };
        match matches.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(Error::NotFound(format!(
                "no snapshot {key:?}{} in {} (`lazarus snapshots` lists them)",
                container.map(|c| format!(" of {c}")).unwrap_or_default(),
                self.root.display()
            ))),
            many => Err(Error::InvalidArgument(format!(
                "{key:?} names {} snapshots ({}); give more of the id",
                many.len(),
                many.iter()
                    .map(|s| s.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    /// Starts a snapshot: a private directory under `tmp/`.
    pub fn writer(&self) -> Result<Writer> {
        Writer::new(self)
    }

    /// Reads a snapshot back.
    pub fn reader(&self, snapshot: &Snapshot) -> Result<SnapshotReader> {
        SnapshotReader::new(self, snapshot)
    }

    /// Removes a snapshot's record; its blocks go with the next
    /// collection (which this runs).
    pub fn remove(&self, id: &str) -> Result<Collected> {
        {
            let _lock = self.lock()?;
            let dir = self.snapshots_dir();
            let json = dir.join(format!("{id}.json"));
            if !json.is_file() {
                return Err(Error::NotFound(format!(
                    "no snapshot {id} in {}",
                    self.root.display()
                )));
            }
            // The record first: without it the snapshot does not exist.
            fs::remove_file(&json).map_err(Error::io(format!("remove {}", json.display())))?;
            let _ = fs::remove_file(dir.join(format!("{id}.blocks")));
            sync_dir(&dir)?;
        }
        self.collect()
    }

    /// Bytes the packs take on disk.
    pub fn usage(&self) -> Result<u64> {
        let dir = self.packs_dir();
        let mut total = 0;
        for e in fs::read_dir(&dir).map_err(Error::io(format!("read {}", dir.display())))? {
            let e = e.map_err(Error::io(format!("read {}", dir.display())))?;
            total += e.metadata().map(|m| m.len()).unwrap_or(0);
        }
        Ok(total)
    }

    /// Garbage collection: packs no snapshot uses are removed, packs with
    /// blocks no snapshot uses are rewritten without them. Afterwards every
    /// stored block belongs to a snapshot.
    pub fn collect(&self) -> Result<Collected> {
        let _lock = self.lock()?;
        read::collect(self)
    }

    /// Removes the oldest untagged snapshots (never `keep`) until the packs
    /// take at most `max_bytes`; returns the ids removed. Tagged snapshots
    /// are pinned: if they alone are over the cap, it stays over, and the
    /// caller says so.
    pub fn enforce_cap(&self, max_bytes: u64, keep: &str) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        while self.usage()? > max_bytes {
            let oldest = self
                .list()?
                .into_iter()
                .find(|s| s.tag.is_none() && s.id != keep);
            let Some(s) = oldest else { break };
            self.remove(&s.id)?;
            removed.push(s.id);
        }
        Ok(removed)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(format!("sync {}", dir.display())))
}
