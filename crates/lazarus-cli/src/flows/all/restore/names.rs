//! The names a unit comes back under: what holds them now goes out of the
//! way as decided (a checkpointed Docker container set aside under another
//! name, anything else removed), and a set-aside container gets its name
//! back when the restore fails, or is removed once it succeeded.

use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::Result;
use crate::flows::all::plan::{Decision, Existing};
use crate::flows::all::record::Entry;
use crate::flows::all::set_aside_name;
use crate::flows::import::SNAPSHOTTER;

/// What holds the unit's names goes out of the way, as decided: a
/// checkpointed Docker container renamed (put back if the restore fails),
/// anything else removed. Stops at the first failure, the unit's (the
/// inner error); the outer one, a Docker host that cannot be used, fails
/// the command.
pub(super) async fn clear_names(
    unit: &[Entry],
    decisions: &[Decision],
    existing: &[Option<Existing>],
    endpoints: &Endpoints,
) -> Result<Result<()>> {
    for ((e, d), x) in unit.iter().zip(decisions).zip(existing) {
        let Some(x) = x else { continue };
        let r = match d {
            Decision::ReplaceCheckpointed if e.engine == "docker" => {
                Docker::new(&endpoints.docker)?
                    .rename(&x.id, &set_aside_name(&e.name))
                    .await
            }
            Decision::ReplaceCheckpointed | Decision::RemoveLeftover => {
                remove(e, &x.id, endpoints).await
            }
            _ => Ok(()),
        };
        if r.is_err() {
            return Ok(r);
        }
    }
    Ok(Ok(()))
}

/// The checkpointed Docker container `e` set aside under another name,
/// if it is there (its id the recorded one).
async fn set_aside(e: &Entry, endpoints: &Endpoints) -> Result<Option<Docker>> {
    if e.engine != "docker" {
        return Ok(None);
    }
    let docker = Docker::new(&endpoints.docker)?;
    let aside = docker.container(&set_aside_name(&e.name)).await?;
    Ok(aside.filter(|v| v["Id"] == e.id.as_str()).map(|_| docker))
}

/// A failed restore gives the set-aside checkpointed container its name
/// back (the import removed what it made).
pub(super) async fn give_name_back(e: &Entry, endpoints: &Endpoints) -> Result<()> {
    match set_aside(e, endpoints).await? {
        Some(docker) => docker.rename(&e.id, &e.name).await,
        None => Ok(()),
    }
}

pub(super) async fn remove_set_aside(e: &Entry, endpoints: &Endpoints) -> Result<()> {
    match set_aside(e, endpoints).await? {
        Some(docker) => docker.remove(&e.id).await,
        None => Ok(()),
    }
}

/// Removes a stopped container holding an entry's name: a Docker one, or
/// a containerd record with its task and snapshot.
pub(super) async fn remove(e: &Entry, id: &str, endpoints: &Endpoints) -> Result<()> {
    if e.engine == "docker" {
        return Docker::new(&endpoints.docker)?.remove(id).await;
    }
    let ctr = Containerd::connect(&endpoints.containerd, &e.namespace).await?;
    let c = ctr.container(id).await?;
    ctr.remove_task(id).await?;
    ctr.remove_container(id).await?;
    let snapshotter = match c.snapshotter.as_str() {
        "" => SNAPSHOTTER,
        s => s,
    };
    if !c.snapshot_key.is_empty() {
        if let Err(err) = ctr.remove_snapshot(snapshotter, &c.snapshot_key).await {
            if !err.is_not_found() {
                return Err(err);
            }
        }
    }
    Ok(())
}
