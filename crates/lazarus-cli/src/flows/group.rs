//! `lazarus checkpoint --group A B ... --export FILE` (or `--compose
//! PROJECT`): one consistent checkpoint of several containers.
//!
//! Every member's network namespace is locked (lazarus-core's
//! `host::netlock`: nothing but loopback passes) and every member frozen
//! before the first one is dumped, so the archives hold one instant of the
//! whole group: a message one member sent another is in the sender's past
//! and in the receiver's (its socket buffers), never in only one of them,
//! and no retransmission crosses between two members' dumps. Each member is
//! then dumped by its own shim while frozen, leaving it frozen. Only when every dump and the group archive
//! succeeded are the members stopped (SIGKILL while still frozen, so none
//! runs a step past the checkpoint) or, with --leave-running, thawed; the
//! locks are released either way. If anything fails, every member is
//! unlocked and thawed and runs on, and no archive is written.
//!
//! The archive is one file holding each member's ordinary archive
//! (lazarus-core's `archive::group`); `lazarus restore --import` of it
//! restores every member, or none.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use lazarus_core::archive::group::{self, MemberArchive};
use lazarus_core::config::Config;
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock;
use serde_json::Value;

use crate::engine::containerd::{Containerd, Status};
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::export::{self, ExportArgs, Source};
use crate::flows::group_guard;
use crate::report::GroupExportReport;

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
    let names = members(args, endpoints).await?;
    // Everything is found and checked before anything is frozen.
    let mut sources = Vec::with_capacity(names.len());
    for name in &names {
        let namespace = args.pod.as_ref().map(|_| pod_namespace(args));
        let namespace = namespace.as_deref().or(args.namespace.as_deref());
        let s = Source::resolve(name, namespace, false, endpoints).await?;
        export::refuse_unless_checkpointable(&s.ctr, &s.target, !args.leave_running).await?;
        sources.push(s);
    }
    // Each member's network namespace, through its init.
    let mut namespaces = Vec::with_capacity(sources.len());
    for s in &sources {
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
    let guard = group_guard::start(&endpoints.containerd, &guarded)?;
    let result = freeze_and_dump(args, config, &sources, &namespaces).await;
    guard.dismiss();
    result
}

/// The group checkpoint proper, under the guard: lock, freeze, dump, then
/// stop or thaw (and unlock) every member; any failure thaws them all.
async fn freeze_and_dump(
    args: &ExportArgs,
    config: &Config,
    sources: &[Source],
    namespaces: &[PathBuf],
) -> Result<GroupExportReport> {
    let scratch = config.scratch_dir("group")?;
    let started = Instant::now();
    let frozen_at = Utc::now();
    // Locked first, so that from the first freeze to the last dump no
    // packet passes between members (host::netlock); then frozen.
    let mut frozen: Vec<Member> = Vec::with_capacity(sources.len());
    for (s, netns) in sources.iter().zip(namespaces) {
        frozen.push(Member {
            source: s,
            netns: None,
            paused: false,
        });
        match netlock::lock(netns, &DirectWait) {
            Ok(locked) => frozen.last_mut().expect("pushed").netns = locked.then(|| netns.clone()),
            Err(e) => return Err(thaw_after(&s.target.name, e.into(), &frozen).await),
        }
    }
    for m in frozen.iter_mut() {
        if let Err(e) = m.source.ctr.pause(&m.source.target.id).await {
            let name = m.source.target.name.clone();
            return Err(thaw_after(&name, e, &frozen).await);
        }
        m.paused = true;
    }
    let freeze_seconds = started.elapsed().as_secs_f64();
    let mut files: Vec<PathBuf> = Vec::with_capacity(sources.len());
    let mut reports = Vec::with_capacity(sources.len());
    for (n, s) in sources.iter().enumerate() {
        let member = ExportArgs {
            container: Some(s.target.name.clone()),
            group: Vec::new(),
            compose: None,
            pod: None,
            export: scratch.path().join(format!("{n}.tar")),
            // Left frozen: the group decides below.
            leave_running: true,
            json: true,
            print_stats: false,
            from_docker_checkpoint: None,
            migration: None,
            ..args.clone()
        };
        match export::export(&member, s, config).await {
            Ok(r) => reports.push(r),
            Err(e) => return Err(thaw_after(&s.target.name, e, &frozen).await),
        }
        files.push(member.export);
    }
    let archives: Vec<MemberArchive> = sources
        .iter()
        .zip(&files)
        .map(|(s, f)| MemberArchive {
            name: &s.target.name,
            id: &s.target.id,
            engine: s.target.engine(),
            namespace: &s.target.namespace,
            archive: f,
        })
        .collect();
    let written = group::write_group(&archives, frozen_at, args.leave_running, &args.export);
    if let Err(e) = written {
        return Err(thaw_after("writing the group archive", e.into(), &frozen).await);
    }
    let frozen_seconds = started.elapsed().as_secs_f64();
    let outcome = match args.leave_running {
        true => thaw(&frozen).await,
        false => stop(&frozen).await,
    };
    if let Some(problems) = outcome {
        // The archive is whole; what went wrong afterwards is reported.
        eprintln!("lazarus: warning: after the group checkpoint: {problems}");
    }
    Ok(GroupExportReport {
        archive: args.export.clone(),
        members: reports,
        stopped: !args.leave_running,
        freeze_seconds,
        frozen_seconds,
    })
}

/// A member as the group holds it: its network lock (None: its namespace
/// is the host's, or not locked yet) and whether it was paused.
struct Member<'a> {
    source: &'a Source,
    netns: Option<PathBuf>,
    paused: bool,
}

/// Releases every member's network lock; the failures as text.
fn unlock(frozen: &[Member], failed: &mut Vec<String>) {
    for m in frozen {
        if let Some(netns) = &m.netns {
            if let Err(e) = netlock::unlock(netns, &DirectWait) {
                failed.push(format!("{}: network lock: {e}", m.source.target.name));
            }
        }
    }
}

/// The member `member` failed with `error`: thaws every frozen member and
/// says so, keeping any thaw failure beside the original error.
async fn thaw_after(member: &str, error: Error, frozen: &[Member<'_>]) -> Error {
    let outcome = match thaw(frozen).await {
        None => "every member was thawed and runs on; no archive was written".to_string(),
        Some(p) => format!("thawing the others failed too: {p}"),
    };
    Error::Group {
        member: member.to_string(),
        error: Box::new(error),
        outcome,
    }
}

/// Unlocks and thaws every member; the failures, if any, as one line.
async fn thaw(frozen: &[Member<'_>]) -> Option<String> {
    let mut failed = Vec::new();
    unlock(frozen, &mut failed);
    for m in frozen.iter().filter(|m| m.paused) {
        let s = m.source;
        if let Err(e) = s.ctr.resume(&s.target.id).await {
            failed.push(format!("{}: {e}", s.target.name));
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// Stops every member: SIGKILL while frozen, then thawed so the signal
/// lands, then waits (10 s each) until containerd reports it stopped.
async fn stop(frozen: &[Member<'_>]) -> Option<String> {
    let mut failed = Vec::new();
    for s in frozen.iter().map(|m| m.source) {
        if let Err(e) = s.ctr.kill_all(&s.target.id).await {
            failed.push(format!("{}: {e}", s.target.name));
            continue;
        }
        // The kernel may end a frozen task on SIGKILL by itself (it did on
        // these hosts); only a task still frozen needs the thaw.
        if let Err(e) = s.ctr.resume(&s.target.id).await {
            if !matches!(
                s.ctr.task_status(&s.target.id).await,
                Ok(None | Some(Status::Stopped))
            ) {
                failed.push(format!("{}: {e}", s.target.name));
            }
        }
    }
    // A namespace that outlives its container (a pod's) must not stay
    // locked.
    unlock(frozen, &mut failed);
    for s in frozen.iter().map(|m| m.source) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match s.ctr.task_status(&s.target.id).await {
                Ok(None | Some(Status::Stopped)) => break,
                _ if Instant::now() >= deadline => {
                    failed.push(format!("{} did not stop within 10 s", s.target.name));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}
