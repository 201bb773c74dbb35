//! Crafted archives refused by name (hooks, privileges, host paths,
//! capabilities, credentials, cgroup paths, bombs); signatures.

pub mod archives;
