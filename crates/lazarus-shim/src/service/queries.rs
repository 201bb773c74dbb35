//! The calls that only read a task or act on its stdio: State, Wait, Pids,
//! Stats, Connect, CloseIO, ResizePty. None takes a container's `ops`
//! lock, so none waits for a Start, Delete or Checkpoint under way.

use std::collections::HashMap;

use containerd_shim_protos::api::*;
use containerd_shim_protos::protobuf::MessageField;

use super::{describe, TaskService};
use crate::error::{Error, Result};

impl TaskService {
    pub fn state(&self, req: &StateRequest) -> Result<StateResponse> {
        let cell = self.get(&req.id)?;
        let c = cell.lock();
        let p = c.process(&req.exec_id)?;
        let status = c.status(&req.exec_id)?;
        let exit = p.exit.get();
        Ok(StateResponse {
            id: if req.exec_id.is_empty() {
                req.id.clone()
            } else {
                p.exec_id.clone()
            },
            bundle: c.bundle.to_string_lossy().into_owned(),
            pid: p.pid as u32,
            status: status.api().into(),
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

    pub fn wait(&self, req: &WaitRequest) -> Result<WaitResponse> {
        let exit = self
            .get(&req.id)?
            .lock()
            .process(&req.exec_id)?
            .exit
            .clone();
        let exit = exit.wait();
        Ok(WaitResponse {
            exit_status: exit.code,
            exited_at: MessageField::some(exit.timestamp()),
            ..Default::default()
        })
    }

    pub fn pids(&self, req: &PidsRequest) -> Result<PidsResponse> {
        let execs: HashMap<i32, String> = {
            let cell = self.get(&req.id)?;
            let c = cell.lock();
            c.process("")?;
            c.execs
                .values()
                .filter(|e| e.process.pid > 0)
                .map(|e| (e.process.pid, e.process.exec_id.clone()))
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

    pub fn stats(&self, req: &StatsRequest) -> Result<StatsResponse> {
        {
            let cell = self.get(&req.id)?;
            let c = cell.lock();
            c.process("")?;
            c.state.stats(&req.id)?;
        }
        let stats = self.runtime.stats(&req.id)?;
        Ok(StatsResponse {
            stats: MessageField::some(stats),
            ..Default::default()
        })
    }

    pub fn connect(&self, req: &ConnectRequest) -> Result<ConnectResponse> {
        let task_pid = self
            .get(&req.id)
            .map(|cell| cell.lock().init.pid as u32)
            .unwrap_or_default();
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            ..Default::default()
        })
    }

    /// Closing stdin of a process that has exited is not an error: clients
    /// send it at their input's EOF, whenever that comes.
    pub fn close_io(&self, req: &CloseIORequest) -> Result<()> {
        let cell = self.get(&req.id)?;
        let c = cell.lock();
        let p = c.process(&req.exec_id)?;
        if req.stdin {
            if let Some(streams) = &p.streams {
                streams.close_stdin();
            }
        }
        Ok(())
    }

    pub fn resize_pty(&self, req: &ResizePtyRequest) -> Result<()> {
        let cell = self.get(&req.id)?;
        let c = cell.lock();
        let p = c.process(&req.exec_id)?;
        if req.exec_id.is_empty() {
            c.state.io(&req.id)?;
        }
        match &p.streams {
            Some(streams) => streams.resize(req.width, req.height),
            None => Err(Error::FailedPrecondition(format!(
                "cannot resize the terminal of {}: it is not running",
                describe(&req.id, &req.exec_id)
            ))),
        }
    }
}
