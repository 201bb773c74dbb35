//! The portable checkpoint archive: one tar file (zstd-compressed by default)
//! laid out as Podman, CRI-O and containerd's CRI lay out theirs, so that
//! their tools (checkpointctl) recognise it, plus a manifest of its own so a
//! corrupted or truncated archive is refused before anything is extracted to
//! its final place.
//!
//! | entry                   | what                                            |
//! |-------------------------|-------------------------------------------------|
//! | `lazarus-manifest.json` | [`Manifest`]: format, size + sha256 of all else; first, so it is read before any other entry |
//! | `checkpoint/`           | CRIU's images (with Lazarus's `lazarus.json`)  |
//! | `spec.dump`             | the OCI spec, annotated `io.container.manager=lazarus` |
//! | `config.dump`           | [`ArchiveConfig`]                               |
//! | `rootfs-diff.tar`       | added/changed files of the root filesystem      |
//! | `deleted.files`         | JSON list of deleted paths                      |
//! | `stats-dump`            | CRIU's dump statistics (checkpointctl shows them) |
//! | `network.status`        | optional                                        |
//! | `dump.log`              | CRIU's dump log                                 |
//! | `engine.dump`           | optional: what the engine needs to create the container again (Docker's create body) |
//!
//! `lazarus.json` has no top-level twin: Podman keeps its own metadata only
//! in `config.dump` and `spec.dump`, and a second copy could disagree with
//! the one CRIU's images travel with.

pub mod atomic;
pub mod group;
mod hashing;
mod manifest;
pub mod oci;
mod read;
pub mod signature;
mod sink;
pub mod volumes;
mod write;

#[cfg(test)]
mod prop_tests;
#[cfg(test)]
mod refusal_tests;
#[cfg(test)]
mod tests;

use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::checkpoint::rootfs::{RootfsDiff, DELETED_FILES, ROOTFS_DIFF_TAR};
pub use crate::manifest::{Manifest, ManifestEntry, FORMAT, MANIFEST_FILE};
// The snapshot store cuts an archive into blocks as it reads it.
#[cfg(feature = "store")]
pub(crate) use read::open as open_tar;
pub use read::{
    check_limits, extract, extract_with, read_leading, read_manifest, verify, verify_with,
};
pub use signature::{Signer, TrustedKeys};
pub use write::{
    sources, write, write_known, write_signed, write_signed_to, Content, KnownFiles, Source,
};

pub const CHECKPOINT_DIR: &str = "checkpoint";
pub const SPEC_DUMP: &str = "spec.dump";
pub const CONFIG_DUMP: &str = "config.dump";
pub const STATS_DUMP: &str = "stats-dump";
pub const NETWORK_STATUS: &str = "network.status";
pub const DUMP_LOG: &str = "dump.log";
pub const ENGINE_DUMP: &str = "engine.dump";

/// checkpointctl picks the engine from this spec annotation (`libpod`,
/// `cri-o`, anything else is shown as containerd).
pub const MANAGER_ANNOTATION: &str = "io.container.manager";
pub const MANAGER: &str = "lazarus";

/// `config.dump`. The keys are those of Podman's container config that
/// checkpointctl and containerd's CRI read (its `ContainerConfig`); Go's JSON
/// ignores the keys it does not know (`engine`, `namespace`). Times are RFC
/// 3339, as Go's `time.Time` wants them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveConfig {
    pub id: String,
    pub name: String,
    /// The image as the user named it (`docker.io/library/busybox:latest`).
    #[serde(rename = "rootfsImageName", default)]
    pub image_name: String,
    /// The image's digest (`sha256:…`): restore elsewhere must find the
    /// same image, not whatever the name points to by then.
    #[serde(rename = "rootfsImageRef", default)]
    pub image_digest: String,
    /// The OCI runtime, e.g. `io.containerd.lazarus.v2`.
    #[serde(default)]
    pub runtime: String,
    #[serde(rename = "createdTime")]
    pub created: DateTime<Utc>,
    #[serde(rename = "checkpointedTime")]
    pub checkpointed: DateTime<Utc>,
    /// What ran the container: `docker`, `containerd`, `cri`…
    #[serde(default)]
    pub engine: String,
    /// The containerd namespace (`moby`, `default`, `k8s.io`).
    #[serde(default)]
    pub namespace: String,
}

/// What goes into an archive. Big things are paths (streamed), small ones
/// bytes.
#[derive(Debug, Clone, Copy)]
pub struct ArchiveInput<'a> {
    /// CRIU's image directory, written as `checkpoint/`: regular files and
    /// directories only.
    pub images_dir: &'a Path,
    /// The container's OCI spec (config.json), a JSON object.
    pub spec_json: &'a [u8],
    pub config: &'a ArchiveConfig,
    pub rootfs_diff: Option<&'a RootfsDiff>,
    pub dump_log: Option<&'a Path>,
    pub network_status: Option<&'a [u8]>,
    /// The engine's own description of the container, enough to create it
    /// again (for Docker: the body of `POST /containers/create`). The OCI
    /// spec alone is not: Docker makes its own from its own config.
    pub engine_config: Option<&'a [u8]>,
    /// Named volumes carried (`volumes/NAME.tar`): (name, tar).
    pub volumes: &'a [(String, std::path::PathBuf)],
}

/// How big an archive may unpack: checked against its manifest before
/// anything is written (its entries are then held to the manifest's sizes
/// as they stream by), so a small file cannot fill a disk or an inode
/// table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_entries: u64,
    /// Unpacked bytes per byte of the archive file.
    pub max_ratio: u64,
    /// Free space the extraction must leave on the destination's file system.
    pub free_margin_bytes: u64,
}

impl Limits {
    /// What an import allows unless configured otherwise (the `[import]`
    /// section of the configuration starts from the same numbers; a test
    /// there keeps the two equal).
    pub const DEFAULT: Limits = Limits {
        max_entries: 100_000,
        // A GiB of zero pages compresses about 33,000-fold: legitimate
        // archives of idle memory come close to that.
        max_ratio: 50_000,
        free_margin_bytes: 256 << 20,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    /// `threads` 0 compresses on the calling thread; more runs zstd's own
    /// worker threads (page files are large and compress well in parallel).
    Zstd {
        level: i32,
        threads: u32,
    },
}

impl Default for Compression {
    /// zstd's default level, one worker per core: what Podman does.
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Compression::Zstd {
            level: 3,
            threads: u32::try_from(cores).unwrap_or(1),
        }
    }
}
