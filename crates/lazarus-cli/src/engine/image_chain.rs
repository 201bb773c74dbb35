//! What a containerd restore needs from the image: the snapshot its root
//! filesystem starts from (the image's chain id, as containerd unpacks
//! it), and the recorded spec fitted to the new container.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::engine::containerd::Containerd;
use crate::error::{Error, Result};
use lazarus_core::archive::ArchiveConfig;

/// The chain id of the archive's image in this containerd namespace: its
/// unpacked snapshot, the parent of the restored container's.
pub async fn snapshot_parent(ctr: &Containerd, cfg: &ArchiveConfig) -> Result<String> {
    let ns = ctr.namespace();
    let Some((media_type, digest)) = ctr.image_target(&cfg.image_name).await? else {
        return Err(Error::NotFound(format!(
            "image {} is not in containerd namespace {ns}: `ctr -n {ns} image pull {}` (or \
             import it), then try again",
            cfg.image_name, cfg.image_name
        )));
    };
    if !cfg.image_digest.is_empty() && cfg.image_digest != digest {
        return Err(Error::Refused(format!(
            "image {} in namespace {ns} is {digest}, but the checkpoint was taken on {}: import \
             the same image, then try again",
            cfg.image_name, cfg.image_digest
        )));
    }
    let manifest = manifest_of(ctr, &media_type, &digest).await?;
    let config_digest = manifest["config"]["digest"].as_str().ok_or_else(|| {
        Error::Refused(format!(
            "image {}: its manifest names no config",
            cfg.image_name
        ))
    })?;
    let config: Value = json(&ctr.read_blob(config_digest).await?, "image config")?;
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    chain_id(&diff_ids)
        .ok_or_else(|| Error::Refused(format!("image {} has no layers", cfg.image_name)))
}

/// The image's manifest for this machine (an index is resolved to its
/// linux manifest for this architecture).
async fn manifest_of(ctr: &Containerd, media_type: &str, digest: &str) -> Result<Value> {
    let v: Value = json(&ctr.read_blob(digest).await?, "image manifest")?;
    let is_index = media_type.contains("index") || media_type.contains("manifest.list");
    if !is_index {
        return Ok(v);
    }
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    let chosen = v["manifests"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|m| m["platform"]["os"] == "linux" && m["platform"]["architecture"] == arch)
        .and_then(|m| m["digest"].as_str())
        .ok_or_else(|| {
            Error::NotFound(format!("image index {digest} has no linux/{arch} manifest"))
        })?;
    json(&ctr.read_blob(chosen).await?, "image manifest")
}

fn json(bytes: &[u8], what: &str) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|e| Error::Refused(format!("{what} is not JSON: {e}")))
}

/// OCI's chain id: the first diff id, then sha256("<chain> <next diff id>").
pub fn chain_id(diff_ids: &[&str]) -> Option<String> {
    let (first, rest) = diff_ids.split_first()?;
    Some(rest.iter().fold(first.to_string(), |chain, d| {
        let hex: String = Sha256::digest(format!("{chain} {d}"))
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!("sha256:{hex}")
    }))
}

/// The recorded spec for the container `new` in `ns`. Its cgroup path is
/// always containerd's `/<namespace>/<id>` of the new container, whatever
/// the archive said: taken from an archive it could name another
/// container's cgroup and join it. A hand-off annotation (which directory
/// a first start restores from) is dropped: only this import sets one.
pub fn respec(mut spec: Value, new: &str, ns: &str) -> Vec<u8> {
    if !spec["linux"].is_object() {
        spec["linux"] = Value::Object(Default::default());
    }
    spec["linux"]["cgroupsPath"] = Value::from(format!("/{ns}/{new}"));
    if let Some(a) = spec["annotations"].as_object_mut() {
        a.remove(lazarus_core::checkpoint::handoff::IMAGES_ANNOTATION);
    }
    serde_json::to_vec(&spec).expect("JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_ids_fold_as_oci_says() {
        assert_eq!(chain_id(&[]), None);
        assert_eq!(chain_id(&["sha256:a"]).unwrap(), "sha256:a");
        let two = chain_id(&["sha256:a", "sha256:b"]).unwrap();
        let want: String = Sha256::digest("sha256:a sha256:b")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(two, format!("sha256:{want}"));
    }

    #[test]
    fn the_cgroup_path_is_always_the_new_containers() {
        for spec in [
            json!({"linux": {"cgroupsPath": "/default/old"}}),
            json!({"linux": {"cgroupsPath": "/default/victim"}}),
            json!({"linux": {"cgroupsPath": "/custom/place"}}),
            json!({}),
        ] {
            let v: Value = serde_json::from_slice(&respec(spec, "new", "ns2")).unwrap();
            assert_eq!(v["linux"]["cgroupsPath"], "/ns2/new");
        }
        let handoff = lazarus_core::checkpoint::handoff::IMAGES_ANNOTATION;
        let spec = json!({"annotations": {handoff: "/elsewhere", "mine": "kept"}});
        let v: Value = serde_json::from_slice(&respec(spec, "new", "ns")).unwrap();
        assert_eq!(v["annotations"], json!({"mine": "kept"}));
    }
}
