//! One container: its bundle, mounted rootfs, init and exec processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim_protos::api::Mount;
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::process::Process;

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// Set when the shim mounted the rootfs (and so must unmount it).
    pub mounted_rootfs: Option<PathBuf>,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    /// Set between a Create from a checkpoint and its Start.
    pub restore: Option<crate::service::PendingRestore>,
}

impl Container {
    /// The process named by an RPC: the init for an empty exec id.
    pub fn process(&self, exec_id: &str) -> Result<&Process> {
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.execs
            .get(exec_id)
            .ok_or_else(|| no_such_exec(&self.id, exec_id))
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process> {
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        let id = &self.id;
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| no_such_exec(id, exec_id))
    }

    /// The live process with this pid, if it is one of ours.
    pub fn live_process_by_pid(&mut self, pid: i32) -> Option<&mut Process> {
        std::iter::once(&mut self.init)
            .chain(self.execs.values_mut())
            .find(|p| p.pid == pid && p.is_alive())
    }
}

fn no_such_exec(id: &str, exec_id: &str) -> Error {
    Error::NotFound(format!("exec {exec_id} does not exist in container {id}"))
}

/// Reads and checks the bundle's config.json before anything is set up, so a
/// bad spec is reported as such (InvalidArgument) and nothing is left behind.
pub fn load_spec(bundle: &Path) -> Result<Spec> {
    let path = bundle.join("config.json");
    if !path.exists() {
        return Err(Error::InvalidArgument(format!(
            "bundle has no OCI spec: {} is missing",
            path.display()
        )));
    }
    // serde_json's own error names the field and the bad value.
    let text = std::fs::read(&path).map_err(Error::io(format!("read {}", path.display())))?;
    let spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid OCI spec {}: {e}", path.display())))?;
    let process = spec.process().as_ref().ok_or_else(|| {
        Error::InvalidArgument(format!("OCI spec {} has no process", path.display()))
    })?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument(format!(
            "OCI spec {}: process.args is empty: give the container a command to run",
            path.display()
        )));
    }
    if spec.root().is_none() {
        return Err(Error::InvalidArgument(format!(
            "OCI spec {} has no root",
            path.display()
        )));
    }
    Ok(spec)
}

/// Mounts containerd's rootfs mounts (usually one overlay) on
/// `<bundle>/rootfs`. Returns the mount point, or None if there was nothing
/// to mount (the bundle brings its own rootfs).
pub fn mount_rootfs(bundle: &Path, mounts: &[Mount]) -> Result<Option<PathBuf>> {
    if mounts.is_empty() {
        return Ok(None);
    }
    let target = bundle.join("rootfs");
    std::fs::create_dir_all(&target).map_err(Error::io(format!("create {}", target.display())))?;
    for (i, m) in mounts.iter().enumerate() {
        let fs_type = (!m.type_.is_empty()).then_some(m.type_.as_str());
        let source = (!m.source.is_empty()).then_some(m.source.as_str());
        if let Err(e) = containerd_shim::mount::mount_rootfs(fs_type, source, &m.options, &target) {
            if i > 0 {
                unmount_rootfs(&target);
            }
            return Err(Error::Other(format!(
                "mount rootfs {} ({}) on {}: {e}",
                m.source,
                m.type_,
                target.display()
            )));
        }
    }
    Ok(Some(target))
}

pub fn unmount_rootfs(target: &Path) {
    if let Err(e) = containerd_shim::mount::umount_recursive(target.to_str(), libc::MNT_DETACH) {
        log::warn!("unmount {}: {e}", target.display());
    }
}
