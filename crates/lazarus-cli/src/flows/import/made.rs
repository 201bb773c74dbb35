//! What a restore made, afterwards: whether it still runs, and its removal
//! (the container and the volumes made for it), for a migration whose
//! sender never confirmed, a group that did not come back whole, and the
//! restore guard.

use super::{volumes, SNAPSHOTTER};
use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE};
use crate::error::{Error, Result};
use crate::report::ImportReport;

/// Removes what [`super::restore`] made (its report names it): the
/// container and the volumes made for it. A migration whose sender never
/// confirmed must not leave a second copy, nor a group restore a member of
/// a group that did not come back whole.
pub async fn remove_restored(r: &ImportReport, endpoints: &Endpoints) -> Result<()> {
    remove(&r.engine, &r.id, &r.namespace, endpoints).await?;
    if r.volumes.is_empty() {
        return Ok(());
    }
    match volumes::remove(&Docker::new(&endpoints.docker)?, &r.volumes).await {
        None => Ok(()),
        Some(failed) => Err(Error::Refused(failed)),
    }
}

/// Whether a container [`super::restore`] made still runs.
pub async fn is_running(r: &ImportReport, endpoints: &Endpoints) -> Result<bool> {
    match r.engine.as_str() {
        "docker" => Ok(Docker::new(&endpoints.docker)?
            .container(&r.id)
            .await?
            .is_some_and(|c| c["State"]["Running"].as_bool() == Some(true))),
        _ => {
            let ns = match r.namespace.as_str() {
                "" => DEFAULT_NAMESPACE,
                ns => ns,
            };
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            Ok(matches!(
                ctr.task_status(&r.id).await?,
                Some(crate::engine::containerd::Status::Running)
            ))
        }
    }
}

/// Removes a container [`super::restore`] made (engine, id and namespace
/// as its report names them).
pub async fn remove(engine: &str, id: &str, namespace: &str, endpoints: &Endpoints) -> Result<()> {
    match engine {
        "docker" => Docker::new(&endpoints.docker)?.remove(id).await,
        _ => {
            let ns = match namespace {
                "" => DEFAULT_NAMESPACE,
                ns => ns,
            };
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            ctr.remove_task(id).await?;
            ctr.remove_container(id).await?;
            ctr.remove_snapshot(SNAPSHOTTER, id).await
        }
    }
}
