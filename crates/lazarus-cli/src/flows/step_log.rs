//! The flows' fakes in unit tests: each records the steps a flow asked of
//! it, in order, and fails the ones a test names.

use std::cell::RefCell;

use crate::error::{Error, Result};

/// Steps asked, in order; those in `fail` fail (as refused).
#[derive(Default)]
pub struct StepLog {
    pub fail: Vec<&'static str>,
    log: RefCell<Vec<String>>,
}

impl StepLog {
    /// A log whose steps named in `fail` fail.
    pub fn failing(fail: &[&'static str]) -> StepLog {
        StepLog {
            fail: fail.to_vec(),
            ..Default::default()
        }
    }

    /// Records `step`; fails it if the test named it.
    pub fn step(&self, step: &str) -> Result<()> {
        self.record(step);
        match self.fail.contains(&step) {
            true => Err(Error::Refused(format!("{step} failed"))),
            false => Ok(()),
        }
    }

    /// Records `step` without failing it (its caller decides how it fails).
    pub fn record(&self, step: &str) {
        self.log.borrow_mut().push(step.to_string());
    }

    /// The steps so far, comma-separated.
    pub fn log(&self) -> String {
        self.log.borrow().join(", ")
    }
}
