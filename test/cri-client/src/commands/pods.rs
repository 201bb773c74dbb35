//! Pod sandboxes: runp, stopp, rmp, pods, inspectp.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::{out, print_json};
use crate::cli::RunpArgs;
use crate::connect::{call, request, Cri};
use crate::cri::{
    ListPodSandboxRequest, PodSandboxStatus, PodSandboxStatusRequest, PodSandboxStatusResponse,
    RemovePodSandboxRequest, RunPodSandboxRequest, StopPodSandboxRequest,
};
use crate::error::{Error, Result};
use crate::kv::to_map;
use crate::{json, pod};

pub async fn runp(cri: &mut Cri, args: RunpArgs) -> Result<u8> {
    // A fresh UID per run, so a second pod of the same name is a new pod.
    let uid = args.uid.unwrap_or_else(|| {
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        format!("{}-{}", args.name, now.unwrap_or_default().as_nanos())
    });
    let spec = pod::PodSpec {
        name: args.name,
        namespace: args.namespace,
        uid,
        log_dir: args.log_dir,
        cgroup_parent: args.cgroup_parent,
        host_network: args.host_network,
        labels: to_map(&args.labels),
        annotations: to_map(&args.annotations),
    };
    let message = RunPodSandboxRequest {
        config: Some(pod::sandbox_config(&spec)),
        runtime_handler: args.runtime.unwrap_or_default(),
    };
    let d = cri.deadline;
    let answer = call(
        "RunPodSandbox",
        d,
        cri.runtime.run_pod_sandbox(request(message, d)),
    )
    .await?;
    out(&answer.pod_sandbox_id);
    Ok(0)
}

/// The pod's status and, when `verbose`, the runtime's info map.
pub async fn status(
    cri: &mut Cri,
    pod_id: &str,
    verbose: bool,
) -> Result<(PodSandboxStatus, PodSandboxStatusResponse)> {
    let d = cri.deadline;
    let message = PodSandboxStatusRequest {
        pod_sandbox_id: pod_id.to_owned(),
        verbose,
    };
    let mut answer = call(
        "PodSandboxStatus",
        d,
        cri.runtime.pod_sandbox_status(request(message, d)),
    )
    .await?;
    let status = answer.status.take().ok_or_else(|| Error::BadAnswer {
        rpc: "PodSandboxStatus",
        what: format!("no status for pod {pod_id}"),
    })?;
    Ok((status, answer))
}

pub async fn stopp(cri: &mut Cri, pod_id: String) -> Result<u8> {
    let d = cri.deadline;
    let message = StopPodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    call(
        "StopPodSandbox",
        d,
        cri.runtime.stop_pod_sandbox(request(message, d)),
    )
    .await?;
    out(&pod_id);
    Ok(0)
}

pub async fn rmp(cri: &mut Cri, pod_id: String) -> Result<u8> {
    let d = cri.deadline;
    let message = RemovePodSandboxRequest {
        pod_sandbox_id: pod_id.clone(),
    };
    call(
        "RemovePodSandbox",
        d,
        cri.runtime.remove_pod_sandbox(request(message, d)),
    )
    .await?;
    out(&pod_id);
    Ok(0)
}

pub async fn pods(cri: &mut Cri) -> Result<u8> {
    let d = cri.deadline;
    let message = ListPodSandboxRequest::default();
    let answer = call(
        "ListPodSandbox",
        d,
        cri.runtime.list_pod_sandbox(request(message, d)),
    )
    .await?;
    print_json(&Value::Array(answer.items.iter().map(json::pod).collect()));
    Ok(0)
}

pub async fn inspectp(cri: &mut Cri, pod_id: String) -> Result<u8> {
    let (status, answer) = status(cri, &pod_id, true).await?;
    print_json(&json::pod_status(&status, &answer.info));
    Ok(0)
}
