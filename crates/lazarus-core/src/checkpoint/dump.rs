//! Checkpoint: one container's process tree into an image directory.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use oci_spec::runtime::Spec;
use protobuf::MessageField;

use super::control;
use super::image::{self, Metadata};
use super::postcopy::{self, PageMode, PageServer};
use super::request::{self, CgroupsMode, CheckpointRequest};
use super::rootfs::{self, DELETED_FILES, ROOTFS_DIFF_TAR};
use crate::criu::{self, rpc, Call, Criu, CriuError, CriuFailure, CriuOp};
use crate::error::{Error, Result};
use crate::host::cgroup;

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
const LOG_TAIL_LINES: usize = 15;

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
    if super::network_set_up_by_hooks(target.spec)
        && !super::empties_network(&metadata.options.empty_namespaces)
    {
        metadata.options.empty_namespaces.push("network".into());
    }
    metadata.terminal = target.terminal;
    metadata.image = Some(super::identity::ImageIdentity::of_rootfs(rootfs));
    metadata.cgroup_path = cgroup::path_of(target.spec, target.id);
    metadata
}

/// Tells CRIU what the tree uses but does not own (bind mounts, cgroup
/// mounts, namespaces joined from elsewhere), and records each in the
/// metadata for the restore to supply again.
fn declare_externals(
    opts: &mut rpc::Criu_opts,
    metadata: &mut Metadata,
    target: &DumpTarget,
) -> Result<()> {
    for dest in external_mounts(target.spec, target.pid) {
        opts.ext_mnt.push(super::ext_mount(&dest, &dest));
        metadata.external_mounts.push(dest);
    }
    for mount in cgroup_mounts(target.spec, target.pid)? {
        opts.ext_mnt
            .push(super::ext_mount(&mount.mountpoint, &mount.mountpoint));
        metadata.cgroup_mounts.push(mount);
    }
    for (kind, path) in super::namespace_paths(target.spec) {
        let ino = std::fs::metadata(&path)
            .map_err(Error::io(format!("stat namespace {path}")))?
            .ino();
        let criu_name = super::criu_ns_name(&kind);
        opts.external.push(format!(
            "{criu_name}[{ino}]:{}",
            rust_criu::criu_ns_to_key(criu_name)
        ));
        metadata.external_namespaces.push(kind);
    }
    Ok(())
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

/// CRIU's advice when a dump needs an option, the runc option and the
/// Lazarus annotation that give it.
const OPTION_ADVICE: [(&str, &str, &str); 3] = [
    (
        "--tcp-established",
        "open_tcp",
        request::TCP_ESTABLISHED_ANNOTATION,
    ),
    (
        "--ext-unix-sk",
        "external_unix_sockets",
        request::EXT_UNIX_SK_ANNOTATION,
    ),
    ("--file-locks", "file_locks", request::FILE_LOCKS_ANNOTATION),
];

/// Fills a CRIU error in from its log: the error lines, the tail, a hint,
/// and a bounded copy of the log kept at `keep` (the log's own directory
/// may be a client's temporary one, deleted as soon as the call returns).
pub(super) fn explain(
    err: &mut CriuError,
    log: &Path,
    keep: Option<&Path>,
    advice: &[(&str, &str, &str)],
) {
    let excerpt = criu::log::excerpt(log, LOG_TAIL_LINES);
    // CRIU answers with its first error message, which under a container
    // manager's rlimits is a harmless one: lead with the real cause.
    if let CriuFailure::Refused { message, .. } = &mut err.failure {
        if criu::log::is_harmless(message) {
            *message = excerpt.errors.first().cloned().unwrap_or_default();
        }
    }
    err.hint = criu::log::option_hint(&excerpt, advice);
    err.errors = excerpt.errors;
    if let CriuFailure::Refused { message, .. } = &err.failure {
        // Said once: in the first line.
        err.errors.retain(|l| l != message);
    }
    err.log_tail = excerpt.tail;
    err.log = Some(log.to_path_buf());
    if let Some(keep) = keep {
        match criu::log::keep_copy(log, keep, KEPT_LOG_MAX) {
            Ok(()) => err.log = Some(keep.to_path_buf()),
            Err(e) => ::log::warn!(
                "keep a copy of {} at {}: {e}",
                log.display(),
                keep.display()
            ),
        }
    }
}

/// The most of a failed operation's CRIU log that is kept.
const KEPT_LOG_MAX: u64 = 8 << 20;

/// Mounts CRIU cannot dump from inside the container: bind mounts of host
/// paths, and masked files (binds of /dev/null). Their destinations.
fn external_mounts(spec: &Spec, pid: i32) -> Vec<String> {
    let mut out: Vec<String> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| super::is_bind(m))
        .map(|m| m.destination().to_string_lossy().into_owned())
        .collect();
    let masked = spec
        .linux()
        .as_ref()
        .and_then(|l| l.masked_paths().clone())
        .unwrap_or_default();
    for path in masked {
        // Masked directories are tmpfs mounts inside the container; only
        // masked files are binds of the host's /dev/null.
        let inside = format!("/proc/{pid}/root{path}");
        if std::fs::metadata(&inside)
            .map(|m| !m.is_dir())
            .unwrap_or(false)
        {
            out.push(path);
        }
    }
    out
}

/// The cgroup v1 controller mounts under the spec's cgroup mount point, as
/// the container sees them: libcontainer bind-mounts each controller's
/// directory of the container's cgroup there, which CRIU cannot dump.
fn cgroup_mounts(spec: &Spec, pid: i32) -> Result<Vec<image::CgroupMount>> {
    let Some(base) = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| m.typ().as_deref() == Some("cgroup"))
    else {
        return Ok(Vec::new());
    };
    let base = base.destination();
    let mounts = procfs::process::Process::new(pid)
        .and_then(|p| p.mountinfo())
        .map_err(|e| Error::Other(format!("read mounts of pid {pid}: {e}")))?;
    Ok(mounts
        .iter()
        .filter(|m| m.mount_point.starts_with(base) && m.mount_point != *base)
        .filter(|m| m.fs_type == "cgroup" || m.fs_type == "cgroup2")
        .map(|m| image::CgroupMount {
            mountpoint: m.mount_point.to_string_lossy().into_owned(),
            root: m.root.clone(),
        })
        .collect())
}

/// The cgroup v1 controllers in which the container has its own cgroup.
/// CRIU is told to dump only these: in the others (libcgroups leaves the
/// named `name=systemd` and the hybrid `unified` hierarchies alone) the
/// container sits in a shared cgroup, and walking that whole tree races
/// with every other container being created or removed.
fn owned_controllers(pid: i32, cgroup_path: &str) -> Result<Vec<String>> {
    let cgroups = procfs::process::Process::new(pid)
        .and_then(|p| p.cgroups())
        .map_err(|e| Error::Other(format!("read cgroups of pid {pid}: {e}")))?;
    let mut out = Vec::new();
    for cg in cgroups.0 {
        if cg.pathname == cgroup_path {
            out.extend(
                cg.controllers
                    .into_iter()
                    .filter(|c| !c.starts_with("name=")),
            );
        }
    }
    Ok(out)
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

#[cfg(test)]
mod tests {
    #[test]
    fn a_lazy_dump_listens_on_loopback_without_tls() {
        let work = tempfile::tempdir().unwrap();
        let mut opts = rpc::Criu_opts::new();
        let server = PageServer::local(27000, PageMode::Lazy);
        page_server_options(&mut opts, &server, work.path()).unwrap();
        assert!(opts.lazy_pages() && !opts.tls());
        let conf = std::fs::read_to_string(opts.config_file()).unwrap();
        assert_eq!(conf, "address 127.0.0.1\n");
        let mut push = rpc::Criu_opts::new();
        page_server_options(
            &mut push,
            &PageServer::local(27001, PageMode::Push),
            work.path(),
        )
        .unwrap();
        assert!(!push.lazy_pages() && !push.has_config_file());
        assert_eq!((push.ps.address(), push.ps.port()), ("127.0.0.1", 27001));
    }

    use super::*;

    #[test]
    fn the_real_cause_leads_and_the_log_is_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join(image::DUMP_LOG);
        let rlimit = "(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self";
        let cause = "(00.20) Error (criu/sk-inet.c:1): inet: Connected TCP socket, consider using \
                     --tcp-established option.";
        std::fs::write(
            &log,
            format!(
                "{rlimit}\n{}{cause}\n(00.30) end\n",
                "(00.10) working\n".repeat(20)
            ),
        )
        .unwrap();
        let mut err = CriuError::new(
            CriuOp::Dump,
            CriuFailure::Refused {
                errno: 0,
                message: rlimit.into(),
            },
        );
        let keep = dir.path().join("kept/c1/dump.log");
        explain(&mut err, &log, Some(&keep), &OPTION_ADVICE);
        let text = err.to_string();
        let first = text.lines().find(|l| l.contains("Error (")).unwrap();
        assert!(first.contains("Connected TCP socket"), "{text}");
        assert!(!text.contains("RLIMIT_NOFILE"), "{text}");
        assert_eq!(
            text.matches("Connected TCP socket").count(),
            2,
            "cause once, tail once: {text}"
        );
        assert!(text.contains(request::TCP_ESTABLISHED_ANNOTATION), "{text}");
        assert!(text.contains(&keep.display().to_string()), "{text}");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&keep).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(std::fs::read_to_string(&keep).unwrap().contains(cause));
    }
}
