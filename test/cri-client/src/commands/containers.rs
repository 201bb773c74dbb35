//! Containers: create, start, stop, rm, ps, inspect.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{out, pods, print_json, secs};
use crate::cli::{CreateArgs, MountArg};
use crate::connect::{call, request, Cri};
use crate::cri::security_profile;
use crate::cri::{
    ContainerConfig, ContainerFilter, ContainerMetadata, ContainerState, ContainerStateValue,
    ContainerStatus, ContainerStatusRequest, CreateContainerRequest, ImageSpec, KeyValue,
    LinuxContainerConfig, LinuxContainerSecurityContext, ListContainersRequest, Mount,
    RemoveContainerRequest, SecurityProfile, StartContainerRequest, StopContainerRequest,
};
use crate::error::{Error, Result};
use crate::kv::to_map;
use crate::{json, pod};

pub async fn create(cri: &mut Cri, args: CreateArgs) -> Result<u8> {
    // The verbose status (containerd's stored config) is needed only for
    // the log directory when --pod-log-dir does not give it.
    let verbose = args.pod_log_dir.is_none();
    let (status, answer) = pods::status(cri, &args.pod_id, verbose).await?;
    let stored = pod::stored_config(&answer.info);
    let log_dir = args.pod_log_dir.as_deref();
    let sandbox_config = pod::rebuild_config(&status, stored.as_ref(), log_dir);

    // crictl's split: the first word is the entrypoint, the rest its args.
    let (command, cmd_args) = match args.cmd.split_first() {
        Some((first, rest)) => (vec![first.clone()], rest.to_vec()),
        None => (Vec::new(), Vec::new()),
    };
    let envs = args.envs.into_iter();
    let config = ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: args.name.clone(),
            attempt: 0,
        }),
        // Passed unchanged: containerd 2.1 restores a checkpoint when this
        // names an archive file.
        image: Some(ImageSpec {
            image: args.image,
            ..Default::default()
        }),
        command,
        args: cmd_args,
        envs: envs.map(|(key, value)| KeyValue { key, value }).collect(),
        labels: to_map(&args.labels),
        annotations: to_map(&args.annotations),
        log_path: args.log_path.unwrap_or(format!("{}.log", args.name)),
        linux: args.seccomp.as_deref().map(linux_seccomp),
        mounts: args.mounts.iter().map(mount).collect(),
        ..Default::default()
    };
    let message = CreateContainerRequest {
        pod_sandbox_id: args.pod_id,
        config: Some(config),
        sandbox_config: Some(sandbox_config),
    };
    let d = cri.deadline;
    let answer = call(
        "CreateContainer",
        d,
        cri.runtime.create_container(request(message, d)),
    )
    .await?;
    out(&answer.container_id);
    Ok(0)
}

fn mount(m: &MountArg) -> Mount {
    Mount {
        container_path: m.container.clone(),
        host_path: m.host.clone(),
        readonly: m.readonly,
        recursive_read_only: m.recursive_read_only,
        propagation: m.propagation,
        ..Default::default()
    }
}

/// The container's Linux config with only a seccomp profile in it.
fn linux_seccomp(profile: &str) -> LinuxContainerConfig {
    let profile_type = match profile {
        "unconfined" => security_profile::ProfileType::Unconfined,
        _ => security_profile::ProfileType::RuntimeDefault,
    };
    LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: profile_type as i32,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub async fn start(cri: &mut Cri, id: String) -> Result<u8> {
    let d = cri.deadline;
    let message = StartContainerRequest {
        container_id: id.clone(),
    };
    call(
        "StartContainer",
        d,
        cri.runtime.start_container(request(message, d)),
    )
    .await?;
    out(&id);
    Ok(0)
}

pub async fn stop(cri: &mut Cri, id: String, grace: u64) -> Result<u8> {
    // The runtime waits up to `grace` before SIGKILL, then for the exit.
    let d = cri.deadline + Duration::from_secs(grace);
    let message = StopContainerRequest {
        container_id: id.clone(),
        timeout: secs(grace),
    };
    call(
        "StopContainer",
        d,
        cri.runtime.stop_container(request(message, d)),
    )
    .await?;
    out(&id);
    Ok(0)
}

pub async fn rm(cri: &mut Cri, id: String) -> Result<u8> {
    let d = cri.deadline;
    let message = RemoveContainerRequest {
        container_id: id.clone(),
    };
    call(
        "RemoveContainer",
        d,
        cri.runtime.remove_container(request(message, d)),
    )
    .await?;
    out(&id);
    Ok(0)
}

pub async fn ps(cri: &mut Cri, pod: Option<String>, all: bool) -> Result<u8> {
    let running = ContainerStateValue {
        state: ContainerState::ContainerRunning as i32,
    };
    let filter = ContainerFilter {
        pod_sandbox_id: pod.unwrap_or_default(),
        state: (!all).then_some(running),
        ..Default::default()
    };
    let message = ListContainersRequest {
        filter: Some(filter),
    };
    let d = cri.deadline;
    let answer = call(
        "ListContainers",
        d,
        cri.runtime.list_containers(request(message, d)),
    )
    .await?;
    let list = answer.containers.iter().map(json::container).collect();
    print_json(&Value::Array(list));
    Ok(0)
}

/// The container's status with the runtime's verbose info map.
pub async fn status(cri: &mut Cri, id: &str) -> Result<(ContainerStatus, HashMap<String, String>)> {
    let d = cri.deadline;
    let message = ContainerStatusRequest {
        container_id: id.to_owned(),
        verbose: true,
    };
    let answer = call(
        "ContainerStatus",
        d,
        cri.runtime.container_status(request(message, d)),
    )
    .await?;
    let status = answer.status.ok_or_else(|| Error::BadAnswer {
        rpc: "ContainerStatus",
        what: format!("no status for container {id}"),
    })?;
    Ok((status, answer.info))
}

pub async fn inspect(cri: &mut Cri, id: String) -> Result<u8> {
    let (status, info) = status(cri, &id).await?;
    print_json(&json::container_status(&status, &info));
    Ok(0)
}
