//! What the container's tree uses but does not own, which CRIU must be
//! told of and the restore must supply again: bind mounts and masked files
//! (binds of the host's /dev/null), cgroup v1 controller mounts, the
//! controllers it has its own cgroup in, and namespaces joined from
//! elsewhere.

use std::os::unix::fs::MetadataExt;

use oci_spec::runtime::Spec;

use super::DumpTarget;
use crate::checkpoint::image::{self, Metadata};
use crate::criu::rpc;
use crate::error::{Error, Result};

/// Tells CRIU what the tree uses but does not own (bind mounts, cgroup
/// mounts, namespaces joined from elsewhere), and records each in the
/// metadata for the restore to supply again.
pub(super) fn declare_externals(
    opts: &mut rpc::Criu_opts,
    metadata: &mut Metadata,
    target: &DumpTarget,
) -> Result<()> {
    for dest in external_mounts(target.spec, target.pid) {
        opts.ext_mnt
            .push(crate::checkpoint::ext_mount(&dest, &dest));
        metadata.external_mounts.push(dest);
    }
    for mount in cgroup_mounts(target.spec, target.pid)? {
        opts.ext_mnt.push(crate::checkpoint::ext_mount(
            &mount.mountpoint,
            &mount.mountpoint,
        ));
        metadata.cgroup_mounts.push(mount);
    }
    for (kind, path) in crate::checkpoint::namespace_paths(target.spec) {
        let ino = std::fs::metadata(&path)
            .map_err(Error::io(format!("stat namespace {path}")))?
            .ino();
        let criu_name = crate::checkpoint::criu_ns_name(&kind);
        opts.external.push(format!(
            "{criu_name}[{ino}]:{}",
            rust_criu::criu_ns_to_key(criu_name)
        ));
        metadata.external_namespaces.push(kind);
    }
    Ok(())
}

/// Mounts CRIU cannot dump from inside the container: bind mounts of host
/// paths, and masked files (binds of /dev/null). Their destinations.
fn external_mounts(spec: &Spec, pid: i32) -> Vec<String> {
    let mut out: Vec<String> = spec
        .mounts()
        .iter()
        .flatten()
        .filter(|m| crate::checkpoint::is_bind(m))
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
pub(super) fn owned_controllers(pid: i32, cgroup_path: &str) -> Result<Vec<String>> {
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
