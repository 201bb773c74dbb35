//! Exits: every child the reaper collects, claimed as one of ours by its
//! pid, its process's last output drained, recorded and published (an
//! init's only after its execs' exits).

use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task::*;
use containerd_shim_protos::protobuf::MessageField;

use super::{ClaimedExit, TaskService};
use crate::container::{Container, ContainerCell};
use crate::process::{timestamp, Exit};

/// How long an exit waits for the process's last output to reach containerd.
const OUTPUT_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an init's exit waits for the exits of its execs to be
/// reported first (they die with it; a drain each, in parallel).
const EXEC_EXITS_WAIT: Duration = Duration::from_secs(5);

impl TaskService {
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
    pub(super) fn handle_exit(&self, cell: &ContainerCell, exec_id: &str, code: i32) {
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
    pub(super) fn report_exit(&self, c: &mut Container, exec_id: &str, exit: Exit) {
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
