//! What `checkpoint --all` and `restore --all` report: each container of
//! the node, what was left alone, and the totals.

use std::path::PathBuf;

use lazarus_core::inspect::human;
use serde::{Deserialize, Serialize};

use super::Summary;

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
            let group = project_label(c.group.as_deref());
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
            let group = project_label(c.group.as_deref());
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

/// " (Compose project P)" for a member of one, else nothing.
fn project_label(group: Option<&str>) -> String {
    group
        .map(|g| format!(" (Compose project {g})"))
        .unwrap_or_default()
}
