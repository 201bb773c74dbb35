//! A fake engine for the flows' unit tests: it records every call in a
//! [`StepLog`] (as "call id"), fails the calls a test names, and answers
//! from what the test set up. One fake serves every flow written against
//! [`Engine`] and [`Tasks`].

use std::cell::RefCell;
use std::collections::VecDeque;

use super::containerd::{CheckpointOptions, Status};
use super::seam::{Engine, ImageFound, Tasks};
use crate::error::Result;
use crate::flows::step_log::StepLog;

pub struct FakeEngine {
    pub kind: &'static str,
    /// Calls named here fail (as refused): "remove", "task_status"...
    pub log: StepLog,
    /// Container names the engine knows.
    pub containers: Vec<String>,
    /// What `find_image` answers.
    pub image: ImageFound,
    /// The task statuses `task_status` answers, one per call; the last
    /// one stays.
    pub statuses: RefCell<VecDeque<Option<Status>>>,
}

impl FakeEngine {
    /// A containerd with no containers, every image here, the task running.
    pub fn new(kind: &'static str) -> FakeEngine {
        FakeEngine {
            kind,
            log: StepLog::default(),
            containers: Vec::new(),
            image: ImageFound::Here("image".into()),
            statuses: RefCell::new([Some(Status::Running)].into()),
        }
    }

    pub fn failing(mut self, calls: &[&'static str]) -> FakeEngine {
        self.log = StepLog::failing(calls);
        self
    }

    /// The task reports these statuses in turn (the last one stays).
    pub fn statuses(self, s: &[Option<Status>]) -> FakeEngine {
        *self.statuses.borrow_mut() = s.iter().copied().collect();
        self
    }

    pub fn calls(&self) -> String {
        self.log.log()
    }

    fn call(&self, name: &'static str, id: &str) -> Result<()> {
        self.log.record(&format!("{name} {id}"));
        match self.log.fail.contains(&name) {
            true => Err(crate::error::Error::Refused(format!("{name} failed"))),
            false => Ok(()),
        }
    }
}

impl Engine for FakeEngine {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn exists(&self, name: &str) -> Result<bool> {
        self.call("exists", name)?;
        Ok(self.containers.iter().any(|c| c == name))
    }

    async fn find_image(&self, name: &str, _digest: &str) -> Result<ImageFound> {
        self.call("find_image", name)?;
        Ok(self.image.clone())
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.call("remove", id)
    }
}

impl Tasks for FakeEngine {
    async fn task_status(&self, id: &str) -> Result<Option<Status>> {
        self.call("task_status", id)?;
        let mut s = self.statuses.borrow_mut();
        Ok(match s.len() {
            0 => None,
            1 => s[0],
            _ => s.pop_front().flatten(),
        })
    }

    async fn checkpoint(&self, id: &str, _options: &CheckpointOptions) -> Result<()> {
        self.call("checkpoint", id)
    }

    async fn pause(&self, id: &str) -> Result<()> {
        self.call("pause", id)
    }

    async fn resume(&self, id: &str) -> Result<()> {
        self.call("resume", id)
    }

    async fn kill_all(&self, id: &str) -> Result<()> {
        self.call("kill_all", id)
    }
}
