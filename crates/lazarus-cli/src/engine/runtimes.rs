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
//! lists the registered names (`Runtimes`) with each one's `runtimeType`, or
//! with a `path` for runc-compatible binaries.

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
    /// From dockerd's `GET /info` (its `Runtimes` map).
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
