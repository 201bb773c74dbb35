//! What each command does, once its arguments are parsed:
//!
//! - [`all`]: `checkpoint --all` / `restore --all` (a host's containers
//!   around a reboot, through [`export`], [`group`] and [`import`]);
//! - [`export`]: `checkpoint CONTAINER --export FILE`;
//! - [`group`]: `checkpoint --group|--compose|--pod --export FILE` (one
//!   instant of several containers; its guard is [`group_guard`]);
//! - [`import`]: `restore --import FILE` (one container, or a group);
//! - [`inspect`]: `inspect FILE|DIR`;
//! - [`migration`]: `migrate` (the sender) and `serve` (the receiver);
//! - [`keys`]: `keygen`; [`version`]: `version`.
//!
//! The command decides between a single and a group checkpoint
//! ([`export::ExportArgs::is_group`]); [`group`] uses [`export`] for each
//! member, never the other way round.

pub mod all;
pub mod export;
pub mod group;
pub mod group_guard;
pub mod import;
pub mod inspect;
pub mod keys;
pub mod migration;
#[cfg(test)]
pub(crate) mod step_log;
pub mod version;
