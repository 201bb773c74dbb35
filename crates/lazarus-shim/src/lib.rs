//! containerd-shim-lazarus-v2: the containerd Task API over Lazarus's core.
//!
//! Layout: `shim` (bootstrap) → `task` (ttrpc handlers) → `service` (the
//! task logic, one container's work under that container's own lock) →
//! `state` (what each task state allows) and `container`/`process`, with
//! three seams: `runtime` (libcontainer in a single-threaded helper),
//! `events` (containerd or a channel) and CRIU (`lazarus_core::criu`,
//! waited for through `reaper`).

pub mod config;
pub mod container;
pub mod error;
pub mod events;
pub mod group_lock;
pub mod info;
pub mod io;
pub mod log_fifo;
pub mod oom;
pub mod options;
pub mod process;
pub mod reaper;
pub mod runtime;
pub mod service;
pub mod shim;
pub mod state;
pub mod task;
