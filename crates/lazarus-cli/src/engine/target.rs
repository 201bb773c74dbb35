//! Which container a name means: Docker's, when dockerd knows the name (it
//! runs in containerd's `moby` namespace under its full id), else a
//! containerd container id in a namespace.

use serde_json::Value;

use crate::engine::docker::Docker;
use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::Result;

pub struct Target {
    /// containerd's id (Docker's full id for a Docker container).
    pub id: String,
    /// What the user knows it by (Docker's name without its `/`).
    pub name: String,
    pub namespace: String,
    /// `docker inspect` of it, for a Docker container.
    pub docker: Option<Value>,
}

impl Target {
    pub async fn resolve(
        container: &str,
        namespace: Option<&str>,
        endpoints: &Endpoints,
    ) -> Result<(Target, Option<Docker>)> {
        if let Some(ns) = namespace {
            return Ok((Target::containerd(container, ns), None));
        }
        let docker = Docker::new(&endpoints.docker)?;
        if docker.reachable().await {
            if let Some(v) = docker.container(container).await? {
                let id = v["Id"].as_str().unwrap_or(container).to_string();
                let name = v["Name"].as_str().unwrap_or(container);
                let target = Target {
                    id,
                    name: name.trim_start_matches('/').to_string(),
                    namespace: DOCKER_NAMESPACE.into(),
                    docker: Some(v),
                };
                return Ok((target, Some(docker)));
            }
        }
        Ok((Target::containerd(container, DEFAULT_NAMESPACE), None))
    }

    fn containerd(id: &str, namespace: &str) -> Target {
        Target {
            id: id.into(),
            name: id.into(),
            namespace: namespace.into(),
            docker: None,
        }
    }

    pub fn engine(&self) -> &'static str {
        match self.docker {
            Some(_) => "docker",
            None => "containerd",
        }
    }
}
