//! A host's containers around a reboot: `lazarus checkpoint --all` and
//! `lazarus restore --all` across a simulated reboot of a daemon set.

pub mod all;
pub mod pair;
