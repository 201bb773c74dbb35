//! The task service's logic, free of ttrpc: each RPC of containerd's Task API
//! as a method taking the request message and returning the response or an
//! [`Error`]. `task.rs` wires these to ttrpc; tests call them directly with a
//! fake runtime and a channel event sink.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim::ExitSignal;
use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;
use containerd_shim_protos::protobuf::MessageField;

use lazarus_core::checkpoint::restore::RestorePlan;
use lazarus_core::criu::Criu;

use crate::container::{self, Container};
use crate::error::{Error, Result};
use crate::events::{EventSink, TaskEvent};
use crate::io::{PendingIo, StdioPaths};
use crate::options;
use crate::process::{timestamp, Exit, Process, Status};
use crate::runtime::{CreateOptions, ExecOptions, Runtime};

mod checkpoint;
pub use checkpoint::PendingRestore;

/// How long an exit waits for the process's last output to reach containerd.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

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
}

pub struct TaskService {
    runtime: Arc<dyn Runtime>,
    criu: Arc<dyn Criu>,
    events: Arc<dyn EventSink>,
    settings: Settings,
    /// Every change to processes happens under this lock, pid registration
    /// included, so an exit can never be handled before its pid is known.
    containers: Mutex<HashMap<String, Container>>,
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
            shutdown,
        }
    }

    fn containers(&self) -> MutexGuard<'_, HashMap<String, Container>> {
        self.containers.lock().unwrap()
    }

    fn publish<E: containerd_shim::event::Event + 'static>(&self, event: E) {
        self.events.publish(TaskEvent::new(event));
    }

    pub fn create(&self, req: &CreateTaskRequest) -> Result<CreateTaskResponse> {
        if req.id.is_empty() {
            return Err(Error::InvalidArgument(
                "container id must not be empty".into(),
            ));
        }
        let source = options::restore_source(&req.checkpoint, req.options.as_ref())?;
        let mut containers = self.containers();
        if containers.contains_key(&req.id) {
            return Err(Error::AlreadyExists(format!(
                "container {} already exists",
                req.id
            )));
        }
        let bundle = PathBuf::from(&req.bundle);
        let spec = container::load_spec(&bundle)?;
        // A typo in a Lazarus annotation fails `docker run`, not the first
        // checkpoint days later.
        lazarus_core::checkpoint::request::validate_annotations(
            &spec.annotations().clone().unwrap_or_default(),
        )?;
        let terminal = req.terminal
            || spec
                .process()
                .as_ref()
                .is_some_and(|p| p.terminal().unwrap_or(false));
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal,
        };
        // A restore is checked against the bundle before anything is set up.
        let plan = match &source {
            None => None,
            Some(s) => Some(RestorePlan {
                temporary: s.temporary,
                ..RestorePlan::prepare(
                    s.images.clone().into(),
                    (!s.work.is_empty()).then(|| s.work.clone().into()),
                    &spec,
                    terminal,
                )?
            }),
        };
        let mounted_rootfs = container::mount_rootfs(&bundle, &req.rootfs)?;
        let mut init = Process::new("", stdio.clone(), Vec::new());
        let created = match plan {
            None => self
                .create_init(&req.id, &bundle, &stdio)
                .map(|(pid, streams)| {
                    init.pid = pid;
                    init.streams = Some(streams);
                    None
                }),
            // Restore happens at Start, as in containerd's runc shim.
            Some(plan) => {
                checkpoint::PendingRestore::new(plan, spec, &stdio, &self.settings.console_dir)
                    .map(Some)
            }
        };
        let restore = match created {
            Ok(restore) => restore,
            Err(e) => {
                if let Some(rootfs) = &mounted_rootfs {
                    container::unmount_rootfs(rootfs);
                }
                return Err(e);
            }
        };
        let pid = init.pid;
        let restoring = restore.is_some();
        containers.insert(
            req.id.clone(),
            Container {
                id: req.id.clone(),
                bundle,
                mounted_rootfs,
                init,
                execs: HashMap::new(),
                restore,
            },
        );
        drop(containers);
        if !restoring {
            self.watch_oom(&req.id);
        }
        self.publish(TaskCreate {
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
        });
        Ok(CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
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
        let mut containers = self.containers();
        let c = get_mut(&mut containers, &req.id)?;
        let bundle = c.bundle.clone();
        if c.process(&req.exec_id)?.status != Status::Created {
            return Err(Error::FailedPrecondition(format!(
                "cannot start {}: it has already been started",
                describe(&req.id, &req.exec_id)
            )));
        }
        if req.exec_id.is_empty() && c.restore.is_some() {
            let pid = self.start_restored(c)?;
            drop(containers);
            self.watch_oom(&req.id);
            return Ok(self.init_started(&req.id, pid));
        }
        let p = c.process_mut(&req.exec_id)?;
        if p.is_init() {
            self.runtime.start(&req.id, &bundle)?;
            p.status = Status::Running;
            let pid = p.pid;
            drop(containers);
            return Ok(self.init_started(&req.id, pid));
        }
        let io = PendingIo::prepare(&p.stdio, &self.settings.console_dir)?;
        let pid = self.runtime.exec(&ExecOptions {
            id: &req.id,
            bundle,
            process_json: &p.spec,
            io: io.for_process(),
        })?;
        p.pid = pid;
        p.status = Status::Running;
        match io.connect() {
            Ok(streams) => p.streams = Some(streams),
            Err(e) => log::error!("stdio of {}: {e}", describe(&req.id, &req.exec_id)),
        }
        drop(containers);
        self.publish(TaskExecStarted {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            pid: pid as u32,
            ..Default::default()
        });
        Ok(StartResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    fn init_started(&self, id: &str, pid: i32) -> StartResponse {
        self.publish(TaskStart {
            container_id: id.to_string(),
            pid: pid as u32,
            ..Default::default()
        });
        StartResponse {
            pid: pid as u32,
            ..Default::default()
        }
    }

    pub fn exec(&self, req: &ExecProcessRequest) -> Result<()> {
        if req.exec_id.is_empty() {
            return Err(Error::InvalidArgument("exec id must not be empty".into()));
        }
        let spec = req
            .spec
            .as_ref()
            .map(|s| s.value.clone())
            .unwrap_or_default();
        let process: oci_spec::runtime::Process = serde_json::from_slice(&spec).map_err(|e| {
            Error::InvalidArgument(format!(
                "invalid process spec for exec {}: {e}",
                req.exec_id
            ))
        })?;
        let mut containers = self.containers();
        let c = get_mut(&mut containers, &req.id)?;
        if !c.init.is_alive() {
            return Err(Error::FailedPrecondition(format!(
                "cannot exec in container {}: it is not running",
                req.id
            )));
        }
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
            terminal: req.terminal || process.terminal().unwrap_or(false),
        };
        c.execs
            .insert(req.exec_id.clone(), Process::new(&req.exec_id, stdio, spec));
        drop(containers);
        self.publish(TaskExecAdded {
            container_id: req.id.clone(),
            exec_id: req.exec_id.clone(),
            ..Default::default()
        });
        Ok(())
    }

    pub fn state(&self, req: &StateRequest) -> Result<StateResponse> {
        let containers = self.containers();
        let c = get(&containers, &req.id)?;
        let p = c.process(&req.exec_id)?;
        let exit = p.exit.get();
        Ok(StateResponse {
            id: if p.is_init() {
                req.id.clone()
            } else {
                p.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid as u32,
            status: p.status.api().into(),
            stdin: p.stdio.stdin.clone(),
            stdout: p.stdio.stdout.clone(),
            stderr: p.stdio.stderr.clone(),
            terminal: p.stdio.terminal,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: exit.map(|e| e.timestamp()).into(),
            exec_id: p.exec_id.clone(),
            ..Default::default()
        })
    }

    pub fn kill(&self, req: &KillRequest) -> Result<()> {
        let containers = self.containers();
        let c = get(&containers, &req.id)?;
        let p = c.process(&req.exec_id)?;
        let what = describe(&req.id, &req.exec_id);
        match p.status {
            Status::Created if !p.is_init() => {
                return Err(Error::FailedPrecondition(format!(
                    "cannot signal {what}: it has not been started"
                )))
            }
            Status::Stopped if !(p.is_init() && req.all) => {
                return Err(Error::NotFound(format!(
                    "cannot signal {what}: process already finished"
                )))
            }
            _ => {}
        }
        if p.is_init() {
            return self.runtime.kill(&req.id, req.signal as i32, req.all);
        }
        let signal = nix::sys::signal::Signal::try_from(req.signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid), signal).map_err(|e| match e {
            nix::Error::ESRCH => {
                Error::NotFound(format!("cannot signal {what}: process already finished"))
            }
            e => Error::sys(format!("signal {what}"))(e),
        })
    }

    pub fn delete(&self, req: &DeleteRequest) -> Result<DeleteResponse> {
        let mut containers = self.containers();
        let c = get_mut(&mut containers, &req.id)?;
        let what = describe(&req.id, &req.exec_id);
        let p = c.process(&req.exec_id)?;
        if p.is_alive() {
            return Err(Error::FailedPrecondition(format!(
                "cannot delete {what}: it is still running; stop it first (or force the delete)"
            )));
        }
        let (pid, exit) = (p.pid, p.exit.get());
        let response = DeleteResponse {
            pid: pid as u32,
            exit_status: exit.map(|e| e.code).unwrap_or_default(),
            exited_at: exit.map(|e| e.timestamp()).into(),
            ..Default::default()
        };
        if !req.exec_id.is_empty() {
            c.execs.remove(&req.exec_id);
            return Ok(response);
        }
        // A created-but-never-started init is still waiting: force removes it.
        let never_started = c.init.status == Status::Created;
        self.runtime.delete(&req.id, &c.bundle, never_started)?;
        if let Some(rootfs) = &c.mounted_rootfs {
            container::unmount_rootfs(rootfs);
        }
        containers.remove(&req.id);
        drop(containers);
        self.publish(TaskDelete {
            container_id: req.id.clone(),
            pid: response.pid,
            exit_status: response.exit_status,
            exited_at: response.exited_at.clone(),
            id: req.id.clone(),
            ..Default::default()
        });
        Ok(response)
    }

    pub fn wait(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let cell = {
            let containers = self.containers();
            get(&containers, &req.id)?
                .process(&req.exec_id)?
                .exit
                .clone()
        };
        let exit = cell.wait();
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
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
        let mut containers = self.containers();
        let c = get_mut(&mut containers, id)?;
        let (from, to, verb) = if frozen {
            (Status::Running, Status::Paused, "pause")
        } else {
            (Status::Paused, Status::Running, "resume")
        };
        if c.init.status != from {
            return Err(Error::FailedPrecondition(format!(
                "cannot {verb} container {id}: it is {}",
                format!("{:?}", c.init.status).to_lowercase()
            )));
        }
        if frozen {
            self.runtime.pause(id)?;
        } else {
            self.runtime.resume(id)?;
        }
        c.init.status = to;
        for p in c.execs.values_mut().filter(|p| p.status == from) {
            p.status = to;
        }
        Ok(())
    }

    pub fn pids(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let execs: HashMap<i32, String> = {
            let containers = self.containers();
            let c = get(&containers, &req.id)?;
            c.execs
                .values()
                .filter(|p| p.pid > 0)
                .map(|p| (p.pid, p.exec_id.clone()))
                .collect()
        };
        let processes = self
            .runtime
            .pids(&req.id)?
            .into_iter()
            .map(|pid| {
                let mut info = ProcessInfo {
                    pid: pid as u32,
                    ..Default::default()
                };
                if let Some(exec_id) = execs.get(&pid) {
                    let details = containerd_shim_protos::shim::oci::ProcessDetails {
                        exec_id: exec_id.clone(),
                        ..Default::default()
                    };
                    if let Ok(any) =
                        containerd_shim_protos::protobuf::well_known_types::any::Any::pack(&details)
                    {
                        info.info = MessageField::some(any);
                    }
                }
                info
            })
            .collect();
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub fn close_io(&self, req: &CloseIORequest) -> Result<()> {
        let containers = self.containers();
        let p = get(&containers, &req.id)?.process(&req.exec_id)?;
        if req.stdin {
            if let Some(streams) = &p.streams {
                streams.close_stdin();
            }
        }
        Ok(())
    }

    pub fn resize_pty(&self, req: &ResizePtyRequest) -> Result<()> {
        let containers = self.containers();
        let p = get(&containers, &req.id)?.process(&req.exec_id)?;
        match &p.streams {
            Some(streams) => streams.resize(req.width, req.height),
            None => Err(Error::FailedPrecondition(format!(
                "cannot resize the terminal of {}: it is not running",
                describe(&req.id, &req.exec_id)
            ))),
        }
    }

    pub fn update(&self, req: &UpdateTaskRequest) -> Result<()> {
        let Some(any) = req.resources.as_ref() else {
            return Err(Error::InvalidArgument("update without resources".into()));
        };
        let resources: oci_spec::runtime::LinuxResources = serde_json::from_slice(&any.value)
            .map_err(|e| {
                Error::InvalidArgument(format!("invalid resources ({}): {e}", any.type_url))
            })?;
        self.require_live_init(&req.id, "update")?;
        self.runtime.update(&req.id, &resources)
    }

    pub fn stats(&self, req: &StatsRequest) -> Result<StatsResponse> {
        self.require_live_init(&req.id, "read stats of")?;
        let stats = self.runtime.stats(&req.id)?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    fn require_live_init(&self, id: &str, verb: &str) -> Result<()> {
        let containers = self.containers();
        let c = get(&containers, id)?;
        if c.init.status == Status::Stopped {
            return Err(Error::FailedPrecondition(format!(
                "cannot {verb} container {id}: it has stopped"
            )));
        }
        Ok(())
    }

    pub fn connect(&self, req: &ConnectRequest) -> Result<ConnectResponse> {
        let containers = self.containers();
        let task_pid = containers
            .get(&req.id)
            .map(|c| c.init.pid as u32)
            .unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    pub fn shutdown(&self) {
        if self.containers().is_empty() {
            self.shutdown.signal();
        }
    }

    /// Called for every child the reaper collects. Waits for the process's
    /// output to drain, then records the exit and publishes TaskExit.
    pub fn process_exit(&self, pid: i32, code: i32) {
        let found = {
            let mut containers = self.containers();
            containers.values_mut().find_map(|c| {
                let id = c.id.clone();
                c.live_process_by_pid(pid)
                    .map(|p| (id, p.exec_id.clone(), p.streams.take()))
            })
        };
        let Some((id, exec_id, streams)) = found else {
            return; // a helper or another child that is not a task process
        };
        if let Some(mut streams) = streams {
            streams.drain(OUTPUT_DRAIN_TIMEOUT);
        }
        let exit = Exit {
            code: code as u32,
            at: SystemTime::now(),
        };
        {
            let mut containers = self.containers();
            let Some(p) = containers
                .get_mut(&id)
                .and_then(|c| c.process_mut(&exec_id).ok())
            else {
                return;
            };
            p.status = Status::Stopped;
            p.exit.set(exit);
        }
        self.publish(TaskExit {
            container_id: id.clone(),
            id: if exec_id.is_empty() { id } else { exec_id },
            pid: pid as u32,
            exit_status: exit.code,
            exited_at: MessageField::some(timestamp(exit.at)),
            ..Default::default()
        });
    }
}

fn get<'a>(containers: &'a HashMap<String, Container>, id: &str) -> Result<&'a Container> {
    containers
        .get(id)
        .ok_or_else(|| Error::NotFound(format!("container {id} does not exist")))
}

fn get_mut<'a>(
    containers: &'a mut HashMap<String, Container>,
    id: &str,
) -> Result<&'a mut Container> {
    containers
        .get_mut(id)
        .ok_or_else(|| Error::NotFound(format!("container {id} does not exist")))
}

fn describe(id: &str, exec_id: &str) -> String {
    if exec_id.is_empty() {
        format!("container {id}")
    } else {
        format!("exec {exec_id} of container {id}")
    }
}

#[cfg(test)]
mod tests;
