//! The task service's logic, free of ttrpc: each RPC of containerd's Task API
//! as a method taking the request message and returning the response or an
//! [`Error`]. `task.rs` wires these to ttrpc; tests call them directly with a
//! fake runtime and a channel event sink.
//!
//! Locking: the service-wide map is held only to look up, insert or remove
//! a container; everything else happens under that container's own locks
//! (see [`ContainerCell`]) and what each call may do is decided by
//! `crate::state`. Exits reach their process through [`pids::Pids`], without
//! any lock held across work.
//!
//! The RPCs by file: `create.rs` (Create), `start.rs` (Start, Exec),
//! `exits.rs` (the reaper's exits), `checkpoint.rs` (Checkpoint),
//! `restore.rs` (the restore a Start runs), `queries.rs` (the calls that
//! only read); this file holds the service itself and Kill, Delete,
//! Pause, Resume, Update and Shutdown.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use containerd_shim::ExitSignal;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;

use lazarus_core::criu::Criu;
use lazarus_core::ids::check_component;

use crate::container::{self, ContainerCell};
use crate::error::{Error, Result};
use crate::events::{EventSink, TaskEvent};
use crate::process::{Exit, Process};
use crate::runtime::Runtime;
use crate::state::{KillTarget, Removal};

mod checkpoint;
mod create;
mod exits;
mod pids;
mod queries;
mod restore;
mod start;
mod stored_pages;

/// Exit status reported for a created init that Delete removed by force
/// (the runtime kills it with SIGKILL).
const KILLED: u32 = 128 + libc::SIGKILL as u32;

/// What the service needs to know about where it runs.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    /// containerd namespace of this shim's containers.
    pub namespace: String,
    /// Short directory for console sockets (paths are limited to 108 bytes).
    pub console_dir: PathBuf,
    /// Per-namespace override of the checkpoint exit default (config file).
    pub checkpoint_exit: HashMap<String, bool>,
    /// Where the CRIU log of a failed checkpoint or restore is kept, per
    /// container (`<logs>/<id>/dump.log`).
    pub logs: PathBuf,
    /// Compress the page images of a checkpoint (config `compress_pages`).
    pub compress_pages: bool,
    /// Where a restore decompresses pages it may not decompress in place.
    pub restore_scratch: PathBuf,
    /// Docker's checkpoints keep their pages in the store (config
    /// `docker_checkpoints = "store"`).
    pub store_docker_checkpoints: bool,
    /// The snapshot store (config `store_root`): where store-backed
    /// checkpoints' pages go, and are resolved from whatever the setting.
    pub store_root: PathBuf,
    /// Where a store-backed checkpoint's dump and restore go when they fit
    /// in memory (config `memory_root`; empty: never).
    pub memory_root: PathBuf,
}

impl Settings {
    /// `<logs>/<id>/<file>`, for an id that cannot leave `<logs>`.
    fn kept_log(&self, id: &str, file: &str) -> Result<PathBuf> {
        check_component("container id", id)?;
        Ok(self.logs.join(id).join(file))
    }
}

/// A registered pid's process: its container and exec id ("" for the init).
type Owner = (Arc<ContainerCell>, String);

/// An exit the reaper collected, found to be a process of ours (see
/// [`TaskService::claim_exit`]).
pub struct ClaimedExit {
    cell: Arc<ContainerCell>,
    exec_id: String,
    code: i32,
}

#[derive(Default)]
struct Containers {
    cells: HashMap<String, Arc<ContainerCell>>,
    /// Ids whose Create is under way: taken, not yet visible.
    creating: HashSet<String>,
}

pub struct TaskService {
    runtime: Arc<dyn Runtime>,
    criu: Arc<dyn Criu>,
    events: Arc<dyn EventSink>,
    settings: Settings,
    /// Held only to look up, insert or remove a container.
    containers: Mutex<Containers>,
    /// Which process each pid is. A pid is registered only after the event
    /// announcing its process (TaskCreate, TaskStart, TaskExecStarted) is
    /// published, and an exit of a pid not registered yet is kept until it
    /// is (see pids.rs): an exit is never handled before its pid is known,
    /// nor reported before its start.
    pids: pids::Pids<Owner>,
    shutdown: Arc<ExitSignal>,
}

impl TaskService {
    pub fn new(
        runtime: Arc<dyn Runtime>,
        criu: Arc<dyn Criu>,
        events: Arc<dyn EventSink>,
        settings: Settings,
        shutdown: Arc<ExitSignal>,
    ) -> Self {
        TaskService {
            runtime,
            criu,
            events,
            settings,
            containers: Mutex::default(),
            pids: pids::Pids::default(),
            shutdown,
        }
    }

    fn containers(&self) -> MutexGuard<'_, Containers> {
        self.containers.lock().unwrap()
    }

    fn get(&self, id: &str) -> Result<Arc<ContainerCell>> {
        self.containers()
            .cells
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("container {id} does not exist")))
    }

    /// Events whose order matters (a process's start, exit, checkpoint,
    /// delete) are published with the container's lock held: the sink only
    /// queues them, and the lock orders them as the state changes.
    fn publish<E: containerd_shim::event::Event + 'static>(&self, event: E) {
        self.events.publish(TaskEvent::new(event));
    }

    pub fn kill(&self, req: &KillRequest) -> Result<()> {
        let cell = self.get(&req.id)?;
        let exec_pid = {
            let c = cell.lock();
            if req.exec_id.is_empty() {
                c.process("")?;
                if c.state.kill(&req.id, req.all)? == KillTarget::Restore {
                    // The restore under way stops and ends the task killed.
                    log::info!(
                        "kill of {} during its restore: calling the restore off",
                        req.id
                    );
                    return Ok(());
                }
                None
            } else {
                let e = c.exec(&req.exec_id)?;
                e.state.kill(&req.id, &req.exec_id)?;
                Some(e.process.pid)
            }
        };
        let Some(pid) = exec_pid else {
            return self.runtime.kill(&req.id, req.signal as i32, req.all);
        };
        let what = describe(&req.id, &req.exec_id);
        let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).map_err(|e| match e {
            nix::Error::ESRCH => {
                Error::NotFound(format!("cannot signal {what}: process already finished"))
            }
            e => Error::sys(format!("signal {what}"))(e),
        })
    }

    pub fn delete(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        let cell = self.get(&req.id)?;
        let _ops = cell.ops();
        if !req.exec_id.is_empty() {
            let mut c = cell.lock();
            let e = c.exec(&req.exec_id)?;
            e.state.delete(&req.id, &req.exec_id)?;
            let response = delete_response(&e.process);
            c.execs.remove(&req.exec_id);
            return Ok(response);
        }
        let (removal, bundle, rootfs) = {
            let c = cell.lock();
            c.process("")?;
            (
                c.state.delete(&req.id)?,
                c.bundle.clone(),
                c.mounted_rootfs.clone(),
            )
        };
        match removal {
            Removal::Force => self.runtime.delete(&req.id, &bundle, true)?,
            Removal::Stopped => self.runtime.delete(&req.id, &bundle, false)?,
            Removal::Nothing => {}
        }
        if let Some(rootfs) = &rootfs {
            container::unmount_rootfs(rootfs);
        }
        let response = {
            let mut c = cell.lock();
            if removal == Removal::Force && c.init.exit.get().is_none() {
                // Its exit may come after this: Wait must not hang on it.
                c.init.exit.set(Exit {
                    code: KILLED,
                    at: SystemTime::now(),
                });
            }
            c.state.deleted();
            let response = delete_response(&c.init);
            self.publish(TaskDelete {
                container_id: req.id.clone(),
                pid: response.pid,
                exit_status: response.exit_status,
                exited_at: response.exited_at.clone(),
                id: req.id.clone(),
                ..Default::default()
            });
            response
        };
        self.pids.forget(|(owner, _)| Arc::ptr_eq(owner, &cell));
        self.containers().cells.remove(&req.id);
        Ok(response)
    }

    pub fn pause(&self, req: &PauseRequest) -> Result<()> {
        self.set_frozen(&req.id, true)?;
        self.publish(TaskPaused {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn resume(&self, req: &ResumeRequest) -> Result<()> {
        self.set_frozen(&req.id, false)?;
        self.publish(TaskResumed {
            container_id: req.id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    fn set_frozen(&self, id: &str, frozen: bool) -> Result<()> {
        let cell = self.get(id)?;
        let _ops = cell.ops();
        {
            let c = cell.lock();
            c.process("")?;
            match frozen {
                true => c.state.pause(id)?,
                false => c.state.resume(id)?,
            }
        }
        match frozen {
            true => self.runtime.pause(id)?,
            false => self.runtime.resume(id)?,
        }
        let mut c = cell.lock();
        match frozen {
            true => c.state.paused(),
            false => c.state.resumed(),
        }
        Ok(())
    }

    pub fn update(&self, req: &UpdateTaskRequest) -> Result<()> {
        let Some(any) = req.resources.as_ref() else {
            return Err(Error::InvalidArgument("update without resources".into()));
        };
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&any.value)
            .map_err(|e| {
                Error::InvalidArgument(format!("invalid resources ({}): {e}", any.type_url))
            })?;
        let cell = self.get(&req.id)?;
        let _ops = cell.ops();
        {
            let c = cell.lock();
            c.process("")?;
            c.state.update(&req.id)?;
        }
        self.runtime.update(&req.id, &resources)
    }

    pub fn shutdown(&self) {
        let containers = self.containers();
        if containers.cells.is_empty() && containers.creating.is_empty() {
            self.shutdown.signal();
        }
    }
}

fn delete_response(p: &Process) -> DeleteResponse {
    let exit = p.exit.get();
    DeleteResponse {
        pid: p.pid as u32,
        exit_status: exit.map(|e| e.code).unwrap_or_default(),
        exited_at: exit.map(|e| e.timestamp()).into(),
        ..Default::default()
    }
}

fn describe(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("container {id}")
    } else {
        format!("exec {exec_id} of container {id}")
    }
}

/// "12.3 ms": how long since `t`, in the form the startup benchmark
/// (test/e2e/benches/startup.rs) parses.
fn millis(t: std::time::Instant) -> String {
    format!("{:.1} ms", t.elapsed().as_secs_f64() * 1000.0)
}

#[cfg(test)]
mod tests;
