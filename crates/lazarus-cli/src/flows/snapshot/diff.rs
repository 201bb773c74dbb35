//! `lazarus diff A B`: what changed between two snapshots of a container.
//!
//! - memory: page by page, per process and mapping. A page image's page N
//!   is the store's block N of that file, so two snapshots' pages compare
//!   by digest without reading them; CRIU's pagemap and mm images (read
//!   out of the store) say which address and mapping each page is;
//! - files: the root filesystem changes (each snapshot's diff against the
//!   image), entry by entry;
//! - processes and threads, and TCP connections.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use lazarus_core::archive::{CHECKPOINT_DIR, DELETED_FILES, ROOTFS_DIFF_TAR};
use lazarus_core::inspect::human;
use lazarus_core::inspect::memory::{self, ProcessMemory};
use lazarus_core::store::pack::Digest;
use lazarus_core::store::{Snapshot, SnapshotReader, Store};
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::report::Summary;

const PAGE: u64 = 4096;

#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub a: String,
    pub b: String,
    /// Bytes of memory that differ (pages changed, added or gone).
    pub memory_changed_bytes: u64,
    /// Per process and mapping, largest first.
    pub memory: Vec<MappingChange>,
    pub files_added: Vec<String>,
    pub files_changed: Vec<String>,
    pub files_deleted: Vec<String>,
    pub processes_added: Vec<String>,
    pub processes_gone: Vec<String>,
    /// `pid comm: A -> B threads`.
    pub threads_changed: Vec<String>,
    pub tcp: (u64, u64),
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MappingChange {
    pub pid: u32,
    pub mapping: String,
    pub bytes_changed: u64,
    pub bytes_a: u64,
    pub bytes_b: u64,
}

/// Compares snapshots `a` and `b` (ids, prefixes or tags).
pub fn run(store: &Store, a: &str, b: &str) -> Result<DiffReport> {
    let (sa, sb) = (store.find(None, a)?, store.find(None, b)?);
    if sa.container != sb.container {
        return Err(Error::Refused(format!(
            "{} is a snapshot of {}, {} of {}: compare two snapshots of one container",
            sa.id, sa.container, sb.id, sb.container
        )));
    }
    let (mut ra, mut rb) = (store.reader(&sa)?, store.reader(&sb)?);
    let scratch = tempfile::Builder::new()
        .prefix(".lazarus-diff-")
        .tempdir_in(store.root().join("tmp"))
        .map_err(lazarus_core::Error::io(
            "make a scratch directory for the diff",
        ))?;
    let ma = small_images(&mut ra, &scratch.path().join("a"))?;
    let mb = small_images(&mut rb, &scratch.path().join("b"))?;
    let memory = memory_changes(&ma, &ra, &mb, &rb);
    let (fa, fb) = (rootfs_files(&mut ra)?, rootfs_files(&mut rb)?);
    let (da, db) = (deleted(&mut ra)?, deleted(&mut rb)?);
    let (pa, pb) = (processes(&sa), processes(&sb));
    Ok(DiffReport {
        a: sa.id.clone(),
        b: sb.id.clone(),
        memory_changed_bytes: memory.iter().map(|m| m.bytes_changed).sum(),
        memory,
        files_added: fb
            .keys()
            .filter(|k| !fa.contains_key(*k))
            .cloned()
            .collect(),
        files_changed: fb
            .iter()
            .filter(|(k, v)| fa.get(*k).is_some_and(|x| x != *v))
            .map(|(k, _)| k.clone())
            .collect(),
        files_deleted: db.difference(&da).cloned().collect(),
        processes_added: pb
            .iter()
            .filter(|(pid, _)| !pa.contains_key(*pid))
            .map(|(pid, (comm, _))| format!("{pid} {comm}"))
            .collect(),
        processes_gone: pa
            .iter()
            .filter(|(pid, _)| !pb.contains_key(*pid))
            .map(|(pid, (comm, _))| format!("{pid} {comm}"))
            .collect(),
        threads_changed: pa
            .iter()
            .filter_map(|(pid, (comm, ta))| {
                let (_, tb) = pb.get(pid)?;
                (ta != tb).then(|| format!("{pid} {comm}: {ta} -> {tb} threads"))
            })
            .collect(),
        tcp: (
            sa.info["tcp"].as_u64().unwrap_or(0),
            sb.info["tcp"].as_u64().unwrap_or(0),
        ),
    })
}

/// CRIU's images but the page images, written into `dir`.
fn small_images(r: &mut SnapshotReader, dir: &Path) -> Result<Vec<ProcessMemory>> {
    std::fs::create_dir_all(dir).map_err(lazarus_core::Error::io("make the diff's directory"))?;
    let prefix = format!("{CHECKPOINT_DIR}/");
    let names: Vec<String> = r
        .manifest()
        .entries
        .iter()
        .filter(|e| !e.dir)
        .filter_map(|e| e.name.strip_prefix(&prefix).map(str::to_string))
        .filter(|n| !n.contains('/') && !n.starts_with("pages-"))
        .collect();
    for n in names {
        let path = dir.join(&n);
        let mut f = std::fs::File::create(&path)
            .map_err(lazarus_core::Error::io(format!("write {}", path.display())))?;
        r.copy_file(&format!("{prefix}{n}"), &mut f)?;
    }
    Ok(memory::processes(dir)?)
}

/// Page address → its digest, for one process.
fn pages(p: &ProcessMemory, r: &SnapshotReader) -> HashMap<u64, Digest> {
    let name = format!("{CHECKPOINT_DIR}/pages-{}.img", p.pages_id);
    let blocks = r.file_blocks(&name).unwrap_or(&[]);
    let mut out = HashMap::new();
    for run in &p.runs {
        for i in 0..run.nr_pages {
            if let Some(d) = blocks.get((run.first + i) as usize) {
                out.insert(run.vaddr + i * PAGE, *d);
            }
        }
    }
    out
}

fn memory_changes(
    a: &[ProcessMemory],
    ra: &SnapshotReader,
    b: &[ProcessMemory],
    rb: &SnapshotReader,
) -> Vec<MappingChange> {
    let mut per: BTreeMap<(u32, String), MappingChange> = BTreeMap::new();
    let pids: BTreeSet<u32> = a.iter().chain(b).map(|p| p.pid).collect();
    for pid in pids {
        let pa = a.iter().find(|p| p.pid == pid);
        let pb = b.iter().find(|p| p.pid == pid);
        let ga = pa.map(|p| pages(p, ra)).unwrap_or_default();
        let gb = pb.map(|p| pages(p, rb)).unwrap_or_default();
        let addrs: BTreeSet<u64> = ga.keys().chain(gb.keys()).copied().collect();
        for addr in addrs {
            let name = pb
                .or(pa)
                .map(|p| p.mapping_of(addr).to_string())
                .unwrap_or_default();
            let e = per
                .entry((pid, name.clone()))
                .or_insert_with(|| MappingChange {
                    pid,
                    mapping: name,
                    bytes_changed: 0,
                    bytes_a: 0,
                    bytes_b: 0,
                });
            let (da, db) = (ga.get(&addr), gb.get(&addr));
            e.bytes_a += da.map_or(0, |_| PAGE);
            e.bytes_b += db.map_or(0, |_| PAGE);
            if da != db {
                e.bytes_changed += PAGE;
            }
        }
    }
    let mut out: Vec<MappingChange> = per.into_values().filter(|m| m.bytes_changed > 0).collect();
    out.sort_by(|x, y| {
        y.bytes_changed
            .cmp(&x.bytes_changed)
            .then(x.pid.cmp(&y.pid))
    });
    out
}

/// The root filesystem diff's entries: path → sha256 of the entry's
/// content, type and mode.
fn rootfs_files(r: &mut SnapshotReader) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    if !r
        .manifest()
        .entries
        .iter()
        .any(|e| e.name == ROOTFS_DIFF_TAR)
    {
        return Ok(out);
    }
    let file = r.file(ROOTFS_DIFF_TAR)?;
    let mut tar = tar::Archive::new(file);
    let io = |e| lazarus_core::Error::io("read the root filesystem diff")(e);
    for entry in tar.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let path = entry.path().map_err(io)?.to_string_lossy().to_string();
        let mut h = Sha256::new();
        h.update([entry.header().entry_type().as_byte()]);
        h.update(entry.header().mode().unwrap_or(0).to_le_bytes());
        if let Ok(Some(link)) = entry.link_name() {
            h.update(link.to_string_lossy().as_bytes());
        }
        let mut buf = [0u8; 65536];
        loop {
            let n = entry.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
        }
        let path = path
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_string();
        if !path.is_empty() {
            out.insert(path, format!("{:x}", h.finalize()));
        }
    }
    Ok(out)
}

fn deleted(r: &mut SnapshotReader) -> Result<BTreeSet<String>> {
    if !r.manifest().entries.iter().any(|e| e.name == DELETED_FILES) {
        return Ok(BTreeSet::new());
    }
    let mut bytes = Vec::new();
    r.copy_file(DELETED_FILES, &mut bytes)?;
    Ok(serde_json::from_slice::<Vec<String>>(&bytes)
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// pid → (comm, threads), as recorded when the snapshot was taken.
fn processes(s: &Snapshot) -> BTreeMap<u64, (String, u64)> {
    s.info["processes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p["pid"].as_u64()?,
                (
                    p["comm"].as_str().unwrap_or("?").to_string(),
                    p["threads"].as_u64().unwrap_or(1),
                ),
            ))
        })
        .collect()
}

impl Summary for DiffReport {
    fn summary(&self) -> String {
        let mut out = format!(
            "{} -> {}: {} of memory changed\n",
            self.a,
            self.b,
            human(self.memory_changed_bytes)
        );
        if !self.memory.is_empty() {
            out += &format!(
                "  {:>7}  {:<40}  {:>9}  {:>9}  {:>9}\n",
                "PID", "MAPPING", "CHANGED", "BEFORE", "AFTER"
            );
            for m in &self.memory {
                out += &format!(
                    "  {:>7}  {:<40}  {:>9}  {:>9}  {:>9}\n",
                    m.pid,
                    m.mapping,
                    human(m.bytes_changed),
                    human(m.bytes_a),
                    human(m.bytes_b)
                );
            }
        }
        let list = |label: &str, v: &[String]| match v.is_empty() {
            true => String::new(),
            false => format!("{label} ({}): {}\n", v.len(), v.join(", ")),
        };
        out += &list("files added", &self.files_added);
        out += &list("files changed", &self.files_changed);
        out += &list("files deleted", &self.files_deleted);
        out += &list("processes added", &self.processes_added);
        out += &list("processes gone", &self.processes_gone);
        out += &list("threads", &self.threads_changed);
        out += &format!("TCP connections: {} -> {}", self.tcp.0, self.tcp.1);
        out
    }
}
