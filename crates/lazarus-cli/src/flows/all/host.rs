//! What runs on this host, as the engines list it: Docker's running
//! containers, and every containerd namespace's running tasks.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::plan::{from_docker_inspect, Existing, Found};
use crate::engine::containerd::{Containerd, Status};
use crate::engine::docker::Docker;
use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::Result;

/// Every running (or paused) container: Docker's (when a dockerd answers)
/// and each containerd namespace's, Docker's among them in `moby` too
/// (the plan drops those). Also whether Docker answered.
pub async fn running(endpoints: &Endpoints) -> Result<(Vec<Found>, bool)> {
    let mut found = Vec::new();
    let any = Containerd::connect(&endpoints.containerd, DEFAULT_NAMESPACE).await?;
    // containerd's runtime of each container, by (namespace, id).
    let mut runtimes: HashMap<(String, String), String> = HashMap::new();
    for ns in any.namespaces().await? {
        let ctr = Containerd::connect(&endpoints.containerd, &ns).await?;
        for c in ctr.containers().await? {
            let runtime = c
                .runtime
                .as_ref()
                .map(|r| r.name.clone())
                .unwrap_or_default();
            runtimes.insert((ns.clone(), c.id.clone()), runtime.clone());
            if !matches!(
                ctr.task_status(&c.id).await?,
                Some(Status::Running | Status::Paused)
            ) {
                continue;
            }
            found.push(Found {
                engine: "containerd".into(),
                namespace: ns.clone(),
                name: c.id.clone(),
                id: c.id.clone(),
                runtime,
                labels: c.labels.clone().into_iter().collect(),
                image: c.image.clone(),
                created: c
                    .created_at
                    .as_ref()
                    .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
                networks: vec![],
                volumes: vec![],
                restart_policy: None,
            });
        }
    }
    let docker = Docker::new(&endpoints.docker)?;
    let answered = docker.reachable().await;
    if answered {
        for id in docker.running_ids().await? {
            let Some(v) = docker.container(&id).await? else {
                continue;
            };
            let runtime = runtimes
                .get(&(DOCKER_NAMESPACE.to_string(), id.clone()))
                .cloned()
                .unwrap_or_else(|| {
                    v["HostConfig"]["Runtime"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                });
            found.push(from_docker_inspect(&v, &runtime));
        }
    }
    Ok((found, answered))
}

/// The container holding `name` now, if any: Docker's by name, or
/// containerd's by id in `namespace`.
pub async fn existing(
    engine: &str,
    namespace: &str,
    name: &str,
    endpoints: &Endpoints,
) -> Result<Option<Existing>> {
    if engine == "docker" {
        let docker = Docker::new(&endpoints.docker)?;
        return Ok(docker.container(name).await?.map(|v| Existing {
            id: v["Id"].as_str().unwrap_or_default().to_string(),
            running: v["State"]["Running"].as_bool().unwrap_or(false),
            created: v["Created"]
                .as_str()
                .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
                .map(|c| c.with_timezone(&Utc)),
        }));
    }
    let ctr = Containerd::connect(&endpoints.containerd, namespace).await?;
    let c = match ctr.container(name).await {
        Ok(c) => c,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let running = matches!(
        ctr.task_status(name).await?,
        Some(Status::Running | Status::Paused)
    );
    Ok(Some(Existing {
        id: c.id.clone(),
        running,
        created: c
            .created_at
            .as_ref()
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32)),
    }))
}
