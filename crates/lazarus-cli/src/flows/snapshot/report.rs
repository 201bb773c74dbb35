//! What the snapshot commands print: JSON with --json, else a line (or a
//! table) for people.

use chrono::{DateTime, Utc};
use lazarus_core::inspect::human;
use lazarus_core::store::Snapshot;
use serde::Serialize;

use crate::report::Summary;

/// `lazarus snapshot C`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotReport {
    pub id: String,
    pub container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub created: DateTime<Utc>,
    /// How long CRIU kept the processes frozen (its own statistics).
    pub frozen_seconds: Option<f64>,
    /// The whole checkpoint through the runtime (the container ran on
    /// except while frozen).
    pub checkpoint_seconds: f64,
    /// Cutting it into blocks and writing the new ones.
    pub store_seconds: f64,
    /// What this snapshot added to the store (its new blocks, compressed).
    pub bytes_added: u64,
    /// What it holds (the checkpoint's bytes).
    pub bytes_referenced: u64,
    pub new_blocks: u64,
    pub blocks: u64,
    /// The store's packs after it.
    pub store_bytes: u64,
    /// The store is over store_max_gib with tagged snapshots alone.
    pub over_cap: bool,
    /// Snapshots the cap removed to make room.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_by_cap: Vec<String>,
    /// Full or incremental dump, and why.
    pub dump: String,
}

impl SnapshotReport {
    /// The report of the committed `s`, the times and the cap's doings
    /// left for the caller to fill in.
    pub fn of(s: Snapshot, store_bytes: u64, dump: String) -> SnapshotReport {
        SnapshotReport {
            id: s.id,
            container: s.container,
            tag: s.tag,
            created: s.created,
            frozen_seconds: None,
            checkpoint_seconds: 0.0,
            store_seconds: 0.0,
            bytes_added: s.bytes_added,
            bytes_referenced: s.bytes_referenced,
            new_blocks: s.new_blocks,
            blocks: s.blocks,
            store_bytes,
            over_cap: false,
            removed_by_cap: Vec::new(),
            dump,
        }
    }
}

impl Summary for SnapshotReport {
    fn summary(&self) -> String {
        let frozen = self
            .frozen_seconds
            .map(|s| format!("frozen {:.3} s", s))
            .unwrap_or_else(|| "frozen time unknown".into());
        let mut line = format!(
            "{} {}{}: {frozen}, {} added to the store ({} held; store {})",
            self.container,
            self.id,
            self.tag
                .as_deref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default(),
            human(self.bytes_added),
            human(self.bytes_referenced),
            human(self.store_bytes),
        );
        if !self.removed_by_cap.is_empty() {
            line += &format!("; store_max_gib removed {}", self.removed_by_cap.join(", "));
        }
        if self.over_cap {
            line += "; the store is over store_max_gib with tagged snapshots alone";
        }
        line
    }

    fn said(&self) -> Option<String> {
        Some(format!(
            "{}. Revert with `lazarus restore {} --snapshot {}`.",
            self.dump, self.container, self.id
        ))
    }
}

/// One line of `lazarus snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotEntry {
    pub id: String,
    pub container: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    pub created: DateTime<Utc>,
    pub frozen_seconds: Option<f64>,
    pub bytes_added: u64,
    pub bytes_referenced: u64,
    pub engine: String,
    pub processes: Vec<serde_json::Value>,
    pub tcp: u64,
}

impl From<&Snapshot> for SnapshotEntry {
    fn from(s: &Snapshot) -> SnapshotEntry {
        let info = &s.info;
        SnapshotEntry {
            id: s.id.clone(),
            container: s.container.clone(),
            tag: s.tag.clone(),
            created: s.created,
            frozen_seconds: info["frozen_us"].as_u64().map(|us| us as f64 / 1e6),
            bytes_added: s.bytes_added,
            bytes_referenced: s.bytes_referenced,
            engine: info["engine"].as_str().unwrap_or_default().to_string(),
            processes: info["processes"].as_array().cloned().unwrap_or_default(),
            tcp: info["tcp"].as_u64().unwrap_or(0),
        }
    }
}

/// `lazarus snapshots`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotList {
    pub snapshots: Vec<SnapshotEntry>,
    pub store_bytes: u64,
}

impl Summary for SnapshotList {
    fn summary(&self) -> String {
        let mut out = format!(
            "{:<12}  {:<16}  {:<20}  {:<12}  {:>8}  {:>9}  {:>9}  PROCESSES\n",
            "ID", "CONTAINER", "CREATED", "TAG", "FROZEN", "ADDED", "HELD"
        );
        for s in &self.snapshots {
            let procs: Vec<String> = s
                .processes
                .iter()
                .map(|p| p["comm"].as_str().unwrap_or("?").to_string())
                .collect();
            out += &format!(
                "{:<12}  {:<16}  {:<20}  {:<12}  {:>8}  {:>9}  {:>9}  {} ({})\n",
                s.id,
                s.container,
                s.created.format("%Y-%m-%d %H:%M:%S"),
                s.tag.as_deref().unwrap_or("-"),
                s.frozen_seconds
                    .map(|f| format!("{f:.3}s"))
                    .unwrap_or_else(|| "-".into()),
                human(s.bytes_added),
                human(s.bytes_referenced),
                procs.len(),
                procs.join(" "),
            );
        }
        out += &format!(
            "{} snapshot(s), the store takes {}",
            self.snapshots.len(),
            human(self.store_bytes)
        );
        out
    }
}

/// `snapshot rm`, `snapshots prune`.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedReport {
    pub removed: Vec<String>,
    pub bytes_freed: u64,
    pub store_bytes: u64,
}

impl Summary for RemovedReport {
    fn summary(&self) -> String {
        format!(
            "removed {} snapshot(s){}{}; {} freed, the store takes {}",
            self.removed.len(),
            if self.removed.is_empty() { "" } else { ": " },
            self.removed.join(", "),
            human(self.bytes_freed),
            human(self.store_bytes)
        )
    }
}
