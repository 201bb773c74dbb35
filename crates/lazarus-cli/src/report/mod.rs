//! What the commands report: typed reports, serialised once for `--json`,
//! and their text for people (`--print-stats`, inspect of an archive)
//! made from the same fields. One file per command family (`export`,
//! `import`, `migration`, `all`); `sizes` holds the archive sizes they
//! share.

mod all;
mod export;
mod import;
mod migration;
mod sizes;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

pub use lazarus_core::inspect::human;
use serde::Serialize;

pub use all::{AllCheckpointReport, AllCheckpointed, AllRestoreReport, AllRestored, LeftAlone};
pub use export::{
    export_text, CarriedVolume, DumpStats, ExportReport, Exported, GroupExportReport,
};
pub use import::{
    GroupImportReport, ImportReport, Imported, PATH_CONTAINERD, PATH_DOCKER_CHECKPOINT,
    PATH_HAND_OFF,
};
pub use migration::{MigrationReport, PageStreamReport};
pub use sizes::{pages_bytes, ratio};

/// The one line a report prints for people without `--json`.
pub trait Summary {
    fn summary(&self) -> String;

    /// A sentence for people (on stderr, so that stdout stays the
    /// summary a script reads): what was done, where, how big, how long.
    fn said(&self) -> Option<String> {
        None
    }
}

/// Pretty JSON, as every `--json` prints it.
pub fn json(report: &impl Serialize) -> String {
    serde_json::to_string_pretty(report).expect("a report is plain data")
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
