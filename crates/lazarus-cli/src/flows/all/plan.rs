//! Which containers `checkpoint --all` takes, in which units and order,
//! and what `restore --all` does with each recorded one: pure functions
//! over what the engines listed, unit-tested without root or daemons.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::record::{Entry, Network, RestartPolicy, Volume};
use crate::engine::containerd::LAZARUS_RUNTIME;
use crate::engine::endpoints::DOCKER_NAMESPACE;
use crate::error::{Error, Result};

/// Docker Compose's project label.
pub const COMPOSE_PROJECT: &str = "com.docker.compose.project";
/// containerd's CRI namespace: the kubelet's.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// A running container as the engines list it.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    /// "docker" or "containerd".
    pub engine: String,
    pub namespace: String,
    /// Docker's name; containerd's id.
    pub name: String,
    pub id: String,
    /// containerd's runtime name for it ("" when unknown).
    pub runtime: String,
    pub labels: BTreeMap<String, String>,
    pub image: String,
    pub created: Option<DateTime<Utc>>,
    pub networks: Vec<Network>,
    pub volumes: Vec<Volume>,
    pub restart_policy: Option<RestartPolicy>,
}

impl Found {
    pub fn is_docker(&self) -> bool {
        self.engine == "docker"
    }

    /// The Compose project it belongs to (Docker containers only).
    pub fn compose_project(&self) -> Option<&str> {
        match self.is_docker() {
            true => self.labels.get(COMPOSE_PROJECT).map(String::as_str),
            false => None,
        }
    }
}

/// `--filter label=K=V` or `--filter label=K`, as docker ps spells them.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    Label { key: String, value: Option<String> },
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter> {
        match s.split_once('=') {
            Some(("label", kv)) if !kv.is_empty() => Ok(match kv.split_once('=') {
                Some((k, v)) => Filter::Label {
                    key: k.into(),
                    value: Some(v.into()),
                },
                None => Filter::Label {
                    key: kv.into(),
                    value: None,
                },
            }),
            _ => Err(Error::Refused(format!(
                "--filter {s:?}: only label=KEY or label=KEY=VALUE is understood"
            ))),
        }
    }

    fn matches(&self, f: &Found) -> bool {
        match self {
            Filter::Label { key, value } => match (f.labels.get(key), value) {
                (Some(v), Some(want)) => v == want,
                (Some(_), None) => true,
                (None, _) => false,
            },
        }
    }
}

/// What is checkpointed together: one container, or a Compose project's
/// running containers (through the group flow, at one instant).
#[derive(Debug, Clone, PartialEq)]
pub enum Unit {
    One(Box<Found>),
    Compose {
        project: String,
        members: Vec<Found>,
    },
}

impl Unit {
    pub fn members(&self) -> Vec<&Found> {
        match self {
            Unit::One(f) => vec![f],
            Unit::Compose { members, .. } => members.iter().collect(),
        }
    }

    pub fn label(&self) -> String {
        match self {
            Unit::One(f) => format!("{} {}/{}", f.engine, f.namespace, f.name),
            Unit::Compose { project, .. } => format!("Compose project {project}"),
        }
    }

    /// The archive's file name in the directory.
    pub fn archive_name(&self, extension: &str) -> String {
        match self {
            Unit::One(f) => format!(
                "{}-{}-{}.{extension}",
                f.engine,
                file_safe(&f.namespace),
                file_safe(&f.name)
            ),
            Unit::Compose { project, .. } => format!("compose-{}.{extension}", file_safe(project)),
        }
    }
}

/// A name made safe for a file name (anything else becomes `_`).
pub fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '-' | '_' | '.' => c,
            _ => '_',
        })
        .collect::<String>()
        .trim_start_matches('.')
        .to_string()
}

/// A container `checkpoint --all` leaves alone, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    pub found: Found,
    pub reason: String,
}

#[derive(Debug, Default, PartialEq)]
pub struct Plan {
    pub units: Vec<Unit>,
    pub left_alone: Vec<Skipped>,
    pub notes: Vec<String>,
}

/// Plans `checkpoint --all` over what the engines listed (Docker's first,
/// then containerd's by namespace; each oldest first): Docker's own
/// containers are taken from Docker, never again from containerd's `moby`
/// namespace; containers of another runtime are left alone and said so;
/// `k8s.io` only when named by `namespace`; the filters apply to all.
pub fn plan(found: Vec<Found>, filters: &[Filter], namespace: Option<&str>) -> Plan {
    plan_with(found, filters, namespace, true)
}

/// [`plan`], knowing whether Docker answered: when it did not (stopped,
/// or another socket), what runs in containerd's `moby` namespace is
/// Docker's without Docker to ask, and is left alone unless `--namespace
/// moby` asks for it through containerd.
pub fn plan_with(
    found: Vec<Found>,
    filters: &[Filter],
    namespace: Option<&str>,
    docker_answered: bool,
) -> Plan {
    let mut p = Plan::default();
    let docker_ids: Vec<String> = found
        .iter()
        .filter(|f| f.is_docker())
        .map(|f| f.id.clone())
        .collect();
    let mut sorted = found;
    sorted.sort_by(|a, b| {
        let key = |f: &Found| (!f.is_docker(), f.namespace.clone());
        key(a)
            .cmp(&key(b))
            .then(a.created.cmp(&b.created))
            .then(a.name.cmp(&b.name))
    });
    let mut cri_left = 0;
    for f in sorted {
        // Docker's containers live in containerd's moby namespace too.
        if !f.is_docker() && f.namespace == DOCKER_NAMESPACE && docker_ids.contains(&f.id) {
            continue;
        }
        let ns_of = |f: &Found| match f.is_docker() {
            true => DOCKER_NAMESPACE.to_string(),
            false => f.namespace.clone(),
        };
        if let Some(ns) = namespace {
            if ns_of(&f) != ns {
                continue;
            }
        } else if !f.is_docker() && f.namespace == CRI_NAMESPACE {
            cri_left += 1;
            continue;
        }
        if !filters.iter().all(|flt| flt.matches(&f)) {
            continue;
        }
        match left_alone_because(&f, docker_answered, namespace) {
            Some(reason) => p.left_alone.push(Skipped { reason, found: f }),
            None => p.add(f),
        }
    }
    p.note_split_projects();
    if cri_left > 0 {
        p.notes.push(format!(
            "containerd namespace {CRI_NAMESPACE}: {cri_left} container(s) left alone: the \
             kubelet recreates its pods while they are away (give --namespace {CRI_NAMESPACE} to \
             checkpoint them anyway)"
        ));
    }
    p
}

/// Why a container the filters chose is left alone, if it is: Docker's
/// without Docker to ask, or another runtime's.
fn left_alone_because(f: &Found, docker_answered: bool, namespace: Option<&str>) -> Option<String> {
    if !docker_answered && !f.is_docker() && f.namespace == DOCKER_NAMESPACE && namespace.is_none()
    {
        return Some(
            "left alone (in Docker's namespace moby, but Docker did not answer: give --host, or \
             --namespace moby to take it through containerd)"
                .into(),
        );
    }
    if f.runtime != LAZARUS_RUNTIME {
        let runtime = match f.runtime.as_str() {
            "" => "unknown",
            r => r,
        };
        return Some(format!("left alone (runtime {runtime})"));
    }
    None
}

impl Plan {
    /// Adds a container to take: to its Compose project's unit, or as a
    /// unit of its own.
    fn add(&mut self, f: Found) {
        match f.compose_project().map(str::to_string) {
            Some(project) => {
                let existing = self.units.iter_mut().find_map(|u| match u {
                    Unit::Compose {
                        project: pr,
                        members,
                    } if *pr == project => Some(members),
                    _ => None,
                });
                match existing {
                    Some(members) => members.push(f),
                    None => self.units.push(Unit::Compose {
                        project,
                        members: vec![f],
                    }),
                }
            }
            None => self.units.push(Unit::One(Box::new(f))),
        }
    }

    /// A project some of whose members another runtime runs cannot be
    /// taken at one instant: its Lazarus members are still taken
    /// together, and the report says who is not in it.
    fn note_split_projects(&mut self) {
        for s in &self.left_alone {
            if let Some(project) = s.found.compose_project() {
                if self
                    .units
                    .iter()
                    .any(|u| matches!(u, Unit::Compose { project: pr, .. } if pr == project))
                {
                    self.notes.push(format!(
                        "Compose project {project}: {} runs {} and is not in its checkpoint",
                        s.found.name, s.found.runtime
                    ));
                }
            }
        }
    }
}

/// A recorded entry for a member of a unit checkpointed into `archive`.
pub fn entry(order: usize, f: &Found, archive: &str, group: Option<&str>) -> Entry {
    Entry {
        order,
        engine: f.engine.clone(),
        namespace: f.namespace.clone(),
        name: f.name.clone(),
        id: f.id.clone(),
        archive: archive.to_string(),
        snapshot: None,
        image: f.image.clone(),
        networks: f.networks.clone(),
        volumes: f.volumes.clone(),
        restart_policy: f.restart_policy.clone(),
        group: group.map(str::to_string),
        state: super::record::State::Checkpointed,
        restore_started_at: None,
        restored_id: None,
    }
}

/// A container found under a recorded entry's name at restore.
#[derive(Debug, Clone, PartialEq)]
pub struct Existing {
    pub id: String,
    pub running: bool,
    pub created: Option<DateTime<Utc>>,
}

/// What `restore --all` does about one recorded entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Nothing under its name: restore it.
    Restore,
    /// The checkpointed container itself, stopped (Docker keeps it exited,
    /// containerd its record): set it aside, restore, then remove it.
    ReplaceCheckpointed,
    /// Left by an interrupted restore of it and not running: remove it,
    /// then restore.
    RemoveLeftover,
    /// Running already as the recorded container or as one a restore of
    /// it made: skipped.
    AlreadyRunning { id: String },
    /// Someone else's container holds the name.
    Conflict(String),
}

pub fn decide(entry: &Entry, existing: Option<&Existing>) -> Decision {
    let Some(x) = existing else {
        return Decision::Restore;
    };
    let ours = entry.restored_id.as_deref() == Some(x.id.as_str())
        || matches!((entry.restore_started_at, x.created), (Some(began), Some(made)) if made >= began);
    let same = x.id == entry.id;
    match (x.running, same, ours) {
        (true, true, _) | (true, _, true) => Decision::AlreadyRunning { id: x.id.clone() },
        (false, true, _) => Decision::ReplaceCheckpointed,
        (false, false, true) => Decision::RemoveLeftover,
        (running, false, false) => Decision::Conflict(format!(
            "another container named {} ({}, id {}) holds its name: remove or rename it, then \
             run restore --all again",
            entry.name,
            match running {
                true => "running",
                false => "stopped",
            },
            crate::engine::docker::short(&x.id)
        )),
    }
}

/// Docker's view of a container: networks (with fixed addresses), mounts,
/// restart policy, labels, image, creation time.
pub fn from_docker_inspect(v: &Value, runtime: &str) -> Found {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let labels = v["Config"]["Labels"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), s(v))).collect())
        .unwrap_or_default();
    let networks = v["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(name, n)| Network {
                    name: name.clone(),
                    fixed_ipv4: n["IPAMConfig"]["IPv4Address"]
                        .as_str()
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                    fixed_ipv6: n["IPAMConfig"]["IPv6Address"]
                        .as_str()
                        .filter(|a| !a.is_empty())
                        .map(str::to_string),
                })
                .collect()
        })
        .unwrap_or_default();
    let volumes = v["Mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| Volume {
                    kind: s(&m["Type"]),
                    source: match m["Type"].as_str() {
                        Some("volume") => s(&m["Name"]),
                        _ => s(&m["Source"]),
                    },
                    destination: s(&m["Destination"]),
                })
                .collect()
        })
        .unwrap_or_default();
    let policy = &v["HostConfig"]["RestartPolicy"];
    let restart_policy = match policy["Name"].as_str().unwrap_or("") {
        "" | "no" => None,
        name => Some(RestartPolicy {
            name: name.into(),
            maximum_retry_count: policy["MaximumRetryCount"].as_u64().unwrap_or(0),
        }),
    };
    Found {
        engine: "docker".into(),
        namespace: DOCKER_NAMESPACE.into(),
        name: s(&v["Name"]).trim_start_matches('/').to_string(),
        id: s(&v["Id"]),
        runtime: runtime.into(),
        labels,
        image: s(&v["Config"]["Image"]),
        created: v["Created"]
            .as_str()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc)),
        networks,
        volumes,
        restart_policy,
    }
}

#[cfg(test)]
mod tests;
