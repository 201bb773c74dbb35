//! The plan and the restore decisions as pure functions: which containers
//! `checkpoint --all` takes and in what order, what `restore --all` does
//! with each recorded one, and Docker's inspect read into them.

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
