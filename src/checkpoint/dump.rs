//! Checkpoint: one container's process tree into an image directory.

use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::MessageField;
use oci_spec::runtime::Spec;

use super::image::{self, Metadata};
use super::options::{self, CgroupsMode, CheckpointRequest};
use crate::criu::{self, rpc, Criu};
use crate::error::{Error, Result};

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

/// Dumps `target` into `images` (work files in `work`). On failure the image
/// is discarded (it must not look complete) and the error carries the tail
/// of CRIU's log and the log's path.
pub fn dump(
    criu: &dyn Criu,
    target: &DumpTarget,
    request: &CheckpointRequest,
    exit: bool,
    images: &Path,
    work: &Path,
) -> Result<Metadata> {
    let version = super::check_criu(criu)?;
    image::create_dir(images)?;
    image::create_dir(work)?;
    // Read before the dump: with exit, the process is gone afterwards.
    image::save_descriptors(images, target.pid)?;
    let images_dir = criu::open_dir(images)?;
    let work_dir = criu::open_dir(work)?;

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
    metadata.cgroup_path = super::cgroup_path(target.spec, target.id);

    let mut opts = rpc::Criu_opts::new();
    opts.set_images_dir_fd(images_dir.as_raw_fd());
    opts.set_work_dir_fd(work_dir.as_raw_fd());
    opts.set_log_file(image::DUMP_LOG.into());
    opts.set_log_level(LOG_LEVEL);
    opts.set_pid(target.pid);
    opts.set_root(
        super::rootfs(target.spec, target.bundle)
            .to_string_lossy()
            .into_owned(),
    );
    opts.set_leave_running(!exit);
    opts.set_notify_scripts(true);
    // A terminal's master lives in the shim, outside the dumped tree: let
    // CRIU dump the slave as an orphan (restore hands back a new master).
    opts.set_orphan_pts_master(true);
    super::apply_dump_options(&mut opts, &metadata.options)?;
    if let Some(freezer) = freezer_dir(&metadata.cgroup_path) {
        opts.set_freeze_cgroup(freezer.to_string_lossy().into_owned());
    }
    opts.cgroup_dump_controller = owned_controllers(target.pid, &metadata.cgroup_path)?;

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

    let mut req = rpc::Criu_req::new();
    req.set_type(rpc::Criu_req_type::DUMP);
    req.opts = MessageField::some(opts);
    let fds = [images_dir.as_raw_fd(), work_dir.as_raw_fd()];
    let outcome = criu.call(req, &fds, &mut |_, _| Ok(()));
    let failure = match outcome {
        Ok(o) if o.response.success() => None,
        Ok(o) => Some(format!(
            "CRIU dump failed (errno {}): {}",
            o.response.cr_errno(),
            o.response.cr_errmsg()
        )),
        Err(e) => Some(e.to_string()),
    };
    if let Some(reason) = failure {
        image::discard(images);
        let log = work.join(image::DUMP_LOG);
        let hint = std::fs::read_to_string(&log)
            .map(|text| option_hint(&text))
            .unwrap_or_default();
        return Err(Error::Runtime(format!(
            "checkpoint of {} failed: {reason}{hint}\n{}\n(full CRIU log: {})",
            target.id,
            image::log_tail(&log, LOG_TAIL_LINES),
            log.display()
        )));
    }
    metadata.save(images)?;
    image::make_private(images)?;
    if work != images {
        image::make_private(work)?;
    }
    Ok(metadata)
}

/// What to do when CRIU refused for want of a dump option, recognised by the
/// advice CRIU itself logs.
fn option_hint(criu_log: &str) -> String {
    const HINTS: [(&str, &str, &str); 3] = [
        (
            "--tcp-established",
            "open_tcp",
            options::TCP_ESTABLISHED_ANNOTATION,
        ),
        (
            "--ext-unix-sk",
            "external_unix_sockets",
            options::EXT_UNIX_SK_ANNOTATION,
        ),
        ("--file-locks", "file_locks", options::FILE_LOCKS_ANNOTATION),
    ];
    HINTS
        .iter()
        .filter(|(advice, _, _)| criu_log.contains(advice))
        .map(|(_, option, annotation)| {
            format!(
                "\nhint: checkpoint with the {option} option, or create the container with \
                 the annotation {annotation}=true (docker run --annotation ...)"
            )
        })
        .collect()
}

/// The v1 freezer (or v2 unified) directory CRIU freezes the tree with.
pub(super) fn freezer_dir(cgroup_path: &str) -> Option<PathBuf> {
    let rel = cgroup_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/freezer").join(rel);
    if v1.exists() {
        return Some(v1);
    }
    let v2 = Path::new("/sys/fs/cgroup").join(rel);
    v2.join("cgroup.freeze").exists().then_some(v2)
}

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
    use super::*;

    #[test]
    fn criu_advice_becomes_an_annotation_hint() {
        let log = "(00.01) Error (criu/sk-inet.c:199): inet: \
                   Connected TCP socket, consider using --tcp-established option.\n";
        let hint = option_hint(log);
        assert!(hint.contains("open_tcp"), "{hint}");
        assert!(hint.contains(options::TCP_ESTABLISHED_ANNOTATION), "{hint}");
        assert!(!hint.contains("file_locks"), "{hint}");
        assert_eq!(option_hint("Error (criu/mount.c:1): no such mount"), "");
    }
}
