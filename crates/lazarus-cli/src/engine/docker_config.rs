//! A Docker container's creation request, recorded from `docker inspect`
//! at export (the archive's `engine.dump`) and replayed at import, so the
//! new container is the same container: command, environment, mounts,
//! labels, network, runtime.

use std::path::Path;

use lazarus_core::checkpoint::handoff;
use serde_json::{json, Map, Value};

/// The body of `POST /containers/create` that makes the container `inspect`
/// describes: its Config, HostConfig, and its user networks' endpoint
/// settings (fixed addresses and aliases).
pub fn create_body(inspect: &Value) -> Value {
    let mut body = match &inspect["Config"] {
        Value::Object(o) => o.clone(),
        _ => Map::new(),
    };

    body.insert("HostConfig".into(), inspect["HostConfig"].clone());
    let short_id: String = inspect["Id"]
        .as_str()
        .unwrap_or("")
        .chars()
        .take(12)
        .collect();
    let mut endpoints = Map::new();
    if let Some(networks) = inspect["NetworkSettings"]["Networks"].as_object() {
        for (name, ep) in networks {
            // Docker's own networks need no endpoint settings (and a daemon
            // without a default bridge refuses them).
            if matches!(name.as_str(), "none" | "host" | "bridge" | "default") {
                continue;
            }
            // Docker adds the short id itself; the old one would be wrong.
            let aliases: Vec<Value> = ep["Aliases"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a.as_str() != Some(short_id.as_str()))
                .cloned()
                .collect();
            endpoints.insert(
                name.clone(),
                json!({ "IPAMConfig": ep["IPAMConfig"], "Aliases": aliases }),
            );
        }
    }
    if !endpoints.is_empty() {
        body.insert(
            "NetworkingConfig".into(),
            json!({ "EndpointsConfig": endpoints }),
        );
    }
    Value::Object(body)
}

/// The recorded body for a new container: from `image` (the same image,
/// as this host names it) and with `runtime`.
pub fn for_import(recorded: &Value, image: &str, runtime: &str) -> Value {
    let mut body = recorded.clone();
    body["Image"] = json!(image);
    // Docker decides this itself at create from its own network settings
    // (a daemon without a default bridge sets it); replayed it would leave
    // the container without the /etc/resolv.conf and /etc/hosts mounts the
    // checkpoint has.
    if let Some(o) = body.as_object_mut() {
        o.remove("NetworkDisabled");
    }
    if !body["HostConfig"].is_object() {
        body["HostConfig"] = json!({});
    }
    body["HostConfig"]["Runtime"] = json!(runtime);
    // Never the archive's: it could name another container's cgroup.
    if let Some(h) = body["HostConfig"].as_object_mut() {
        h.remove("CgroupParent");
    }
    // A container restored by an import carries its spent hand-off.
    if let Some(a) = body["HostConfig"]["Annotations"].as_object_mut() {
        a.remove(handoff::IMAGES_ANNOTATION);
    }
    body
}

/// Makes the container's first start restore from `images` (see
/// lazarus_core::checkpoint::handoff), for a Lazarus container.
pub fn hand_off(body: &mut Value, images: &Path) {
    let host = &mut body["HostConfig"];
    if !host["Annotations"].is_object() {
        host["Annotations"] = json!({});
    }
    host["Annotations"][handoff::IMAGES_ANNOTATION] = json!(images.to_string_lossy());
}

/// The runtime the container ran with, as Docker names it.
pub fn runtime(recorded: &Value) -> Option<&str> {
    recorded["HostConfig"]["Runtime"]
        .as_str()
        .filter(|r| !r.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inspect() -> Value {
        json!({
            "Id": "0123456789abcdef",
            "Name": "/looper",
            "Config": {"Image": "busybox", "Cmd": ["sh", "-c", "x"], "Env": ["A=1"], "NetworkDisabled": true},
            "HostConfig": {"Runtime": "lazarus", "Binds": ["/d:/d"], "NetworkMode": "net"},
            "NetworkSettings": {"Networks": {
                "net": {"IPAMConfig": {"IPv4Address": "10.0.0.5"}, "Aliases": ["0123456789ab", "db"]},
                "none": {},
                "bridge": {}
            }}
        })
    }

    #[test]
    fn the_body_is_the_config_with_host_config_and_endpoints() {
        let b = create_body(&inspect());
        assert_eq!(b["Cmd"], json!(["sh", "-c", "x"]));
        assert_eq!(b["Env"], json!(["A=1"]));
        assert_eq!(b["HostConfig"]["Binds"], json!(["/d:/d"]));
        let eps = &b["NetworkingConfig"]["EndpointsConfig"];
        assert_eq!(eps["net"]["IPAMConfig"]["IPv4Address"], "10.0.0.5");
        assert_eq!(eps["net"]["Aliases"], json!(["db"]));
        assert!(eps.get("none").is_none() && eps.get("bridge").is_none());
    }

    #[test]
    fn import_sets_image_and_runtime() {
        let b = for_import(
            &create_body(&inspect()),
            "sha256:abc",
            "io.containerd.lazarus.v2",
        );
        assert_eq!(b["Image"], "sha256:abc");
        assert_eq!(b["HostConfig"]["Runtime"], "io.containerd.lazarus.v2");
        assert!(b.get("NetworkDisabled").is_none());
        let mut parent = create_body(&inspect());
        parent["HostConfig"]["CgroupParent"] = json!("/docker/victim");
        let b = for_import(&parent, "i", "r");
        assert!(b["HostConfig"].get("CgroupParent").is_none(), "{b}");
        assert_eq!(runtime(&create_body(&inspect())), Some("lazarus"));
        let bare = for_import(&json!({}), "i", "r");
        assert_eq!(bare["HostConfig"]["Runtime"], "r");
    }

    #[test]
    fn a_spent_hand_off_is_not_replayed_and_a_new_one_keeps_the_rest() {
        let mut recorded = create_body(&inspect());
        recorded["HostConfig"]["Annotations"] =
            json!({handoff::IMAGES_ANNOTATION: "/old", "mine": "kept"});
        let mut b = for_import(&recorded, "i", "r");
        assert_eq!(b["HostConfig"]["Annotations"], json!({"mine": "kept"}));
        hand_off(&mut b, Path::new("/new/checkpoint"));
        assert_eq!(
            b["HostConfig"]["Annotations"],
            json!({"mine": "kept", handoff::IMAGES_ANNOTATION: "/new/checkpoint"})
        );
        let mut bare = for_import(&json!({}), "i", "r");
        hand_off(&mut bare, Path::new("/n"));
        assert_eq!(
            bare["HostConfig"]["Annotations"][handoff::IMAGES_ANNOTATION],
            "/n"
        );
    }
}
