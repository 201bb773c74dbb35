//! The container engines: containerd (its gRPC API: containers, tasks,
//! snapshots, images, content) and Docker (its Engine API over dockerd's
//! socket), where they are, and which of them knows a container.
//!
//! A Docker container is also a containerd container (in Docker's `moby`
//! namespace): checkpoints always go through containerd's Task API to the
//! shim, while Docker is asked for what only it knows (its configuration,
//! its overlay2 directories, its checkpoint directories).

pub mod containerd;
pub mod docker;
pub mod docker_config;
pub mod endpoints;
pub mod image_chain;
pub mod runtimes;
pub mod target;
