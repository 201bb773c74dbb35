//! `checkpoint --all` into the snapshot store (no `--export-dir`): the set's
//! record lives in `STORE_ROOT/all/`, and each container's checkpoint is a
//! snapshot of the store rather than an archive file.
//!
//! A unit is still taken into an archive first (the frozen checkpoint's
//! guarantees are the export's: the container is stopped only once the
//! archive is whole), then read into the store and the archive removed.
//! If that fails the archive stays and is recorded instead, so nothing is
//! lost. A Compose project's group archive stays a file too: the store
//! holds one container's checkpoint per snapshot.
//!
//! `restore --all` imports each container straight from its snapshot (as
//! `restore --snapshot` does: no archive is written back). Once the whole
//! set runs again its snapshots are removed from the store: they were the
//! reboot's, not a series the user keeps.

use std::path::{Path, PathBuf};

use lazarus_core::config::Config;

use crate::error::Result;
use crate::flows::snapshot;

/// Where a store-backed set's record lives.
pub fn set_dir(config: &Config) -> PathBuf {
    config.store_root.join("all")
}

/// The tag of a set's snapshots: pinned (a tagged snapshot is never
/// removed by `store_max_gib`), and named after the set.
fn tag(checkpointed_at: &chrono::DateTime<chrono::Utc>) -> String {
    format!("reboot-{}", checkpointed_at.format("%Y%m%dT%H%M%SZ"))
}

/// Reads `archive` (one container's) into the store as a snapshot of
/// `container` and removes the file; returns the snapshot's id.
pub fn keep(
    config: &Config,
    archive: &Path,
    container: &str,
    checkpointed_at: &chrono::DateTime<chrono::Utc>,
) -> Result<String> {
    let store = snapshot::store(config)?;
    let mut writer = store.writer()?;
    writer.ingest_archive(archive)?;
    let info = serde_json::json!({ "taken_by": "checkpoint --all" });
    let snapshot = writer.commit(container, Some(&tag(checkpointed_at)), info)?;
    if let Err(e) = std::fs::remove_file(archive) {
        eprintln!(
            "lazarus: warning: {} is in the store as snapshot {}, but its archive stays: {e}",
            archive.display(),
            snapshot.id
        );
    }
    Ok(snapshot.id)
}

/// The set runs again: its snapshots leave the store. Returns what could
/// not be removed, for the report's notes.
pub fn release(config: &Config, ids: &[String]) -> Vec<String> {
    let store = match snapshot::store(config) {
        Ok(s) => s,
        Err(e) => return vec![format!("the set's snapshots stay in the store: {e}")],
    };
    ids.iter()
        .filter_map(|id| {
            store.remove(id).err().map(|e| {
                format!("snapshot {id} stays in the store ({e}): `lazarus snapshot rm {id}`")
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazarus_core::archive::{self, ArchiveConfig, ArchiveInput, Compression};

    /// A small archive of one container whose memory is `pages`.
    fn archive(dir: &Path, pages: &[u8]) -> PathBuf {
        let images = dir.join("images");
        std::fs::create_dir_all(&images).unwrap();
        std::fs::write(images.join("pages-1.img"), pages).unwrap();
        std::fs::write(images.join("inventory.img"), b"small image").unwrap();
        let config = ArchiveConfig {
            id: "c1".into(),
            name: "web".into(),
            image_name: String::new(),
            image_digest: String::new(),
            runtime: String::new(),
            created: chrono::Utc::now(),
            checkpointed: chrono::Utc::now(),
            engine: "docker".into(),
            namespace: "moby".into(),
        };
        let input = ArchiveInput {
            images_dir: &images,
            spec_json: b"{}",
            config: &config,
            rootfs_diff: None,
            dump_log: None,
            network_status: None,
            engine_config: None,
            volumes: &[],
        };
        let out = dir.join("web.tar");
        archive::write(&input, &out, Compression::None, &mut |_| {}).unwrap();
        out
    }

    /// A set's container goes into the store (its archive removed), holds
    /// the same archive content there, and leaves the store once the set
    /// runs again.
    #[test]
    fn a_sets_checkpoint_round_trips_through_the_store_and_is_released() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config {
            store_root: tmp.path().join("store"),
            ..Config::default()
        };
        let pages: Vec<u8> = (0..64 * 4096).map(|i| (i % 251) as u8).collect();
        let file = archive(tmp.path(), &pages);
        let before = archive::read_manifest(&file).unwrap();
        let at = chrono::Utc::now();
        let id = keep(&config, &file, "web", &at).unwrap();
        assert!(!file.exists(), "the archive is removed once stored");
        let stored = snapshot::store(&config).unwrap().find(None, &id).unwrap();
        assert_eq!(stored.tag.as_deref(), Some(tag(&at).as_str()));

        let store = snapshot::store(&config).unwrap();
        let reader = store.reader(&stored).unwrap();
        assert_eq!(reader.manifest().entries, before.entries);

        assert!(release(&config, std::slice::from_ref(&id)).is_empty());
        assert!(snapshot::store(&config).unwrap().list().unwrap().is_empty());
        let again = release(&config, &[id]);
        assert_eq!(again.len(), 1, "a snapshot already gone is named");
    }

    #[test]
    fn a_sets_tag_is_a_valid_store_tag() {
        let at = chrono::DateTime::parse_from_rfc3339("2026-12-07T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let t = tag(&at);
        assert_eq!(t, "reboot-20261207T030405Z");
        // What the store takes as a tag.
        assert!(t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
    }
}
