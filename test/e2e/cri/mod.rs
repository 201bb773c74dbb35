//! Kubernetes' path: checkpoint and restore through CRI (test/cri-client),
//! one shim per pod.

pub mod checkpoint;
pub mod exec;
pub mod image;
pub mod mounts;
pub mod pod;
