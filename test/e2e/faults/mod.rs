//! Faults: CRIU, the shim or containerd killed mid-checkpoint or
//! mid-restore, containerd restarting, damaged checkpoints, a CRIU that
//! never answers, bounded restores, many containers at once; the CLI
//! itself killed mid-export and mid-import.

pub mod cli_kills;
pub mod concurrency;
pub mod corrupt;
pub mod criu_deadline;
pub mod kills;
pub mod migrate_kills;
pub mod restart;
pub mod restore_limits;
