//! The group checkpoint proper, under its guard: lock every member's
//! network, freeze every member, dump each (left frozen), write the group
//! archive, then stop or thaw every member (and unlock). Any failure
//! before the archive is whole unlocks and thaws them all: they run on,
//! and no archive is written.
//!
//! Written against [`Steps`], so that its order and its rollbacks are
//! unit-tested on a fake group (the real steps, [`super::Live`], need root
//! and a containerd).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};
use crate::report::{ExportReport, GroupExportReport};

/// How long a stopped member may take to be reported stopped.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// What the group checkpoint does to member `i`, one step at a time.
// Not a public API: `async fn` in a trait is fine for the two
// implementations here (no `Send` bound is needed: one thread).
#[allow(async_fn_in_trait)]
pub trait Steps {
    fn count(&self) -> usize;
    fn name(&self, i: usize) -> &str;
    /// Locks the member's network (nothing but loopback passes); false if
    /// there was nothing to lock (the host's namespace).
    fn lock(&self, i: usize) -> Result<bool>;
    fn unlock(&self, i: usize) -> Result<()>;
    async fn pause(&self, i: usize) -> Result<()>;
    async fn resume(&self, i: usize) -> Result<()>;
    /// SIGKILL to every process of the member.
    async fn kill(&self, i: usize) -> Result<()>;
    /// The member's task has stopped (or is gone).
    async fn stopped(&self, i: usize) -> Result<bool>;
    /// Dumps the (frozen) member into its own archive, leaving it frozen.
    async fn dump(&self, i: usize) -> Result<(ExportReport, PathBuf)>;
    /// Makes the destination from the members' archives: the group
    /// archive, or a single container's own archive (encrypted if asked).
    fn write_group(
        &self,
        files: &[PathBuf],
        frozen_at: DateTime<Utc>,
        left_running: bool,
        dest: &Path,
    ) -> Result<()>;
}

/// A member as the group holds it: whether its network is locked and
/// whether it is paused (both undone on failure).
#[derive(Clone, Copy)]
struct Held {
    i: usize,
    locked: bool,
    paused: bool,
}

/// Checkpoints the group at one instant into `dest`; see the module doc.
pub async fn freeze_and_dump(
    steps: &impl Steps,
    leave_running: bool,
    dest: &Path,
) -> Result<GroupExportReport> {
    let started = Instant::now();
    let frozen_at = Utc::now();
    let held = lock_and_freeze(steps).await?;
    let freeze_seconds = started.elapsed().as_secs_f64();
    let mut files = Vec::with_capacity(held.len());
    let mut reports = Vec::with_capacity(held.len());
    for h in &held {
        match steps.dump(h.i).await {
            Ok((report, file)) => {
                reports.push(report);
                files.push(file);
            }
            Err(e) => return Err(thaw_after(steps, steps.name(h.i), e, &held).await),
        }
    }
    if let Err(e) = steps.write_group(&files, frozen_at, leave_running, dest) {
        return Err(thaw_after(steps, "writing the group archive", e, &held).await);
    }
    let frozen_seconds = started.elapsed().as_secs_f64();
    let outcome = match leave_running {
        true => thaw(steps, &held).await,
        false => stop(steps, &held).await,
    };
    if let Some(problems) = outcome {
        // The archive is whole; what went wrong afterwards is reported.
        eprintln!("lazarus: warning: after the group checkpoint: {problems}");
    }
    Ok(GroupExportReport {
        archive: dest.to_path_buf(),
        members: reports,
        stopped: !leave_running,
        freeze_seconds,
        frozen_seconds,
    })
}

/// Locks every member first, so that from the first freeze to the last
/// dump no packet passes between members (host::netlock); then freezes
/// every member. A failure thaws and unlocks what was done.
async fn lock_and_freeze(steps: &impl Steps) -> Result<Vec<Held>> {
    let mut held: Vec<Held> = Vec::with_capacity(steps.count());
    for i in 0..steps.count() {
        held.push(Held {
            i,
            locked: false,
            paused: false,
        });
        match steps.lock(i) {
            Ok(locked) => held[i].locked = locked,
            Err(e) => return Err(thaw_after(steps, steps.name(i), e, &held).await),
        }
    }
    for i in 0..held.len() {
        if let Err(e) = steps.pause(i).await {
            return Err(thaw_after(steps, steps.name(i), e, &held).await);
        }
        held[i].paused = true;
    }
    Ok(held)
}

/// Releases every member's network lock; the failures as text.
fn unlock(steps: &impl Steps, held: &[Held], failed: &mut Vec<String>) {
    for h in held.iter().filter(|h| h.locked) {
        if let Err(e) = steps.unlock(h.i) {
            failed.push(format!("{}: network lock: {e}", steps.name(h.i)));
        }
    }
}

/// `member` failed with `error`: thaws every member and says so, keeping
/// any thaw failure beside the original error.
async fn thaw_after(steps: &impl Steps, member: &str, error: Error, held: &[Held]) -> Error {
    let outcome = match thaw(steps, held).await {
        None => "every member was thawed and runs on; no archive was written".to_string(),
        Some(p) => format!("thawing the others failed too: {p}"),
    };
    Error::Group {
        member: member.to_string(),
        error: Box::new(error),
        outcome,
    }
}

/// Unlocks and thaws every member; the failures, if any, as one line.
async fn thaw(steps: &impl Steps, held: &[Held]) -> Option<String> {
    let mut failed = Vec::new();
    unlock(steps, held, &mut failed);
    for h in held.iter().filter(|h| h.paused) {
        if let Err(e) = steps.resume(h.i).await {
            failed.push(format!("{}: {e}", steps.name(h.i)));
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}

/// Stops every member: SIGKILL while frozen, then thawed so the signal
/// lands, then waits ([`STOP_WAIT`] each) until it is reported stopped.
async fn stop(steps: &impl Steps, held: &[Held]) -> Option<String> {
    let mut failed = Vec::new();
    for h in held {
        let name = steps.name(h.i);
        if let Err(e) = steps.kill(h.i).await {
            failed.push(format!("{name}: {e}"));
            continue;
        }
        // The kernel may end a frozen task on SIGKILL by itself (it did on
        // these hosts); only a task still frozen needs the thaw.
        if let Err(e) = steps.resume(h.i).await {
            if !matches!(steps.stopped(h.i).await, Ok(true)) {
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    // A namespace that outlives its container (a pod's) must not stay
    // locked.
    unlock(steps, held, &mut failed);
    for h in held {
        let deadline = Instant::now() + STOP_WAIT;
        loop {
            match steps.stopped(h.i).await {
                Ok(true) => break,
                _ if Instant::now() >= deadline => {
                    failed.push(format!(
                        "{} did not stop within {} s",
                        steps.name(h.i),
                        STOP_WAIT.as_secs()
                    ));
                    break;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}

#[cfg(test)]
mod tests;
