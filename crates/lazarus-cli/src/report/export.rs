//! What `checkpoint` reports: one container's export (with CRIU's dump
//! statistics and the volumes it carries), a group's, and the
//! `--print-stats` text made from the same fields.

use std::collections::BTreeMap;
use std::path::PathBuf;

use lazarus_core::inspect::{field, human};
use serde::{Deserialize, Serialize};

use super::sizes::ratio;
use super::Summary;

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

/// Either kind of checkpoint, as the command was asked.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Exported {
    One(Box<ExportReport>),
    Group(GroupExportReport),
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
