//! `lazarus snapshot C`: the container's checkpoint, left running (it is
//! frozen only while CRIU dumps it: the shim's leave-running checkpoint,
//! into memory when it fits), cut into blocks by the store's writer where
//! the export made it (no archive written: only new blocks are kept), and
//! committed. `--every D --keep N` repeats it in the foreground.
//!
//! A snapshot killed at any moment leaves the container running (the
//! export's guarantee) and nothing in the store: the writer's directory
//! is removed by the next store open, and a snapshot exists only once its
//! record is written.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lazarus_core::archive::{self, Limits};
use lazarus_core::config::Config;
use lazarus_core::inspect;
use serde_json::json;

use super::report::SnapshotReport;
use super::{manage, parse_duration, store};
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::export::{self, Compress, ContentSink, ExportArgs};
use lazarus_core::store::Writer;

#[derive(clap::Args, Clone)]
pub struct TakeArgs {
    /// A Docker container's name or id, or a containerd container id
    pub container: Option<String>,
    /// Name the snapshot (unique per container; tagged snapshots are kept
    /// by --keep and by the store's cap)
    #[arg(long, conflicts_with = "every", verbatim_doc_comment)]
    pub tag: Option<String>,
    /// Take one every DURATION (30s, 5m, 2h), in the foreground, until
    /// interrupted
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, verbatim_doc_comment)]
    pub every: Option<Duration>,
    /// With --every: keep only the newest N untagged snapshots of the
    /// container
    #[arg(long, value_name = "N", requires = "every", verbatim_doc_comment)]
    pub keep: Option<usize>,
    /// Checkpoint established TCP connections (CRIU --tcp-established)
    #[arg(long)]
    pub tcp_established: bool,
    /// Checkpoint file locks
    #[arg(long)]
    pub file_locks: bool,
    /// A containerd namespace: CONTAINER is a containerd container there
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

/// One snapshot.
pub async fn take(
    args: &TakeArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<SnapshotReport> {
    let container = args.container.clone().ok_or_else(|| {
        Error::Refused("name the container to snapshot (`lazarus snapshot CONTAINER`)".into())
    })?;
    let store = store(config)?;
    let writer = store.writer()?;
    let scratch_in = writer.dir().to_path_buf();
    let sink = Arc::new(IntoStore {
        writer: Mutex::new(Some(writer)),
        taken: Mutex::new(None),
    });
    let export_args = ExportArgs {
        container: Some(container),
        group: Vec::new(),
        compose: None,
        pod: None,
        // Never written: the content goes to `into`.
        export: scratch_in.join("archive.tar"),
        leave_running: true,
        tcp_established: args.tcp_established,
        ext_unix_sk: false,
        shell_job: false,
        file_locks: args.file_locks,
        // A snapshot is the container's own state: its volumes are shared
        // data, left as they are by a revert (see docs/snapshots.md).
        ignore_volumes: true,
        // Blocks are compressed in the store, where it pays.
        compress: Compress::None,
        print_stats: false,
        json: true,
        namespace: args.namespace.clone(),
        from_docker_checkpoint: None,
        sign: None,
        encrypt: None,
        migration: None,
        // A killed snapshot's dump goes with its writer's directory (or,
        // in memory, with the next snapshot command: `store`).
        scratch_in: Some(scratch_in),
        // The container runs on: its dump may go into memory, and the
        // freeze is CRIU's copy of it rather than the disk's writeback
        // (1 GiB here: 0.35-1.4 s onto the disk, 0.41-0.45 s into tmpfs).
        dump_in_memory: true,
        // Cut into blocks where the export made it: no archive written
        // and read back.
        into: Some(sink.clone()),
    };
    let exported = export::run(&export_args, endpoints, config).await?;
    drop(export_args);
    let (writer, processes, stored) = sink.taken()?;
    let frozen_us = exported.stats.frozen_time_us;
    let info = json!({
        "engine": exported.engine,
        "id": exported.id,
        "namespace": exported.namespace,
        "frozen_us": frozen_us,
        "checkpoint_seconds": exported.checkpoint_seconds,
        "processes": processes.processes,
        "tcp": processes.tcp,
        "not_carried": exported.not_carried,
    });
    let snapshot = writer.commit(&exported.container, args.tag.as_deref(), info)?;
    let store_seconds = stored.elapsed().as_secs_f64();
    let removed = match config.store_max_gib {
        0 => Vec::new(),
        gib => store.enforce_cap(gib << 30, &snapshot.id)?,
    };
    let store_bytes = store.usage()?;
    Ok(SnapshotReport {
        frozen_seconds: frozen_us.map(|us| us as f64 / 1e6),
        checkpoint_seconds: exported.checkpoint_seconds,
        store_seconds,
        over_cap: config.store_max_gib > 0 && store_bytes > config.store_max_gib << 30,
        removed_by_cap: removed,
        ..SnapshotReport::of(snapshot, store_bytes, dump_kind(config))
    })
}

/// `--every`: a snapshot each period until interrupted (or the container
/// is gone), each reported through `said` as it is taken.
pub async fn every(
    args: &TakeArgs,
    period: Duration,
    endpoints: &Endpoints,
    config: &Config,
    said: &mut dyn FnMut(&SnapshotReport),
) -> Result<()> {
    loop {
        let started = Instant::now();
        match take(args, endpoints, config).await {
            Ok(report) => {
                said(&report);
                if let Some(keep) = args.keep {
                    manage::keep_newest(&store(config)?, &report.container, keep)?;
                }
            }
            // The container is gone, or was never one of ours: stop.
            Err(e @ (Error::NotFound(_) | Error::Refused(_))) => return Err(e),
            Err(e) => eprintln!("lazarus: snapshot failed, trying again next period: {e}"),
        }
        tokio::time::sleep(period.saturating_sub(started.elapsed())).await;
    }
}

/// An export's content, cut into blocks by the store's writer where the
/// export made it (see [`ContentSink`]).
struct IntoStore {
    writer: Mutex<Option<Writer>>,
    /// Once taken: what the snapshot's record says of its processes, and
    /// when the store began.
    taken: Mutex<Option<(Processes, Instant)>>,
}

impl ContentSink for IntoStore {
    fn take(&self, input: &archive::ArchiveInput) -> lazarus_core::Result<archive::Manifest> {
        let started = Instant::now();
        let processes = summary_of(input.images_dir, None).map_err(|e| {
            lazarus_core::Error::Other(format!("read the checkpoint's processes: {e}"))
        })?;
        let mut writer = lock(&self.writer);
        let writer = writer.as_mut().ok_or_else(|| {
            lazarus_core::Error::Other("internal: a snapshot's content taken twice".into())
        })?;
        let manifest = writer.ingest_input(input)?;
        *lock(&self.taken) = Some((processes, started));
        Ok(manifest)
    }
}

impl IntoStore {
    /// The writer, holding the content, with what [`Self::take`] found.
    fn taken(&self) -> Result<(Writer, Processes, Instant)> {
        let writer = lock(&self.writer).take();
        match (writer, lock(&self.taken).take()) {
            (Some(w), Some((p, at))) => Ok((w, p, at)),
            _ => Err(lazarus_core::Error::Other(
                "internal: the export ended without handing its content to the store".into(),
            )
            .into()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The processes and TCP connections, from the archive's small images
/// (the page images are left out), and its config.dump.
pub(super) fn small_summary(archive: &Path, dir: &Path) -> Result<Processes> {
    let small = dir.join("small");
    archive::extract_with(
        archive,
        &small,
        &Limits::DEFAULT,
        &|name| !name.starts_with("checkpoint/pages-"),
        &mut |_| {},
    )?;
    let config = std::fs::read(small.join(archive::CONFIG_DUMP))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let s = summary_of(&small.join(archive::CHECKPOINT_DIR), config);
    let _ = std::fs::remove_dir_all(&small);
    s
}

/// The processes and TCP connections of CRIU's images in `images`.
fn summary_of(images: &Path, config: Option<archive::ArchiveConfig>) -> Result<Processes> {
    let s = inspect::summarize(images)?;
    Ok(Processes {
        config,
        processes: s
            .processes
            .iter()
            .map(|p| json!({"pid": p.pid, "comm": p.comm, "threads": p.threads}))
            .collect(),
        tcp: s.tcp.len(),
    })
}

pub(super) struct Processes {
    pub config: Option<lazarus_core::archive::ArchiveConfig>,
    pub processes: Vec<serde_json::Value>,
    pub tcp: usize,
}

/// What kind of dump a snapshot is. Incremental dumps (CRIU's pre-dump
/// with parent images) need the kernel's memory dirty tracking; where it
/// is missing every snapshot is a full dump, and the store's dedup is what
/// makes the series incremental.
pub(super) fn dump_kind(config: &Config) -> String {
    match dirty_tracking(&config.criu_path) {
        true => "full dump, deduplicated storage (this kernel tracks dirty memory, but \
                 incremental dumps are not used yet)"
            .into(),
        false => "full dump, deduplicated storage (this kernel has no memory dirty tracking \
                  for incremental dumps)"
            .into(),
    }
}

/// `criu check --feature mem_dirty_track`.
pub fn dirty_tracking(criu: &Path) -> bool {
    Command::new(criu)
        .args(["check", "--feature", "mem_dirty_track"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in CRIU that answers `check --feature mem_dirty_track` with
    /// `status` (and fails anything else).
    fn fake_criu(dir: &Path, status: i32) -> std::path::PathBuf {
        let path = dir.join(format!("criu-{status}"));
        std::fs::write(
            &path,
            format!(
                "#!/bin/sh\n[ \"$1 $2 $3\" = \"check --feature mem_dirty_track\" ] || exit 9\nexit {status}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn dirty_tracking_is_detected_both_ways_and_said() {
        let dir = tempfile::tempdir().unwrap();
        let (with, without) = (fake_criu(dir.path(), 0), fake_criu(dir.path(), 1));
        // A sibling test's fork can hold the new script open for a moment
        // (ETXTBSY on exec): a few tries.
        let detected = (0..5).any(|_| {
            dirty_tracking(&with) || {
                std::thread::sleep(std::time::Duration::from_millis(50));
                false
            }
        });
        assert!(detected);
        assert!(!dirty_tracking(&without));
        assert!(!dirty_tracking(&dir.path().join("no-such-criu")));
        let said = |criu: &Path| {
            dump_kind(&Config {
                criu_path: criu.to_path_buf(),
                ..Config::default()
            })
        };
        assert!(said(&without).contains("has no memory dirty tracking"));
        assert!(said(&with).contains("not used yet"));
    }
}
