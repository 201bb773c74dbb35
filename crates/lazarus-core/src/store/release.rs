//! Releasing store-backed Docker checkpoints ([`super::pages_ref`]).
//!
//! `docker checkpoint rm` and `docker rm` delete Docker's copy of a
//! checkpoint without telling the runtime, so the store cannot count
//! references as they go. Instead each such snapshot's record names its
//! holder's directory in Docker's data root (`DATA_ROOT/containers/ID`),
//! and a sweep looks for references that name it in every container's
//! checkpoints of that data root (`DATA_ROOT/containers/*/checkpoints/*/`:
//! so a checkpoint copied into another container's directory holds it
//! too). A snapshot no reference names is released (removed, its blocks
//! collected):
//! - at once if a sweep has seen it held before (Docker had its copy, and
//!   it is gone now: `checkpoint rm`, `rm`);
//! - else only once it is older than the grace: between the shim's stash
//!   and Docker's copy of the reference there is a moment when nothing
//!   holds it, and a sweep then must not take it.
//!
//! A snapshot without a Docker directory (not Docker's, or one whose
//! directory could not be found) is never released by a sweep: `lazarus
//! snapshot rm` does it. A reference kept anywhere else (a copy outside
//! Docker's data root) does not hold its snapshot.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::pages_ref::{PagesRef, KIND};
use super::{sync_dir, write_atomic, Snapshot, Store};
use crate::error::{Error, Result};

/// The record's `info` key naming the holder's Docker directory.
pub const DOCKER_DIR: &str = "docker_dir";
/// The record's `info` key a sweep sets once it saw the snapshot held.
const SEEN_HELD: &str = "seen_held";
/// How long a snapshot no reference names yet is kept: Docker copies the
/// reference within seconds of the checkpoint.
pub const GRACE: Duration = Duration::from_secs(600);

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Snapshots released.
    pub released: Vec<String>,
    /// Snapshots held by at least one reference.
    pub held: usize,
}

/// The snapshot ids the references under `containers/*/checkpoints/*/`
/// name (unreadable references name none).
fn references_under(containers: &Path) -> HashSet<String> {
    let mut ids = HashSet::new();
    let Ok(all) = fs::read_dir(containers) else {
        return ids;
    };
    for c in all.flatten() {
        let Ok(cps) = fs::read_dir(c.path().join("checkpoints")) else {
            continue;
        };
        for cp in cps.flatten() {
            if let Ok(Some(r)) = PagesRef::read(&cp.path()) {
                ids.insert(r.snapshot);
            }
        }
    }
    ids
}

/// One sweep of `store` (see the module's comment). Runs without the
/// store's lock but for each change; a snapshot another sweep released
/// meanwhile is skipped.
pub fn sweep(store: &Store, grace: Duration) -> Result<Swept> {
    let mut done = Swept::default();
    let mut named: HashMap<PathBuf, HashSet<String>> = HashMap::new();
    let now = chrono::Utc::now();
    for s in store.list()? {
        if s.info.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
            continue;
        }
        let Some(dir) = s.info.get(DOCKER_DIR).and_then(|d| d.as_str()) else {
            continue;
        };
        let Some(containers) = Path::new(dir).parent() else {
            continue;
        };
        let refs = named
            .entry(containers.to_path_buf())
            .or_insert_with(|| references_under(containers));
        if refs.contains(&s.id) {
            done.held += 1;
            if s.info.get(SEEN_HELD).is_none() {
                mark_seen_held(store, &s.id)?;
            }
            continue;
        }
        let seen = s.info.get(SEEN_HELD).is_some();
        let age = (now - s.created).to_std().unwrap_or_default();
        if !seen && age < grace {
            continue;
        }
        match store.remove(&s.id) {
            Ok(_) => done.released.push(s.id),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Sets `seen_held` in the snapshot's record, under the store's lock (a
/// collection rewrites records too).
fn mark_seen_held(store: &Store, id: &str) -> Result<()> {
    let _lock = store.lock()?;
    let dir = store.snapshots_dir();
    if !dir.join(format!("{id}.json")).is_file() {
        return Ok(());
    }
    let mut s = Snapshot::read(&dir, id)?;
    s.info[SEEN_HELD] = true.into();
    let json = serde_json::to_vec_pretty(&s).map_err(|e| Error::Other(e.to_string()))?;
    write_atomic(&dir.join(format!("{id}.json")), &json)?;
    sync_dir(&dir)
}
