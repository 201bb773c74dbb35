//! The export proper, once the container is found: refuse what cannot be
//! checkpointed, take the checkpoint (or copy Docker's), write the
//! archive. A checkpoint that fails leaves the container running (the
//! shim's guarantee), and nothing is written. The checkpoint here stops
//! the container only for a migration (which calls its dump off itself);
//! should the archive fail after such a stop, the images are kept and
//! named.
//!
//! Written against [`Steps`], so that the refusals, the order and the undo
//! are unit-tested on a fake container (the real steps, [`super::Live`],
//! need root and a containerd).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::Instant;

use chrono::{DateTime, Utc};
use containerd_client::types::v1::Status;
use lazarus_core::archive;
use lazarus_core::checkpoint::image;
use lazarus_core::checkpoint::incremental::Incremental;
use lazarus_core::config::Config;
use lazarus_core::scratch::{self, Scratch};

use super::checks::refuse_unless_checkpointable;
use super::write::{compressed_pages, Archived};
use super::ExportArgs;
use crate::engine::containerd::CheckpointOptions;
use crate::engine::target::Target;
use crate::error::{Error, Result};
use crate::report::{self, DumpStats, ExportReport};

/// What an export does to its container, one step at a time.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Steps {
    fn target(&self) -> &Target;
    async fn task_status(&self) -> Result<Option<Status>>;
    /// Bytes the container's memory cgroup uses, if known.
    async fn memory_in_use(&self) -> Option<u64>;
    /// Copies Docker's checkpoint `name` of the container into `images`.
    async fn copy_docker_checkpoint(&self, name: &str, images: &Path) -> Result<()>;
    /// The shim's checkpoint, asked through containerd's Task API.
    async fn checkpoint(&self, options: &CheckpointOptions, images: &Path) -> Result<()>;
    /// Writes `args.export` from the checkpoint in `scratch`.
    async fn archive(
        &self,
        args: &ExportArgs,
        scratch: &Path,
        dumped_at: DateTime<Utc>,
    ) -> Result<Archived>;
}

/// Writes the archive of the container `steps` reach; returns the report.
pub async fn export(
    steps: &impl Steps,
    args: &ExportArgs,
    config: &Config,
) -> Result<ExportReport> {
    let mut owned_scratch = None;
    let scratch: &Path = match &args.migration {
        Some(p) => &p.dir,
        None => owned_scratch
            .insert(new_scratch(steps, args, config).await?)
            .path(),
    };
    let images = scratch.join(archive::CHECKPOINT_DIR);
    let started = Instant::now();
    let stopped = match &args.from_docker_checkpoint {
        Some(name) => {
            let stopped = copy_docker_checkpoint(steps, name, &images).await?;
            resolve_stored_pages(&images, &config.store_root)?;
            stopped
        }
        None => take_checkpoint(steps, args, scratch, &images).await?,
    };
    let dumped_at = Utc::now();
    let checkpoint_seconds = started.elapsed().as_secs_f64();
    // Read now: the scratch directory is gone once the match below took it.
    let stats = image::read_stats(&images.join("stats-dump")).unwrap_or_default();
    let archived = steps.archive(args, scratch, dumped_at).await;
    let Archived {
        manifest,
        diff,
        volumes,
        not_carried,
        streamed_bytes,
    } = match (archived, owned_scratch) {
        (Ok(m), _) => m,
        // (A migration calls its dump off instead.)
        (Err(e), Some(scratch)) if stopped => return Err(keep_images(steps, e, scratch)),
        (Err(e), _) => return Err(e),
    };
    let target = steps.target();
    Ok(ExportReport {
        archive: args.export.clone(),
        container: target.name.clone(),
        id: target.id.clone(),
        engine: target.engine().into(),
        namespace: target.namespace.clone(),
        stopped,
        encrypted: false,
        archive_bytes: streamed_bytes
            .unwrap_or_else(|| fs::metadata(&args.export).map(|m| m.len()).unwrap_or(0)),
        content_bytes: manifest.total_size(),
        pages_bytes: report::pages_bytes(&manifest, &compressed_pages(&images)),
        rootfs_diff_bytes: diff.map(|d| d.1).unwrap_or(0),
        deleted_files: diff.map(|d| d.0).unwrap_or(0),
        checkpoint_seconds,
        export_seconds: started.elapsed().as_secs_f64(),
        stats: DumpStats::from_image(&stats),
        volumes,
        not_carried,
    })
}

/// The export's own scratch directory: in memory for a dump that leaves
/// the container running when the caller asks and it fits
/// ([`ExportArgs::dump_in_memory`]), else in the caller's directory, else
/// the configured one.
async fn new_scratch(steps: &impl Steps, args: &ExportArgs, config: &Config) -> Result<Scratch> {
    let in_memory =
        args.dump_in_memory && args.leave_running && args.from_docker_checkpoint.is_none();
    if in_memory {
        let bytes = steps.memory_in_use().await;
        // Named for `lazarus snapshot`, the one caller that asks: its
        // commands remove a killed one's at once
        // (`scratch::remove_abandoned_in_memory`).
        if let Some(s) = bytes.and_then(|b| scratch::in_memory(&config.memory_root, "snapshot", b))
        {
            return Ok(s);
        }
    }
    Ok(match &args.scratch_in {
        Some(parent) => Scratch::new_in(parent, "export")?,
        None => config.scratch_dir("export")?,
    })
}

/// `--from-docker-checkpoint`: Docker's checkpoint of a Docker container,
/// which must be Lazarus's. The container is not stopped by this.
async fn copy_docker_checkpoint(steps: &impl Steps, name: &str, images: &Path) -> Result<bool> {
    let target = steps.target();
    if target.docker.is_none() {
        return Err(Error::Refused(format!(
            "--from-docker-checkpoint: {} is not a Docker container",
            target.name
        )));
    }
    steps.copy_docker_checkpoint(name, images).await?;
    if !images.join(image::METADATA_FILE).is_file() {
        return Err(Error::Refused(format!(
            "Docker checkpoint {name:?} of {} was not taken by Lazarus (it has no {}): only \
             Lazarus checkpoints are exported",
            target.name,
            image::METADATA_FILE
        )));
    }
    Ok(false)
}

/// A store-backed Docker checkpoint (config `docker_checkpoints =
/// "store"`) has a reference where its pages were: the archive carries the
/// pages themselves, read out of this host's store, and no reference.
fn resolve_stored_pages(images: &Path, store_root: &Path) -> Result<()> {
    use lazarus_core::store::pages_ref::{PagesRef, REF_FILE};
    let Some(r) = PagesRef::read(images)? else {
        return Ok(());
    };
    r.resolve(store_root, images, images)?;
    let path = images.join(REF_FILE);
    std::fs::remove_file(&path).map_err(lazarus_core::Error::io(format!(
        "remove {}",
        path.display()
    )))?;
    Ok(())
}

/// The shim's checkpoint into `images`; whether it stopped the container.
async fn take_checkpoint(
    steps: &impl Steps,
    args: &ExportArgs,
    scratch: &Path,
    images: &Path,
) -> Result<bool> {
    let exit = !args.leave_running;
    refuse_unless_checkpointable(steps.target(), steps.task_status().await?, exit)?;
    private_dir(images)?;
    // CRIU's work files (its log, the TLS files of a post-copy dump) stay
    // out of the archive.
    let work_path = match &args.migration {
        Some(p) => {
            p.server.write(images)?;
            lazarus_core::checkpoint::control::write_lease(images)?;
            let work = scratch.join("work");
            private_dir(&work)?;
            work.to_string_lossy().into_owned()
        }
        None => String::new(),
    };
    let options = CheckpointOptions {
        exit,
        open_tcp: args.tcp_established,
        external_unix_sockets: args.ext_unix_sk,
        terminal: args.shell_job,
        file_locks: args.file_locks,
        image_path: images.to_string_lossy().into_owned(),
        work_path,
        ..Default::default()
    };
    if let Some(tracking) = &args.incremental {
        let parent = tracking.parent(&steps.target().id)?;
        Incremental { parent }.write(images)?;
    }
    steps.checkpoint(&options, images).await?;
    Ok(exit)
}

fn private_dir(dir: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(lazarus_core::Error::io(format!("create {}", dir.display())))?;
    Ok(())
}

/// The checkpoint stopped the container and the archive failed: keep the
/// images and say where. (A stopping checkpoint of one container goes
/// through [`crate::flows::group::stop_one`], which never stops it before
/// the archive is whole; only a caller of this flow with its own call-off,
/// a migration, asks for a stopping dump here.)
fn keep_images(steps: &impl Steps, error: Error, scratch: lazarus_core::scratch::Scratch) -> Error {
    let kept = scratch.keep();
    Error::Refused(format!(
        "{error}\n  {} was stopped by the checkpoint; its images are kept in {} (restore them \
         with `lazarus restore`, or remove them)",
        steps.target().name,
        kept.display()
    ))
}

#[cfg(test)]
mod tests;
