//! The sender's move proper, once the receiver has prepared: dump, hand
//! over, let go, confirm. The source is frozen from its dump on; any
//! failure until the receiver says the container runs there calls the
//! dump off (the source runs on here, thawed where it stopped).
//!
//! Written against [`Steps`], so that this order and the call-offs are
//! unit-tested on a fake move (the real steps, in [`super::send`], need a
//! container, its shim and a receiver).

use std::time::Instant;

use lazarus_core::channel::ChannelError;

use super::send::MigrateArgs;
use crate::error::{Error, Result};
use crate::report::{ExportReport, ImportReport, MigrationReport, PageStreamReport};

/// What a migration does once the receiver has prepared, one step at a time.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Steps {
    /// The dump into the migration's archive (the source stopped, its
    /// memory through the migration's page server). A failed dump leaves
    /// the container running (the export's own guarantee).
    async fn dump(&mut self) -> Result<ExportReport>;
    /// Post-copy: the dump's page server listens now; the tunnel may go.
    fn pages_go(&mut self);
    /// Streams the archive; the receiver's word that the container runs
    /// there (its restore report).
    fn hand_over(&mut self) -> Result<Option<ImportReport>>;
    /// Stop-and-copy: releases the source's dump, which ends its task.
    async fn release(&mut self) -> Result<()>;
    /// Tells the receiver to keep its copy (without this word it removes it).
    fn confirm(&mut self) -> std::result::Result<(), ChannelError>;
    /// Post-copy: waits for the memory to have followed (seconds, bytes).
    async fn memory_followed(&mut self) -> Result<(f64, u64)>;
    /// Calls the dump off after `error`: the source runs on here.
    async fn call_off(&mut self, error: Error) -> Error;
    /// What went through the page tunnel, once it has ended.
    fn page_stream(&mut self) -> PageStreamReport;
    /// `--rm`: removes the source (a failure is a warning: it runs there).
    async fn remove_source(&mut self);
}

/// Moves `container` (its name here) as `args` ask; see the module doc.
/// The report's `total_seconds` is the caller's.
pub async fn run(
    steps: &mut impl Steps,
    args: &MigrateArgs,
    container: &str,
    postcopy: bool,
) -> Result<MigrationReport> {
    let frozen = Instant::now();
    let exported = match steps.dump().await {
        Ok(v) => v,
        Err(e) => return Err(steps.call_off(e).await),
    };
    if postcopy {
        steps.pages_go();
    }
    let archived = frozen.elapsed().as_secs_f64();
    let sent = Instant::now();
    let restored = match steps.hand_over() {
        Ok(v) => v,
        Err(e) => return Err(steps.call_off(e).await),
    };
    let downtime = frozen.elapsed().as_secs_f64();
    let restore_seconds = restored.as_ref().map(|r| r.restore_seconds);
    let transfer = sent.elapsed().as_secs_f64() - restore_seconds.unwrap_or(0.0);
    let name = args.name.as_deref().unwrap_or(container);
    let memory = let_go(steps, args, name, postcopy).await?;
    let page_stream = steps.page_stream();
    if args.rm {
        steps.remove_source().await;
    }
    Ok(MigrationReport {
        container: container.to_string(),
        to: args.to.clone(),
        mode: if postcopy { "postcopy" } else { "stopcopy" }.into(),
        memory_bytes: memory
            .map(|m| m.1)
            .or(restored.as_ref().and_then(|r| r.pages_bytes)),
        restored,
        source: if args.rm { "removed" } else { "stopped" }.into(),
        downtime_seconds: downtime,
        checkpoint_seconds: exported.checkpoint_seconds,
        archive_seconds: archived,
        transfer_seconds: transfer,
        restore_seconds,
        archive_bytes: exported.archive_bytes,
        memory_seconds: memory.map(|m| m.0),
        // The caller's, from the connection on.
        total_seconds: 0.0,
        page_stream: Some(page_stream),
        not_carried: exported.not_carried,
    })
}

/// The container runs there (as `name`): lets the source go and
/// confirms; then, post-copy, waits for its memory to follow (seconds,
/// bytes).
async fn let_go(
    steps: &mut impl Steps,
    args: &MigrateArgs,
    name: &str,
    postcopy: bool,
) -> Result<Option<(f64, u64)>> {
    // Stop-and-copy: the source, frozen at the end of its dump, ends now
    // (before the receiver keeps its copy: never two running).
    if !postcopy {
        if let Err(e) = steps.release().await {
            return Err(steps.call_off(e).await);
        }
    }
    // Without this word the receiver removes its copy. Lost after a
    // stop-and-copy source was let go, so is the container: said plainly.
    // (A post-copy source, still frozen, runs on once its stream fails.)
    if let Err(e) = steps.confirm() {
        return Err(match postcopy {
            true => e.into(),
            false => Error::Refused(format!(
                "{name} ran on {} and was let go here, but the confirmation could not be \
                 sent ({e}): the receiver removes its unconfirmed copy within 30 s",
                args.to
            )),
        });
    }
    match postcopy {
        true => Ok(Some(steps.memory_followed().await?)),
        false => Ok(None),
    }
}

#[cfg(test)]
mod tests;
