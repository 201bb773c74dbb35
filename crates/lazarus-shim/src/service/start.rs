//! Start and Exec: an init started (or restored) once created, an exec
//! registered and then started in the running container, and what an
//! exec that failed to start reports.

use std::sync::Arc;
use std::time::SystemTime;

use containerd_shim_protos::api::*;
use containerd_shim_protos::events::task::*;

use lazarus_core::ids::check_component;

use super::{describe, millis, TaskService};
use crate::container::{ContainerCell, Exec};
use crate::error::{Error, Result};
use crate::io::{PendingIo, StdioPaths};
use crate::process::{Exit, Process};
use crate::runtime::ExecOptions;
use crate::state::{ExecState, StartWork};

/// The exit status of an exec whose process never started.
const EXEC_NEVER_RAN: u32 = 255;

impl TaskService {
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
}
