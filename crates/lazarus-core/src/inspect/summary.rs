//! A summary of a CRIU checkpoint image directory: what `lazarus inspect`
//! shows. Field numbers are from CRIU's images/*.proto, named at each use.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::checkpoint::pages::{self, is_pages_image};
use crate::criu::images::{self as img, io, malformed, Entry, Error, Result};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    /// 0 for the dumped tree's root: CRIU does not record its parent.
    pub ppid: u32,
    /// None when the process's core-PID.img is absent.
    pub comm: Option<String>,
    pub threads: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SocketInfo {
    /// The kernel's TCP state name: LISTEN, ESTABLISHED, CLOSE, ...
    pub state: String,
    /// addr:port, with IPv6 addresses in brackets.
    pub local: String,
    pub remote: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MountInfo {
    pub mountpoint: String,
    pub fstype: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ImageSummary {
    /// In pstree.img's order, which is CRIU's depth-first walk of the tree.
    pub processes: Vec<ProcessInfo>,
    pub tcp: Vec<SocketInfo>,
    pub mounts: Vec<MountInfo>,
    /// Memory pages dumped: the sizes of the pages-*.img files, raw (a
    /// page image Lazarus stored compressed counts with its raw size).
    pub pages_bytes: u64,
    /// What the page images take on disk (less than pages_bytes when
    /// Lazarus compressed them).
    pub pages_stored_bytes: u64,
    /// The sizes of all regular files in the directory.
    pub total_bytes: u64,
    pub files: usize,
    /// No image records CRIU's version; its log does, at -v3 and above.
    pub criu_version: Option<String>,
    pub stats: BTreeMap<String, u64>,
}

/// Reads the CRIU images in `dir`. Images CRIU leaves out when there is
/// nothing to put in them (files, mountpoints, stats) may be missing.
pub fn summarize(dir: &Path) -> Result<ImageSummary> {
    for required in ["inventory.img", "pstree.img"] {
        if !dir.join(required).is_file() {
            return Err(Error::NotImageDir {
                dir: dir.to_owned(),
                missing: required,
            });
        }
    }
    let mut s = ImageSummary::default();
    // inventory.img is read to refuse a directory whose images are not
    // CRIU's; its img_version is the format's version (2), not CRIU's.
    let inventory = img::read_image(&dir.join("inventory.img"), img::INVENTORY_MAGIC)?;
    match inventory.first() {
        Some(e) => e.u32(1, "img_version").map(drop)?,
        None => return Err(malformed(&dir.join("inventory.img"), "no entry")),
    }
    let mut mount_images = Vec::new();
    let mut logs = Vec::new();
    let listing = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for de in listing {
        let de = de.map_err(|e| io(dir, e))?;
        let meta = std::fs::symlink_metadata(de.path()).map_err(|e| io(&de.path(), e))?;
        if !meta.is_file() {
            continue; // e.g. the "parent" symlink of an incremental dump
        }
        let name = de.file_name().to_string_lossy().into_owned();
        s.files += 1;
        s.total_bytes += meta.len();
        if is_pages_image(&name) {
            s.pages_bytes += meta.len();
            s.pages_stored_bytes += meta.len();
        } else if name.strip_suffix(pages::SUFFIX).is_some_and(is_pages_image) {
            // The frame header records the raw size (see pages.rs).
            s.pages_bytes += pages::raw_size_of(&de.path()).unwrap_or(meta.len());
            s.pages_stored_bytes += meta.len();
        } else if name.starts_with("mountpoints-") && name.ends_with(".img") {
            mount_images.push(de.path());
        } else if name.ends_with(".log") {
            logs.push(de.path());
        }
    }
    s.processes = processes(dir)?;
    s.tcp = tcp_sockets(dir)?;
    mount_images.sort();
    for path in mount_images {
        let entries = img::read_image(&path, img::MNTS_MAGIC)?;
        let mut mounts = entries.iter().map(mount).collect::<Result<Vec<_>>>()?;
        // CRIU writes a namespace's mounts in reverse mount order. Sorted by
        // mountpoint, they read as a tree; the sort is stable, so mounts
        // stacked on one mountpoint stay in CRIU's order (the top one first).
        mounts.sort_by(|a, b| a.mountpoint.cmp(&b.mountpoint));
        s.mounts.extend(mounts);
    }
    logs.sort();
    s.criu_version = logs.iter().find_map(|p| version_from_log(p));
    s.stats = stats(&dir.join("stats-dump"))?;
    Ok(s)
}

/// pstree.img: PstreeEntry pid=1, ppid=2, threads=5. The comm is not
/// there but in core-PID.img: CoreEntry tc=3, TaskCoreEntry comm=6.
fn processes(dir: &Path) -> Result<Vec<ProcessInfo>> {
    let mut out = Vec::new();
    for e in img::read_image(&dir.join("pstree.img"), img::PSTREE_MAGIC)? {
        let pid = e.u32(1, "pid")?;
        out.push(ProcessInfo {
            pid,
            ppid: e.u32(2, "ppid")?,
            comm: comm(dir, pid)?,
            threads: e.repeated_u32(5, "threads")?.len(),
        });
    }
    Ok(out)
}

fn comm(dir: &Path, pid: u32) -> Result<Option<String>> {
    let path = dir.join(format!("core-{pid}.img"));
    let Some(core) = img::read_optional_image(&path, img::CORE_MAGIC)? else {
        return Ok(None);
    };
    let tc = core.first().map(|c| c.message(3, "tc")).transpose()?;
    tc.flatten().map_or(Ok(None), |tc| tc.string(6, "comm"))
}

const SOCK_STREAM: u32 = 1;
const IPPROTO_TCP: u32 = 6;
const FD_TYPE_INETSK: u32 = 4;

/// Since CRIU 3.4 every file, socket or not, is a FileEntry in files.img:
/// field type=1 (value 4 for INETSK) and isk=4, the InetSkEntry. Older
/// dumps have inetsk.img, InetSkEntry records alone.
fn tcp_sockets(dir: &Path) -> Result<Vec<SocketInfo>> {
    let mut sockets = Vec::new();
    if let Some(files) = img::read_optional_image(&dir.join("files.img"), img::FILES_MAGIC)? {
        for f in files {
            if f.u32(1, "type")? == FD_TYPE_INETSK {
                if let Some(isk) = f.message(4, "isk")? {
                    sockets.push(isk);
                }
            }
        }
    }
    if let Some(old) = img::read_optional_image(&dir.join("inetsk.img"), img::INETSK_MAGIC)? {
        sockets.extend(old);
    }
    let mut out = Vec::new();
    for sk in sockets {
        // InetSkEntry: family=3, type=4, proto=5, state=6, src_port=7,
        // dst_port=8, src_addr=11, dst_addr=12.
        let family = sk.u32(3, "family")?;
        if sk.u32(4, "type")? != SOCK_STREAM || sk.u32(5, "proto")? != IPPROTO_TCP {
            continue;
        }
        let endpoint = |addr: u32, addr_name: &str, port: u32| -> Result<String> {
            let words = sk.repeated_u32(addr, addr_name)?;
            img::inet_endpoint(family, &words, port).ok_or_else(|| {
                let n = words.len();
                sk.error(format!("{addr_name} has {n} words for family {family}"))
            })
        };
        out.push(SocketInfo {
            state: img::tcp_state_name(sk.u32(6, "state")?),
            local: endpoint(11, "src_addr", sk.u32(7, "src_port")?)?,
            remote: endpoint(12, "dst_addr", sk.u32(8, "dst_port")?)?,
        });
    }
    Ok(out)
}

/// MntEntry: fstype=1 (CRIU's enum), mountpoint=7, fsname=14. CRIU sets
/// fsname for the types it has no enum value for (fstype AUTO).
fn mount(e: &Entry) -> Result<MountInfo> {
    let code = e.u32(1, "fstype")?;
    let fstype = match e.string(14, "fsname")? {
        Some(name) if !name.is_empty() => name,
        _ => img::fstype_name(code),
    };
    let mountpoint = e
        .string(7, "mountpoint")?
        .ok_or_else(|| e.error("a mount has no mountpoint"))?;
    Ok(MountInfo { mountpoint, fstype })
}

/// stats-dump: StatsEntry dump=1, a DumpStatsEntry; CRIU keeps times in µs.
fn stats(path: &Path) -> Result<BTreeMap<String, u64>> {
    let mut out = BTreeMap::new();
    let Some(entries) = img::read_optional_image(path, img::STATS_MAGIC)? else {
        return Ok(out);
    };
    if let Some(dump) = entries
        .first()
        .map(|e| e.message(1, "dump"))
        .transpose()?
        .flatten()
    {
        for (n, name) in crate::checkpoint::image::DUMP_STATS {
            if let Some(v) = dump.varint(n, name)? {
                out.insert(name.to_string(), v);
            }
        }
    }
    Ok(out)
}

/// CRIU logs "(00.000170) Version: 4.2.1 (gitid 0)" near the top of its log.
fn version_from_log(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut head = Vec::new();
    let file = std::fs::File::open(path).ok()?;
    file.take(4096).read_to_end(&mut head).ok()?;
    let text = String::from_utf8_lossy(&head);
    let rest = text.lines().find_map(|l| l.split_once(") Version: "))?.1;
    Some(rest.split_whitespace().next()?.to_string())
}

/// The summary as tables for a terminal; the tree shows in the indentation
/// of COMM, children under their parent.
pub fn render_text(s: &ImageSummary) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let (total, pages) = (human(s.total_bytes), human(s.pages_bytes));
    let files = s.files;
    let mut size = format!("{total} in {files} files, {pages} of memory pages");
    if s.pages_stored_bytes != s.pages_bytes {
        let stored = human(s.pages_stored_bytes);
        size.push_str(&format!(" (stored compressed in {stored})"));
    }
    out.push_str(&field("Size", size));
    let version = s.criu_version.as_deref().unwrap_or("not recorded");
    out.push_str(&field("CRIU version", version));
    if let Some(line) = dump_times(&s.stats) {
        out.push_str(&field("Dump", line));
    }
    let _ = writeln!(out, "\nProcesses: {}", s.processes.len());
    let _ = writeln!(out, "  {:>8} {:>8} {:>7}  COMM", "PID", "PPID", "THREADS");
    for (p, depth) in tree_order(&s.processes) {
        let comm = p.comm.as_deref().unwrap_or("?");
        let (pid, ppid, threads, indent) = (p.pid, p.ppid, p.threads, "  ".repeat(depth));
        let _ = writeln!(out, "  {pid:>8} {ppid:>8} {threads:>7}  {indent}{comm}");
    }
    let _ = writeln!(out, "\nTCP sockets: {}", s.tcp.len());
    if !s.tcp.is_empty() {
        let w = s.tcp.iter().map(|t| t.local.len()).fold(5, usize::max);
        let _ = writeln!(out, "  {:<12} {:<w$}  REMOTE", "STATE", "LOCAL");
        for t in &s.tcp {
            let _ = writeln!(out, "  {:<12} {:<w$}  {}", t.state, t.local, t.remote);
        }
    }
    let _ = writeln!(out, "\nMounts: {}", s.mounts.len());
    for m in &s.mounts {
        let _ = writeln!(out, "  {:<12} {}", m.fstype, m.mountpoint);
    }
    out
}

/// One `Label:   value` line of the header, aligned with the others.
pub fn field(label: &str, value: impl std::fmt::Display) -> String {
    format!("{:<19}{value}\n", format!("{label}:"))
}

/// CRIU's dump statistics in words: how long the processes stood frozen
/// (what the workload felt), the phases inside that, and the pages.
fn dump_times(stats: &BTreeMap<String, u64>) -> Option<String> {
    let ms = |key: &str| {
        stats
            .get(key)
            .map(|&us| format!("{:.1} ms", us as f64 / 1000.0))
    };
    let mut line = match ms("frozen_time_us") {
        Some(frozen) => format!("frozen for {frozen}"),
        None if stats.is_empty() => return None,
        None => "frozen time not recorded".to_string(),
    };
    let phases: Vec<String> = [
        ("freezing_time_us", "freezing"),
        ("memdump_time_us", "memory dump"),
        ("memwrite_time_us", "memory write"),
    ]
    .iter()
    .filter_map(|(key, name)| Some(format!("{name} {}", ms(key)?)))
    .collect();
    if !phases.is_empty() {
        line.push_str(&format!(" ({})", phases.join(", ")));
    }
    let pages: Vec<String> = [("pages_scanned", "scanned"), ("pages_written", "written")]
        .iter()
        .filter_map(|(key, name)| Some(format!("{} {name}", stats.get(*key)?)))
        .collect();
    if !pages.is_empty() {
        line.push_str(&format!("; pages: {}", pages.join(", ")));
    }
    Some(line)
}

/// Processes in depth-first order with their depth; roots are those whose
/// parent is not in the image. Iterative and cycle-proof, as a garbage
/// pstree.img may hold any pids.
fn tree_order(procs: &[ProcessInfo]) -> Vec<(&ProcessInfo, usize)> {
    let pids: std::collections::HashSet<u32> = procs.iter().map(|p| p.pid).collect();
    let mut children: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, p) in procs.iter().enumerate() {
        children.entry(p.ppid).or_default().push(i);
    }
    let mut seen = vec![false; procs.len()];
    let mut out = Vec::with_capacity(procs.len());
    let roots = (0..procs.len()).filter(|&i| !pids.contains(&procs[i].ppid));
    // Leftovers (a cycle has no root) are listed as roots at the end.
    for start in roots.chain(0..procs.len()).collect::<Vec<_>>() {
        let mut stack = vec![(start, 0)];
        while let Some((i, depth)) = stack.pop() {
            if std::mem::replace(&mut seen[i], true) {
                continue;
            }
            out.push((&procs[i], depth));
            let kids = children.get(&procs[i].pid).map_or(&[][..], Vec::as_slice);
            stack.extend(kids.iter().rev().map(|&k| (k, depth + 1)));
        }
    }
    out
}

/// Bytes as people write them: `512 B`, `1.5 KiB`, `3.0 GiB`.
pub fn human(bytes: u64) -> String {
    let (mut v, mut unit) = (bytes as f64, 0);
    while v >= 1024.0 && unit < 4 {
        v /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{v:.1} {}iB", ["", "K", "M", "G", "T"][unit]),
    }
}

#[cfg(test)]
#[path = "summary_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "summary_prop_tests.rs"]
mod prop_tests;
