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

use std::path::{Path, PathBuf};
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
use crate::flows::export::{self, Compress, ContentSink, DirtyTracking, ExportArgs};
use lazarus_core::checkpoint::incremental::{self, Completed};
use lazarus_core::store::{Claimed, Store, Writer};

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
    let sink = Arc::new(IntoStore::new(&store)?);
    let scratch_in = sink.writer_dir.clone();
    let tracking = dirty_tracking(&config.criu_path);
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
        // Where the kernel tracks dirty memory, the freeze covers only
        // the pages written since the last snapshot.
        incremental: tracking.then(|| sink.clone() as Arc<dyn DirtyTracking>),
    };
    let exported = export::run(&export_args, endpoints, config).await?;
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
    let kind = sink
        .committed(&snapshot.id)?
        .unwrap_or_else(|| dump_kind(tracking));
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
        ..SnapshotReport::of(snapshot, store_bytes, kind)
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
/// export made it (see [`ContentSink`]); where the kernel tracks dirty
/// memory, the parent of its dump too (see [`DirtyTracking`]).
struct IntoStore {
    store: Store,
    writer_dir: PathBuf,
    writer: Mutex<Option<Writer>>,
    /// Once taken: what the snapshot's record says of its processes, and
    /// when the store began.
    taken: Mutex<Option<(Processes, Instant)>>,
    tracked: Mutex<Option<Tracked>>,
}

/// A dump that tracked dirty memory.
struct Tracked {
    container_id: String,
    /// The parent it was incremental to (None: a whole dump).
    parent: Option<Claimed>,
    completed: Completed,
    /// Its own parent record is ready for the next dump.
    prepared: bool,
}

impl Tracked {
    fn kind(&self) -> String {
        match &self.parent {
            Some(p) => format!(
                "incremental dump ({} pages dumped, {} unchanged since snapshot {}), \
                 deduplicated storage",
                self.completed.dumped_pages, self.completed.parent_pages, p.snapshot.id
            ),
            None => "full dump (this kernel tracks dirty memory: the next snapshot dumps only \
                     what changed), deduplicated storage"
                .into(),
        }
    }
}

impl DirtyTracking for IntoStore {
    fn parent(&self, id: &str) -> lazarus_core::Result<Option<PathBuf>> {
        // Claimed whatever comes next: a dump that does not become a
        // snapshot leaves no parent behind (`store::tracking`).
        let parent = self.store.claim_parent(id, &self.writer_dir)?;
        let dir = parent.as_ref().map(|p| p.dir.clone());
        *lock(&self.tracked) = Some(Tracked {
            container_id: id.to_string(),
            parent,
            completed: Completed::default(),
            prepared: false,
        });
        Ok(dir)
    }
}

impl ContentSink for IntoStore {
    fn take(&self, input: &archive::ArchiveInput) -> lazarus_core::Result<archive::Manifest> {
        let started = Instant::now();
        if let Some(t) = lock(&self.tracked).as_mut() {
            self.complete(t, input.images_dir)?;
        }
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
    /// A new snapshot's writer in `store`, waiting for the content.
    fn new(store: &Store) -> Result<IntoStore> {
        let writer = store.writer()?;
        Ok(IntoStore {
            store: store.clone(),
            writer_dir: writer.dir().to_path_buf(),
            writer: Mutex::new(Some(writer)),
            taken: Mutex::new(None),
            tracked: Mutex::new(None),
        })
    }

    /// An incremental dump made whole from its parent snapshot's pages,
    /// and kept as the next one's parent.
    fn complete(&self, t: &mut Tracked, images: &Path) -> lazarus_core::Result<()> {
        if let Some(parent) = &t.parent {
            let mut pages = self.store.reader(&parent.snapshot)?;
            t.completed = incremental::complete(images, &mut pages).map_err(|e| {
                lazarus_core::Error::Other(format!(
                    "complete the incremental dump from snapshot {}: {e}",
                    parent.snapshot.id
                ))
            })?;
        }
        t.prepared = self.store.prepare_parent(&t.container_id, images)?;
        Ok(())
    }

    /// Once the snapshot `id` is committed: a tracked dump's parent
    /// record kept for the container's next, and what kind of dump it was.
    fn committed(&self, id: &str) -> Result<Option<String>> {
        let Some(t) = lock(&self.tracked).take() else {
            return Ok(None);
        };
        if t.prepared {
            self.store.keep_parent(&t.container_id, id)?;
        }
        Ok(Some(t.kind()))
    }

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

/// What kind of dump a snapshot is when its dump did not track memory.
/// Incremental dumps (CRIU's memory tracking with parent images) need the
/// kernel's dirty tracking; where it is missing every snapshot is a full
/// dump, and the store's dedup is what makes the series incremental.
pub(super) fn dump_kind(tracking: bool) -> String {
    match tracking {
        true => "full dump, deduplicated storage".into(),
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
        assert!(dump_kind(dirty_tracking(&without)).contains("has no memory dirty tracking"));
        let first = Tracked {
            container_id: "c1".into(),
            parent: None,
            completed: Completed::default(),
            prepared: true,
        };
        assert!(first
            .kind()
            .contains("the next snapshot dumps only what changed"));
    }

    /// CRIU's images of a real dump (lazarus-core's test data), copied.
    fn real_images(into: &Path) {
        let data = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../lazarus-core/testdata/listen-fork"
        );
        std::fs::create_dir(into).unwrap();
        for e in std::fs::read_dir(data).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), into.join(e.file_name())).unwrap();
        }
    }

    /// One snapshot of `images` through the store's sink, as `take` does
    /// it; returns the snapshot and its kind of dump.
    fn snapshot_through(store: &Store, images: &Path) -> (lazarus_core::store::Snapshot, String) {
        let sink = IntoStore::new(store).unwrap();
        if let Some(parent) = sink.parent("c1-id").unwrap() {
            std::os::unix::fs::symlink(parent, images.join(incremental::PARENT_LINK)).unwrap();
        }
        let config = archive::ArchiveConfig {
            id: "c1-id".into(),
            name: "c1".into(),
            image_name: String::new(),
            image_digest: String::new(),
            runtime: String::new(),
            created: chrono::DateTime::UNIX_EPOCH,
            checkpointed: chrono::DateTime::UNIX_EPOCH,
            engine: "containerd".into(),
            namespace: "default".into(),
        };
        let input = archive::ArchiveInput {
            images_dir: images,
            spec_json: b"{}",
            config: &config,
            rootfs_diff: None,
            dump_log: None,
            network_status: None,
            engine_config: None,
            volumes: &[],
        };
        sink.take(&input).unwrap();
        let (writer, _, _) = sink.taken().unwrap();
        let snapshot = writer.commit("c1", None, json!({})).unwrap();
        let kind = sink.committed(&snapshot.id).unwrap().unwrap();
        (snapshot, kind)
    }

    /// The series where the kernel tracks dirty memory: the first dump is
    /// whole and becomes the parent; the second, which left a run of
    /// pages to it (as CRIU's incremental dump does), is stored whole,
    /// the same as the first, and becomes the next parent in turn.
    #[test]
    fn an_incremental_dump_is_stored_whole_and_parents_the_next() {
        use lazarus_core::criu::images::{self as img, PAGEMAP_MAGIC};
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store")).unwrap();
        let first = dir.path().join("first");
        real_images(&first);
        let (one, kind) = snapshot_through(&store, &first);
        assert!(kind.starts_with("full dump"), "{kind}");

        // The second dump: process 22490's first run of pages left to the
        // parent, and taken out of its page image.
        let second = dir.path().join("second");
        real_images(&second);
        let map = second.join("pagemap-22490.img");
        let mut entries = img::read_image(&map, PAGEMAP_MAGIC).unwrap();
        let pages_file = second.join(format!(
            "pages-{}.img",
            entries[0].u32(1, "pages_id").unwrap()
        ));
        let n = img::PagemapEntry::of(&entries[1]).unwrap().pages;
        assert!(n > 0);
        entries[1].set_varint(4, img::PE_PARENT);
        std::fs::write(&map, img::encode_image(PAGEMAP_MAGIC, &entries)).unwrap();
        let pages = std::fs::read(&pages_file).unwrap();
        std::fs::write(&pages_file, &pages[(n * 4096) as usize..]).unwrap();

        let (two, kind) = snapshot_through(&store, &second);
        assert!(
            kind.contains(&format!("{n} unchanged since snapshot {}", one.id)),
            "{kind}"
        );
        let read = |s: &lazarus_core::store::Snapshot, name: &str| {
            let mut out = Vec::new();
            store.reader(s).unwrap().copy_file(name, &mut out).unwrap();
            out
        };
        let name = format!(
            "checkpoint/{}",
            pages_file.file_name().unwrap().to_string_lossy()
        );
        assert!(read(&two, &name) == read(&one, &name));
        assert_eq!(
            read(&two, "checkpoint/pagemap-22490.img"),
            read(&one, "checkpoint/pagemap-22490.img"),
            "marked present again, as in the whole dump"
        );
        assert!(!two
            .manifest
            .entries
            .iter()
            .any(|e| e.name.ends_with(incremental::PARENT_LINK)));
        // And the second is the third's parent.
        let third = dir.path().join("third");
        real_images(&third);
        let (_, kind) = snapshot_through(&store, &third);
        assert!(
            kind.contains(&format!("since snapshot {}", two.id)),
            "{kind}"
        );
    }
}
