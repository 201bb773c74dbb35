//! What the commands report: typed reports, serialised once for `--json`,
//! and their text for people (`--print-stats`, inspect of an archive)
//! made from the same fields.

use lazarus_core::archive::{Manifest, CHECKPOINT_DIR};
use lazarus_core::checkpoint::pages::{self, is_pages_image, CompressedFile};
use lazarus_core::inspect::field;
pub use lazarus_core::inspect::human;
use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// The bytes of CRIU's memory pages in an archive (its
/// `checkpoint/pages-*.img` entries), raw: a page image stored compressed
/// (`pages-*.img.zst`) counts with the size lazarus.json recorded.
pub fn pages_bytes(m: &Manifest, compressed: &[CompressedFile]) -> u64 {
    let prefix = format!("{CHECKPOINT_DIR}/pages-");
    m.entries
        .iter()
        .filter_map(|e| {
            let name = e.name.strip_prefix(&format!("{CHECKPOINT_DIR}/"))?;
            if !e.name.starts_with(&prefix) {
                return None;
            }
            if is_pages_image(name) {
                return Some(e.size);
            }
            let raw = name
                .strip_suffix(pages::SUFFIX)
                .filter(|n| is_pages_image(n))?;
            let listed = compressed.iter().find(|c| c.name == raw);
            Some(listed.map_or(e.size, |c| c.raw_bytes))
        })
        .sum()
}

/// `archive / content` as "0.42 of its content (1.0 GiB in 430.0 MiB)".
pub fn ratio(archive: u64, content: u64) -> String {
    let r = match content {
        0 => 1.0,
        c => archive as f64 / c as f64,
    };
    format!(
        "{r:.2} of its content ({} in {})",
        human(content),
        human(archive)
    )
}

/// What `checkpoint --export` did, as `--json` prints it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportReport {
    pub archive: PathBuf,
    pub container: String,
    pub id: String,
    pub engine: String,
    pub namespace: String,
    /// The checkpoint stopped the container (no --leave-running).
    pub stopped: bool,
    /// Encrypted to age recipients (`--encrypt`); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub encrypted: bool,
    pub archive_bytes: u64,
    /// What the archive holds, uncompressed.
    pub content_bytes: u64,
    pub pages_bytes: u64,
    pub rootfs_diff_bytes: u64,
    pub deleted_files: usize,
    pub checkpoint_seconds: f64,
    pub export_seconds: f64,
    pub stats: DumpStats,
    /// The named volumes the archive carries (none with --ignore-volumes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<CarriedVolume>,
    /// The mounts it does not carry (host paths, other volume drivers, or
    /// every volume with --ignore-volumes), each named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_carried: Vec<String>,
}

/// A named volume an archive carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CarriedVolume {
    pub name: String,
    /// Where the container mounts it.
    pub destination: String,
    /// Its files' bytes.
    pub bytes: u64,
}

/// CRIU's dump statistics (its `stats-dump` image; times in µs). A field
/// CRIU did not write is absent from the JSON and 0 in the text.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DumpStats {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freezing_time_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_time_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memdump_time_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memwrite_time_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_scanned: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pages_written: Option<u64>,
}

impl DumpStats {
    /// From lazarus-core's reading of `stats-dump` (names as in
    /// [`lazarus_core::checkpoint::image::DUMP_STATS`]).
    pub fn from_image(stats: &BTreeMap<&'static str, u64>) -> DumpStats {
        let get = |name: &str| stats.get(name).copied();
        DumpStats {
            freezing_time_us: get("freezing_time_us"),
            frozen_time_us: get("frozen_time_us"),
            memdump_time_us: get("memdump_time_us"),
            memwrite_time_us: get("memwrite_time_us"),
            pages_scanned: get("pages_scanned"),
            pages_written: get("pages_written"),
        }
    }
}

/// What `checkpoint --group` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupExportReport {
    pub archive: PathBuf,
    pub members: Vec<ExportReport>,
    pub stopped: bool,
    /// From the first lock to the last member frozen.
    pub freeze_seconds: f64,
    /// From the first lock until the group archive was written.
    pub frozen_seconds: f64,
}

/// What `restore --import` made: the new container, and where from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub name: String,
    pub id: String,
    /// "docker" or "containerd".
    pub engine: String,
    pub namespace: String,
    pub from: PathBuf,
    pub extract_seconds: f64,
    pub restore_seconds: f64,
    /// A stop-and-copy migration's memory, received before the archive.
    #[serde(default)]
    pub pages_bytes: Option<u64>,
    /// The volumes made here from the archive's copies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<String>,
    /// How the checkpoint reached the runtime: [`PATH_HAND_OFF`] (Lazarus
    /// restored from the extracted images where they lay),
    /// [`PATH_DOCKER_CHECKPOINT`] (another runtime, through a Docker
    /// checkpoint Docker copies before it starts) or [`PATH_CONTAINERD`]
    /// (a containerd task restored from the images). Empty from an older
    /// receiver.
    #[serde(default)]
    pub restore_path: String,
    /// Whether it ran once restored (`restore --import`'s last stage,
    /// "ready"); not looked at by a migration's receiver (its sender
    /// waits).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<bool>,
}

pub const PATH_HAND_OFF: &str = "hand-off";
pub const PATH_DOCKER_CHECKPOINT: &str = "docker-checkpoint";
pub const PATH_CONTAINERD: &str = "containerd";

/// What `restore --import` of a group archive made.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GroupImportReport {
    pub group: PathBuf,
    /// How long the members' network stayed locked after the last restore.
    pub unlock_seconds: f64,
    pub frozen_at: DateTime<Utc>,
    pub members: Vec<ImportReport>,
    pub restore_seconds: f64,
}

/// Either kind of import, as the command found the archive.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Imported {
    One(ImportReport),
    Group(GroupImportReport),
}

/// Either kind of checkpoint, as the command was asked.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Exported {
    One(Box<ExportReport>),
    Group(GroupExportReport),
}

/// What `lazarus migrate` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MigrationReport {
    pub container: String,
    pub to: String,
    /// "postcopy" or "stopcopy".
    pub mode: String,
    /// The receiver's restore, as it reported it.
    pub restored: Option<ImportReport>,
    /// "removed" (--rm) or "stopped".
    pub source: String,
    pub downtime_seconds: f64,
    pub checkpoint_seconds: f64,
    pub archive_seconds: f64,
    pub transfer_seconds: f64,
    pub restore_seconds: Option<f64>,
    pub archive_bytes: u64,
    /// Post-copy: how long the memory took to follow.
    pub memory_seconds: Option<f64>,
    pub memory_bytes: Option<u64>,
    pub total_seconds: f64,
    /// What crossed in the page tunnel (CRIU's page stream between the
    /// hosts), counted by this host's end.
    #[serde(default)]
    pub page_stream: Option<PageStreamReport>,
    /// What the container uses that stayed on this host (`--ignore-volumes`,
    /// host paths), as the export named it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_carried: Vec<String>,
}

/// One page tunnel's bytes, as the sender's end counted them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageStreamReport {
    /// From the source's CRIU to the receiver: the memory, in either mode.
    pub sent_bytes: u64,
    /// From the receiver to the source's CRIU (post-copy: the lazy-pages
    /// daemon's requests; stop-copy: the page server's answers).
    pub received_bytes: u64,
    /// From the first byte to the last.
    pub seconds: f64,
    /// Both directions' bytes over those seconds, in MiB/s.
    pub mib_per_second: Option<f64>,
}

/// `lazarus version`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionReport {
    pub lazarus: String,
    /// The shim's version (`containerd-shim-lazarus-v2 -v`, the one on
    /// PATH), or "not found".
    pub shim: String,
    /// Where that shim is.
    pub shim_path: Option<PathBuf>,
    /// CRIU's version, "not found", or "unavailable" (it did not answer).
    pub criu: String,
}

/// The one line a report prints for people without `--json`.
pub trait Summary {
    fn summary(&self) -> String;

    /// A sentence for people (on stderr, so that stdout stays the
    /// summary a script reads): what was done, where, how big, how long.
    fn said(&self) -> Option<String> {
        None
    }
}

impl Summary for ExportReport {
    /// The archive, then what it carries and does not beyond the container.
    fn summary(&self) -> String {
        let mut lines = vec![self.archive.display().to_string()];
        for v in &self.volumes {
            lines.push(format!(
                "  volume {} ({}, at {}) carried",
                v.name,
                human(v.bytes),
                v.destination
            ));
        }
        for n in &self.not_carried {
            lines.push(format!("  not carried: {n}"));
        }
        lines.join("\n")
    }
}

impl Summary for Exported {
    fn summary(&self) -> String {
        match self {
            Exported::One(r) => r.summary(),
            Exported::Group(g) => g.archive.display().to_string(),
        }
    }

    fn said(&self) -> Option<String> {
        Some(match self {
            Exported::One(r) => format!(
                "lazarus: checkpointed {} ({}) into {}: {} in {:.2} s (dump {:.2} s); {}",
                r.container,
                r.engine,
                r.archive.display(),
                human(r.archive_bytes),
                r.export_seconds,
                r.checkpoint_seconds,
                match r.stopped {
                    true => format!("{} is stopped", r.container),
                    false => format!("{} runs on", r.container),
                }
            ),
            Exported::Group(g) => format!(
                "lazarus: checkpointed {} containers together into {} (frozen {:.2} s); they {}",
                g.members.len(),
                g.archive.display(),
                g.frozen_seconds,
                match g.stopped {
                    true => "are stopped",
                    false => "run on",
                }
            ),
        })
    }
}

/// What the import's "ready" stage found.
fn running_said(r: &ImportReport) -> String {
    match r.running {
        None => String::new(),
        Some(true) => "; it runs".into(),
        Some(false) => format!(
            "; it is NOT running: its processes ended right after the restore (see {})",
            match r.engine.as_str() {
                "docker" => format!("`docker logs {}` and its shim's log", r.name),
                _ => "its shim's log".to_string(),
            }
        ),
    }
}

impl Summary for Imported {
    fn said(&self) -> Option<String> {
        Some(match self {
            Imported::One(r) => format!(
                "lazarus: restored {} ({}) from {} in {:.2} s (verified and unpacked in {:.2} \
                 s){}{}",
                r.name,
                r.engine,
                r.from.display(),
                r.restore_seconds,
                r.extract_seconds,
                match r.volumes.is_empty() {
                    true => String::new(),
                    false => format!("; volumes made: {}", r.volumes.join(", ")),
                },
                running_said(r),
            ),
            Imported::Group(g) => {
                let stopped: Vec<&str> = g
                    .members
                    .iter()
                    .filter(|m| m.running == Some(false))
                    .map(|m| m.name.as_str())
                    .collect();
                format!(
                    "lazarus: restored {} containers together from {} in {:.2} s{}",
                    g.members.len(),
                    g.group.display(),
                    g.restore_seconds,
                    match stopped.is_empty() {
                        true => String::new(),
                        false => format!(
                            "; NOT running (ended right after the restore): {}",
                            stopped.join(", ")
                        ),
                    }
                )
            }
        })
    }

    fn summary(&self) -> String {
        match self {
            Imported::One(r) => r.name.clone(),
            Imported::Group(g) => g
                .members
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    }
}

impl Summary for VersionReport {
    fn summary(&self) -> String {
        let shim = match &self.shim_path {
            Some(p) => format!("{} ({})", self.shim, p.display()),
            None => self.shim.clone(),
        };
        format!(
            "lazarus {}\nshim    {shim}\ncriu    {}",
            self.lazarus, self.criu
        )
    }
}

impl Summary for MigrationReport {
    fn summary(&self) -> String {
        let human = |n: Option<u64>| human(n.unwrap_or(0));
        let memory = match self.memory_seconds {
            Some(m) => format!(
                "; its memory ({}) followed in {m:.2}s",
                human(self.memory_bytes)
            ),
            None => format!(
                "; memory {} through the page stream",
                human(self.memory_bytes)
            ),
        };
        let restored_as = self.restored.as_ref().map_or("", |r| r.name.as_str());
        let left: String = self
            .not_carried
            .iter()
            .map(|n| format!("\n  not carried (stays on this host): {n}"))
            .collect();
        format!(
            "{} runs on {} as {restored_as} (source {}, {}): downtime {:.2}s (checkpoint and \
             archive {:.2}s, transfer {:.2}s of {}, restore {:.2}s){memory}{left}",
            self.container,
            self.to,
            self.source,
            self.mode,
            self.downtime_seconds,
            self.archive_seconds,
            self.transfer_seconds,
            human(Some(self.archive_bytes)),
            self.restore_seconds.unwrap_or(0.0),
        )
    }
}

/// Pretty JSON, as every `--json` prints it.
pub fn json(report: &impl Serialize) -> String {
    serde_json::to_string_pretty(report).expect("a report is plain data")
}

/// The `--print-stats` lines of an export.
pub fn export_text(r: &ExportReport) -> String {
    let ms = |us: Option<u64>| format!("{:.1} ms", us.unwrap_or(0) as f64 / 1000.0);
    let n = |v: Option<u64>| v.unwrap_or(0);
    let s = &r.stats;
    [
        ("Container", format!("{} ({})", r.container, r.engine)),
        ("Archive", ratio(r.archive_bytes, r.content_bytes)),
        ("Memory pages", human(r.pages_bytes)),
        (
            "Rootfs diff",
            format!(
                "{}, {} deleted",
                human(r.rootfs_diff_bytes),
                r.deleted_files
            ),
        ),
        (
            "Frozen",
            format!(
                "{} (freezing {}, memory dump {}, memory write {})",
                ms(s.frozen_time_us),
                ms(s.freezing_time_us),
                ms(s.memdump_time_us),
                ms(s.memwrite_time_us)
            ),
        ),
        (
            "Pages",
            format!(
                "{} scanned, {} written",
                n(s.pages_scanned),
                n(s.pages_written)
            ),
        ),
        (
            "Took",
            format!(
                "{:.2} s checkpoint, {:.2} s in all",
                r.checkpoint_seconds, r.export_seconds
            ),
        ),
    ]
    .iter()
    .map(|(k, v)| field(k, v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazarus_core::archive::ManifestEntry;

    #[test]
    fn pages_are_the_page_images_only() {
        let m = Manifest::new(vec![
            ManifestEntry::dir("checkpoint"),
            ManifestEntry::file("checkpoint/pages-1.img", 4096, String::new()),
            ManifestEntry::file("checkpoint/pages-2.img", 8192, String::new()),
            ManifestEntry::file("checkpoint/pagemap-1.img", 10, String::new()),
            ManifestEntry::file("checkpoint/pages-3.img.zst", 100, String::new()),
            ManifestEntry::file("rootfs-diff.tar", 512, String::new()),
        ]);
        // Without lazarus.json's record, a .zst counts as what it stores.
        assert_eq!(pages_bytes(&m, &[]), 12388);
        let listed = CompressedFile {
            name: "pages-3.img".into(),
            raw_bytes: 1 << 20,
            stored_bytes: 100,
        };
        assert_eq!(pages_bytes(&m, &[listed]), 12288 + (1 << 20));
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
        assert_eq!(ratio(50, 100), "0.50 of its content (100 B in 50 B)");
    }

    fn exported() -> ExportReport {
        ExportReport {
            archive: "/b/web.tar.zst".into(),
            container: "web".into(),
            id: "0123".into(),
            engine: "docker".into(),
            namespace: "moby".into(),
            stopped: true,
            encrypted: false,
            archive_bytes: 512,
            content_bytes: 1024,
            pages_bytes: 8192,
            rootfs_diff_bytes: 2048,
            deleted_files: 3,
            checkpoint_seconds: 1.25,
            export_seconds: 2.5,
            stats: DumpStats {
                freezing_time_us: Some(1500),
                frozen_time_us: Some(42_000),
                memdump_time_us: Some(2000),
                memwrite_time_us: Some(3000),
                pages_scanned: Some(77),
                pages_written: Some(66),
            },
            volumes: Vec::new(),
            not_carried: Vec::new(),
        }
    }

    /// `--print-stats` once printed zeros: it read a report by string keys
    /// with silent defaults. Every number comes from a typed field now.
    #[test]
    fn print_stats_shows_the_reports_numbers() {
        let text = export_text(&exported());
        for shown in [
            "web (docker)",
            "0.50 of its content (1.0 KiB in 512 B)",
            "8.0 KiB",
            "2.0 KiB, 3 deleted",
            "42.0 ms (freezing 1.5 ms, memory dump 2.0 ms, memory write 3.0 ms)",
            "77 scanned, 66 written",
            "1.25 s checkpoint, 2.50 s in all",
        ] {
            assert!(text.contains(shown), "{shown:?} not in:\n{text}");
        }
    }

    /// `--json` keeps the keys it had: scripts read them.
    #[test]
    fn the_json_reports_keep_their_keys() {
        let v = serde_json::to_value(exported()).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "archive",
                "archive_bytes",
                "checkpoint_seconds",
                "container",
                "content_bytes",
                "deleted_files",
                "engine",
                "export_seconds",
                "id",
                "namespace",
                "pages_bytes",
                "rootfs_diff_bytes",
                "stats",
                "stopped",
            ],
            "encrypted only when it is"
        );
        assert_eq!(v["stats"]["frozen_time_us"], 42_000);
        // Statistics CRIU did not write are absent, not zero.
        let bare = ExportReport {
            stats: DumpStats::default(),
            encrypted: true,
            ..exported()
        };
        let v = serde_json::to_value(bare).unwrap();
        assert_eq!(v["stats"], serde_json::json!({}));
        assert_eq!(v["encrypted"], true);
    }

    /// People read what was done on stderr; stdout stays the archive or
    /// the name, for scripts.
    #[test]
    fn a_finished_command_says_what_where_how_big_and_how_long() {
        let r = ExportReport {
            stopped: true,
            ..exported()
        };
        let one = Exported::One(Box::new(r.clone()));
        let said = one.said().unwrap();
        assert!(said.starts_with("lazarus: checkpointed "), "{said}");
        assert!(said.contains(&r.archive.display().to_string()), "{said}");
        assert!(
            said.ends_with(&format!("{} is stopped", r.container)),
            "{said}"
        );
        assert_eq!(
            one.summary().lines().next().unwrap(),
            r.archive.display().to_string()
        );
        let running = Exported::One(Box::new(ExportReport {
            stopped: false,
            ..r
        }));
        assert!(running.said().unwrap().ends_with("runs on"));
    }

    /// The import's last stage says whether the container runs.
    #[test]
    fn an_import_says_whether_its_container_runs() {
        let r = ImportReport {
            name: "web".into(),
            id: "0123".into(),
            engine: "docker".into(),
            namespace: "moby".into(),
            from: "/r/web.tar".into(),
            extract_seconds: 0.5,
            restore_seconds: 1.5,
            pages_bytes: None,
            volumes: Vec::new(),
            restore_path: PATH_HAND_OFF.into(),
            running: Some(true),
        };
        let said = |r: &ImportReport| Imported::One(r.clone()).said().unwrap();
        assert!(said(&r).ends_with("; it runs"), "{}", said(&r));
        let ended = ImportReport {
            running: Some(false),
            ..r.clone()
        };
        assert!(said(&ended).contains("NOT running"), "{}", said(&ended));
        assert!(said(&ended).contains("docker logs web"), "{}", said(&ended));
        let unknown = ImportReport { running: None, ..r };
        assert!(said(&unknown).ends_with("s)"), "{}", said(&unknown));
    }

    /// The receiver's restore report crosses the migration channel.
    #[test]
    fn an_import_report_reads_back_as_it_was_sent() {
        let r = ImportReport {
            name: "web".into(),
            id: "0123".into(),
            engine: "containerd".into(),
            namespace: "default".into(),
            from: "/r/archive.tar".into(),
            extract_seconds: 0.5,
            restore_seconds: 1.5,
            pages_bytes: Some(4096),
            volumes: vec!["redis-data".into()],
            restore_path: PATH_CONTAINERD.into(),
            running: None,
        };
        let back: ImportReport = serde_json::from_str(&json(&r)).unwrap();
        assert_eq!(back, r);
        // An older receiver's says nothing of the path.
        let mut old = serde_json::to_value(&r).unwrap();
        old.as_object_mut().unwrap().remove("restore_path");
        let back: ImportReport = serde_json::from_value(old).unwrap();
        assert_eq!(back.restore_path, "");
    }
}

/// What `checkpoint --all` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllCheckpointReport {
    pub dir: PathBuf,
    /// `DIR/lazarus-all.json`.
    pub record: PathBuf,
    /// Each container it took, or tried to, in restore order.
    pub containers: Vec<AllCheckpointed>,
    /// Containers of another runtime, named with the reason.
    pub left_alone: Vec<LeftAlone>,
    /// What else the operator should know (the kubelet's namespace, a
    /// Compose project not wholly Lazarus's).
    pub notes: Vec<String>,
    pub checkpointed: usize,
    pub failed: usize,
    /// The archives' bytes together.
    pub total_bytes: u64,
    pub total_seconds: f64,
}

/// One container of `checkpoint --all`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllCheckpointed {
    pub engine: String,
    pub namespace: String,
    pub name: String,
    pub id: String,
    /// The Compose project it was checkpointed with, at one instant.
    pub group: Option<String>,
    /// Its archive (a group's members share the group's).
    pub archive: Option<PathBuf>,
    /// Store-backed sets: the snapshot holding it (then no archive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub archive_bytes: u64,
    /// How long CRIU kept it frozen (its own dump; a group's members stay
    /// frozen until the whole group is dumped).
    pub frozen_seconds: Option<f64>,
    pub checkpoint_seconds: f64,
    /// "checkpointed" or "failed" (then it runs on).
    pub outcome: String,
    pub error: Option<String>,
}

/// A container `checkpoint --all` did not touch.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LeftAlone {
    pub engine: String,
    pub namespace: String,
    pub name: String,
    pub id: String,
    pub reason: String,
}

/// What `restore --all` did (or, with --dry-run, would do).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllRestoreReport {
    pub dir: PathBuf,
    pub dry_run: bool,
    pub containers: Vec<AllRestored>,
    pub restored: usize,
    pub already_running: usize,
    pub failed: usize,
    /// Every recorded container runs: the record was retired
    /// (`lazarus-all.restored.json`).
    pub complete: bool,
    /// What changed since the checkpoint (a new kernel or CRIU).
    #[serde(default)]
    pub notes: Vec<String>,
    pub total_seconds: f64,
}

/// One recorded container at `restore --all`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllRestored {
    pub engine: String,
    pub namespace: String,
    pub name: String,
    pub group: Option<String>,
    /// "restored", "already running", "failed", or with --dry-run "would
    /// restore" / "would replace the checkpointed container" / ...
    pub outcome: String,
    /// The running container's id.
    pub id: Option<String>,
    /// Its restore (a group's: the whole group's).
    pub restore_seconds: Option<f64>,
    /// Docker's restart policy, put back.
    pub restart_policy: Option<String>,
    pub error: Option<String>,
}

impl Summary for AllCheckpointReport {
    fn summary(&self) -> String {
        let mut out = Vec::new();
        for c in &self.containers {
            let group = c
                .group
                .as_ref()
                .map(|g| format!(" (Compose project {g})"))
                .unwrap_or_default();
            out.push(match &c.error {
                None => format!(
                    "checkpointed {} {}/{}{group}: frozen {}, checkpoint {:.2}s, {} in {}",
                    c.engine,
                    c.namespace,
                    c.name,
                    c.frozen_seconds
                        .map_or("?".to_string(), |f| format!("{f:.2}s")),
                    c.checkpoint_seconds,
                    human(c.archive_bytes),
                    match (&c.archive, &c.snapshot) {
                        (Some(a), _) => a.display().to_string(),
                        (None, Some(id)) => format!("snapshot {id} of the store"),
                        (None, None) => String::new(),
                    },
                ),
                Some(e) => format!(
                    "FAILED {} {}/{}{group}: {e} (it runs on)",
                    c.engine, c.namespace, c.name
                ),
            });
        }
        for l in &self.left_alone {
            out.push(format!(
                "{} {}/{}: {}",
                l.engine, l.namespace, l.name, l.reason
            ));
        }
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        out.push(format!(
            "{} checkpointed, {} failed, {} left alone: {} in {:.2}s; record {}",
            self.checkpointed,
            self.failed,
            self.left_alone.len(),
            human(self.total_bytes),
            self.total_seconds,
            self.record.display()
        ));
        out.join("\n")
    }
}

impl Summary for AllRestoreReport {
    fn summary(&self) -> String {
        let mut out = Vec::new();
        for c in &self.containers {
            let group = c
                .group
                .as_ref()
                .map(|g| format!(" (Compose project {g})"))
                .unwrap_or_default();
            let mut line = format!(
                "{} {} {}/{}{group}",
                c.outcome, c.engine, c.namespace, c.name
            );
            if let Some(s) = c.restore_seconds {
                line.push_str(&format!(" in {s:.2}s"));
            }
            if let Some(p) = &c.restart_policy {
                line.push_str(&format!(", restart policy {p} put back"));
            }
            if let Some(e) = &c.error {
                line.push_str(&format!(": {e}"));
            }
            out.push(line);
        }
        for n in &self.notes {
            out.push(format!("note: {n}"));
        }
        let state = match (self.dry_run, self.complete) {
            (true, _) => "dry run: nothing was changed".to_string(),
            (false, true) => "every recorded container runs; record retired".to_string(),
            (false, false) => format!(
                "the record is kept in {} until every container runs: run restore --all again",
                self.dir.display()
            ),
        };
        out.push(format!(
            "{} restored, {} already running, {} failed in {:.2}s; {state}",
            self.restored, self.already_running, self.failed, self.total_seconds
        ));
        out.join("\n")
    }
}
