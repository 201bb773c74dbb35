//! Create: a container made by the runtime (or, when it is to be
//! restored, its restore planned and checked against the bundle's spec,
//! to run at Start), its init registered, its TaskCreate published.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;
use containerd_shim_protos::protobuf::MessageField;

use lazarus_core::checkpoint::handoff;
use lazarus_core::checkpoint::restore::RestorePlan;
use lazarus_core::ids::check_component;

use super::{millis, pids, stored_pages, Owner, TaskService};
use crate::container::{self, Container, ContainerCell};
use crate::error::{Error, Result};
use crate::events::TaskEvent;
use crate::io::{PendingIo, StdioPaths};
use crate::options;
use crate::process::Process;
use crate::runtime::CreateOptions;
use crate::state::{InitState, PendingRestore};

impl TaskService {
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
        let plan = (source.as_ref())
            .map(|s| restore_plan(s, &spec, stdio.terminal, &bundle, &self.settings))
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
    pub(super) fn register(
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

    pub(super) fn watch_oom(&self, id: &str) {
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
    settings: &super::Settings,
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
    if let Err(e) = stored_pages::resolve(
        &mut plan,
        &settings.store_root,
        &settings.memory_root,
        bundle,
    ) {
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
