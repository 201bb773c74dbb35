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
mod tests {
    use super::super::record::State;
    use super::*;
    use serde_json::json;

    fn at(s: i64) -> Option<DateTime<Utc>> {
        DateTime::from_timestamp(1_800_000_000 + s, 0)
    }

    fn docker(name: &str, created: i64, runtime: &str, labels: &[(&str, &str)]) -> Found {
        Found {
            engine: "docker".into(),
            namespace: "moby".into(),
            name: name.into(),
            id: format!("{name}0000000000000000"),
            runtime: runtime.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            image: "busybox".into(),
            created: at(created),
            networks: vec![],
            volumes: vec![],
            restart_policy: None,
        }
    }

    fn ctr(ns: &str, id: &str, created: i64, runtime: &str) -> Found {
        Found {
            engine: "containerd".into(),
            namespace: ns.into(),
            name: id.into(),
            id: id.into(),
            ..docker(id, created, runtime, &[])
        }
    }

    const LZ: &str = LAZARUS_RUNTIME;
    const RUNC: &str = "io.containerd.runc.v2";

    fn names(p: &Plan) -> Vec<String> {
        p.units
            .iter()
            .map(|u| match u {
                Unit::One(f) => f.name.clone(),
                Unit::Compose { project, members } => format!(
                    "{project}[{}]",
                    members
                        .iter()
                        .map(|m| m.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            })
            .collect()
    }

    fn everything() -> Vec<Found> {
        let web = docker("web", 5, LZ, &[(COMPOSE_PROJECT, "shop")]);
        // Docker's container, listed again in containerd's moby namespace.
        let mut web_in_moby = ctr("moby", &web.id, 5, LZ);
        web_in_moby.name = web.id.clone();
        vec![
            ctr("default", "job", 1, LZ),
            web,
            web_in_moby,
            docker("db", 2, LZ, &[(COMPOSE_PROJECT, "shop")]),
            docker("counter", 3, LZ, &[("tier", "cache")]),
            docker("plain", 4, RUNC, &[]),
            ctr("k8s.io", "pod-c", 0, LZ),
            ctr("moby", "not-dockers", 6, LZ),
            ctr("other", "older", 0, LZ),
        ]
    }

    #[test]
    fn docker_first_then_namespaces_oldest_first_compose_together_other_runtimes_left_alone() {
        let p = plan(everything(), &[], None);
        assert_eq!(
            names(&p),
            ["shop[db,web]", "counter", "job", "not-dockers", "older"]
        );
        assert_eq!(p.left_alone.len(), 1);
        assert_eq!(p.left_alone[0].found.name, "plain");
        assert_eq!(
            p.left_alone[0].reason,
            format!("left alone (runtime {RUNC})")
        );
        // The kubelet's namespace is left alone, and said so.
        assert_eq!(p.notes.len(), 1, "{:?}", p.notes);
        assert!(p.notes[0].contains("kubelet"), "{:?}", p.notes);
    }

    #[test]
    fn the_kubelets_namespace_only_when_named() {
        let p = plan(everything(), &[], Some("k8s.io"));
        assert_eq!(names(&p), ["pod-c"]);
        assert!(p.notes.is_empty());
        // moby means Docker's containers (and containerd's own there).
        let p = plan(everything(), &[], Some("moby"));
        assert_eq!(names(&p), ["shop[db,web]", "counter", "not-dockers"]);
    }

    #[test]
    fn without_docker_its_namespace_is_left_alone_unless_named() {
        let all: Vec<Found> = everything()
            .into_iter()
            .filter(|f| !f.is_docker())
            .collect();
        let p = plan_with(all.clone(), &[], None, false);
        assert_eq!(names(&p), ["job", "older"]);
        let left: Vec<&str> = p.left_alone.iter().map(|s| s.found.name.as_str()).collect();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(p.left_alone[0].reason.contains("Docker did not answer"));
        let p = plan_with(all, &[], Some("moby"), false);
        assert_eq!(p.units.len(), 2);
    }

    #[test]
    fn label_filters_as_docker_spells_them() {
        let f = [Filter::parse("label=tier=cache").unwrap()];
        assert_eq!(names(&plan(everything(), &f, None)), ["counter"]);
        let f = [Filter::parse("label=com.docker.compose.project").unwrap()];
        assert_eq!(names(&plan(everything(), &f, None)), ["shop[db,web]"]);
        for bad in ["name=x", "label=", "label"] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_project_member_of_another_runtime_is_named() {
        let mut all = everything();
        all.push(docker("cache", 9, RUNC, &[(COMPOSE_PROJECT, "shop")]));
        let p = plan(all, &[], None);
        assert!(
            p.notes.iter().any(|n| n.contains("shop: cache runs")),
            "{:?}",
            p.notes
        );
    }

    #[test]
    fn archive_names_are_file_safe_and_distinct() {
        let p = plan(everything(), &[], None);
        let names: Vec<String> = p.units.iter().map(|u| u.archive_name("tar.zst")).collect();
        assert_eq!(
            names,
            [
                "compose-shop.tar.zst",
                "docker-moby-counter.tar.zst",
                "containerd-default-job.tar.zst",
                "containerd-moby-not-dockers.tar.zst",
                "containerd-other-older.tar.zst",
            ]
        );
        assert_eq!(file_safe("../a/b c"), "_a_b_c");
    }

    fn recorded() -> Entry {
        let f = docker("web", 0, LZ, &[]);
        entry(0, &f, "docker-moby-web.tar.zst", None)
    }

    fn existing(id: &str, running: bool, created: i64) -> Existing {
        Existing {
            id: id.into(),
            running,
            created: at(created),
        }
    }

    #[test]
    fn restore_decides_by_name_and_identity() {
        let mut e = recorded();
        assert_eq!(decide(&e, None), Decision::Restore);
        // The checkpointed container, stopped by its checkpoint.
        assert_eq!(
            decide(&e, Some(&existing(&e.id, false, 0))),
            Decision::ReplaceCheckpointed
        );
        // The recorded one running (it was never stopped, or came back).
        assert!(matches!(
            decide(&e, Some(&existing(&e.id, true, 0))),
            Decision::AlreadyRunning { .. }
        ));
        // Someone else's.
        assert!(matches!(
            decide(&e, Some(&existing("other", true, 50))),
            Decision::Conflict(m) if m.contains("another container named web")
        ));
        // A restore of it began at 100: what it made is ours.
        e.restore_started_at = at(100);
        assert!(matches!(
            decide(&e, Some(&existing("new", true, 101))),
            Decision::AlreadyRunning { id } if id == "new"
        ));
        assert_eq!(
            decide(&e, Some(&existing("new", false, 101))),
            Decision::RemoveLeftover
        );
        assert!(matches!(
            decide(&e, Some(&existing("older", false, 99))),
            Decision::Conflict(_)
        ));
        // Restored and recorded.
        e.restored_id = Some("made".into());
        e.state = State::Restored;
        assert!(matches!(
            decide(&e, Some(&existing("made", true, 0))),
            Decision::AlreadyRunning { .. }
        ));
    }

    #[test]
    fn dockers_inspect_gives_networks_fixed_addresses_mounts_and_policy() {
        let v = json!({
            "Id": "abc", "Name": "/web", "Created": "2026-12-06T20:00:00.123456789Z",
            "Config": {"Image": "redis:7", "Labels": {"a": "b"}},
            "HostConfig": {"RestartPolicy": {"Name": "on-failure", "MaximumRetryCount": 3}},
            "NetworkSettings": {"Networks": {
                "front": {"IPAMConfig": {"IPv4Address": "10.9.0.5"}},
                "bridge": {"IPAMConfig": null}
            }},
            "Mounts": [
                {"Type": "volume", "Name": "data", "Source": "/var/lib/docker/volumes/data/_data", "Destination": "/data"},
                {"Type": "bind", "Source": "/srv/conf", "Destination": "/conf"}
            ]
        });
        let f = from_docker_inspect(&v, LZ);
        assert_eq!((f.name.as_str(), f.image.as_str()), ("web", "redis:7"));
        assert_eq!(
            f.restart_policy,
            Some(RestartPolicy {
                name: "on-failure".into(),
                maximum_retry_count: 3
            })
        );
        let fixed: Vec<_> = f
            .networks
            .iter()
            .map(|n| (n.name.as_str(), n.fixed_ipv4.as_deref()))
            .collect();
        assert_eq!(fixed, [("bridge", None), ("front", Some("10.9.0.5"))]);
        assert_eq!(f.volumes[0].source, "data");
        assert_eq!(f.volumes[1].source, "/srv/conf");
        assert!(f.created.is_some());
        let none = json!({"HostConfig": {"RestartPolicy": {"Name": "no"}}});
        assert_eq!(from_docker_inspect(&none, LZ).restart_policy, None);
    }
}
