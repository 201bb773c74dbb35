//! The PodSandboxConfig: built for `runp`, and rebuilt for `create`.
//!
//! CreateContainer takes the pod's config again (containerd reads its
//! log directory, hostname, cgroup parent and namespaces from it, and a
//! checkpoint restore needs its metadata), but the CRI has no call that
//! returns it. crictl keeps the file it was given; here it is rebuilt
//! from PodSandboxStatus, plus what containerd's verbose info holds.

use std::collections::HashMap;

use serde_json::Value;

use crate::cri::{
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, PodSandboxStatus,
};

/// What `runp` asks for.
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub log_dir: Option<String>,
    pub cgroup_parent: Option<String>,
    pub host_network: bool,
    pub labels: HashMap<String, String>,
    pub annotations: HashMap<String, String>,
}

/// The namespaces of a pod as the kubelet asks for an ordinary one: its
/// own network (or the host's), one IPC namespace for the pod, and a PID
/// namespace per container (the kubelet's default for v1 pods).
pub fn namespace_options(host_network: bool) -> NamespaceOption {
    NamespaceOption {
        network: if host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        pid: NamespaceMode::Container as i32,
        ipc: NamespaceMode::Pod as i32,
        ..Default::default()
    }
}

fn linux(namespaces: Option<NamespaceOption>, cgroup_parent: String) -> LinuxPodSandboxConfig {
    LinuxPodSandboxConfig {
        cgroup_parent,
        security_context: Some(LinuxSandboxSecurityContext {
            namespace_options: namespaces,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The config `runp` sends. The hostname is the pod's name; an empty
/// cgroup parent lets the runtime choose.
pub fn sandbox_config(spec: &PodSpec) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: spec.name.clone(),
            uid: spec.uid.clone(),
            namespace: spec.namespace.clone(),
            attempt: 0,
        }),
        hostname: spec.name.clone(),
        log_directory: spec.log_dir.clone().unwrap_or_default(),
        labels: spec.labels.clone(),
        annotations: spec.annotations.clone(),
        linux: Some(linux(
            Some(namespace_options(spec.host_network)),
            spec.cgroup_parent.clone().unwrap_or_default(),
        )),
        ..Default::default()
    }
}

/// The config containerd stored for the pod, if the verbose status has it:
/// info["info"] is a JSON document whose "config" is the PodSandboxConfig
/// as Go's encoding/json writes it (snake_case field names; camelCase is
/// accepted as well, protobuf's JSON mapping).
pub fn stored_config(info: &HashMap<String, String>) -> Option<Value> {
    let document: Value = serde_json::from_str(info.get("info")?).ok()?;
    document.get("config").filter(|c| c.is_object()).cloned()
}

/// A string field of `value` under either of its two JSON spellings.
fn string_field(value: Option<&Value>, snake: &str, camel: &str) -> Option<String> {
    let value = value?;
    value
        .get(snake)
        .or_else(|| value.get(camel))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Rebuilds the pod's config from its status. Metadata, labels,
/// annotations and the namespace options (status.linux.namespaces.options,
/// mapped back into the security context) come from the status; the log
/// directory from `log_dir` (--pod-log-dir) or else the stored config;
/// hostname and cgroup parent from the stored config, the hostname
/// defaulting to the pod's name as `runp` sets it.
pub fn rebuild_config(
    status: &PodSandboxStatus,
    stored: Option<&Value>,
    log_dir: Option<&str>,
) -> PodSandboxConfig {
    let metadata = status.metadata.clone().unwrap_or_default();
    let namespaces = status
        .linux
        .as_ref()
        .and_then(|l| l.namespaces.as_ref())
        .and_then(|n| n.options.clone());
    let stored_linux = stored.and_then(|c| c.get("linux"));
    PodSandboxConfig {
        hostname: string_field(stored, "hostname", "hostname")
            .unwrap_or_else(|| metadata.name.clone()),
        log_directory: log_dir
            .map(str::to_owned)
            .or_else(|| string_field(stored, "log_directory", "logDirectory"))
            .unwrap_or_default(),
        labels: status.labels.clone(),
        annotations: status.annotations.clone(),
        linux: Some(linux(
            namespaces,
            string_field(stored_linux, "cgroup_parent", "cgroupParent").unwrap_or_default(),
        )),
        metadata: Some(metadata),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cri::{LinuxPodSandboxStatus, Namespace};

    fn status(network: NamespaceMode) -> PodSandboxStatus {
        PodSandboxStatus {
            id: "pod1".into(),
            metadata: Some(PodSandboxMetadata {
                name: "web".into(),
                uid: "u-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            linux: Some(LinuxPodSandboxStatus {
                namespaces: Some(Namespace {
                    options: Some(NamespaceOption {
                        network: network as i32,
                        pid: NamespaceMode::Container as i32,
                        ipc: NamespaceMode::Pod as i32,
                        ..Default::default()
                    }),
                }),
            }),
            labels: [("app".to_owned(), "x".to_owned())].into(),
            annotations: [("a".to_owned(), "b".to_owned())].into(),
            ..Default::default()
        }
    }

    fn namespaces_of(config: &PodSandboxConfig) -> NamespaceOption {
        config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .expect("namespace options in the rebuilt config")
    }

    #[test]
    fn namespace_options_are_mapped_back_into_the_security_context() {
        let config = rebuild_config(&status(NamespaceMode::Node), None, None);
        assert_eq!(namespaces_of(&config), namespace_options(true));
        let config = rebuild_config(&status(NamespaceMode::Pod), None, None);
        assert_eq!(namespaces_of(&config), namespace_options(false));
    }

    #[test]
    fn metadata_labels_and_annotations_come_from_the_status() {
        let config = rebuild_config(&status(NamespaceMode::Pod), None, Some("/var/log/pods/x"));
        let metadata = config.metadata.as_ref().unwrap();
        assert_eq!(
            (
                metadata.name.as_str(),
                metadata.uid.as_str(),
                metadata.namespace.as_str()
            ),
            ("web", "u-1", "default")
        );
        assert_eq!(config.labels["app"], "x");
        assert_eq!(config.annotations["a"], "b");
        assert_eq!(config.hostname, "web");
        assert_eq!(config.log_directory, "/var/log/pods/x");
    }

    #[test]
    fn the_stored_config_supplies_log_directory_hostname_and_cgroup_parent() {
        let info = HashMap::from([(
            "info".to_owned(),
            r#"{"pid":7,"config":{"hostname":"h","log_directory":"/logs",
                "linux":{"cgroup_parent":"/kubepods"}}}"#
                .to_owned(),
        )]);
        let stored = stored_config(&info);
        let config = rebuild_config(&status(NamespaceMode::Pod), stored.as_ref(), None);
        assert_eq!(config.log_directory, "/logs");
        assert_eq!(config.hostname, "h");
        assert_eq!(config.linux.unwrap().cgroup_parent, "/kubepods");

        // camelCase, and --pod-log-dir winning over the stored value
        let info = HashMap::from([(
            "info".to_owned(),
            r#"{"config":{"logDirectory":"/camel"}}"#.to_owned(),
        )]);
        let stored = stored_config(&info);
        let status = status(NamespaceMode::Pod);
        assert_eq!(
            rebuild_config(&status, stored.as_ref(), None).log_directory,
            "/camel"
        );
        assert_eq!(
            rebuild_config(&status, stored.as_ref(), Some("/flag")).log_directory,
            "/flag"
        );
    }

    #[test]
    fn unparsable_info_leaves_the_log_directory_empty() {
        let info = HashMap::from([("info".to_owned(), "not json".to_owned())]);
        assert!(stored_config(&info).is_none());
        let config = rebuild_config(&status(NamespaceMode::Pod), None, None);
        assert_eq!(config.log_directory, "");
    }

    #[test]
    fn runp_config_uses_the_name_as_hostname_and_the_host_network_on_request() {
        let spec = PodSpec {
            name: "p".into(),
            namespace: "ns".into(),
            uid: "u".into(),
            log_dir: Some("/l".into()),
            cgroup_parent: Some("/lz1".into()),
            host_network: true,
            labels: HashMap::new(),
            annotations: HashMap::new(),
        };
        let config = sandbox_config(&spec);
        assert_eq!(config.hostname, "p");
        assert_eq!(config.log_directory, "/l");
        assert_eq!(config.linux.as_ref().unwrap().cgroup_parent, "/lz1");
        let ns = namespaces_of(&config);
        assert_eq!(ns.network, NamespaceMode::Node as i32);
        assert_eq!(ns.pid, NamespaceMode::Container as i32);
        assert_eq!(ns.ipc, NamespaceMode::Pod as i32);
    }
}
