//! What each Task API call may do in each state of a task, in one place.
//! containerd's Go shim is the model (pkg/process/init_state.go and
//! exec_state.go): one method per call checks the state, makes the
//! transition and returns the error the Task API expects, by construction
//! (FailedPrecondition for a call the state does not allow, NotFound for
//! signalling a finished process or touching a deleted container).
//!
//! Long work (a runtime helper run, CRIU) happens between a call's check and
//! its `*ed`/`*_failed` transition, without the container's lock held. The
//! transitional states (Starting, Restoring, Checkpointing) tell concurrent
//! calls what is under way: State, Kill and exit handling go on; Delete,
//! Pause, Exec and a second Start or Checkpoint are refused. An init exit
//! that arrives while Starting or Checkpointing is held until that work
//! ends, so that TaskExit never overtakes the work's TaskStart or
//! TaskCheckpointed, and Wait (after which clients delete) does not return
//! while CRIU is still dumping. Kill during a restore asks the restore to
//! stop (CRIU is called off, or the restored tree killed once it is back),
//! so a hung restore can be ended before CRIU's deadline.
//!
//! Every transitional state ends: the work's `*ed`/`*_failed` call, or
//! [`InitState::abandon`] from the service's guard when the work ended
//! any other way (an early error, a panic). Stopped always carries its
//! exit, so a task can never be stopped with nothing for Wait to return.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use lazarus_core::checkpoint::restore::RestorePlan;
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};
use crate::io::{PendingIo, StdioPaths};
use crate::process::{Exit, Status};

/// A container created from a checkpoint, waiting for Start to restore it.
pub struct PendingRestore {
    pub plan: RestorePlan,
    pub spec: Spec,
    /// Pipes for the restored init (None with a terminal: CRIU hands back
    /// the terminal's master).
    pub io: Option<PendingIo>,
}

impl PendingRestore {
    pub fn new(
        plan: RestorePlan,
        spec: Spec,
        stdio: &StdioPaths,
        console_dir: &Path,
    ) -> Result<Self> {
        let io = match stdio.terminal {
            true => None,
            false => Some(PendingIo::prepare(stdio, console_dir)?),
        };
        Ok(PendingRestore { plan, spec, io })
    }
}

/// The state of a container, i.e. of its init process.
pub enum InitState {
    /// The runtime created the init; it waits for Start.
    Created,
    /// Created from a checkpoint: nothing runs until Start restores it.
    CreatedFromCheckpoint(Box<PendingRestore>),
    /// Start is letting the created init run; `exit` if it died meanwhile.
    Starting {
        exit: Option<Exit>,
    },
    /// Start is restoring the checkpoint (the init's pid is not known yet);
    /// `abort` is set by a Kill meanwhile.
    Restoring {
        abort: Arc<AtomicBool>,
    },
    Running,
    Paused,
    /// Checkpoint is dumping the task, which was paused or running;
    /// `exit` if the init died meanwhile (killed, or dumped with `exit`).
    Checkpointing {
        paused: bool,
        exit: Option<Exit>,
    },
    /// The init ended, with this exit (what Wait returns and Delete reports).
    Stopped(Exit),
    /// Delete removed it; a call that found it just before gets NotFound.
    Deleted,
}

/// What Start has to do.
pub enum StartWork {
    /// Let the created init run the user's process.
    Run,
    /// Restore the checkpoint; the flag turns true when a Kill asks the
    /// restore to stop.
    Restore(Box<PendingRestore>, Arc<AtomicBool>),
}

/// Where Kill's signal goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// The runtime signals the container's processes.
    Runtime,
    /// Nothing runs yet: the restore under way was asked to stop.
    Restore,
}

/// The exit of an init that was killed, or never came back from a restore.
pub fn killed_exit() -> Exit {
    Exit {
        code: 128 + libc::SIGKILL as u32,
        at: SystemTime::now(),
    }
}

/// A transition called in a state it does not apply to: a bug in the
/// service. Loud in tests; logged and left as it is in production.
fn out_of_order(call: &str, state: &InitState) {
    log::error!("{call} in state {}: ignored", state.name());
    debug_assert!(false, "{call} in state {}", state.name());
}

/// What Delete has to remove in the runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// The init never ran and is still waiting: remove it by force.
    Force,
    /// The init has stopped.
    Stopped,
    /// Nothing: a container created from a checkpoint has no runtime state
    /// before Start.
    Nothing,
}

impl InitState {
    /// What State reports.
    pub fn status(&self) -> Status {
        match self {
            InitState::Created
            | InitState::CreatedFromCheckpoint(_)
            | InitState::Starting { .. }
            | InitState::Restoring { .. } => Status::Created,
            InitState::Running | InitState::Checkpointing { paused: false, .. } => Status::Running,
            InitState::Paused | InitState::Checkpointing { paused: true, .. } => Status::Paused,
            InitState::Stopped(_) | InitState::Deleted => Status::Stopped,
        }
    }

    fn name(&self) -> &'static str {
        match self {
            InitState::Created => "created and not started",
            InitState::CreatedFromCheckpoint(_) => "created from a checkpoint and not restored yet",
            InitState::Starting { .. } => "being started",
            InitState::Restoring { .. } => "being restored",
            InitState::Running => "running",
            InitState::Paused => "paused",
            InitState::Checkpointing { .. } => "being checkpointed",
            InitState::Stopped(_) => "stopped",
            InitState::Deleted => "deleted",
        }
    }

    /// The error for `verb` (e.g. "pause") in this state.
    fn refuse(&self, id: &str, verb: &str) -> Error {
        match self {
            InitState::Deleted => gone(id),
            _ => Error::FailedPrecondition(format!(
                "cannot {verb} container {id}: it is {}",
                self.name()
            )),
        }
    }

    /// Start: Created -> Starting, CreatedFromCheckpoint -> Restoring.
    pub fn start(&mut self, id: &str) -> Result<StartWork> {
        match std::mem::replace(self, InitState::Deleted) {
            InitState::Created => {
                *self = InitState::Starting { exit: None };
                Ok(StartWork::Run)
            }
            InitState::CreatedFromCheckpoint(pending) => {
                let abort = Arc::new(AtomicBool::new(false));
                *self = InitState::Restoring {
                    abort: abort.clone(),
                };
                Ok(StartWork::Restore(pending, abort))
            }
            other => {
                *self = other;
                Err(self.refuse(id, "start"))
            }
        }
    }

    /// Start's work succeeded: Running, or Stopped with the exit that came
    /// meanwhile (returned, to be reported now).
    pub fn started(&mut self) -> Option<Exit> {
        match self {
            InitState::Starting { exit: Some(exit) } => {
                let exit = *exit;
                *self = InitState::Stopped(exit);
                Some(exit)
            }
            InitState::Starting { exit: None } | InitState::Restoring { .. } => {
                *self = InitState::Running;
                None
            }
            other => {
                out_of_order("started", other);
                None
            }
        }
    }

    /// Start's work failed: back to where it started (a failed restore
    /// gives its plan back, so Start can be retried), or Stopped when the
    /// init died meanwhile, or a restore cannot be retried (no plan back,
    /// or a Kill asked it to stop): then the exit is returned, to be
    /// reported now, so that Wait returns and Delete reports it.
    pub fn start_failed(&mut self, pending: Option<Box<PendingRestore>>) -> Option<Exit> {
        match self {
            InitState::Starting { exit: Some(exit) } => {
                let exit = *exit;
                *self = InitState::Stopped(exit);
                Some(exit)
            }
            InitState::Starting { exit: None } => {
                *self = InitState::Created;
                None
            }
            InitState::Restoring { abort } => match pending {
                Some(p) if !abort.load(Ordering::SeqCst) => {
                    *self = InitState::CreatedFromCheckpoint(p);
                    None
                }
                _ => {
                    let exit = killed_exit();
                    *self = InitState::Stopped(exit);
                    Some(exit)
                }
            },
            other => {
                out_of_order("start_failed", other);
                None
            }
        }
    }

    /// The work of a transitional state ended without saying how (an early
    /// error, a panic): Starting and Restoring end as failed (a restore is
    /// not retried: its plan is gone), Checkpointing as after any dump.
    /// Returns the exit to report now, if any. Other states are left alone.
    pub fn abandon(&mut self) -> Option<Exit> {
        match self {
            InitState::Starting { .. } | InitState::Restoring { .. } => self.start_failed(None),
            InitState::Checkpointing { .. } => self.checkpointed(),
            _ => None,
        }
    }

    /// The init exited: Stopped, and the exit to report now; or None while
    /// Start or Checkpoint is under way (they report it when they end) or
    /// when there is no live init (a stray or repeated exit).
    pub fn exited(&mut self, exit: Exit) -> Option<Exit> {
        match self {
            InitState::Created | InitState::Running | InitState::Paused => {
                *self = InitState::Stopped(exit);
                Some(exit)
            }
            InitState::Starting { exit: held } | InitState::Checkpointing { exit: held, .. } => {
                held.get_or_insert(exit);
                None
            }
            InitState::CreatedFromCheckpoint(_)
            | InitState::Restoring { .. }
            | InitState::Stopped(_)
            | InitState::Deleted => None,
        }
    }

    /// Kill: a live init can be signalled (a created one too: it is a
    /// process waiting for Start), and so can the rest of a stopped
    /// container's processes (`all`). A restore under way is asked to stop:
    /// whatever the signal, the container ends killed.
    pub fn kill(&self, id: &str, all: bool) -> Result<KillTarget> {
        match self {
            InitState::Created
            | InitState::Starting { .. }
            | InitState::Running
            | InitState::Paused
            | InitState::Checkpointing { .. } => Ok(KillTarget::Runtime),
            InitState::Restoring { abort } => {
                abort.store(true, Ordering::SeqCst);
                Ok(KillTarget::Restore)
            }
            InitState::Stopped(_) if all => Ok(KillTarget::Runtime),
            InitState::Stopped(_) => Err(Error::NotFound(format!(
                "cannot signal container {id}: process already finished"
            ))),
            // Nothing runs yet: FailedPrecondition, which containerd's
            // forced delete takes as "nothing to kill".
            _ => Err(self.refuse(id, "signal")),
        }
    }

    /// Delete: only a container whose init is not running.
    pub fn delete(&self, id: &str) -> Result<Removal> {
        match self {
            InitState::Created => Ok(Removal::Force),
            InitState::CreatedFromCheckpoint(_) => Ok(Removal::Nothing),
            InitState::Stopped(_) => Ok(Removal::Stopped),
            InitState::Running | InitState::Paused => Err(Error::FailedPrecondition(format!(
                "cannot delete container {id}: it is still running; stop it first (or force the delete)"
            ))),
            _ => Err(self.refuse(id, "delete")),
        }
    }

    pub fn deleted(&mut self) {
        // A restore that never started: containerd's unpacked copy of the
        // checkpoint (if that is what it was given) is left to no one else.
        if let InitState::CreatedFromCheckpoint(p) = std::mem::replace(self, InitState::Deleted) {
            p.plan.discard_temporary_images();
        }
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        match self {
            InitState::Running => Ok(()),
            _ => Err(self.refuse(id, "pause")),
        }
    }

    /// The freezer froze it (unless it exited meanwhile).
    pub fn paused(&mut self) {
        if let InitState::Running = self {
            *self = InitState::Paused;
        }
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        match self {
            InitState::Paused => Ok(()),
            _ => Err(self.refuse(id, "resume")),
        }
    }

    pub fn resumed(&mut self) {
        if let InitState::Paused = self {
            *self = InitState::Running;
        }
    }

    /// Checkpoint: Running or Paused -> Checkpointing.
    pub fn checkpoint(&mut self, id: &str) -> Result<()> {
        let paused = match self {
            InitState::Running => false,
            InitState::Paused => true,
            _ => return Err(self.refuse(id, "checkpoint")),
        };
        *self = InitState::Checkpointing { paused, exit: None };
        Ok(())
    }

    /// The dump ended (well or not): back to Running or Paused, or Stopped
    /// with the exit that came meanwhile (returned, to be reported now).
    pub fn checkpointed(&mut self) -> Option<Exit> {
        let InitState::Checkpointing { paused, exit } = *self else {
            out_of_order("checkpointed", self);
            return None;
        };
        *self = match (exit, paused) {
            (Some(exit), _) => InitState::Stopped(exit),
            (None, true) => InitState::Paused,
            (None, false) => InitState::Running,
        };
        exit
    }

    /// Adding (and starting) an exec: only in a running container. A
    /// paused one would freeze the new process half-way through its start.
    pub fn exec(&self, id: &str) -> Result<()> {
        match self {
            InitState::Running => Ok(()),
            _ => Err(self.refuse(id, "exec in")),
        }
    }

    /// Update of the cgroup's resources: once the cgroup exists and while
    /// no dump reads it.
    pub fn update(&self, id: &str) -> Result<()> {
        match self {
            InitState::Created
            | InitState::Starting { .. }
            | InitState::Running
            | InitState::Paused => Ok(()),
            _ => Err(self.refuse(id, "update")),
        }
    }

    /// Stats: whenever the cgroup exists (reading it does not disturb a
    /// dump).
    pub fn stats(&self, id: &str) -> Result<()> {
        match self {
            InitState::Created
            | InitState::Starting { .. }
            | InitState::Running
            | InitState::Paused
            | InitState::Checkpointing { .. } => Ok(()),
            _ => Err(self.refuse(id, "read stats of")),
        }
    }

    /// ResizePty and CloseIO of the init: while its stdio is ours.
    pub fn io(&self, id: &str) -> Result<()> {
        match self {
            InitState::Created
            | InitState::Starting { .. }
            | InitState::Running
            | InitState::Paused
            | InitState::Checkpointing { .. } => Ok(()),
            _ => Err(self.refuse(id, "use the stdio of")),
        }
    }
}

fn gone(id: &str) -> Error {
    Error::NotFound(format!("container {id} does not exist"))
}

/// The state of an exec process. Whether it can run also depends on its
/// container's [`InitState`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecState {
    /// Added, not started.
    Created,
    Running,
    Stopped,
}

fn exec_error(id: &str, exec_id: &str, verb: &str, why: &str) -> Error {
    Error::FailedPrecondition(format!(
        "cannot {verb} exec {exec_id} of container {id}: {why}"
    ))
}

impl ExecState {
    /// What State reports: a running exec of a paused container is paused.
    pub fn status(&self, init: &InitState) -> Status {
        match (self, init.status()) {
            (ExecState::Created, _) => Status::Created,
            (ExecState::Running, Status::Paused) => Status::Paused,
            (ExecState::Running, _) => Status::Running,
            (ExecState::Stopped, _) => Status::Stopped,
        }
    }

    pub fn start(&self, id: &str, exec_id: &str, init: &InitState) -> Result<()> {
        match self {
            ExecState::Created => init.exec(id),
            _ => Err(exec_error(
                id,
                exec_id,
                "start",
                "it has already been started",
            )),
        }
    }

    pub fn started(&mut self) {
        *self = ExecState::Running;
    }

    /// Its Start failed: it never ran, and never will.
    pub fn start_failed(&mut self) {
        *self = ExecState::Stopped;
    }

    /// Whether an exit is news (the exec was running).
    pub fn exited(&mut self) -> bool {
        std::mem::replace(self, ExecState::Stopped) == ExecState::Running
    }

    pub fn kill(&self, id: &str, exec_id: &str) -> Result<()> {
        match self {
            ExecState::Created => Err(exec_error(id, exec_id, "signal", "it has not been started")),
            ExecState::Running => Ok(()),
            ExecState::Stopped => Err(Error::NotFound(format!(
                "cannot signal exec {exec_id} of container {id}: process already finished"
            ))),
        }
    }

    pub fn delete(&self, id: &str, exec_id: &str) -> Result<()> {
        match self {
            ExecState::Running => Err(exec_error(
                id,
                exec_id,
                "delete",
                "it is still running; stop it first (or force the delete)",
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests;
