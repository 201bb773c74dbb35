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

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim::ExitSignal;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;
use containerd_shim_protos::protobuf::MessageField;

use lazarus_core::checkpoint::handoff;
use lazarus_core::checkpoint::restore::RestorePlan;
use lazarus_core::criu::Criu;
use lazarus_core::ids::check_component;

use crate::container::{self, Container, ContainerCell, Exec};
use crate::error::{Error, Result};
use crate::events::{EventSink, TaskEvent};
use crate::io::{PendingIo, StdioPaths};
use crate::options;
use crate::process::{timestamp, Exit, Process};
use crate::runtime::{CreateOptions, ExecOptions, Runtime};
use crate::state::{ExecState, InitState, KillTarget, PendingRestore, Removal, StartWork};

mod checkpoint;
mod pids;
mod queries;
mod stored_pages;

/// How long an exit waits for the process's last output to reach containerd.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an init's exit waits for the exits of its execs to be
/// reported first (they die with it; a drain each, in parallel).
const EXEC_EXITS_WAIT: Duration = Duration::from_secs(5);

/// Exit status reported for a created init that Delete removed by force
/// (the runtime kills it with SIGKILL).
const KILLED: u32 = 128 + libc::SIGKILL as u32;
/// The exit status of an exec whose process never started.
const EXEC_NEVER_RAN: u32 = 255;

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

    pub fn create(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse> {
        // The id names the runtime's state directory and the kept CRIU logs:
        // refused here if it could reach outside them.
        check_component("container id", &req.id)?;
        {
            let mut containers = self.containers();
            if containers.cells.contains_key(&req.id) || !containers.creating.insert(req.id.clone())
            {
                return Err(Error::AlreadyExists(format!(
                    "container {} already exists",
                    req.id
                )));
            }
        }
        let took = std::time::Instant::now();
        let created = self.create_reserved(req);
        self.containers().creating.remove(&req.id);
        // The shim's share of a `docker run` (the startup benchmark,
        // test/e2e/benches/startup.rs, reads it).
        if let Ok(c) = &created {
            log::info!("created {} (pid {}) in {}", req.id, c.pid, millis(took));
        }
        created
    }

    fn create_reserved(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse> {
        let source = options::restore_source(&req.checkpoint, req.options.as_ref())?;
        let bundle = PathBuf::from(&req.bundle);
        let spec = container::load_spec(&bundle)?;
        let annotations = spec.annotations().clone().unwrap_or_default();
        // A typo in a Lazarus annotation fails `docker run`, not the first
        // checkpoint days later.
        lazarus_core::checkpoint::request::validate_annotations(&annotations)?;
        let source = match source {
            Some(s) => Some(s),
            None => handed_off_source(&req.id, &annotations)?,
        };
        let stdio = stdio_paths(req, &spec);
        // A restore is checked against the bundle before anything is set up.
        let store_root = &self.settings.store_root;
        let plan = (source.as_ref())
            .map(|s| restore_plan(s, &spec, stdio.terminal, &bundle, store_root))
            .transpose()?;
        let mounted_rootfs = match container::mount_rootfs(&bundle, &req.rootfs) {
            Ok(m) => m,
            Err(e) => {
                if let Some(plan) = &plan {
                    plan.discard_temporary_images();
                }
                return Err(e);
            }
        };
        let mut init = Process::new("", stdio.clone(), Vec::new());
        let spawn = self.pids.spawn();
        let state = match self.init_state(&req.id, &bundle, &stdio, plan, spec, &mut init) {
            Ok(state) => state,
            Err(e) => {
                if let Some(rootfs) = &mounted_rootfs {
                    container::unmount_rootfs(rootfs);
                }
                return Err(e);
            }
        };
        let pid = init.pid;
        let restoring = pid == 0;
        let cell = Arc::new(ContainerCell::new(Container::new(
            &req.id,
            bundle,
            mounted_rootfs,
            state,
            init,
        )));
        self.containers().cells.insert(req.id.clone(), cell.clone());
        if !restoring {
            self.watch_oom(&req.id);
        }
        self.publish(task_create(req, stdio, source, pid));
        // The created init is a live process waiting for Start: a Kill
        // before Start must end in its exit like any other.
        if !restoring {
            self.register(&spawn, &cell, "", pid);
        }
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// The init at Create: a process started and waiting for Start (its
    /// pid and streams put in `init`), or, with a restore `plan`, that
    /// restore recorded in the bundle and pending until Start.
    fn init_state(
        &self,
        id: &str,
        bundle: &Path,
        stdio: &StdioPaths,
        plan: Option<RestorePlan>,
        spec: oci_spec::runtime::Spec,
        init: &mut Process,
    ) -> Result<InitState> {
        match plan {
            None => self.create_init(id, bundle, stdio).map(|(pid, streams)| {
                init.pid = pid;
                init.streams = Some(streams);
                InitState::Created
            }),
            // Restore happens at Start, as in containerd's runc shim.
            Some(plan) => plan
                .record_in(bundle)
                .map_err(Error::from)
                .and_then(|()| PendingRestore::new(plan, spec, stdio, &self.settings.console_dir))
                .map(|p| InitState::CreatedFromCheckpoint(Box::new(p))),
        }
    }

    fn create_init(
        &self,
        id: &str,
        bundle: &Path,
        stdio: &StdioPaths,
    ) -> Result<(i32, crate::io::ProcessStreams)> {
        let io = PendingIo::prepare(stdio, &self.settings.console_dir)?;
        let pid = self.runtime.create(&CreateOptions {
            id,
            bundle: bundle.to_path_buf(),
            io: io.for_process(),
        })?;
        match io.connect() {
            Ok(streams) => Ok((pid, streams)),
            Err(e) => {
                // Leave nothing behind: the init exists but is unusable.
                if let Err(del) = self.runtime.delete(id, bundle, true) {
                    log::warn!("cleanup of {id} after failed stdio set-up: {del}");
                }
                Err(e)
            }
        }
    }

    /// Registers a spawned process's pid, once the event announcing it is
    /// out; handles its exit now if it has already exited.
    fn register(
        &self,
        spawn: &pids::Spawn<'_, Owner>,
        cell: &Arc<ContainerCell>,
        exec_id: &str,
        pid: i32,
    ) {
        if let Some(code) = spawn.register(pid, (cell.clone(), exec_id.to_string())) {
            self.handle_exit(cell, exec_id, code);
        }
    }

    fn watch_oom(&self, id: &str) {
        if let Some(dir) = self.runtime.memory_cgroup(id) {
            let events = self.events.clone();
            let container_id = id.to_string();
            crate::oom::watch_v1(dir, move || {
                events.publish(TaskEvent::new(TaskOOM {
                    container_id: container_id.clone(),
                    ..Default::default()
                }))
            });
        }
    }

    pub fn start(&self, req: &StartRequest) -> Result<StartResponse> {
        let cell = self.get(&req.id)?;
        if !req.exec_id.is_empty() {
            return self.start_exec(&cell, &req.exec_id);
        }
        let ops = cell.ops();
        let (work, bundle) = {
            let mut c = cell.lock();
            (c.state.start(&req.id)?, c.bundle.clone())
        };
        let (pending, abort) = match work {
            StartWork::Run => {
                let took = std::time::Instant::now();
                let started = self.runtime.start(&req.id, &bundle);
                if started.is_ok() {
                    log::info!("started {} in {}", req.id, millis(took));
                }
                let mut c = cell.lock();
                let pid = c.init.pid;
                if started.is_ok() {
                    self.publish(TaskStart {
                        container_id: req.id.clone(),
                        pid: pid as u32,
                        ..Default::default()
                    });
                }
                let held = match &started {
                    Ok(()) => c.state.started(),
                    Err(_) => c.state.start_failed(None),
                };
                if let Some(exit) = held {
                    self.report_exit(&mut c, "", exit);
                }
                return started.map(|()| StartResponse {
                    pid: pid as u32,
                    ..Default::default()
                });
            }
            StartWork::Restore(pending, abort) => (pending, abort),
        };
        // Restoring keeps other lifecycle calls out while CRIU works.
        drop(ops);
        let pid = self.start_restored(&cell, *pending, abort)?;
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn start_exec(&self, cell: &Arc<ContainerCell>, exec_id: &str) -> Result<StartResponse> {
        let _ops = cell.ops();
        let (id, bundle, stdio, spec) = {
            let c = cell.lock();
            let e = c.exec(exec_id)?;
            e.state.start(&c.id, exec_id, &c.state)?;
            let p = &e.process;
            (
                c.id.clone(),
                c.bundle.clone(),
                p.stdio.clone(),
                p.spec.clone(),
            )
        };
        let io = PendingIo::prepare(&stdio, &self.settings.console_dir)?;
        let spawn = self.pids.spawn();
        let exec = self.runtime.exec(&ExecOptions {
            id: &id,
            bundle,
            process_json: &spec,
            io: io.for_process(),
        });
        let pid = match exec {
            Ok(pid) => pid,
            Err(e) => {
                self.exec_failed(cell, exec_id);
                return Err(e);
            }
        };
        let streams = io.connect();
        {
            let mut c = cell.lock();
            // Still there: Delete waits for `ops`.
            let e = c.exec_mut(exec_id)?;
            e.process.pid = pid;
            e.state.started();
            match streams {
                Ok(streams) => e.process.streams = Some(streams),
                Err(e) => log::error!("stdio of {}: {e}", describe(&id, exec_id)),
            }
            self.publish(TaskExecStarted {
                container_id: id.clone(),
                exec_id: exec_id.to_string(),
                pid: pid as u32,
                ..Default::default()
            });
        }
        self.register(&spawn, cell, exec_id, pid);
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// An exec that could not start (no such program, say) is stopped with
    /// [`EXEC_NEVER_RAN`]: a Wait already waiting on it (CRI's exec waits
    /// before it starts) returns, as with runc's shim, instead of holding
    /// its connection, and with it the shim's shutdown, for ever.
    fn exec_failed(&self, cell: &ContainerCell, exec_id: &str) {
        let mut c = cell.lock();
        if let Ok(e) = c.exec_mut(exec_id) {
            e.state.start_failed();
            e.process.exit.set(Exit {
                code: EXEC_NEVER_RAN,
                at: SystemTime::now(),
            });
        }
    }

    pub fn exec(&self, req: &ExecProcessRequest) -> Result<()> {
        check_component("container id", &req.id)?;
        check_component("exec id", &req.exec_id)?;
        let spec = req
            .spec
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default();
        // Checked here so that a bad spec fails Exec, not the later Start.
        let _: oci_spec::runtime::Process = serde_json::from_slice(&spec).map_err(|e| {
            Error::InvalidArgument(format!(
                "invalid process spec for exec {}: {e}",
                req.exec_id
            ))
        })?;
        let cell = self.get(&req.id)?;
        let mut c = cell.lock();
        c.process("")?;
        c.state.exec(&req.id)?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(Error::AlreadyExists(format!(
                "exec {} already exists in container {}",
                req.exec_id, req.id
            )));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            // The request decides, as with runc; the runtime writes it into
            // the process spec it runs.
            terminal: req.terminal,
        };
        let exec = Exec {
            process: Process::new(&req.exec_id, stdio, spec),
            state: ExecState::Created,
        };
        c.execs.insert(req.exec_id.clone(), exec);
        self.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(())
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

    /// Called for every child the reaper collects: [`Self::claim_exit`],
    /// then [`Self::finish_exit`] on the same thread.
    pub fn process_exit(&self, pid: i32, code: i32) {
        if let Some(exit) = self.claim_exit(pid, code) {
            self.finish_exit(exit);
        }
    }

    /// The quick part of an exit, in the order the reaper collects them:
    /// whose it is. None when it is not ours (a helper, CRIU) or not
    /// registered yet (kept for its registration then).
    pub fn claim_exit(&self, pid: i32, code: i32) -> Option<ClaimedExit> {
        let (cell, exec_id) = self.pids.exited(pid, code)?;
        Some(ClaimedExit {
            cell,
            exec_id,
            code,
        })
    }

    /// The slow part (survivors killed, output drained for up to
    /// [`OUTPUT_DRAIN_TIMEOUT`], then recorded and published): the exit
    /// watcher runs it on a thread of its own per exit, so that one
    /// container's exit does not hold up another's.
    pub fn finish_exit(&self, exit: ClaimedExit) {
        self.handle_exit(&exit.cell, &exit.exec_id, exit.code);
    }

    /// Waits for the process's output to drain, then records the exit and
    /// publishes TaskExit (or leaves that to the Start or Checkpoint under
    /// way, see `crate::state`).
    fn handle_exit(&self, cell: &ContainerCell, exec_id: &str, code: i32) {
        if exec_id.is_empty() {
            // Before the drain: a survivor holding the output open would
            // make it wait for its whole timeout. Without the lock: it can
            // take a while.
            let (id, bundle) = {
                let c = cell.lock();
                (c.id.clone(), c.bundle.clone())
            };
            crate::runtime::kill_after_init_exit(&id, &bundle);
        }
        let streams = cell
            .lock()
            .process_mut(exec_id)
            .ok()
            .and_then(|p| p.streams.take());
        if let Some(mut streams) = streams {
            streams.drain(OUTPUT_DRAIN_TIMEOUT);
        }
        let exit = Exit {
            code: code as u32,
            at: SystemTime::now(),
        };
        let mut c = match exec_id.is_empty() {
            // The init's exit is published last, as runc's shim does: after
            // those of the execs it took down (each finished on its own
            // thread), for at most EXEC_EXITS_WAIT.
            true => self.lock_when_execs_reported(cell),
            false => cell.lock(),
        };
        let now = match exec_id.is_empty() {
            true => c.state.exited(exit),
            false => match c.exec_mut(exec_id) {
                Ok(e) => e.state.exited().then_some(exit),
                Err(_) => None,
            },
        };
        if let Some(exit) = now {
            self.report_exit(&mut c, exec_id, exit);
        }
    }

    /// The container's lock, once none of its execs is still running (their
    /// exits recorded) or [`EXEC_EXITS_WAIT`] has passed.
    fn lock_when_execs_reported<'a>(
        &self,
        cell: &'a ContainerCell,
    ) -> std::sync::MutexGuard<'a, Container> {
        let deadline = std::time::Instant::now() + EXEC_EXITS_WAIT;
        loop {
            let c = cell.lock();
            let running = c
                .execs
                .values()
                .any(|e| matches!(e.state, crate::state::ExecState::Running));
            if !running || std::time::Instant::now() >= deadline {
                return c;
            }
            drop(c);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Records a process's exit (Wait returns) and publishes TaskExit; with
    /// the container's lock held, so the event follows the state.
    fn report_exit(&self, c: &mut Container, exec_id: &str, exit: Exit) {
        let id = c.id.clone();
        let Ok(p) = c.process_mut(exec_id) else {
            return;
        };
        p.exit.set(exit);
        self.publish(TaskExit {
            container_id: id.clone(),
            id: if exec_id.is_empty() {
                id
            } else {
                exec_id.to_string()
            },
            pid: p.pid as u32,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        });
    }
}

/// Without a checkpoint: the first start of a container that `lazarus
/// restore --import` made restores from its images (see `handoff`).
fn handed_off_source(
    id: &str,
    annotations: &std::collections::HashMap<String, String>,
) -> Result<Option<options::RestoreSource>> {
    Ok(handoff::claim(annotations)?.map(|images| {
        log::info!("{id}: restoring from {}", images.display());
        options::RestoreSource {
            images: images.to_string_lossy().into_owned(),
            work: String::new(),
            temporary: false,
        }
    }))
}

/// The init's stdio as asked, with a terminal if the request or the spec
/// asks for one.
fn stdio_paths(req: &CreateTaskRequest, spec: &oci_spec::runtime::Spec) -> StdioPaths {
    let terminal = req.terminal
        || spec
            .process()
            .as_ref()
            .is_some_and(|p| p.terminal().unwrap_or(false));
    StdioPaths {
        stdin: req.stdin.clone(),
        stdout: req.stdout.clone(),
        stderr: req.stderr.clone(),
        terminal,
    }
}

/// The restore from `source`, checked against the bundle's spec; a refused
/// temporary copy is removed (containerd never removes its unpacked copy).
fn restore_plan(
    source: &options::RestoreSource,
    spec: &oci_spec::runtime::Spec,
    terminal: bool,
    bundle: &Path,
    store_root: &Path,
) -> Result<RestorePlan> {
    let prepared = RestorePlan::prepare(
        source.images.clone().into(),
        (!source.work.is_empty()).then(|| source.work.clone().into()),
        spec,
        terminal,
    );
    if prepared.is_err() && source.temporary {
        lazarus_core::checkpoint::image::remove_temporary(Path::new(&source.images));
    }
    let mut plan = RestorePlan {
        temporary: source.temporary,
        ..prepared?
    };
    // A store-backed checkpoint's pages come back now: refused at Create
    // when this host's store lacks them.
    if let Err(e) = stored_pages::resolve(&mut plan, store_root, bundle) {
        plan.discard_temporary_images();
        return Err(e);
    }
    // In the bundle: containerd removes it with the container, even after a
    // shim that died before it could.
    plan.own_postcopy_images(bundle)?;
    Ok(plan)
}

/// The TaskCreate event of a created container.
fn task_create(
    req: &CreateTaskRequest,
    stdio: StdioPaths,
    source: Option<options::RestoreSource>,
    pid: i32,
) -> TaskCreate {
    TaskCreate {
        container_id: req.id.clone(),
        bundle: req.bundle.clone(),
        rootfs: req.rootfs.clone(),
        io: MessageField::some(TaskIO {
            stdin: stdio.stdin,
            stdout: stdio.stdout,
            stderr: stdio.stderr,
            terminal: stdio.terminal,
            ..Default::default()
        }),
        checkpoint: source.map(|s| s.images).unwrap_or_default(),
        pid: pid as u32,
        ..Default::default()
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
