//! Which runtime a name means, so that every name of Lazarus behaves the
//! same everywhere.
//!
//! containerd records a container's runtime by its type
//! (`io.containerd.lazarus.v2`) or, when it was given so, by its shim
//! binary's path (`/usr/local/bin/containerd-shim-lazarus-v2`); a CRI
//! handler name (`lazarus`) is resolved to the type before containerd
//! records it. Docker records the name the container was run with
//! (`HostConfig.Runtime`): a name registered in its daemon.json
//! (`"runtimes": {"lazarus": {"runtimeType": "io.containerd.lazarus.v2"}}`),
//! or a runtime type given directly (Docker 23+ accepts
//! `io.containerd.NAME.v2` for any shim on its PATH). dockerd's `GET /info`
//! lists the registered names (`Runtimes`), with a `path` for
//! runc-compatible binaries but (Docker 26 and later alike) without the
//! `runtimeType` of a shim v2 runtime: that is read from dockerd's own
//! configuration file (see [`crate::engine::endpoints::dockerd_config`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use crate::engine::containerd::LAZARUS_RUNTIME;

/// Lazarus's shim binary, as containerd looks it up from the runtime type.
pub const LAZARUS_SHIM: &str = "containerd-shim-lazarus-v2";

/// Whether containerd's runtime name `runtime` (a type, or a shim binary's
/// path) is Lazarus.
pub fn is_lazarus_type(runtime: &str) -> bool {
    runtime == LAZARUS_RUNTIME
        || (runtime.contains('/')
            && Path::new(runtime).file_name().and_then(|n| n.to_str()) == Some(LAZARUS_SHIM))
}

/// Docker's registered runtimes: each name with containerd's runtime type
/// it stands for (None: a runc-compatible binary, run by runc's shim).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Runtimes {
    names: BTreeMap<String, Option<String>>,
}

impl Runtimes {
    /// From dockerd's `GET /info` (its `Runtimes` map) and its
    /// configuration file (`runtimes`, each with its `runtimeType`), which
    /// says the types `/info` leaves out.
    pub fn from_docker(info: &Value, config: &Value) -> Runtimes {
        let mut r = Runtimes::from_docker_info(info);
        for (name, entry) in config["runtimes"].as_object().into_iter().flatten() {
            let kind = entry["runtimeType"].as_str().filter(|t| !t.is_empty());
            if let Some(kind) = kind {
                let known = r.names.entry(name.clone()).or_default();
                known.get_or_insert_with(|| kind.to_string());
            }
        }
        r
    }

    /// From dockerd's `GET /info` (its `Runtimes` map) alone.
    pub fn from_docker_info(info: &Value) -> Runtimes {
        let names = info["Runtimes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(name, r)| {
                let kind = r["runtimeType"]
                    .as_str()
                    .filter(|t| !t.is_empty())
                    .map(str::to_string);
                (name.clone(), kind)
            })
            .collect();
        Runtimes { names }
    }

    /// containerd's runtime type a Docker runtime name stands for: the
    /// registered one's, else the name itself when it is a type or a
    /// path (as Docker takes it); None for a runc-compatible binary or a
    /// name this Docker does not know.
    pub fn containerd_type(&self, name: &str) -> Option<String> {
        match self.names.get(name) {
            Some(kind) => kind.clone(),
            None if name.starts_with("io.containerd.") || name.starts_with('/') => {
                Some(name.to_string())
            }
            None => None,
        }
    }

    /// Whether the Docker runtime name `name` runs Lazarus here.
    pub fn is_lazarus(&self, name: &str) -> bool {
        self.containerd_type(name)
            .is_some_and(|t| is_lazarus_type(&t))
    }

    /// Whether this Docker knows `name` (registered, or a runtime type it
    /// takes as it is).
    pub fn knows(&self, name: &str) -> bool {
        self.names.contains_key(name) || self.containerd_type(name).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What Docker 26.1's `GET /info` says with Lazarus registered as
    /// "lazarus" and as a path-typed alias.
    fn info() -> Value {
        json!({"Runtimes": {
            "io.containerd.runc.v2": {"runtimeType": "io.containerd.runc.v2"},
            "runc": {"path": "runc"},
            "crun": {"path": "/usr/bin/crun"},
            "lazarus": {"runtimeType": "io.containerd.lazarus.v2"},
            "laz": {"runtimeType": "/opt/lazarus/bin/containerd-shim-lazarus-v2"},
            "other": {"runtimeType": "io.containerd.other.v2"}
        }})
    }

    #[test]
    fn every_name_of_lazarus_is_lazarus_and_nothing_else_is() {
        let r = Runtimes::from_docker_info(&info());
        for name in [
            "lazarus",
            "laz",
            LAZARUS_RUNTIME,
            "/usr/local/bin/containerd-shim-lazarus-v2",
        ] {
            assert!(r.is_lazarus(name), "{name}");
            assert!(r.knows(name), "{name}");
        }
        for name in [
            "runc",
            "crun",
            "io.containerd.runc.v2",
            "other",
            "io.containerd.other.v2",
            "unknown",
            "",
            "containerd-shim-lazarus-v2",
        ] {
            assert!(!r.is_lazarus(name), "{name}");
        }
        assert!(!r.knows("unknown"));
        assert_eq!(
            r.containerd_type("lazarus").as_deref(),
            Some(LAZARUS_RUNTIME)
        );
        assert_eq!(r.containerd_type("runc"), None);
    }

    /// What Docker 26.1.5 really answers: the registered name, no type
    /// (its `fillPlatformInfo` copies only `path` and `runtimeArgs`); the
    /// type is in the daemon.json dockerd was started with.
    #[test]
    fn the_type_docker_info_leaves_out_comes_from_its_configuration() {
        let info = json!({"Runtimes": {
            "io.containerd.runc.v2": {"path": "io.containerd.runc.v2"},
            "runc": {"path": "runc"},
            "lazarus": {"status": {}}
        }});
        assert!(!Runtimes::from_docker_info(&info).is_lazarus("lazarus"));
        let config = json!({"runtimes": {
            "lazarus": {"runtimeType": "io.containerd.lazarus.v2"},
            "crun": {"path": "/usr/bin/crun"}
        }});
        let r = Runtimes::from_docker(&info, &config);
        assert!(r.is_lazarus("lazarus") && r.knows("lazarus"));
        assert!(!r.is_lazarus("crun") && !r.is_lazarus("runc"));
        // No configuration to read: as /info says.
        assert_eq!(
            Runtimes::from_docker(&info, &Value::Null),
            Runtimes::from_docker_info(&info)
        );
    }

    #[test]
    fn a_docker_without_registered_runtimes_still_takes_the_type() {
        for info in [
            json!({}),
            json!({"Runtimes": null}),
            json!({"Runtimes": []}),
        ] {
            let r = Runtimes::from_docker_info(&info);
            assert!(r.is_lazarus(LAZARUS_RUNTIME));
            assert!(!r.is_lazarus("lazarus"));
            assert!(!r.knows("lazarus"));
        }
    }

    #[test]
    fn containerds_records_are_lazarus_by_type_or_shim_path() {
        assert!(is_lazarus_type(LAZARUS_RUNTIME));
        assert!(is_lazarus_type("/usr/bin/containerd-shim-lazarus-v2"));
        assert!(!is_lazarus_type("io.containerd.runc.v2"));
        assert!(!is_lazarus_type("/usr/bin/containerd-shim-runc-v2"));
        assert!(!is_lazarus_type("containerd-shim-lazarus-v2x"));
    }
}
