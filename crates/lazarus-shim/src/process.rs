//! One process of a task (the container's init or an exec): its pid, stdio
//! and exit. What it may do next is `crate::state`'s business.

use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use containerd_shim_protos::api::Status as ApiStatus;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;

use crate::io::{ProcessStreams, StdioPaths};

/// What State reports (see `crate::state` for the states behind it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Set up but not started (init: created by the runtime or waiting for
    /// a restore; exec: recorded).
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn api(self) -> ApiStatus {
        match self {
            Status::Created => ApiStatus::CREATED,
            Status::Running => ApiStatus::RUNNING,
            Status::Paused => ApiStatus::PAUSED,
            Status::Stopped => ApiStatus::STOPPED,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub code: u32,
    pub at: SystemTime,
}

impl Exit {
    pub fn timestamp(&self) -> Timestamp {
        timestamp(self.at)
    }
}

pub fn timestamp(at: SystemTime) -> Timestamp {
    let d = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    ts
}

/// Where Wait blocks until the process has exited.
#[derive(Default)]
pub struct ExitCell {
    exit: Mutex<Option<Exit>>,
    exited: Condvar,
}

impl ExitCell {
    pub fn set(&self, exit: Exit) {
        *self.exit.lock().unwrap() = Some(exit);
        self.exited.notify_all();
    }

    pub fn get(&self) -> Option<Exit> {
        *self.exit.lock().unwrap()
    }

    pub fn wait(&self) -> Exit {
        let mut guard = self.exit.lock().unwrap();
        loop {
            if let Some(exit) = *guard {
                return exit;
            }
            guard = self.exited.wait(guard).unwrap();
        }
    }
}

pub struct Process {
    /// The exec id; empty for the container's init.
    pub exec_id: String,
    /// 0 until the process exists.
    pub pid: i32,
    pub stdio: StdioPaths,
    pub exit: Arc<ExitCell>,
    /// Our side of its stdio; gone once it has exited.
    pub streams: Option<ProcessStreams>,
    /// An exec's OCI process spec (JSON), kept until Start.
    pub spec: Vec<u8>,
}

impl Process {
    pub fn new(exec_id: &str, stdio: StdioPaths, spec: Vec<u8>) -> Self {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            stdio,
            exit: Arc::default(),
            streams: None,
            spec,
        }
    }

    pub fn is_init(&self) -> bool {
        self.exec_id.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_returns_once_the_exit_is_set() {
        let cell = Arc::new(ExitCell::default());
        let waiter = {
            let cell = cell.clone();
            std::thread::spawn(move || cell.wait())
        };
        let exit = Exit {
            code: 137,
            at: SystemTime::UNIX_EPOCH,
        };
        cell.set(exit);
        assert_eq!(waiter.join().unwrap(), exit);
        assert_eq!(cell.get(), Some(exit));
    }
}
