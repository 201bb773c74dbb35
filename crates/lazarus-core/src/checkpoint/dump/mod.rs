//! Checkpoint: one container's process tree into an image directory.
//!
//! This file: the dump, CRIU's request and options, and what follows
//! CRIU's images (root filesystem diff, compressed pages, metadata).
//! `externals.rs`: what the tree uses but does not own, declared to CRIU
//! and recorded; `explain.rs`: a failed dump's (or restore's) error made
//! from CRIU's log.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use oci_spec::runtime::Spec;
use protobuf::MessageField;

use super::control;
use super::image::{self, Metadata};
use super::postcopy::{self, PageMode, PageServer};
use super::request::{CgroupsMode, CheckpointRequest};
use super::rootfs::{self, DELETED_FILES, ROOTFS_DIFF_TAR};
use crate::criu::{self, rpc, Call, Criu, CriuError, CriuFailure, CriuOp};
use crate::error::{Error, Result};
use crate::host::cgroup;

mod explain;
mod externals;
#[cfg(test)]
mod tests;

pub(super) use explain::explain;
use explain::OPTION_ADVICE;
use externals::{declare_externals, owned_controllers};

/// What the dump needs to know about the running container.
pub struct DumpTarget<'a> {
    pub id: &'a str,
    pub pid: i32,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    pub terminal: bool,
}

/// CRIU log verbosity: 4 is "debug", what a failed dump needs to be diagnosed.
const LOG_LEVEL: i32 = 4;

/// Where a dump writes: CRIU's images, its work files (log, stats), and
/// where a failed dump's log is kept (the images may be in a temporary
/// directory the client deletes).
pub struct DumpPaths<'a> {
    pub images: &'a Path,
    pub work: &'a Path,
    pub keep_failed_log: Option<&'a Path>,
    /// Asked while CRIU dumps: true calls the dump off (the client that
    /// asked for it went away, so nobody would receive the image).
    pub cancel: Option<&'a dyn Fn() -> bool>,
    /// Compress the page images once CRIU is done (see [`super::pages`]).
    pub compress_pages: bool,
    /// A migration's dump (see [`postcopy`]). Lazy: CRIU dumps the minimal
    /// state, then serves the memory from this page server until the
    /// destination has all of it. Push: CRIU sends every page to this (the
    /// destination's) page server, then waits at its post-dump notification
    /// until the client releases the tree (it ends) or calls the dump off
    /// (`cancel`: CRIU resumes it).
    pub page_server: Option<&'a PageServer>,
    /// A migration's dump: called once the image directory is complete
    /// (lazy: all but the memory, which the page server now serves; push:
    /// everything, the memory being at the destination) while CRIU goes on.
    pub ready: Option<&'a dyn Fn()>,
    /// Track dirty memory, and dump only what changed since the parent
    /// (see [`super::incremental`]).
    pub incremental: Option<&'a super::incremental::Incremental>,
}

/// Dumps `target` into `paths.images`. On failure what the dump wrote is
/// removed (the image must not look complete; files that were there before
/// are left alone) and the error carries CRIU's error lines, the tail of
/// its log and where the log is kept.
pub fn dump(
    criu: &dyn Criu,
    target: &DumpTarget,
    request: &CheckpointRequest,
    exit: bool,
    paths: &DumpPaths,
) -> Result<Metadata> {
    let (images, work) = (paths.images, paths.work);
    let version = super::check_criu(criu)?;
    if paths.page_server.map(|s| s.mode) == Some(PageMode::Lazy) {
        postcopy::check_pipe_max_size()?;
    }
    let (before, images_dir, work_dir) = prepare_dirs(paths, target.pid)?;

    let rootfs = super::rootfs_path(target.spec, target.bundle);
    let mut metadata = new_metadata(target, request, version, &rootfs);
    let dirs = [images_dir.as_raw_fd(), work_dir.as_raw_fd()];
    let req = dump_request(target, exit, &rootfs, dirs, &mut metadata, paths)?;
    let log = work.join(image::DUMP_LOG);
    let call = Call {
        op: CriuOp::Dump,
        request: req,
        inherited: &dirs,
        log: Some(&log),
        cancel: paths.cancel,
    };
    let mut finished_early = false;
    let mut notify = |script: &str, _pid: i32| -> Result<()> {
        finish_early(
            script,
            &mut metadata,
            &rootfs,
            paths,
            &before,
            &mut finished_early,
        )
    };
    if let Some(mut err) = criu_failure(criu.call(call, &mut notify))? {
        before.discard_new(images, work, &log);
        err.subject = format!("checkpoint of {}", target.id);
        explain(&mut err, &log, paths.keep_failed_log, &OPTION_ADVICE);
        return Err(err.into());
    }
    warn_if_client_gone(target, paths);
    if !finished_early {
        finish(&mut metadata, &rootfs, paths, &before)?;
    }
    Ok(metadata)
}

/// Makes the image and work directories and opens them for CRIU, which is
/// handed them as descriptors; returns them with what they held before (a
/// failed dump removes only what it wrote).
fn prepare_dirs(paths: &DumpPaths, pid: i32) -> Result<(image::Listing, File, File)> {
    let (images, work) = (paths.images, paths.work);
    image::create_dir(images)?;
    image::create_dir(work)?;
    let before = image::Listing::take(images, work);
    // Read before the dump: with exit, the process is gone afterwards.
    image::save_descriptors(images, pid)?;
    let images_dir = criu::open_dir(images)?;
    let work_dir = criu::open_dir(work)?;
    Ok((before, images_dir, work_dir))
}

/// CRIU's dump request: the options, the external resources declared (and
/// recorded in `metadata`), and a migration's page server.
fn dump_request(
    target: &DumpTarget,
    exit: bool,
    rootfs: &Path,
    dirs: [RawFd; 2],
    metadata: &mut Metadata,
    paths: &DumpPaths,
) -> Result<rpc::Criu_req> {
    let mut opts = dump_options(target, exit, rootfs, dirs, metadata)?;
    declare_externals(&mut opts, metadata, target)?;

    if let Some(server) = paths.page_server {
        page_server_options(&mut opts, server, paths.work)?;
    }
    if let Some(incremental) = paths.incremental {
        incremental.apply(&mut opts);
    }

    let mut req = rpc::Criu_req::new();
    req.set_type(rpc::Criu_req_type::DUMP);
    req.opts = MessageField::some(opts);
    Ok(req)
}

/// CRIU's notification `script` during a dump; only a migration's does
/// anything. A migration's image directory is finished, the container
/// still frozen, when CRIU is ready to serve pages (lazy) or has sent them
/// all (push: CRIU asks at post-dump whether to end the tree; an error
/// there makes it resume the tree and fail the dump). Sets `finished` once
/// it finished it.
fn finish_early(
    script: &str,
    metadata: &mut Metadata,
    rootfs: &Path,
    paths: &DumpPaths,
    before: &image::Listing,
    finished: &mut bool,
) -> Result<()> {
    let mode = paths.page_server.map(|s| s.mode);
    let finishing = matches!(
        (script, mode),
        ("status-ready", Some(PageMode::Lazy)) | ("post-dump", Some(PageMode::Push))
    );
    if !finishing {
        return Ok(());
    }
    finish(metadata, rootfs, paths, before)?;
    *finished = true;
    if let Some(ready) = paths.ready {
        ready();
    }
    match mode {
        Some(PageMode::Push) => control::await_release(
            paths.images,
            paths.cancel.unwrap_or(&|| false),
            control::RELEASE_TIMEOUT,
        ),
        _ => Ok(()),
    }
}

/// The dump succeeded but its client went away as it ended.
fn warn_if_client_gone(target: &DumpTarget, paths: &DumpPaths) {
    if paths.cancel.is_some_and(|gone| gone()) {
        // Too late to call off: CRIU finished (and, with exit, ended the
        // tree). Said, so the log explains a container nobody restores.
        log::warn!(
            "checkpoint of {}: the client went away as the dump ended; the image in {} is \
             complete but may never be received",
            target.id,
            paths.images.display()
        );
    }
}

/// CRIU's options for dumping `target` into the directories `dirs` (images,
/// work) with the options `metadata` records.
fn dump_options(
    target: &DumpTarget,
    exit: bool,
    rootfs: &Path,
    dirs: [RawFd; 2],
    metadata: &Metadata,
) -> Result<rpc::Criu_opts> {
    let mut opts = rpc::Criu_opts::new();
    opts.set_images_dir_fd(dirs[0]);
    opts.set_work_dir_fd(dirs[1]);
    opts.set_log_file(image::DUMP_LOG.into());
    opts.set_log_level(LOG_LEVEL);
    opts.set_pid(target.pid);
    opts.set_root(rootfs.to_string_lossy().into_owned());
    opts.set_leave_running(!exit);
    opts.set_notify_scripts(true);
    // A terminal's master lives in the shim, outside the dumped tree: let
    // CRIU dump the slave as an orphan (restore hands back a new master).
    opts.set_orphan_pts_master(true);
    super::apply_dump_options(&mut opts, &metadata.options)?;
    if let Some(freezer) = cgroup::freezer_dir(&metadata.cgroup_path) {
        opts.set_freeze_cgroup(freezer.to_string_lossy().into_owned());
    }
    opts.cgroup_dump_controller = owned_controllers(target.pid, &metadata.cgroup_path)?;
    Ok(opts)
}

/// The checkpoint's metadata as far as it is known before CRIU runs.
fn new_metadata(
    target: &DumpTarget,
    request: &CheckpointRequest,
    version: (u32, u32, u32),
    rootfs: &Path,
) -> Metadata {
    let mut metadata = Metadata::new(target.id, version);
    metadata.options = image::DumpOptions {
        tcp_established: request.tcp_established,
        ext_unix_sk: request.ext_unix_sk,
        shell_job: request.shell_job || target.terminal,
        file_locks: request.file_locks,
        cgroups_mode: request.cgroups_mode,
        empty_namespaces: request.empty_namespaces.clone(),
    };
    if super::network_rebuilt_on_restore(target.spec)
        && !super::empties_network(&metadata.options.empty_namespaces)
    {
        metadata.options.empty_namespaces.push("network".into());
    }
    metadata.terminal = target.terminal;
    metadata.image = Some(super::identity::ImageIdentity::of_rootfs(rootfs));
    metadata.cgroup_path = cgroup::path_of(target.spec, target.id);
    metadata
}

/// CRIU's failure, if the call was one: its own refusal, or what the
/// driver saw (crash, deadline). Other errors are returned as they are.
fn criu_failure(called: Result<criu::Outcome>) -> Result<Option<CriuError>> {
    match called {
        Ok(o) if o.response.success() => Ok(None),
        Ok(o) => Ok(Some(CriuError::new(
            CriuOp::Dump,
            CriuFailure::Refused {
                errno: o.response.cr_errno(),
                message: o.response.cr_errmsg().to_string(),
            },
        ))),
        Err(Error::Criu(e)) => Ok(Some(*e)),
        Err(e) => Err(e),
    }
}

/// What follows CRIU's images: the rootfs diff, compressed pages, the
/// metadata, and every new file made private.
fn finish(
    metadata: &mut Metadata,
    rootfs: &Path,
    paths: &DumpPaths,
    before: &image::Listing,
) -> Result<()> {
    let (images, work) = (paths.images, paths.work);
    metadata.rootfs_diff = save_rootfs_diff(rootfs, images, &metadata.container_id);
    // Post-copy pages are not in the directory but on their way.
    if paths.compress_pages && paths.page_server.is_none() {
        metadata.compressed_pages = compress_pages(images, &metadata.container_id);
    }
    // The .zst files are new names in the image directory, so `before`
    // counts them among what this dump wrote.
    if let Err(e) = metadata.save(images) {
        before.discard_new(images, work, &work.join(image::DUMP_LOG));
        return Err(e);
    }
    before.make_new_private(images, work);
    Ok(())
}

/// A migration's dump, its page stream on this host's loopback (where
/// Lazarus's page tunnel meets it). Lazy: CRIU listens on
/// `server.address:port`; over RPC a lazy dump takes no address (it would
/// listen on every one), so the address comes from a CRIU configuration
/// file of the dump's own, which CRIU reads after the RPC options. Push:
/// CRIU connects to `server.address:port`.
fn page_server_options(opts: &mut rpc::Criu_opts, server: &PageServer, work: &Path) -> Result<()> {
    let mut ps = rpc::Criu_page_server_info::new();
    ps.set_port(server.port as i32);
    ps.set_address(server.address.to_string());
    if server.mode == PageMode::Lazy {
        opts.set_lazy_pages(true);
        let conf = work.join(LAZY_CONF);
        let _ = std::fs::remove_file(&conf);
        criu::write_private(&conf, format!("address {}\n", server.address).as_bytes())?;
        opts.set_config_file(conf.to_string_lossy().into_owned());
    }
    opts.ps = MessageField::some(ps);
    Ok(())
}

/// The lazy dump's CRIU configuration file, in its work directory.
const LAZY_CONF: &str = "lazarus-lazy.conf";

/// Saves the container's root filesystem changes (its overlay upper
/// directory) beside the images, so that a restore into another container
/// (Docker's `start --checkpoint` of a new container, another host) has
/// them too. Best effort: a checkpoint without them still restores into
/// the same container, so a failure here is logged, not fatal.
fn save_rootfs_diff(rootfs: &Path, images: &Path, id: &str) -> bool {
    let Some(upper) = crate::host::overlay::upper_dir_of(rootfs) else {
        ::log::info!("checkpoint of {id}: its root filesystem is not an overlay; no rootfs diff");
        return false;
    };
    let tar = images.join(ROOTFS_DIFF_TAR);
    let deleted = images.join(DELETED_FILES);
    let saved = rootfs::diff_from_overlay_upper(&upper, &tar).and_then(|diff| {
        let json = serde_json::to_vec(&diff.deleted)?;
        std::fs::write(&deleted, json).map_err(Error::io(format!("write {}", deleted.display())))
    });
    match saved {
        Ok(()) => true,
        Err(e) => {
            ::log::warn!(
                "checkpoint of {id}: rootfs diff of {} not saved: {e}",
                upper.display()
            );
            let _ = std::fs::remove_file(&tar);
            let _ = std::fs::remove_file(&deleted);
            false
        }
    }
}

/// Compresses the page images (after CRIU, outside the freeze: the
/// container is already running again or gone). Best effort: raw pages
/// restore as well, so a failure leaves them raw and is logged.
fn compress_pages(images: &Path, id: &str) -> Vec<super::pages::CompressedFile> {
    let started = std::time::Instant::now();
    match super::pages::compress_dir(images) {
        Ok(files) => {
            let raw: u64 = files.iter().map(|f| f.raw_bytes).sum();
            let stored: u64 = files.iter().map(|f| f.stored_bytes).sum();
            ::log::info!(
                "checkpoint of {id}: {} page images compressed, {raw} -> {stored} bytes in {:?}",
                files.len(),
                started.elapsed()
            );
            files
        }
        Err(e) => {
            ::log::warn!("checkpoint of {id}: pages left uncompressed: {e}");
            Vec::new()
        }
    }
}

/// CRIU's cgroup handling mode for a runc-style mode string.
pub fn cg_mode(mode: CgroupsMode) -> rpc::Criu_cg_mode {
    match mode {
        CgroupsMode::Soft => rpc::Criu_cg_mode::SOFT,
        CgroupsMode::Full => rpc::Criu_cg_mode::FULL,
        CgroupsMode::Strict => rpc::Criu_cg_mode::STRICT,
        CgroupsMode::Ignore => rpc::Criu_cg_mode::IGNORE,
    }
}
