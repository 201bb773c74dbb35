//! What `lazarus migrate` reports: the move's downtime and its parts, the
//! receiver's restore, and what crossed in the page tunnel.

use lazarus_core::inspect::human;
use serde::{Deserialize, Serialize};

use super::{ImportReport, Summary};

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
        let runtime = self
            .restored
            .as_ref()
            .and_then(|r| r.start_seconds)
            .map_or(String::new(), |s| {
                format!(", of which the runtime's {s:.2}s")
            });
        format!(
            "{} runs on {} as {restored_as} (source {}, {}): downtime {:.2}s (checkpoint and \
             archive {:.2}s, transfer {:.2}s of {}, restore {:.2}s{runtime}){memory}{left}",
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
