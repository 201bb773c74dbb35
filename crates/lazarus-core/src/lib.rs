//! Lazarus's core: everything about checkpoints that is not containerd.
//!
//! - `archive` (feature `archive`): the portable checkpoint archive
//!   (Podman's layout, so checkpointctl reads it) with a manifest checked
//!   before extraction, and its signatures;
//! - `channel` (feature `channel`): the authenticated, encrypted stream a
//!   migration crosses the network on (Noise, keyed by the hosts' shared
//!   key);
//! - [`criu`]: CRIU over its RPC interface (`criu swrk`), with a deadline on
//!   every conversation and the wait for CRIU's exit passed in by the caller
//!   (the shim routes it through its reaper; the CLI waits directly); CRIU's
//!   page daemons; CRIU's image files read without its schema;
//! - [`checkpoint`]: the image directory (metadata, descriptors, the root
//!   filesystem diff), the dump and restore requests built from an OCI
//!   spec, and a migration's dump (its page server, and the control files
//!   the migrating client and the runtime talk through);
//! - [`inspect`]: what an image directory holds, for `lazarus inspect`;
//! - [`host`]: facts about this machine (cgroup layout, freezer, kernel,
//!   a container's memory use and the host's spare memory);
//! - [`config`]: `/etc/lazarus/config.toml`, read by the shim and the CLI;
//! - [`scratch`]: private scratch directories (on disk, or in memory when
//!   a dump fits), and the removal of those whose operation was killed;
//! - [`security`]: what an archive or a checkpoint's images ask for
//!   (hooks, privileges, host namespaces and mounts, credentials) against
//!   what the user granted;
//! - `manifest` (feature `store` or `archive`): the manifest's data, every
//!   file of a checkpoint with its size and sha256, which the archive
//!   carries and the store's records keep;
//! - `store` (feature `store`): the snapshot store, checkpoints kept on
//!   this host cut into page-sized blocks, each stored once (cutting an
//!   archive into it and writing one from it need `archive` too);
//! - [`ids`]: container ids, exec ids and namespaces checked before they
//!   become path components.
//!
//! No ttrpc, no containerd-shim, no reaper: the shim and the CLI are thin
//! front doors over this crate.
//!
//! The modules are layered, each using only those below it (a test,
//! `layering_tests.rs`, fails on a circle): `error`; then `ids`, `fdpass`,
//! `files`, `channel`, `manifest`; `criu`; `host`, `security`; `scratch`;
//! `checkpoint`; `inspect`, `archive`; `store`; `config` on top.

#[cfg(feature = "archive")]
pub mod archive;
#[cfg(feature = "channel")]
pub mod channel;
pub mod checkpoint;
pub mod config;
pub mod criu;
pub mod error;
pub mod fdpass;
pub mod files;
pub mod host;
pub mod ids;
pub mod inspect;
#[cfg(any(feature = "store", feature = "archive"))]
pub mod manifest;
pub mod scratch;
pub mod security;
#[cfg(feature = "store")]
pub mod store;

pub use error::{Error, Result};

#[cfg(test)]
mod layering_tests;
