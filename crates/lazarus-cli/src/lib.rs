//! The `lazarus` command line as a library: what each command does, apart
//! from parsing its arguments (`main.rs`, `args.rs`) and printing its
//! report.
//!
//! - [`engine`]: the container engines a command reaches (containerd's
//!   gRPC API, Docker's Engine API), where they are ([`engine::endpoints`])
//!   and which of them knows a container ([`engine::target`]);
//! - [`flows`]: the commands' flows (export, group checkpoint, import,
//!   inspect, migrate and serve, keys, version), written against the
//!   engines;
//! - [`report`]: the typed reports the flows return, printed as text or,
//!   with `--json`, serialised once;
//! - small helpers: [`error`], [`fs_tree`] (moving checkpoint images),
//!   [`progress`], [`seal`] (age encryption), [`grants`] (the import
//!   policy's flags), [`guard`] (the self-spawned guards' common part).
//!
//! A checkpoint is always taken by the container's shim, asked through
//! containerd; archives, CRIU images and host facts are lazarus-core's.

pub mod engine;
pub mod error;
pub mod flows;
pub mod fs_tree;
pub mod grants;
pub mod guard;
pub mod progress;
pub mod report;
pub mod seal;

pub use error::{Error, Result};

/// Runs `f` on a current-thread runtime: the CLI does one thing at a time,
/// and zstd has its own threads.
pub fn block_on<T, F: std::future::Future<Output = Result<T>>>(f: F) -> Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Core(lazarus_core::Error::io("start the async runtime")(e)))?
        .block_on(f)
}
