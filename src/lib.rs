//! Lazarus: a containerd shim v2 on youki's libcontainer.
//!
//! Layout: `shim` (bootstrap) → `task` (ttrpc handlers) → `service` (the
//! task logic) → `container`/`process` (state) with three seams: `runtime`
//! (libcontainer in a single-threaded helper), `events` (containerd or a
//! channel) and, for checkpoints, CRIU.

pub mod checkpoint;
pub mod config;
pub mod container;
pub mod criu;
pub mod error;
pub mod events;
pub mod io;
pub mod oom;
pub mod process;
pub mod runtime;
pub mod service;
pub mod shim;
pub mod task;
