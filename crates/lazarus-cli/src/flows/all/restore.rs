//! `restore --all`: the recorded units in order, each through the import
//! flow; the record follows every step, so a killed run is finished by
//! the next without duplicates.
//!
//! What holds a unit's names (set aside, given back, removed) is in
//! `restore/names.rs`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::Utc;
use lazarus_core::config::Config;

use super::plan::{decide, Decision, Existing};
use super::platform::{self, Platform};
use super::record::{Entry, Record, State};
use super::{host, set_aside_name, RestoreAllArgs};
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::import::{self, FromSnapshot, ImportArgs};
use crate::report::{AllRestoreReport, AllRestored, Imported};

mod names;

use names::{clear_names, give_name_back, remove, remove_set_aside};

pub fn run(
    all: &RestoreAllArgs,
    template: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<AllRestoreReport> {
    crate::block_on(restore_all(all, template, endpoints, config))
}

async fn restore_all(
    all: &RestoreAllArgs,
    template: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<AllRestoreReport> {
    let started = Instant::now();
    // Without --import-dir, the set `checkpoint --all` put in the store.
    let dir = all
        .import_dir
        .clone()
        .unwrap_or_else(|| super::store::set_dir(config));
    let mut record = Record::read(&dir)?;
    // A new kernel or CRIU is said; refused only when CRIU's check fails
    // on it, before anything is touched.
    let notes = platform::judge(&record.platform, &Platform::current(config), || {
        platform::criu_check(&config.criu_path)
    })?;
    let units: Vec<Vec<Entry>> = record
        .units()
        .into_iter()
        .map(|u| u.into_iter().cloned().collect())
        .collect();
    let mut lines = Vec::new();
    for unit in units {
        let existing = match existing_of(&unit, endpoints).await {
            Ok(x) => x,
            Err(err) => {
                lines.extend(unit.iter().map(|e| line(e, "failed", None, Some(&err))));
                continue;
            }
        };
        let decisions: Vec<Decision> = unit
            .iter()
            .zip(&existing)
            .map(|(e, x)| decide(e, x.as_ref()))
            .collect();
        if decisions
            .iter()
            .all(|d| matches!(d, Decision::AlreadyRunning { .. }))
        {
            lines.extend(keep_running(all, &mut record, &unit, &decisions, endpoints).await);
            if !all.dry_run {
                record.write(&dir)?;
            }
            continue;
        }
        let blocked = blocked(&unit, &decisions);
        if !blocked.is_empty() {
            let err = Error::Refused(blocked.join("; "));
            lines.extend(unit.iter().map(|e| line(e, "failed", None, Some(&err))));
            continue;
        }
        if all.dry_run {
            let would = |(e, d)| line(e, would_restore(d), None, None);
            lines.extend(unit.iter().zip(&decisions).map(would));
            continue;
        }
        lines.extend(
            restore_unit(
                &dir,
                &mut record,
                &unit,
                &decisions,
                &existing,
                template,
                endpoints,
                config,
            )
            .await?,
        );
    }
    finish(all, dir, &record, lines, notes, started, config)
}

/// The report of the run; a record every entry of which runs again is
/// retired (it becomes `lazarus-all.restored.json`), and a stored set's
/// snapshots leave the store.
fn finish(
    all: &RestoreAllArgs,
    dir: PathBuf,
    record: &Record,
    lines: Vec<AllRestored>,
    notes: Vec<String>,
    started: Instant,
    config: &Config,
) -> Result<AllRestoreReport> {
    let failed = lines.iter().filter(|l| l.error.is_some()).count();
    let complete = !all.dry_run && record.entries.iter().all(|e| e.state == State::Restored);
    let mut notes = notes;
    if complete {
        Record::retire(&dir)?;
        let mut ids: Vec<String> = record
            .entries
            .iter()
            .filter_map(|e| e.snapshot.clone())
            .collect();
        ids.dedup();
        notes.extend(super::store::release(config, &ids));
    }
    Ok(AllRestoreReport {
        dir,
        dry_run: all.dry_run,
        restored: lines.iter().filter(|l| l.outcome == "restored").count(),
        already_running: lines
            .iter()
            .filter(|l| l.outcome == "already running")
            .count(),
        failed,
        complete,
        containers: lines,
        notes,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// What holds each of the unit's names on this host now, if anything.
async fn existing_of(unit: &[Entry], endpoints: &Endpoints) -> Result<Vec<Option<Existing>>> {
    let mut existing = Vec::with_capacity(unit.len());
    for e in unit {
        existing.push(host::existing(&e.engine, &e.namespace, &e.name, endpoints).await?);
    }
    Ok(existing)
}

/// A unit whose every member runs already (a run killed between its
/// restore and its record, or a second run): each is recorded restored,
/// and what that killed run had not done yet is done.
async fn keep_running(
    all: &RestoreAllArgs,
    record: &mut Record,
    unit: &[Entry],
    decisions: &[Decision],
    endpoints: &Endpoints,
) -> Vec<AllRestored> {
    let mut lines = Vec::with_capacity(unit.len());
    for (e, d) in unit.iter().zip(decisions) {
        let Decision::AlreadyRunning { id } = d else {
            unreachable!()
        };
        if !all.dry_run {
            if let Some(r) = record.entry_mut(&e.engine, &e.namespace, &e.name) {
                r.state = State::Restored;
                r.restored_id = Some(id.clone());
            }
        }
        let mut l = line(e, "already running", Some(id.clone()), None);
        if e.state == State::Checkpointed && !all.dry_run {
            // A run killed between its restore and its record: the
            // policy may not have been put back yet, nor the
            // checkpointed container set aside removed.
            l.restart_policy = put_back_policy(e, id, endpoints).await;
            if let Err(err) = remove_set_aside(e, endpoints).await {
                eprintln!("lazarus: warning: {err}");
            }
        }
        lines.push(l);
    }
    lines
}

/// Why the unit cannot come back (names held by what Lazarus did not
/// make, or only part of a group running); empty if it can.
fn blocked(unit: &[Entry], decisions: &[Decision]) -> Vec<String> {
    unit.iter()
        .zip(decisions)
        .filter_map(|(e, d)| match d {
            Decision::Conflict(why) => Some(why.clone()),
            Decision::AlreadyRunning { .. } => Some(format!(
                "{} runs already but other members of its group do not: a group comes back \
                 whole; stop it (docker rm -f), then run restore --all again",
                e.name
            )),
            _ => None,
        })
        .collect()
}

/// What a dry run says of a member it would restore.
fn would_restore(d: &Decision) -> &'static str {
    match d {
        Decision::ReplaceCheckpointed => {
            "would restore (replacing its stopped checkpointed container)"
        }
        Decision::RemoveLeftover => "would restore (removing what an interrupted restore left)",
        _ => "would restore",
    }
}

/// Sets aside what holds the unit's names, restores the unit from its
/// archive, records it, puts the restart policies back; on failure puts
/// back what was set aside. Errors only when the record cannot be written.
#[allow(clippy::too_many_arguments)]
async fn restore_unit(
    dir: &Path,
    record: &mut Record,
    unit: &[Entry],
    decisions: &[Decision],
    existing: &[Option<Existing>],
    template: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<Vec<AllRestored>> {
    let started = Instant::now();
    if let Err(err) = volumes_here(unit, endpoints).await {
        return Ok(unit
            .iter()
            .map(|e| line(e, "failed", None, Some(&err)))
            .collect());
    }
    mark_started(record, unit, dir)?;
    let prepared = clear_names(unit, decisions, existing, endpoints).await?;
    let args = import_args(dir, &unit[0], template, config);
    let restored = match prepared {
        Err(err) => Err(err),
        Ok(()) => import::run(&args, endpoints, config).await.map(made_by),
    };
    let restored = match restored {
        Err(err) if prepared_ok_and_name_taken(&err) => {
            // Looked at again once: a killed run's late container under the
            // name is this restore's (removed, or running already).
            let entries = as_recorded(record, unit);
            second_look(&entries, endpoints, &args, config, err).await
        }
        r => r,
    };
    let restored = match restored {
        Ok(r) => r,
        Err(err) => return Ok(failed_unit(unit, err, endpoints).await),
    };
    let seconds = started.elapsed().as_secs_f64();
    settle(record, dir, unit, &restored, seconds, endpoints).await
}

/// The import of the unit, whose `first` entry names its archive or
/// snapshot; the rest of the options are the command's (`template`).
fn import_args(dir: &Path, first: &Entry, template: &ImportArgs, config: &Config) -> ImportArgs {
    // A store-backed set's container comes straight out of its snapshot
    // (every block and file checked) into the import's scratch directory.
    ImportArgs {
        file: match &first.snapshot {
            Some(id) => PathBuf::from(format!("snapshot {id}")),
            None => dir.join(&first.archive),
        },
        snapshot: first.snapshot.as_ref().map(|id| FromSnapshot {
            store_root: config.store_root.clone(),
            id: id.clone(),
            replaces: None,
        }),
        name: (first.group.is_none()).then(|| first.name.clone()),
        namespace: (first.engine != "docker").then(|| first.namespace.clone()),
        json: true,
        // The volumes stayed on this host (checkpoint --all leaves them
        // out of the archive): the container gets them as they are.
        ignore_volumes: true,
        ..template.clone()
    }
}

/// The unit's entries as the record has them now (else as given).
fn as_recorded(record: &mut Record, unit: &[Entry]) -> Vec<Entry> {
    unit.iter()
        .map(|e| {
            record
                .entry_mut(&e.engine, &e.namespace, &e.name)
                .map(|r| r.clone())
                .unwrap_or_else(|| e.clone())
        })
        .collect()
}

/// Recorded first: whatever this run makes or sets aside from here on, a
/// run after it killed tells as this restore's. The first attempt's time
/// is kept: what any attempt made under the name (a killed run's request
/// may even finish in the engine after the next run looked) is this
/// restore's.
fn mark_started(record: &mut Record, unit: &[Entry], dir: &Path) -> Result<()> {
    let began = Utc::now();
    for e in unit {
        if let Some(r) = record.entry_mut(&e.engine, &e.namespace, &e.name) {
            r.restore_started_at.get_or_insert(began);
        }
    }
    record.write(dir)
}

/// The unit failed with `err`: the checkpointed containers set aside get
/// their names back, and every member's line says the failure.
async fn failed_unit(unit: &[Entry], mut err: Error, endpoints: &Endpoints) -> Vec<AllRestored> {
    for e in unit {
        if let Err(c) = give_name_back(e, endpoints).await {
            err = err.with_cleanup(Some(format!(
                "the checkpointed container {} was not given its name back: {c}",
                set_aside_name(&e.name)
            )));
        }
    }
    unit.iter()
        .map(|e| line(e, "failed", None, Some(&err)))
        .collect()
}

/// The unit runs again (`made`: each member's name and id): the policies
/// back and the set-aside containers gone first, the record last: an
/// entry recorded back has nothing left to do, and a run killed before
/// the record finds the rest done again (both are idempotent).
async fn settle(
    record: &mut Record,
    dir: &Path,
    unit: &[Entry],
    made: &[(String, String)],
    seconds: f64,
    endpoints: &Endpoints,
) -> Result<Vec<AllRestored>> {
    let mut lines = Vec::new();
    for e in unit {
        let id = made
            .iter()
            .find(|(n, _)| *n == e.name)
            .map(|(_, id)| id.clone());
        let mut l = line(e, "restored", id.clone(), None);
        l.restore_seconds = Some(seconds);
        if let Some(id) = &id {
            l.restart_policy = put_back_policy(e, id, endpoints).await;
        }
        if let Err(err) = remove_set_aside(e, endpoints).await {
            eprintln!(
                "lazarus: warning: {} (the checkpointed {}) stays: {err}",
                set_aside_name(&e.name),
                e.name
            );
        }
        lines.push(l);
    }
    for (e, l) in unit.iter().zip(&lines) {
        if let Some(r) = record.entry_mut(&e.engine, &e.namespace, &e.name) {
            r.state = State::Restored;
            r.restored_id = l.id.clone();
        }
    }
    record.write(dir)?;
    Ok(lines)
}

/// The (name, id) of each container an import made.
fn made_by(imported: Imported) -> Vec<(String, String)> {
    match imported {
        Imported::One(r) => vec![(r.name, r.id)],
        Imported::Group(g) => g.members.into_iter().map(|m| (m.name, m.id)).collect(),
    }
}

/// The import found the name taken (Docker's conflict, containerd's
/// "already exists").
fn prepared_ok_and_name_taken(err: &Error) -> bool {
    err.to_string().contains("already exists")
}

/// After an import refused over a taken name: each entry decided again;
/// all running as this restore's made them: done; leftovers of it: removed
/// and the import tried once more; anything else: the first error.
async fn second_look(
    unit: &[Entry],
    endpoints: &Endpoints,
    args: &ImportArgs,
    config: &Config,
    first: Error,
) -> Result<Vec<(String, String)>> {
    let mut decisions = Vec::new();
    for e in unit {
        let x = host::existing(&e.engine, &e.namespace, &e.name, endpoints).await?;
        decisions.push((decide(e, x.as_ref()), x));
    }
    if decisions
        .iter()
        .all(|(d, _)| matches!(d, Decision::AlreadyRunning { .. }))
    {
        return Ok(unit
            .iter()
            .zip(decisions)
            .map(|(e, (_, x))| (e.name.clone(), x.map(|x| x.id).unwrap_or_default()))
            .collect());
    }
    if !decisions
        .iter()
        .any(|(d, _)| matches!(d, Decision::RemoveLeftover))
    {
        return Err(first);
    }
    for (e, (d, x)) in unit.iter().zip(&decisions) {
        if let (Decision::RemoveLeftover, Some(x)) = (d, x) {
            remove(e, &x.id, endpoints).await?;
        }
    }
    import::run(args, endpoints, config).await.map(made_by)
}

/// Every named Docker volume the unit's containers had is still on this
/// host. Docker would make a missing one afresh, empty, and the restored
/// process would find its data gone: refused by name instead.
async fn volumes_here(unit: &[Entry], endpoints: &Endpoints) -> Result<()> {
    let mut gone = Vec::new();
    for e in unit.iter().filter(|e| e.engine == "docker") {
        for v in e.volumes.iter().filter(|v| v.kind == "volume") {
            if Docker::new(&endpoints.docker)?
                .volume(&v.source)
                .await?
                .is_none()
            {
                gone.push(format!("{} (at {} in {})", v.source, v.destination, e.name));
            }
        }
    }
    if gone.is_empty() {
        return Ok(());
    }
    Err(Error::NotFound(format!(
        "volume {} is gone from this host: its contents were not in the archive (a reboot \
         keeps volumes on disk); bring the volume back (docker volume create, then its \
         data), then run restore --all again",
        gone.join(", ")
    )))
}

/// Puts a Docker container's recorded restart policy back; what was put
/// back, for the report (a failure is a warning: the container runs).
async fn put_back_policy(e: &Entry, id: &str, endpoints: &Endpoints) -> Option<String> {
    let p = e.restart_policy.as_ref()?;
    let docker = Docker::new(&endpoints.docker).ok()?;
    match docker
        .set_restart_policy(id, &p.name, p.maximum_retry_count)
        .await
    {
        Ok(()) => Some(p.name.clone()),
        Err(err) => {
            eprintln!(
                "lazarus: warning: {} runs, but its restart policy {} was not put back: {err}",
                e.name, p.name
            );
            None
        }
    }
}

fn line(e: &Entry, outcome: &str, id: Option<String>, error: Option<&Error>) -> AllRestored {
    AllRestored {
        engine: e.engine.clone(),
        namespace: e.namespace.clone(),
        name: e.name.clone(),
        group: e.group.clone(),
        outcome: outcome.into(),
        id,
        restore_seconds: None,
        restart_policy: None,
        error: error.map(|err| err.to_string()),
    }
}
