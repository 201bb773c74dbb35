//! Snapshots: a running container's states kept in this host's store
//! (lazarus-core's `store`: page-sized blocks, each kept once), reverted
//! to, compared, exported.
//!
//! - `take.rs`: `lazarus snapshot C [--tag T] [--every D --keep N]`: a
//!   checkpoint that leaves the container running (frozen only for the
//!   dump), written into the store;
//! - `manage.rs`: `lazarus snapshots [C]`, `snapshot rm`, `snapshots
//!   prune`, `checkpoint --export F --snapshot ID`;
//! - `revert.rs`: `lazarus restore C --snapshot ID` (in place, or beside it
//!   with --name) through the import's restore;
//! - `diff.rs`: `lazarus diff A B`;
//! - `report.rs`: what they print.

use std::time::Duration;

use lazarus_core::config::Config;
use lazarus_core::store::Store;

use crate::error::Result;

pub mod diff;
pub mod manage;
pub mod report;
pub mod revert;
pub mod take;

/// `lazarus snapshot`: take one (or a series), or `snapshot rm`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SnapshotCommand {
    #[command(subcommand)]
    pub action: Option<SnapshotAction>,
    #[command(flatten)]
    pub take: take::TakeArgs,
}

#[derive(clap::Subcommand)]
pub enum SnapshotAction {
    /// Add a checkpoint archive (`checkpoint --export`, e.g. a snapshot
    /// exported on another host) to this host's store as a snapshot of
    /// its container: a series shipped as archives shares its blocks here
    /// too. Verified whole and held to the [import] limits; what it asks
    /// of the host is checked when it is restored
    #[command(verbatim_doc_comment)]
    Import(manage::SnapshotImportArgs),
    /// Remove snapshots (their blocks go when no other snapshot uses them)
    Rm {
        /// Snapshot ids (or unique prefixes, or tags)
        #[arg(required = true)]
        ids: Vec<String>,
        /// Print the result as JSON
        #[arg(long)]
        json: bool,
    },
}

/// `lazarus snapshots`: list, or `snapshots prune`.
#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct SnapshotsCommand {
    #[command(subcommand)]
    pub action: Option<SnapshotsAction>,
    /// Only this container's snapshots
    pub container: Option<String>,
    /// Print JSON instead of a table
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand)]
pub enum SnapshotsAction {
    /// Remove old snapshots: all but the newest N of each container
    /// (--keep), and/or those older than D (--older-than); tagged
    /// snapshots are kept unless --tagged-too
    #[command(verbatim_doc_comment)]
    Prune(manage::PruneArgs),
}

/// The store the settings name.
pub fn store(config: &Config) -> Result<Store> {
    // The dump a killed snapshot left in memory goes with its writer
    // (which the store's open removes).
    lazarus_core::scratch::remove_abandoned_in_memory(&config.memory_root, "snapshot");
    Ok(Store::open(&config.store_root)?)
}

/// `30s`, `5m`, `2h`, `1d`, or seconds alone.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: a duration is a number and a unit, e.g. 30s, 5m, 2h, 1d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("{s:?}: the unit is s, m, h or d")),
    };
    match secs {
        0 => Err("a duration of 0".into()),
        s => Ok(Duration::from_secs(s)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        for bad in ["", "m", "5x", "0s", "-1s", "1.5h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }
}
