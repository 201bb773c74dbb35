//! One container: its bundle, mounted rootfs, init and exec processes.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use containerd_shim_protos::api::Mount;
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::process::{Process, Status};
use crate::state::{ExecState, InitState};

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    /// Set when the shim mounted the rootfs (and so must unmount it).
    pub mounted_rootfs: Option<PathBuf>,
    /// The init's state, which is the container's.
    pub state: InitState,
    pub init: Process,
    pub execs: HashMap<String, Exec>,
}

pub struct Exec {
    pub process: Process,
    pub state: ExecState,
}

impl Container {
    pub fn new(
        id: &str,
        bundle: PathBuf,
        mounted_rootfs: Option<PathBuf>,
        state: InitState,
        init: Process,
    ) -> Self {
        Container {
            id: id.to_string(),
            bundle,
            mounted_rootfs,
            state,
            init,
            execs: HashMap::new(),
        }
    }

    /// NotFound once Delete has removed the container (for a call that
    /// looked it up just before).
    fn exists(&self) -> Result<()> {
        match self.state {
            InitState::Deleted => Err(Error::NotFound(format!(
                "container {} does not exist",
                self.id
            ))),
            _ => Ok(()),
        }
    }

    /// The process named by an RPC: the init for an empty exec id.
    pub fn process(&self, exec_id: &str) -> Result<&Process> {
        self.exists()?;
        if exec_id.is_empty() {
            return Ok(&self.init);
        }
        self.exec(exec_id).map(|e| &e.process)
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Result<&mut Process> {
        self.exists()?;
        if exec_id.is_empty() {
            return Ok(&mut self.init);
        }
        self.exec_mut(exec_id).map(|e| &mut e.process)
    }

    pub fn exec(&self, exec_id: &str) -> Result<&Exec> {
        self.exists()?;
        self.execs
            .get(exec_id)
            .ok_or_else(|| no_such_exec(&self.id, exec_id))
    }

    pub fn exec_mut(&mut self, exec_id: &str) -> Result<&mut Exec> {
        self.exists()?;
        let id = &self.id;
        self.execs
            .get_mut(exec_id)
            .ok_or_else(|| no_such_exec(id, exec_id))
    }

    /// What State reports for the process named by an RPC.
    pub fn status(&self, exec_id: &str) -> Result<Status> {
        if exec_id.is_empty() {
            self.exists()?;
            return Ok(self.state.status());
        }
        Ok(self.exec(exec_id)?.state.status(&self.state))
    }
}

/// A container as the service shares it between RPCs and exit handling.
///
/// `state` is only ever held for short, non-blocking sections (never across
/// a runtime helper or CRIU), so State, Pids, Kill, Connect, Wait and exit
/// handling always get through. `ops` serialises the calls that change the
/// container through the runtime (Start, Delete, Pause, Resume, Update, and
/// the beginning of a Checkpoint), which may hold it across a helper run
/// but never across CRIU: a dump or restore is marked by its state
/// (Checkpointing, Restoring) instead, so a Delete meanwhile is refused at
/// once rather than kept waiting. Lock order: `ops` before `state`.
pub struct ContainerCell {
    ops: Mutex<()>,
    state: Mutex<Container>,
}

impl ContainerCell {
    pub fn new(container: Container) -> Self {
        ContainerCell {
            ops: Mutex::default(),
            state: Mutex::new(container),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, Container> {
        self.state.lock().unwrap()
    }

    /// The lock even after a panic while it was held: for the guards that
    /// end a transitional state on the way out of a panicking call.
    pub fn lock_after_panic(&self) -> MutexGuard<'_, Container> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn ops(&self) -> MutexGuard<'_, ()> {
        self.ops.lock().unwrap()
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
    let mut spec: Spec = serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid OCI spec {}: {e}", path.display())))?;
    spell_propagation_for_libcontainer(&path, &text, &mut spec)?;
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

/// runc reads `linux.rootfsPropagation` as a mount flag name, recursive
/// or not, and containerd's CRI writes `rshared` (Bidirectional volumes)
/// and `rslave` (HostToContainer); libcontainer 0.7 knows only `shared`,
/// `slave`, `private` and `unbindable`, which it always applies to `/`
/// recursively. The recursive spellings mean the same there, so the
/// bundle's config.json (which libcontainer reads) gets libcontainer's
/// word: only that one field is rewritten, the rest of the file is kept
/// byte for byte in meaning.
fn spell_propagation_for_libcontainer(path: &Path, text: &[u8], spec: &mut Spec) -> Result<()> {
    let given = spec
        .linux()
        .as_ref()
        .and_then(|l| l.rootfs_propagation().clone());
    let Some(word) = given.as_deref().and_then(libcontainer_propagation) else {
        return Ok(());
    };
    let mut doc: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| Error::InvalidArgument(format!("invalid OCI spec {}: {e}", path.display())))?;
    doc["linux"]["rootfsPropagation"] = serde_json::Value::from(word);
    let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Other(e.to_string()))?;
    std::fs::write(path, bytes).map_err(Error::io(format!("rewrite {}", path.display())))?;
    if let Some(linux) = spec.linux_mut() {
        linux.set_rootfs_propagation(Some(word.to_string()));
    }
    Ok(())
}

/// libcontainer's name for a recursive rootfs propagation, if it differs.
fn libcontainer_propagation(given: &str) -> Option<&'static str> {
    match given {
        "rshared" => Some("shared"),
        "rslave" => Some("slave"),
        "rprivate" => Some("private"),
        "runbindable" => Some("unbindable"),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(propagation: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let spec = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": { "args": ["sh"], "cwd": "/", "user": { "uid": 0, "gid": 0 } },
            "root": { "path": "rootfs" },
            "linux": { "rootfsPropagation": propagation, "x-unknown": 7 },
        });
        std::fs::write(dir.path().join("config.json"), spec.to_string()).unwrap();
        dir
    }

    fn on_disk(dir: &Path) -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap()
    }

    #[test]
    fn recursive_rootfs_propagation_is_spelled_as_libcontainer_reads_it() {
        for (given, want) in [
            ("rshared", "shared"),
            ("rslave", "slave"),
            ("rprivate", "private"),
            ("runbindable", "unbindable"),
        ] {
            let dir = bundle_with(given);
            let spec = load_spec(dir.path()).unwrap();
            let got = spec.linux().as_ref().unwrap().rootfs_propagation().clone();
            assert_eq!(got.as_deref(), Some(want));
            let file = on_disk(dir.path());
            assert_eq!(file["linux"]["rootfsPropagation"], want);
            assert_eq!(file["linux"]["x-unknown"], 7, "other fields are kept");
        }
    }

    #[test]
    fn libcontainers_own_words_are_left_alone() {
        for word in ["shared", "slave", "private", "unbindable"] {
            let dir = bundle_with(word);
            let before = std::fs::read(dir.path().join("config.json")).unwrap();
            load_spec(dir.path()).unwrap();
            let after = std::fs::read(dir.path().join("config.json")).unwrap();
            assert_eq!(before, after, "{word}: the file is not rewritten");
        }
    }
}
