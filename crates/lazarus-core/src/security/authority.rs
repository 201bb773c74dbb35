//! What a container's recorded configuration asks of the host that creates
//! it again: hooks, privileges, host namespaces and paths, devices,
//! weakened security options, sysctls. Read from an archive's `spec.dump`
//! (the OCI spec a containerd restore creates the container with) or
//! `engine.dump` (the Docker create request a Docker restore replays), as
//! JSON values: an attacker's file may hold anything, and nothing in it is
//! trusted to have the shape a type would demand.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::caps::CapSet;

/// A kind of authority an import must be granted before it is replayed.
/// Each has its own flag (`--allow-<kebab name>`) and config name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Grant {
    /// OCI hooks: programs run as root on the host.
    Hooks,
    /// Docker's privileged mode: every capability and device, no masking.
    Privileged,
    /// Capabilities beyond the default set Docker and containerd give.
    Capabilities,
    /// The host's namespaces, or joining another process's.
    HostNamespaces,
    /// Host paths, other containers' volumes, non-container file systems.
    HostMounts,
    /// Device nodes and device access rules.
    Devices,
    /// seccomp, AppArmor or SELinux disabled or replaced, no_new_privileges
    /// off, masked paths unmasked.
    SecurityOptions,
    /// Kernel parameters (sysctls).
    Sysctls,
}

impl Grant {
    pub const ALL: [Grant; 8] = [
        Grant::Hooks,
        Grant::Privileged,
        Grant::Capabilities,
        Grant::HostNamespaces,
        Grant::HostMounts,
        Grant::Devices,
        Grant::SecurityOptions,
        Grant::Sysctls,
    ];

    /// The kebab-case name the config file and the flags use.
    pub fn name(self) -> &'static str {
        match self {
            Grant::Hooks => "hooks",
            Grant::Privileged => "privileged",
            Grant::Capabilities => "capabilities",
            Grant::HostNamespaces => "host-namespaces",
            Grant::HostMounts => "host-mounts",
            Grant::Devices => "devices",
            Grant::SecurityOptions => "security-options",
            Grant::Sysctls => "sysctls",
        }
    }

    /// The CLI flag that grants it.
    pub fn flag(self) -> String {
        format!("--allow-{}", self.name())
    }
}

/// One thing the configuration asks for, in words a user can judge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    pub grant: Grant,
    pub what: String,
}

fn item(grant: Grant, what: impl Into<String>) -> Item {
    Item {
        grant,
        what: what.into(),
    }
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

fn non_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::String(s) => !s.is_empty(),
        Value::Null => false,
        _ => true,
    }
}

/// The namespaces a container has its own of unless it asks otherwise.
const OWN_NAMESPACES: [&str; 5] = ["pid", "ipc", "uts", "mount", "network"];
/// File systems every container runtime mounts in a container.
const CONTAINER_FS: [&str; 8] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "shm",
];
/// Paths containerd and Docker mask in every unprivileged container; one
/// missing from a configuration's masked paths is visible in it.
const MASKED: [&str; 3] = ["/proc/kcore", "/proc/keys", "/proc/timer_list"];
/// Device access rules runc, containerd and Docker allow by default
/// (type, major, minor): null, zero, full, random, urandom, tty, console,
/// ptmx, the pty slaves, and mknod of anything.
const DEFAULT_DEVICES: [(&str, i64, i64); 11] = [
    ("c", 1, 3),
    ("c", 1, 5),
    ("c", 1, 7),
    ("c", 1, 8),
    ("c", 1, 9),
    ("c", 5, 0),
    ("c", 5, 1),
    ("c", 5, 2),
    ("c", 136, -1),
    ("c", 10, 200),
    ("c", 10, 229),
];

/// What an OCI spec (an archive's `spec.dump`) asks for beyond what
/// containerd's default spec (`ctr run`) gives. Its cgroup path is not
/// among them: an import always replaces it with the new container's own.
pub fn of_oci_spec(spec: &Value) -> Vec<Item> {
    let mut out = Vec::new();
    oci_hooks(spec, &mut out);
    let process = &spec["process"];
    let mut caps = Vec::new();
    for set in [
        "bounding",
        "effective",
        "permitted",
        "inheritable",
        "ambient",
    ] {
        caps.extend(strings(&process["capabilities"][set]));
    }
    capabilities(&caps, &mut out);
    let linux = &spec["linux"];
    oci_namespaces(linux, &mut out);
    oci_mounts(spec, &mut out);
    oci_devices(linux, &mut out);
    if process["noNewPrivileges"].as_bool() != Some(true) {
        out.push(item(Grant::SecurityOptions, "no_new_privileges off"));
    }
    if process["apparmorProfile"].as_str() == Some("unconfined") {
        out.push(item(Grant::SecurityOptions, "AppArmor unconfined"));
    }
    // containerd's default spec masks them: a spec without the list has
    // had it taken out.
    let masked = match &linux["maskedPaths"] {
        Value::Null => Value::Array(Vec::new()),
        list => list.clone(),
    };
    masked_paths(&masked, &mut out);
    sysctls(&linux["sysctl"], &mut out);
    out
}

fn oci_hooks(spec: &Value, out: &mut Vec<Item>) {
    for (kind, list) in spec["hooks"].as_object().into_iter().flatten() {
        for h in list.as_array().into_iter().flatten() {
            let args = strings(&h["args"]).join(" ");
            let path = h["path"].as_str().unwrap_or("?");
            out.push(item(Grant::Hooks, format!("{kind} hook: {path} ({args})")));
        }
    }
}

/// The container's own namespaces it lacks, and those it joins by path.
fn oci_namespaces(linux: &Value, out: &mut Vec<Item>) {
    let namespaces = linux["namespaces"].as_array().cloned().unwrap_or_default();
    let kind_of = |n: &Value| n["type"].as_str().unwrap_or_default().to_string();
    for own in OWN_NAMESPACES {
        if !namespaces.iter().any(|n| kind_of(n) == own) {
            out.push(item(
                Grant::HostNamespaces,
                format!("the host's {own} namespace"),
            ));
        }
    }
    for n in &namespaces {
        if let Some(path) = n["path"].as_str().filter(|p| !p.is_empty()) {
            out.push(item(
                Grant::HostNamespaces,
                format!("joins the {} namespace at {path}", kind_of(n)),
            ));
        }
    }
}

fn oci_mounts(spec: &Value, out: &mut Vec<Item>) {
    for m in spec["mounts"].as_array().into_iter().flatten() {
        let kind = m["type"].as_str().unwrap_or_default();
        let options = strings(&m["options"]);
        let source = m["source"].as_str().unwrap_or_default();
        let dest = m["destination"].as_str().unwrap_or_default();
        if kind == "bind" || options.iter().any(|o| *o == "bind" || *o == "rbind") {
            out.push(item(
                Grant::HostMounts,
                format!("host path {source} at {dest}"),
            ));
        } else if !CONTAINER_FS.contains(&kind) {
            out.push(item(
                Grant::HostMounts,
                format!("a {kind:?} mount of {source} at {dest}"),
            ));
        }
    }
}

/// Device nodes, and device access rules beyond the default ones.
fn oci_devices(linux: &Value, out: &mut Vec<Item>) {
    for d in linux["devices"].as_array().into_iter().flatten() {
        out.push(item(
            Grant::Devices,
            format!(
                "device {} ({} {}:{})",
                d["path"].as_str().unwrap_or("?"),
                d["type"].as_str().unwrap_or("?"),
                d["major"],
                d["minor"]
            ),
        ));
    }
    let rules = linux["resources"]["devices"].as_array();
    for rule in rules.into_iter().flatten() {
        if rule["allow"].as_bool() != Some(true) {
            continue;
        }
        let kind = rule["type"].as_str().unwrap_or("a");
        let (major, minor) = (rule["major"].as_i64(), rule["minor"].as_i64());
        let access = rule["access"].as_str().unwrap_or("rwm");
        let mknod_any = access == "m" && matches!(kind, "c" | "b") && major.is_none();
        let listed = DEFAULT_DEVICES
            .iter()
            .any(|(t, ma, mi)| *t == kind && Some(*ma) == major && *mi == minor.unwrap_or(-1));
        if !(mknod_any || listed) {
            let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
            out.push(item(
                Grant::Devices,
                format!(
                    "device access {kind} {}:{} {access}",
                    num(major),
                    num(minor)
                ),
            ));
        }
    }
}

/// A sysctl map (the spec's `sysctl`, Docker's `Sysctls`).
fn sysctls(map: &Value, out: &mut Vec<Item>) {
    for (k, v) in map.as_object().into_iter().flatten() {
        out.push(item(
            Grant::Sysctls,
            format!("sysctl {k}={}", v.as_str().unwrap_or("?")),
        ));
    }
}

/// What a Docker create request (an archive's `engine.dump`) asks for
/// beyond `docker run IMAGE`. Its cgroup parent is not among them: an
/// import never takes it from the archive.
pub fn of_docker(body: &Value) -> Vec<Item> {
    let mut out = Vec::new();
    let host = &body["HostConfig"];
    if host["Privileged"].as_bool() == Some(true) {
        out.push(item(Grant::Privileged, "privileged mode"));
    }
    capabilities(&strings(&host["CapAdd"]), &mut out);
    docker_namespaces(host, &mut out);
    docker_mounts(host, &mut out);
    for d in host["Devices"].as_array().into_iter().flatten() {
        out.push(item(
            Grant::Devices,
            format!("device {}", d["PathOnHost"].as_str().unwrap_or("?")),
        ));
    }
    for rule in strings(&host["DeviceCgroupRules"]) {
        out.push(item(Grant::Devices, format!("device access {rule}")));
    }
    if non_empty(&host["DeviceRequests"]) {
        out.push(item(
            Grant::Devices,
            format!("device requests {}", host["DeviceRequests"]),
        ));
    }
    for opt in strings(&host["SecurityOpt"]) {
        if let Some(what) = weakened(opt) {
            out.push(item(Grant::SecurityOptions, what));
        }
    }
    if host["Privileged"].as_bool() != Some(true) {
        masked_paths(&host["MaskedPaths"], &mut out);
    }
    sysctls(&host["Sysctls"], &mut out);
    out
}

/// The host's namespaces, or another container's, in Docker's modes.
fn docker_namespaces(host: &Value, out: &mut Vec<Item>) {
    for (field, kind) in [
        ("PidMode", "pid"),
        ("IpcMode", "ipc"),
        ("UTSMode", "uts"),
        ("NetworkMode", "network"),
        ("UsernsMode", "user"),
        // Not CgroupnsMode: "host" is Docker's default on cgroup v1 hosts,
        // and a cgroup namespace only changes how cgroup paths look.
    ] {
        let mode = host[field].as_str().unwrap_or_default();
        if mode == "host" {
            out.push(item(
                Grant::HostNamespaces,
                format!("the host's {kind} namespace"),
            ));
        } else if let Some(other) = mode.strip_prefix("container:") {
            out.push(item(
                Grant::HostNamespaces,
                format!("joins container {other}'s {kind} namespace"),
            ));
        }
    }
}

/// Host paths, other containers' volumes, volumes with driver options.
fn docker_mounts(host: &Value, out: &mut Vec<Item>) {
    for bind in strings(&host["Binds"]) {
        // "/host/path:/in/container[:opts]"; a named volume has no slash.
        if bind.starts_with('/') {
            out.push(item(Grant::HostMounts, format!("host path {bind}")));
        }
    }
    for m in host["Mounts"].as_array().into_iter().flatten() {
        let (source, target) = (
            m["Source"].as_str().unwrap_or_default(),
            m["Target"].as_str().unwrap_or_default(),
        );
        match m["Type"].as_str().unwrap_or_default() {
            "bind" => out.push(item(
                Grant::HostMounts,
                format!("host path {source} at {target}"),
            )),
            "volume" if non_empty(&m["VolumeOptions"]["DriverConfig"]) => out.push(item(
                Grant::HostMounts,
                format!(
                    "volume {source} at {target} with driver options {}",
                    m["VolumeOptions"]["DriverConfig"]
                ),
            )),
            _ => {}
        }
    }
    for from in strings(&host["VolumesFrom"]) {
        out.push(item(
            Grant::HostMounts,
            format!("the volumes of container {from}"),
        ));
    }
}

/// A Docker `--security-opt` that loosens the default, in words.
fn weakened(opt: &str) -> Option<String> {
    let (key, value) = opt.split_once(['=', ':']).unwrap_or((opt, ""));
    match key {
        "seccomp" if value == "unconfined" => Some("seccomp disabled".into()),
        "seccomp" => Some("seccomp profile replaced by the archive's".into()),
        "apparmor" => Some(format!("AppArmor profile {value}")),
        "label" => Some(format!("SELinux label {value}")),
        "systempaths" if value == "unconfined" => Some("/proc and /sys paths unmasked".into()),
        "no-new-privileges" => None,
        _ => Some(format!("security option {opt}")),
    }
}

fn capabilities(names: &[&str], out: &mut Vec<Item>) {
    let (set, unknown) = CapSet::from_names(names.iter().copied());
    let extra = set.minus(CapSet::default_set());
    if !extra.is_empty() {
        out.push(item(
            Grant::Capabilities,
            format!("capabilities beyond the default: {extra}"),
        ));
    }
    if !unknown.is_empty() {
        out.push(item(
            Grant::Capabilities,
            format!("unknown capabilities {}", unknown.join(", ")),
        ));
    }
}

/// A masked-paths list present but missing the usual entries.
fn masked_paths(v: &Value, out: &mut Vec<Item>) {
    let Some(list) = v.as_array() else { return };
    let list: Vec<&str> = list.iter().filter_map(Value::as_str).collect();
    let unmasked: Vec<&str> = MASKED.into_iter().filter(|p| !list.contains(p)).collect();
    if !unmasked.is_empty() {
        out.push(item(
            Grant::SecurityOptions,
            format!(
                "paths visible that are masked by default: {}",
                unmasked.join(", ")
            ),
        ));
    }
}

#[cfg(test)]
#[path = "authority_tests.rs"]
mod tests;
