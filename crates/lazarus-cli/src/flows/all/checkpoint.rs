//! `checkpoint --all`: list, plan, then take each unit (up to
//! `--parallel` at once, each on its own thread and runtime), recording
//! every unit taken as soon as it is.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use chrono::Utc;
use lazarus_core::config::Config;

use super::plan::{self, Filter, Found, Unit};
use super::platform::Platform;
use super::record::{self, Entry, Record};
use super::{host, CheckpointAllArgs};
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::export::{Compress, ExportArgs};
use crate::flows::group;
use crate::report::{
    AllCheckpointReport, AllCheckpointed, ExportReport, GroupExportReport, LeftAlone,
};

/// What taking one unit asks of the host.
#[allow(async_fn_in_trait)] // Not a public API; one thread each, no Send needed.
pub trait Steps {
    /// `docker update --restart NAME:COUNT` of a Docker container.
    async fn set_restart_policy(&self, f: &Found, name: &str, count: u64) -> Result<()>;
    async fn export_one(&self, f: &Found, archive: &Path) -> Result<ExportReport>;
    async fn export_group(&self, members: &[Found], archive: &Path) -> Result<GroupExportReport>;
}

/// Checkpoints every planned unit into `all.export_dir`; the report names
/// each container with its outcome. Fails (after writing the record) if
/// any container failed.
pub fn run(
    all: &CheckpointAllArgs,
    template: &ExportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<AllCheckpointReport> {
    let started = Instant::now();
    // Without --export-dir, into the snapshot store (see `store.rs`).
    let into_store = all.export_dir.is_none();
    let dir = all
        .export_dir
        .clone()
        .unwrap_or_else(|| super::store::set_dir(config));
    let filters = all
        .filter
        .iter()
        .map(|f| Filter::parse(f))
        .collect::<Result<Vec<_>>>()?;
    let moved = record::prepare_dir(&dir)?;
    let plan = plan_running(&filters, template, endpoints, &dir, moved)?;
    let checkpointed_at = Utc::now();
    let record = Mutex::new(Record {
        format: record::FORMAT,
        host: hostname(),
        checkpointed_at,
        platform: Platform::current(config),
        entries: Vec::new(),
    });
    record.lock().unwrap().write(&dir)?;
    let workers = usize::from(all.parallel).min(plan.units.len()).max(1);
    let taking = Taking {
        dir: &dir,
        extension: match template.compress {
            Compress::Zstd => "tar.zst",
            Compress::None => "tar",
        },
        record: &record,
        into_store: into_store.then_some(checkpointed_at),
        template,
        endpoints,
        config,
    };
    let containers = taking.take_all(&plan.units, workers);
    let record = record.into_inner().unwrap();
    record.write(&dir)?;
    let failed = containers.iter().filter(|c| c.error.is_some()).count();
    let total_bytes = total_bytes(&containers);
    Ok(AllCheckpointReport {
        record: Record::path(&dir),
        dir,
        checkpointed: containers.len() - failed,
        failed,
        containers,
        left_alone: left_alone(&plan.left_alone),
        notes: plan.notes,
        total_bytes,
        total_seconds: started.elapsed().as_secs_f64(),
    })
}

/// The plan over the containers running now; a set `dir` held and
/// `record::prepare_dir` `moved` aside is said in its notes.
fn plan_running(
    filters: &[Filter],
    template: &ExportArgs,
    endpoints: &Endpoints,
    dir: &Path,
    moved: Option<PathBuf>,
) -> Result<plan::Plan> {
    let (found, docker_answered) = crate::block_on(host::running(endpoints))?;
    let mut plan = plan::plan_with(
        found,
        filters,
        template.namespace.as_deref(),
        docker_answered,
    );
    if let Some(aside) = moved {
        plan.notes.push(format!(
            "{} held a set not all restored yet: it was moved, whole, to {} (restore --all \
             --import-dir {} brings it back)",
            dir.display(),
            aside.display(),
            aside.display()
        ));
    }
    Ok(plan)
}

/// The report's lines for the containers the plan leaves alone.
fn left_alone(skipped: &[plan::Skipped]) -> Vec<LeftAlone> {
    skipped
        .iter()
        .map(|s| LeftAlone {
            engine: s.found.engine.clone(),
            namespace: s.found.namespace.clone(),
            name: s.found.name.clone(),
            id: s.found.id.clone(),
            reason: s.reason.clone(),
        })
        .collect()
}

/// What every worker of `checkpoint --all` shares: where the archives
/// go, the record, and what each export is given.
struct Taking<'a> {
    dir: &'a Path,
    extension: &'a str,
    record: &'a Mutex<Record>,
    /// Store-backed: each single container's archive goes into the store
    /// as a snapshot of the set taken at this time.
    into_store: Option<chrono::DateTime<Utc>>,
    template: &'a ExportArgs,
    endpoints: &'a Endpoints,
    config: &'a Config,
}

impl Taking<'_> {
    /// Takes every unit, `workers` at once (each on its own thread and
    /// runtime), recording each unit taken as soon as it is; the
    /// containers' lines in the plan's order.
    fn take_all(&self, units: &[Unit], workers: usize) -> Vec<AllCheckpointed> {
        // Each unit with the order of its first member.
        let mut queue = VecDeque::new();
        let mut order = 0;
        for unit in units {
            queue.push_back((order, unit));
            order += unit.members().len();
        }
        let queue = Mutex::new(queue);
        let results: Mutex<Vec<(usize, Vec<AllCheckpointed>)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..workers {
                s.spawn(|| loop {
                    let Some((order, unit)) = queue.lock().unwrap().pop_front() else {
                        break;
                    };
                    let archive = self.dir.join(unit.archive_name(self.extension));
                    let live = Live {
                        template: self.template,
                        endpoints: self.endpoints,
                        config: self.config,
                    };
                    let (mut reports, mut entries) = match crate::block_on(async {
                        Ok(take(&live, unit, order, &archive).await)
                    }) {
                        Ok(r) => r,
                        Err(e) => (failed(unit, &e), Vec::new()),
                    };
                    if let (Some(at), Unit::One(f), false) =
                        (&self.into_store, unit, entries.is_empty())
                    {
                        into_the_store(self.config, f, &archive, at, &mut reports, &mut entries);
                    }
                    if !entries.is_empty() {
                        let mut r = self.record.lock().unwrap();
                        r.entries.extend(entries);
                        r.entries.sort_by_key(|e| e.order);
                        if let Err(e) = r.write(self.dir) {
                            eprintln!("lazarus: warning: {e}");
                        }
                    }
                    results.lock().unwrap().push((order, reports));
                });
            }
        });
        let mut results = results.into_inner().unwrap();
        results.sort_by_key(|(o, _)| *o);
        results.into_iter().flat_map(|(_, r)| r).collect()
    }
}

/// The bytes of the archives written (a group's once; a container's
/// read into the store counted as the archive it was).
fn total_bytes(containers: &[AllCheckpointed]) -> u64 {
    let mut taken: Vec<(Option<&PathBuf>, Option<&String>, u64)> = containers
        .iter()
        .filter(|c| c.error.is_none())
        .map(|c| (c.archive.as_ref(), c.snapshot.as_ref(), c.archive_bytes))
        .collect();
    taken.dedup();
    taken.iter().map(|t| t.2).sum()
}

/// A single container's archive, read into the store: its report line
/// and record entry name the snapshot instead. Failing, the archive stays
/// and is what the record names (nothing is lost; the report says so).
fn into_the_store(
    config: &Config,
    f: &Found,
    archive: &Path,
    at: &chrono::DateTime<Utc>,
    reports: &mut [AllCheckpointed],
    entries: &mut [Entry],
) {
    match super::store::keep(config, archive, &f.name, at) {
        Ok(id) => {
            for r in reports.iter_mut() {
                r.archive = None;
                r.snapshot = Some(id.clone());
            }
            for e in entries.iter_mut() {
                e.archive.clear();
                e.snapshot = Some(id.clone());
            }
        }
        Err(e) => eprintln!(
            "lazarus: warning: {} stays an archive ({}): the snapshot store refused it: {e}",
            f.name,
            archive.display()
        ),
    }
}

/// Takes one unit: clears its Docker restart policies, checkpoints it,
/// puts the policies back if that failed. Returns the report's lines and
/// the record's entries (none on failure).
pub async fn take(
    steps: &impl Steps,
    unit: &Unit,
    order: usize,
    archive: &Path,
) -> (Vec<AllCheckpointed>, Vec<Entry>) {
    let members = unit.members();
    let mut cleared: Vec<&Found> = Vec::new();
    let mut result = Ok(());
    for f in &members {
        if f.restart_policy.is_some() {
            match steps.set_restart_policy(f, "no", 0).await {
                Ok(()) => cleared.push(f),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
    }
    let taken = match result {
        Err(e) => Err(e),
        Ok(()) => match unit {
            Unit::One(f) => steps.export_one(f, archive).await.map(|r| vec![r]),
            Unit::Compose { members, .. } => steps
                .export_group(members, archive)
                .await
                .map(|g| g.members),
        },
    };
    let reports = match taken {
        Ok(r) => r,
        Err(e) => {
            let e = put_policies_back(steps, &cleared, e).await;
            return (failed(unit, &e), Vec::new());
        }
    };
    let group = match unit {
        Unit::Compose { project, .. } => Some(project.as_str()),
        Unit::One(_) => None,
    };
    let file = archive
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let bytes = std::fs::metadata(archive).map(|m| m.len()).unwrap_or(0);
    let mut lines = Vec::new();
    let mut entries = Vec::new();
    for (i, f) in members.iter().enumerate() {
        let r = reports.iter().find(|r| r.id == f.id);
        lines.push(AllCheckpointed {
            engine: f.engine.clone(),
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            id: f.id.clone(),
            group: group.map(str::to_string),
            archive: Some(archive.to_path_buf()),
            snapshot: None,
            archive_bytes: bytes,
            frozen_seconds: r
                .and_then(|r| r.stats.frozen_time_us)
                .map(|us| us as f64 / 1e6),
            checkpoint_seconds: r.map_or(0.0, |r| r.checkpoint_seconds),
            outcome: "checkpointed".into(),
            error: None,
        });
        entries.push(plan::entry(order + i, f, &file, group));
    }
    (lines, entries)
}

/// The unit failed with `e` and runs on (the export's guarantee): the
/// restart policies cleared for it come back with it.
async fn put_policies_back(steps: &impl Steps, cleared: &[&Found], mut e: Error) -> Error {
    for f in cleared {
        let p = f.restart_policy.as_ref().expect("cleared ones had one");
        if let Err(c) = steps
            .set_restart_policy(f, &p.name, p.maximum_retry_count)
            .await
        {
            e = e.with_cleanup(Some(format!(
                "restart policy {} of {} not put back: {c}",
                p.name, f.name
            )));
        }
    }
    e
}

/// Every member of `unit` failed with `e` (and runs on).
fn failed(unit: &Unit, e: &Error) -> Vec<AllCheckpointed> {
    let group = match unit {
        Unit::Compose { project, .. } => Some(project.clone()),
        Unit::One(_) => None,
    };
    unit.members()
        .iter()
        .map(|f| AllCheckpointed {
            engine: f.engine.clone(),
            namespace: f.namespace.clone(),
            name: f.name.clone(),
            id: f.id.clone(),
            group: group.clone(),
            archive: None,
            snapshot: None,
            archive_bytes: 0,
            frozen_seconds: None,
            checkpoint_seconds: 0.0,
            outcome: "failed".into(),
            error: Some(e.to_string()),
        })
        .collect()
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// The real steps: the export and group flows, Docker's update.
struct Live<'a> {
    template: &'a ExportArgs,
    endpoints: &'a Endpoints,
    config: &'a Config,
}

impl Live<'_> {
    /// The export's arguments for `archive`: the template's flags, the
    /// container stopped, no progress drawn (several run at once), and no
    /// volume in the archive: a reboot keeps them on this host's disk, so
    /// a copy would only lengthen the shutdown (and `restore --all` would
    /// find the volume there already). `restore --all` uses them as they
    /// are and refuses a container whose volume is gone.
    fn args(&self, archive: &Path) -> ExportArgs {
        ExportArgs {
            ignore_volumes: true,
            container: None,
            group: Vec::new(),
            compose: None,
            pod: None,
            export: archive.to_path_buf(),
            leave_running: false,
            json: true,
            namespace: None,
            from_docker_checkpoint: None,
            encrypt: None,
            migration: None,
            ..self.template.clone()
        }
    }
}

impl Steps for Live<'_> {
    async fn set_restart_policy(&self, f: &Found, name: &str, count: u64) -> Result<()> {
        Docker::new(&self.endpoints.docker)?
            .set_restart_policy(&f.id, name, count)
            .await
    }

    async fn export_one(&self, f: &Found, archive: &Path) -> Result<ExportReport> {
        let args = ExportArgs {
            container: Some(f.name.clone()),
            namespace: (!f.is_docker()).then(|| f.namespace.clone()),
            ..self.args(archive)
        };
        // Stopped only once its archive is whole (a frozen checkpoint of
        // one, under its guard: a shutdown that kills this never loses it).
        group::stop_one(&args, self.endpoints, self.config).await
    }

    async fn export_group(&self, members: &[Found], archive: &Path) -> Result<GroupExportReport> {
        let args = ExportArgs {
            group: members.iter().map(|m| m.name.clone()).collect(),
            // Frozen and dumped together, so both ends of a connection
            // between members are in the archive and come back together
            // (at their fixed addresses): a Compose project's connections
            // are taken without being asked. One to outside the project
            // is taken too; after a reboot its peer resets it, as it
            // would any connection across a reboot.
            tcp_established: true,
            ..self.args(archive)
        };
        group::checkpoint(&args, self.endpoints, self.config).await
    }
}

#[cfg(test)]
mod tests;
