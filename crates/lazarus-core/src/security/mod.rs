//! Anything that comes from outside the host (an archive, a migration's
//! sender) gets no more than the importing user granted:
//!
//! - [`authority`]: what a recorded configuration (an archive's OCI spec
//!   or Docker create request) asks of the host: hooks, privileges, host
//!   namespaces and mounts, devices, weakened security options, sysctls;
//! - [`policy`]: what the user granted, checked against that before
//!   anything is created;
//! - [`creds`]: what CRIU's images would give the restored processes
//!   (capabilities, seccomp, no_new_privs, uids, mounts), checked at every
//!   restore against the container it restores into;
//! - [`caps`]: capability names, numbers and the default set.

pub mod authority;
pub mod caps;
pub mod creds;
pub mod policy;

pub use authority::{Grant, Item};
pub use policy::ImportPolicy;
