//! `lazarus checkpoint --group A B ... --export FILE` (or `--compose
//! PROJECT`): one consistent checkpoint of several containers.
//!
//! Every member's network namespace is locked (lazarus-core's
//! `host::netlock`: nothing but loopback passes) and every member frozen
//! before the first one is dumped, so the archives hold one instant of the
//! whole group: a message one member sent another is in the sender's past
//! and in the receiver's (its socket buffers), never in only one of them,
//! and no retransmission crosses between two members' dumps. Each member is
//! then dumped by its own shim while frozen, leaving it frozen. Only when
//! every dump and the group archive succeeded are the members stopped (SIGKILL while still frozen, so none
//! runs a step past the checkpoint) or, with --leave-running, thawed; the
//! locks are released either way. If anything fails, every member is
//! unlocked and thawed and runs on, and no archive is written.
//!
//! The archive is one file holding each member's ordinary archive
//! (lazarus-core's `archive::group`); `lazarus restore --import` of it
//! restores every member, or none.
//!
//! Here: finding the members (`--group`, `--compose`, `--pod`) and checking
//! them before anything is frozen; the freeze itself in `freeze.rs`
//! (against its `Steps`, unit-tested on a fake group), the real steps in
//! `live.rs`.

use std::path::PathBuf;

use lazarus_core::config::Config;
use serde_json::Value;

use crate::engine::containerd::{Containerd, Status};
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::export::{self, ExportArgs, Source};
use crate::flows::group_guard;
use crate::report::{ExportReport, GroupExportReport};

mod freeze;
mod live;

use live::{Live, Output};

/// Docker Compose's project label.
const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// containerd's CRI: its namespace, and the labels it puts on a pod's
/// containers.
const CRI_NAMESPACE: &str = "k8s.io";
const CRI_KIND: &str = "io.cri-containerd.kind";
/// Annotations containerd's CRI writes into every container's spec.
const SANDBOX_NAME: &str = "io.kubernetes.cri.sandbox-name";
const SANDBOX_NAMESPACE: &str = "io.kubernetes.cri.sandbox-namespace";

/// The members' names: `--group`'s, the Compose project's running
/// containers, or the pod's.
async fn members(args: &ExportArgs, endpoints: &Endpoints) -> Result<Vec<String>> {
    if let Some(pod) = &args.pod {
        return pod_members(pod, &pod_namespace(args), endpoints).await;
    }
    let names = match &args.compose {
        Some(project) => {
            let names = Docker::new(&endpoints.docker)?
                .running_with_label(COMPOSE_PROJECT, project)
                .await?;
            if names.is_empty() {
                return Err(Error::NotFound(format!(
                    "no running Docker container is labelled {COMPOSE_PROJECT}={project} \
                     (at {})",
                    endpoints.docker
                )));
            }
            names
        }
        None => args.group.clone(),
    };
    for (i, n) in names.iter().enumerate() {
        if names[..i].contains(n) {
            return Err(Error::Refused(format!("{n} is named twice in the group")));
        }
    }
    Ok(names)
}

/// The containerd namespace of the members: --namespace, or for a pod
/// containerd's CRI namespace.
fn pod_namespace(args: &ExportArgs) -> String {
    match (&args.namespace, &args.pod) {
        (Some(ns), _) => ns.clone(),
        (None, Some(_)) => CRI_NAMESPACE.to_string(),
        (None, None) => String::new(),
    }
}

/// The running containers (not the sandbox) of the pod `[K8S_NS/]NAME`,
/// oldest first, by containerd id.
async fn pod_members(pod: &str, namespace: &str, endpoints: &Endpoints) -> Result<Vec<String>> {
    let (k8s_namespace, name) = match pod.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, pod),
    };
    // The pod's name and namespace are in each container's spec (the
    // labels are whatever the kubelet chose to put there).
    let filter = format!("labels.\"{CRI_KIND}\"==container");
    let ctr = Containerd::connect(&endpoints.containerd, namespace).await?;
    let mut ids = Vec::new();
    let mut pod_namespaces = Vec::new();
    for c in ctr.containers_matching(&filter).await? {
        let spec: Value = c
            .spec
            .as_ref()
            .and_then(|s| serde_json::from_slice(&s.value).ok())
            .unwrap_or_default();
        let annotation = |key: &str| {
            spec["annotations"][key]
                .as_str()
                .unwrap_or_default()
                .to_string()
        };
        if annotation(SANDBOX_NAME) != name
            || k8s_namespace.is_some_and(|ns| annotation(SANDBOX_NAMESPACE) != ns)
        {
            continue;
        }
        if ctr.task_status(&c.id).await? == Some(Status::Running) {
            let ns = annotation(SANDBOX_NAMESPACE);
            if !pod_namespaces.contains(&ns) {
                pod_namespaces.push(ns);
            }
            ids.push(c.id);
        }
    }
    if pod_namespaces.len() > 1 {
        return Err(Error::Refused(format!(
            "pods named {name} run in the Kubernetes namespaces {}: give --pod NAMESPACE/{name}",
            pod_namespaces.join(", ")
        )));
    }
    if ids.is_empty() {
        return Err(Error::NotFound(format!(
            "no running container of a pod {pod} in containerd namespace {namespace} (at {})",
            endpoints.containerd
        )));
    }
    Ok(ids)
}

/// Checkpoints the group into `args.export`; returns the report.
pub async fn checkpoint(
    args: &ExportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<GroupExportReport> {
    export::check_destination(&args.export)?;
    if export::is_stdout(&args.export) {
        return Err(Error::Refused(
            "a group checkpoint is written to a file (--export FILE), not to standard output: \
             write it, then send the file"
                .into(),
        ));
    }
    let names = members(args, endpoints).await?;
    // Everything is found and checked before anything is frozen.
    let mut sources = Vec::with_capacity(names.len());
    for name in &names {
        let namespace = args.pod.as_ref().map(|_| pod_namespace(args));
        let namespace = namespace.as_deref().or(args.namespace.as_deref());
        let s = Source::resolve(name, namespace, false, endpoints).await?;
        export::checkpointable(&s.ctr, &s.target, !args.leave_running).await?;
        sources.push(s);
    }
    freeze_guarded(args, &sources, endpoints, config, Output::Group).await
}

/// A checkpoint of one container that stops it (no --leave-running): a
/// group of one, so that the container is never stopped before its
/// archive is whole. It is locked and frozen, dumped while frozen, its
/// archive written (and encrypted) in place, and only then killed; if
/// anything fails or this process dies first (its guard acts then), it
/// is thawed and runs on, and there is no archive.
pub async fn stop_one(
    args: &ExportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<ExportReport> {
    export::check_destination(&args.export)?;
    let name = args.container.as_deref().ok_or_else(|| {
        Error::Refused("name the container to checkpoint (or --group, --compose, --pod)".into())
    })?;
    if let Some(recipients) = &args.encrypt {
        crate::seal::recipients(recipients)?;
    }
    let source = Source::resolve(name, args.namespace.as_deref(), false, endpoints).await?;
    export::checkpointable(&source.ctr, &source.target, true).await?;
    let output = Output::Single {
        encrypt: args.encrypt.as_deref(),
    };
    let sources = [source];
    let group = freeze_guarded(args, &sources, endpoints, config, output)
        .await
        .map_err(|e| match e {
            Error::Group { error, outcome, .. } => Error::Checkpoint {
                container: name.to_string(),
                error,
                outcome: outcome.replace("every member was", &format!("{name} was")),
            },
            e => e,
        })?;
    let frozen_seconds = group.frozen_seconds;
    let mut report = group
        .members
        .into_iter()
        .next()
        .ok_or_else(|| Error::Refused(format!("{name}: the checkpoint made no archive")))?;
    report.archive = args.export.clone();
    report.stopped = true;
    report.encrypted = args.encrypt.is_some();
    if !export::is_stdout(&args.export) {
        report.archive_bytes = std::fs::metadata(&args.export)
            .map(|m| m.len())
            .unwrap_or(0);
    }
    report.export_seconds = frozen_seconds;
    Ok(report)
}

/// Locks, freezes and dumps `sources` under a guard (see
/// [`group_guard`]) into `output`; stops them afterwards unless
/// --leave-running.
async fn freeze_guarded(
    args: &ExportArgs,
    sources: &[Source],
    endpoints: &Endpoints,
    config: &Config,
    output: Output<'_>,
) -> Result<GroupExportReport> {
    // Each member's network namespace, through its init.
    let mut namespaces = Vec::with_capacity(sources.len());
    for s in sources {
        let pid = s.ctr.task_pid(&s.target.id).await?;
        namespaces.push(PathBuf::from(format!("/proc/{pid}/ns/net")));
    }
    // From here on the members are frozen and locked until this ends; if
    // this process dies first, the guard thaws and unlocks them.
    let guarded: Vec<String> = sources
        .iter()
        .zip(&namespaces)
        .map(|(s, ns)| format!("{}/{}={}", s.target.namespace, s.target.id, ns.display()))
        .collect();
    let what = match output {
        Output::Group => "the group checkpoint".to_string(),
        Output::Single { .. } => format!("the checkpoint of {}", sources[0].target.name),
    };
    let guard = group_guard::start(&endpoints.containerd, &guarded, &what)?;
    let scratch = config.scratch_dir("group")?;
    let live = Live {
        args,
        config,
        sources,
        namespaces: &namespaces,
        scratch: scratch.path(),
        output,
    };
    let result = freeze::freeze_and_dump(&live, args.leave_running, &args.export).await;
    guard.dismiss();
    result
}
