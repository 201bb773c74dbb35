//! The container engines: containerd (its gRPC API: containers, tasks,
//! snapshots, images, content) and Docker (its Engine API over dockerd's
//! socket), where they are, and which of them knows a container.
//!
//! A Docker container is also a containerd container (in Docker's `moby`
//! namespace): checkpoints always go through containerd's Task API to the
//! shim, while Docker is asked for what only it knows (its configuration,
//! its overlay2 directories, its checkpoint directories).
//!
//! The flows reach them through one seam, [`Engine`] and [`Tasks`]
//! ([`seam`]), implemented for both clients and selected once
//! ([`Selected`]); unit tests use a fake engine instead.

pub mod containerd;
pub mod docker;
pub mod docker_config;
pub mod endpoints;
#[cfg(test)]
pub mod fake;
pub mod image_chain;
pub mod runtimes;
pub mod seam;
pub mod target;

pub use seam::{Engine, ImageFound, Selected, Tasks};
