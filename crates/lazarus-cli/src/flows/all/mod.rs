//! `lazarus checkpoint --all [--export-dir DIR]` and `lazarus restore
//! --all [--import-dir DIR]`: every running Lazarus container of this host
//! checkpointed before a reboot, and brought back after it. Without a
//! directory the set goes into the snapshot store (`store.rs`).
//!
//! Checkpoint: the containers are listed (Docker's, and every containerd
//! namespace's but the kubelet's `k8s.io` unless named), planned
//! (`plan.rs`: Docker's own never twice, other runtimes left alone and
//! named, Compose projects together, filters), then each unit is taken
//! by the ordinary flows (`flows::group::stop_one` for one container,
//! `flows::group::checkpoint` for a Compose project), up to `--parallel`
//! at once, into one archive each in DIR. A Docker restart policy is
//! cleared first (Docker would otherwise start the stopped container
//! afresh, at once or when dockerd starts: see `docs/reboot.md`) and put
//! back if the checkpoint fails. The record (`record.rs`,
//! `DIR/lazarus-all.json`) is written after each unit.
//!
//! Restore (`restore.rs`): the recorded units in order, each through
//! `flows::import::run`; what already runs under its name as the recorded
//! container (or as one a previous restore made) is skipped; the record
//! marks each container back and is retired once all are.

use std::path::PathBuf;

pub mod checkpoint;
mod host;
pub mod plan;
pub mod platform;
pub mod record;
pub mod restore;
mod store;

/// `checkpoint --all`'s own arguments (the export's flags, such as
/// --tcp-established or --compress, apply to each container).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct CheckpointAllArgs {
    /// Checkpoint every running Lazarus container of this host (Docker's
    /// and every containerd namespace's but k8s.io), stopping them, into
    /// the snapshot store (or --export-dir); Compose projects together
    #[arg(long, conflicts_with_all = ["container", "group", "compose", "pod", "from_docker_checkpoint", "encrypt", "export", "leave_running"], verbatim_doc_comment)]
    pub all: bool,
    /// --all: archives in this directory, with the record
    /// lazarus-all.json (made 0700), instead of the snapshot store
    #[arg(long, value_name = "DIR", requires = "all", verbatim_doc_comment)]
    pub export_dir: Option<PathBuf>,
    /// --all: only containers with this label (label=KEY or
    /// label=KEY=VALUE, as docker ps spells it; repeatable)
    #[arg(long, value_name = "FILTER", requires = "all", verbatim_doc_comment)]
    pub filter: Vec<String>,
    /// --all: how many checkpoints run at once
    #[arg(long, value_name = "N", default_value_t = 2, requires = "all", value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
}

/// `restore --all`'s own arguments.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct RestoreAllArgs {
    /// Restore every container `checkpoint --all` recorded (in the
    /// snapshot store, or --import-dir), in the recorded order (Compose
    /// projects together), each under its name; what runs already is
    /// skipped
    #[arg(long, conflicts_with_all = ["file", "name", "namespace", "runtime", "identity"], verbatim_doc_comment)]
    pub all: bool,
    /// --all: the directory `checkpoint --all --export-dir` wrote
    /// (without it: the set in the snapshot store)
    #[arg(long, visible_alias = "from", value_name = "DIR", requires = "all")]
    pub import_dir: Option<PathBuf>,
    /// --all: say what would be done, change nothing
    #[arg(long, requires = "all")]
    pub dry_run: bool,
}

/// The name a stopped, checkpointed Docker container is renamed to while
/// its restored copy takes its name (removed once that runs).
pub(crate) fn set_aside_name(name: &str) -> String {
    format!("{name}-lazarus-checkpointed")
}
