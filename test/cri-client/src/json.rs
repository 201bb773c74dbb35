//! The JSON printed for structured answers: the fields tests read, built
//! by hand from the generated types (prost's types have no serde, and a
//! Debug dump is not something a test can parse). Times are the CRI's
//! nanoseconds since the epoch; states are the enums' proto names.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use crate::cri::{
    Container, ContainerState, ContainerStatus, Image, PodSandbox, PodSandboxState,
    PodSandboxStatus, RuntimeHandler, VersionResponse,
};

/// A ContainerState as its proto name ("CONTAINER_RUNNING"); a value this
/// API version does not know as its number.
pub fn container_state(value: i32) -> String {
    ContainerState::try_from(value)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// A PodSandboxState as its proto name ("SANDBOX_READY").
pub fn pod_state(value: i32) -> String {
    PodSandboxState::try_from(value)
        .map(|s| s.as_str_name().to_owned())
        .unwrap_or_else(|_| value.to_string())
}

/// A string map as a JSON object (keys sorted: serde_json's Map).
pub fn string_map(map: &HashMap<String, String>) -> Value {
    Value::Object(
        map.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

/// A verbose `info` map: the runtime writes each value as JSON, so each is
/// parsed; one that does not parse stays a string.
pub fn info_map(info: &HashMap<String, String>) -> Value {
    let object: Map<String, Value> = info
        .iter()
        .map(|(k, v)| {
            let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()));
            (k.clone(), value)
        })
        .collect();
    Value::Object(object)
}

/// The process id containerd reports in info["info"].pid, if any.
pub fn info_pid(info: &Value) -> Value {
    info.get("info")
        .and_then(|i| i.get("pid"))
        .cloned()
        .unwrap_or(Value::Null)
}

pub fn version(v: &VersionResponse) -> Value {
    json!({
        "runtime_name": v.runtime_name,
        "runtime_version": v.runtime_version,
        "runtime_api_version": v.runtime_api_version,
    })
}

/// A runtime handler and its features (all false when the runtime did not
/// say: containerd found no features document for it).
pub fn handler(h: &RuntimeHandler) -> Value {
    let features = h.features.unwrap_or_default();
    json!({
        "name": h.name,
        "recursive_read_only_mounts": features.recursive_read_only_mounts,
        "user_namespaces": features.user_namespaces,
    })
}

pub fn image(i: &Image) -> Value {
    json!({
        "id": i.id,
        "repo_tags": i.repo_tags,
        "repo_digests": i.repo_digests,
    })
}

pub fn container(c: &Container) -> Value {
    json!({
        "id": c.id,
        "pod_sandbox_id": c.pod_sandbox_id,
        "name": c.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default(),
        "state": container_state(c.state),
        "image": c.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default(),
        "image_ref": c.image_ref,
        "created_at": c.created_at,
        "labels": string_map(&c.labels),
        "annotations": string_map(&c.annotations),
    })
}

pub fn pod(p: &PodSandbox) -> Value {
    let metadata = p.metadata.clone().unwrap_or_default();
    json!({
        "id": p.id,
        "name": metadata.name,
        "namespace": metadata.namespace,
        "uid": metadata.uid,
        "state": pod_state(p.state),
        "runtime_handler": p.runtime_handler,
    })
}

/// `inspect`: the status plus the verbose info (and the pid from it).
pub fn container_status(s: &ContainerStatus, info: &HashMap<String, String>) -> Value {
    let info = info_map(info);
    json!({
        "id": s.id,
        "name": s.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default(),
        "state": container_state(s.state),
        "pid": info_pid(&info),
        "exit_code": s.exit_code,
        "started_at": s.started_at,
        "finished_at": s.finished_at,
        "image": s.image.as_ref().map(|i| i.image.as_str()).unwrap_or_default(),
        "image_ref": s.image_ref,
        "log_path": s.log_path,
        "annotations": string_map(&s.annotations),
        "labels": string_map(&s.labels),
        "reason": s.reason,
        "message": s.message,
        "info": info,
    })
}

/// `inspectp`: the pod's status plus the verbose info.
pub fn pod_status(s: &PodSandboxStatus, info: &HashMap<String, String>) -> Value {
    json!({
        "id": s.id,
        "name": s.metadata.as_ref().map(|m| m.name.as_str()).unwrap_or_default(),
        "state": pod_state(s.state),
        "ip": s.network.as_ref().map(|n| n.ip.as_str()).unwrap_or_default(),
        "runtime_handler": s.runtime_handler,
        "info": info_map(info),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_are_their_proto_names() {
        assert_eq!(
            container_state(ContainerState::ContainerRunning as i32),
            "CONTAINER_RUNNING"
        );
        assert_eq!(
            container_state(ContainerState::ContainerExited as i32),
            "CONTAINER_EXITED"
        );
        assert_eq!(container_state(42), "42");
        assert_eq!(
            pod_state(PodSandboxState::SandboxNotready as i32),
            "SANDBOX_NOTREADY"
        );
    }

    #[test]
    fn info_values_are_parsed_as_json_when_they_are() {
        let info = HashMap::from([
            (
                "info".to_owned(),
                r#"{"pid":1234,"removing":false}"#.to_owned(),
            ),
            ("plain".to_owned(), "not json".to_owned()),
        ]);
        let value = info_map(&info);
        assert_eq!(value["info"]["pid"], 1234);
        assert_eq!(value["plain"], "not json");
        assert_eq!(info_pid(&value), 1234);
        assert_eq!(info_pid(&info_map(&HashMap::new())), Value::Null);
    }

    #[test]
    fn a_container_has_the_fields_tests_read() {
        let c = Container {
            id: "c1".into(),
            pod_sandbox_id: "p1".into(),
            state: ContainerState::ContainerRunning as i32,
            labels: [("k".to_owned(), "v".to_owned())].into(),
            ..Default::default()
        };
        let value = container(&c);
        assert_eq!(value["id"], "c1");
        assert_eq!(value["pod_sandbox_id"], "p1");
        assert_eq!(value["state"], "CONTAINER_RUNNING");
        assert_eq!(value["labels"]["k"], "v");
        assert_eq!(value["name"], "");
    }
}
