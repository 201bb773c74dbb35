//! What each command does, once its arguments are parsed:
//!
//! - [`all`]: `checkpoint --all` / `restore --all` (a host's containers
//!   around a reboot, through [`export`], [`group`] and [`import`]);
//! - [`export`]: `checkpoint CONTAINER --export FILE`;
//! - [`group`]: `checkpoint --group|--compose|--pod --export FILE` (one
//!   instant of several containers; its guard is [`group_guard`]);
//! - [`import`]: `restore --import FILE` (one container, or a group;
//!   its guard, and `serve`'s, is [`restore_guard`]);
//! - [`image`]: `checkpoint --export oci-archive:F|oci:DIR`, `--push`
//!   (checkpoint OCI images, of a container, a snapshot or an archive);
//! - [`inspect`]: `inspect FILE|DIR`;
//! - [`migration`]: `migrate` (the sender) and `serve` (the receiver);
//! - [`snapshot`]: `snapshot`, `snapshots`, `restore C --snapshot ID` (the
//!   store of a container's states, through [`export`] and [`import`]);
//! - [`keys`]: `keygen`; [`version`]: `version`.
//!
//! [`checkpoint`] decides between them: a group, or one container that
//! the checkpoint stops, goes to [`group`] (frozen under a guard until the
//! archive is whole, so that no kill leaves it stopped without one); one
//! left running, or a copy of a Docker checkpoint, to [`export`].
//! [`group`] uses [`export`] for each member, never the other way round.

pub mod all;
pub mod export;
pub mod group;
pub mod group_guard;
pub mod image;
pub mod import;
pub mod inspect;
pub mod keys;
pub mod migration;
pub mod restore_guard;
pub mod snapshot;
#[cfg(test)]
pub(crate) mod step_log;
pub mod version;

use lazarus_core::config::Config;

use crate::engine::endpoints::Endpoints;
use crate::error::Result;
use crate::report::Exported;

/// `lazarus checkpoint`, whichever kind was asked (see the module doc).
pub async fn checkpoint(
    args: &export::ExportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<Exported> {
    Ok(match (args.is_group(), args.stops_one()) {
        (true, _) => Exported::Group(group::checkpoint(args, endpoints, config).await?),
        (false, true) => Exported::One(Box::new(group::stop_one(args, endpoints, config).await?)),
        (false, false) => Exported::One(Box::new(export::run(args, endpoints, config).await?)),
    })
}
