//! Listing, removing and pruning snapshots, and exporting one as an
//! ordinary archive.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lazarus_core::archive::{self, Signer};
use lazarus_core::config::Config;
use lazarus_core::store::{Snapshot, Store};
use serde::Serialize;

use super::parse_duration;
use super::report::{RemovedReport, SnapshotEntry, SnapshotList, SnapshotReport};
use crate::error::{Error, Result};
use crate::flows::export::{check_destination, is_stdout, Compress};
use crate::grants::GrantArgs;
use crate::report::Summary;
use crate::seal;

#[derive(clap::Args)]
pub struct SnapshotImportArgs {
    /// The archive (plain, zstd or encrypted)
    pub file: PathBuf,
    /// Name the snapshot (unique per container)
    #[arg(long)]
    pub tag: Option<String>,
    /// Import only an archive signed by one of the public keys in FILE
    #[arg(long, value_name = "FILE")]
    pub require_signed: Option<PathBuf>,
    /// The age identity an encrypted archive is opened with
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// `lazarus snapshot import FILE`.
pub fn import(config: &Config, args: &SnapshotImportArgs) -> Result<SnapshotReport> {
    let started = std::time::Instant::now();
    let _decrypted;
    let file = match seal::is_encrypted(&args.file) {
        false => args.file.clone(),
        true => {
            let scratch = config.scratch_dir("decrypt")?;
            let plain = scratch.path().join("archive.tar");
            seal::decrypt(&args.file, &plain, args.identity.as_deref())?;
            _decrypted = scratch;
            plain
        }
    };
    let manifest = archive::read_manifest(&file)?;
    let grants = GrantArgs {
        require_signed: args.require_signed.clone(),
        ..Default::default()
    };
    grants.check_signature(config, &manifest, &args.file)?;
    let store = super::store(config)?;
    let mut writer = store.writer()?;
    archive::check_limits(
        &file,
        &manifest,
        writer.dir(),
        &config.import.limits(),
        &|_| true,
    )?;
    writer.ingest_archive(&file)?;
    let small = super::take::small_summary(&file, writer.dir())?;
    let cfg = small.config.ok_or_else(|| {
        Error::Refused(format!(
            "{} has no readable config.dump",
            args.file.display()
        ))
    })?;
    let info = serde_json::json!({
        "engine": if cfg.engine == "docker" { "docker" } else { "containerd" },
        "id": cfg.id,
        "namespace": cfg.namespace,
        "processes": small.processes,
        "tcp": small.tcp,
        "imported_from": args.file,
        "checkpointed": cfg.checkpointed,
    });
    let snapshot = writer.commit(&cfg.name, args.tag.as_deref(), info)?;
    let dump = format!(
        "imported from {}, deduplicated storage",
        args.file.display()
    );
    Ok(SnapshotReport {
        store_seconds: started.elapsed().as_secs_f64(),
        ..SnapshotReport::of(snapshot, store.usage()?, dump)
    })
}

#[derive(clap::Args)]
pub struct PruneArgs {
    /// Keep the newest N snapshots of each container
    #[arg(long, value_name = "N", required_unless_present = "older_than")]
    pub keep: Option<usize>,
    /// Remove snapshots older than DURATION (30m, 12h, 7d); with --keep,
    /// only those both beyond the newest N and older than this
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, verbatim_doc_comment)]
    pub older_than: Option<Duration>,
    /// Only this container's snapshots
    pub container: Option<String>,
    /// Tagged snapshots too (they are kept otherwise)
    #[arg(long)]
    pub tagged_too: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// `lazarus snapshots [C]`.
pub fn list(store: &Store, container: Option<&str>) -> Result<SnapshotList> {
    let snapshots = store
        .list()?
        .iter()
        .filter(|s| container.is_none_or(|c| s.container == c))
        .map(SnapshotEntry::from)
        .collect();
    Ok(SnapshotList {
        snapshots,
        store_bytes: store.usage()?,
    })
}

/// `lazarus snapshot rm ID...`: every id is found before any is removed.
pub fn remove(store: &Store, keys: &[String]) -> Result<RemovedReport> {
    let found = keys
        .iter()
        .map(|k| store.find(None, k))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    remove_these(store, found.iter().map(|s| s.id.clone()).collect())
}

fn remove_these(store: &Store, ids: Vec<String>) -> Result<RemovedReport> {
    let before = store.usage()?;
    for id in &ids {
        store.remove(id)?;
    }
    let after = store.usage()?;
    Ok(RemovedReport {
        removed: ids,
        bytes_freed: before.saturating_sub(after),
        store_bytes: after,
    })
}

/// `lazarus snapshots prune`.
pub fn prune(store: &Store, args: &PruneArgs) -> Result<RemovedReport> {
    let all = store.list()?;
    let ids = to_prune(&all, args, Utc::now());
    remove_these(store, ids)
}

/// `--every --keep N`: the newest N untagged snapshots of `container` stay.
pub fn keep_newest(store: &Store, container: &str, keep: usize) -> Result<RemovedReport> {
    let args = PruneArgs {
        keep: Some(keep),
        older_than: None,
        container: Some(container.to_string()),
        tagged_too: false,
        json: true,
    };
    prune(store, &args)
}

/// Which snapshots a prune removes (see [`PruneArgs`]).
fn to_prune(all: &[Snapshot], args: &PruneArgs, now: DateTime<Utc>) -> Vec<String> {
    let mut per_container: BTreeMap<&str, Vec<&Snapshot>> = BTreeMap::new();
    for s in all {
        if args.container.as_deref().is_none_or(|c| s.container == c)
            && (args.tagged_too || s.tag.is_none())
        {
            per_container.entry(&s.container).or_default().push(s);
        }
    }
    let mut out = Vec::new();
    for (_, mut snaps) in per_container {
        snaps.sort_by_key(|s| std::cmp::Reverse(s.created));
        for (i, s) in snaps.iter().enumerate() {
            let beyond = args.keep.is_none_or(|k| i >= k);
            let old = args.older_than.is_none_or(|d| {
                now.signed_duration_since(s.created)
                    .to_std()
                    .is_ok_and(|age| age > d)
            });
            if beyond && old {
                out.push(s.id.clone());
            }
        }
    }
    out
}

/// `checkpoint --export F --snapshot ID`.
#[derive(Debug, Clone, Serialize)]
pub struct SnapshotExportReport {
    pub archive: PathBuf,
    pub snapshot: String,
    pub container: String,
    pub archive_bytes: u64,
    pub content_bytes: u64,
    pub encrypted: bool,
    pub seconds: f64,
}

impl Summary for SnapshotExportReport {
    fn summary(&self) -> String {
        format!(
            "{}: snapshot {} of {} ({} of checkpoint, {} written{})",
            self.archive.display(),
            self.snapshot,
            self.container,
            lazarus_core::inspect::human(self.content_bytes),
            lazarus_core::inspect::human(self.archive_bytes),
            if self.encrypted { ", encrypted" } else { "" },
        )
    }
}

/// Writes snapshot `key` as an archive at `dest` (signed with `sign`,
/// encrypted to `encrypt`'s recipients): the same archive a `checkpoint
/// --export` of the container would have written then.
pub fn export(
    config: &Config,
    key: &str,
    dest: &Path,
    compress: Compress,
    sign: Option<&Path>,
    encrypt: Option<&Path>,
) -> Result<SnapshotExportReport> {
    if is_stdout(dest) {
        return Err(Error::Refused(
            "--snapshot: write the archive to a file (--export FILE), not standard output".into(),
        ));
    }
    check_destination(dest)?;
    let started = Instant::now();
    let store = super::store(config)?;
    let snapshot = store.find(None, key)?;
    lazarus_core::store::pages_ref::refuse_pages_only(&snapshot, "exported")?;
    let signer = sign.map(Signer::load).transpose()?;
    let mut reader = store.reader(&snapshot)?;
    let scratch;
    let plain = match encrypt {
        None => dest.to_path_buf(),
        Some(recipients) => {
            seal::recipients(recipients)?;
            scratch = config.scratch_dir("seal")?;
            scratch.path().join("archive.tar")
        }
    };
    let manifest = archive::write_known(
        &snapshot.manifest,
        &mut reader,
        &plain,
        compress.compression(),
        signer.as_ref(),
        &mut |_| {},
    )?;
    if let Some(recipients) = encrypt {
        seal::encrypt(&plain, dest, recipients)?;
    }
    Ok(SnapshotExportReport {
        archive: dest.to_path_buf(),
        snapshot: snapshot.id,
        container: snapshot.container,
        archive_bytes: std::fs::metadata(dest).map(|m| m.len()).unwrap_or(0),
        content_bytes: manifest.total_size(),
        encrypted: encrypt.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, container: &str, age_secs: i64, tag: Option<&str>) -> Snapshot {
        let now = Utc::now();
        serde_json::from_value(serde_json::json!({
            "format": 1, "id": id, "container": container, "tag": tag,
            "created": now - chrono::Duration::seconds(age_secs),
            "packs": [], "bytes_added": 0, "bytes_referenced": 0, "blocks": 0,
            "new_blocks": 0, "zero_blocks": 0,
            "manifest": {"format": 1, "lazarus_version": "x", "entries": []},
            "entries": [],
        }))
        .unwrap()
    }

    fn args(keep: Option<usize>, older_than: Option<u64>) -> PruneArgs {
        PruneArgs {
            keep,
            older_than: older_than.map(Duration::from_secs),
            container: None,
            tagged_too: false,
            json: false,
        }
    }

    #[test]
    fn prune_keeps_the_newest_per_container_and_the_tagged() {
        let all = vec![
            snap("a1", "a", 50, None),
            snap("a2", "a", 40, Some("good")),
            snap("a3", "a", 30, None),
            snap("a4", "a", 20, None),
            snap("b1", "b", 10, None),
        ];
        let now = Utc::now();
        assert_eq!(to_prune(&all, &args(Some(1), None), now), ["a3", "a1"]);
        assert_eq!(to_prune(&all, &args(None, Some(25)), now), ["a3", "a1"]);
        // Both: beyond the newest 2 and older than 45 s.
        assert_eq!(to_prune(&all, &args(Some(2), Some(45)), now), ["a1"]);
        let mut with_tags = args(Some(0), None);
        with_tags.tagged_too = true;
        with_tags.container = Some("a".into());
        assert_eq!(to_prune(&all, &with_tags, now).len(), 4);
    }
}
