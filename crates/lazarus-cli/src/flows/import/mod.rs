//! `lazarus restore --import FILE`: the archive is verified whole and
//! extracted to a private scratch directory before anything is created;
//! then a new container is made from it (through Docker when it came from
//! Docker, else through containerd), its root filesystem changes applied,
//! and it is started from the checkpoint. A failure after the container was
//! created removes it again: nothing is left behind; and if this process
//! dies first, its guard ([`crate::flows::restore_guard`]) removes it.
//!
//! Here: the arguments, decryption, verification and the import policy
//! (all before any engine is asked to make anything), and the order of the
//! steps; the extraction and the extracted files in `unpack.rs`, the
//! refusals said before any work in `preflight.rs`, what a restore made
//! (looked at and removed afterwards) in `made.rs`; the engines' restores
//! in `docker.rs` and `containerd.rs`, a group archive's in `group.rs`,
//! each against its own steps, unit-tested on a fake.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use lazarus_core::archive::{self, ArchiveConfig};

use lazarus_core::config::Config;
use lazarus_core::host::netlock::NetlockRequest;
use lazarus_core::security::authority;
use serde_json::Value;

use crate::engine::docker::Docker;

use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::{Error, Result};

use crate::flows::restore_guard::{Made, RestoreGuard};
use crate::grants::GrantArgs;
use crate::progress::{self, Progress};
use crate::report::{ImportReport, Imported};
use crate::seal;

mod containerd;
mod docker;
mod group;
mod made;
mod preflight;
mod unpack;
mod volumes;

#[cfg(test)]
mod tests;

pub use docker::{docker_image, image_refusal};
pub use made::{is_running, remove, remove_restored};
use preflight::{about_to_make, refuse_early};
use unpack::{apply_rootfs_diff, extract, read_config, read_engine_config, read_spec};

/// The name of the Docker checkpoint an import restores from (removed
/// once the container runs).
pub(crate) const IMPORT_CHECKPOINT: &str = "lazarus-import";
/// The snapshotter a containerd restore prepares the root filesystem with.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";

#[derive(clap::Args, Clone)]
pub struct ImportArgs {
    /// The archive to restore; - reads it from standard input
    #[arg(long = "import", short = 'i', value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// The new container's name (default: the checkpointed one's)
    #[arg(long)]
    pub name: Option<String>,
    /// Restore through containerd into this namespace (not Docker)
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Docker runtime name for the new container (default: the one
    /// recorded, e.g. lazarus)
    #[arg(long, verbatim_doc_comment)]
    pub runtime: Option<String>,
    /// Do not make the named volumes the archive carries: the container
    /// mounts the volumes of those names here as they are (Docker makes
    /// missing ones empty)
    #[arg(long, verbatim_doc_comment)]
    pub ignore_volumes: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub grants: GrantArgs,
    /// The age identity an encrypted archive is opened with (`lazarus
    /// keygen --age` writes one)
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub identity: Option<std::path::PathBuf>,
    /// Set by a group restore only: lock the container's network until the
    /// group is back (lazarus-core's `host::netlock`).
    #[arg(skip)]
    pub netlock: Option<NetlockRequest>,
    /// Set by `serve` only: make the scratch directory in this one (the
    /// migration's, which its guard removes if the agent dies).
    #[arg(skip)]
    pub scratch_in: Option<std::path::PathBuf>,
    /// Set by `serve` only, for a stop-and-copy migration: the memory
    /// received before the archive (CRIU's page server wrote its pagemap
    /// and pages images here), moved in beside the archive's images. On the
    /// same filesystem as `scratch_in`.
    #[arg(skip)]
    pub pages: Option<std::path::PathBuf>,
    /// Set by `serve` only, for a post-copy migration: told the runs of
    /// memory the source's dump left to its page server once the archive
    /// is extracted, before the restore starts the lazy-pages daemon (the
    /// page tunnel's pump asks the source for them).
    #[arg(skip)]
    pub pump_plan: Option<SharedPumpPlan>,
    /// Set by `restore C --snapshot ID` only: restore from the store, not
    /// from `file` (which then only names it in messages).
    #[arg(skip)]
    pub snapshot: Option<FromSnapshot>,
}

/// Where the import tells the page tunnel the dump's lazy runs (and
/// `serve`, that the restore is done).
pub type SharedPumpPlan = std::sync::Arc<lazarus_core::channel::tunnel::PumpPlan>;

/// A snapshot of the store to restore (see [`crate::flows::snapshot`]).
#[derive(Clone, Debug)]
pub struct FromSnapshot {
    pub store_root: std::path::PathBuf,
    pub id: String,
    /// In place: the container it replaces, removed only once the snapshot
    /// came out of the store whole (every block and file checked) and the
    /// import policy allowed it.
    pub replaces: Option<Made>,
}

impl FromSnapshot {
    fn reader(&self) -> Result<lazarus_core::store::SnapshotReader> {
        let store = lazarus_core::store::Store::open(&self.store_root)?;
        let snapshot = store.find(None, &self.id)?;
        Ok(store.reader(&snapshot)?)
    }
}

/// What was restored, for the report.
pub(crate) struct Restored {
    name: String,
    id: String,
    engine: &'static str,
    namespace: String,
    /// How it was restored (`ImportReport::restore_path`).
    path: &'static str,
    /// `ImportReport::start_seconds`.
    start_seconds: Option<f64>,
}

/// Restores the archive: every member of a group archive, else the one
/// container.
pub async fn run(args: &ImportArgs, endpoints: &Endpoints, config: &Config) -> Result<Imported> {
    // `--import -`: the archive from standard input (a pipe from another
    // host's `checkpoint --export -`), saved whole in a private scratch
    // directory first: it is read more than once (verified before anything
    // is made, then restored).
    let _received;
    let received_args;
    let args = match args.file == Path::new("-") {
        false => args,
        true => {
            let scratch = config.scratch_dir("stdin")?;
            let file = scratch.path().join("archive");
            receive_stdin(&file)?;
            _received = scratch;
            received_args = ImportArgs {
                file,
                ..args.clone()
            };
            &received_args
        }
    };
    // An encrypted archive is decrypted into a private scratch directory
    // (held until the import ends) and imported from there.
    let _decrypted;
    let decrypted_args;
    let args = match seal::is_encrypted(&args.file) {
        false => args,
        true => {
            let scratch = config.scratch_dir("decrypt")?;
            let plain = scratch.path().join("archive.tar");
            seal::decrypt(&args.file, &plain, args.identity.as_deref())?;
            _decrypted = scratch;
            decrypted_args = ImportArgs {
                file: plain,
                ..args.clone()
            };
            &decrypted_args
        }
    };
    // Whatever this makes is removed by the guard if this process dies
    // before the restore finished (or undid itself).
    let guard = RestoreGuard::start(endpoints, &format!("the import of {}", args.file.display()))?;
    let imported = match archive::group::is_group(&args.file) {
        true => group::restore_group(args, endpoints, config, &guard)
            .await
            .map(Imported::Group),
        false => restore(args, endpoints, config, Some(&guard))
            .await
            .map(Imported::One),
    };
    guard.dismiss();
    let mut imported = imported?;
    ready(&mut imported, endpoints, progress::wanted(args.json)).await;
    Ok(imported)
}

/// The last stage: whether what was restored runs. A process that ended
/// right after its restore is said, not left to be found; it is not an
/// error (a job near its end may finish at once), and the container
/// stays, as any exited one does.
async fn ready(imported: &mut Imported, endpoints: &Endpoints, show: bool) {
    let bar = Progress::stage(show, "ready");
    let reports: Vec<&mut ImportReport> = match imported {
        Imported::One(r) => vec![r],
        Imported::Group(g) => g.members.iter_mut().collect(),
    };
    for r in reports {
        r.running = match is_running(r, endpoints).await {
            Ok(running) => Some(running),
            Err(e) => {
                eprintln!("lazarus: warning: cannot tell whether {} runs: {e}", r.name);
                None
            }
        };
    }
    bar.finish();
}

/// Copies standard input into `file` (0600), whole.
fn receive_stdin(file: &Path) -> Result<()> {
    let context = format!(
        "read the archive from standard input into {}",
        file.display()
    );
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(file)
        .map_err(lazarus_core::Error::io(&context))?;
    let copied = std::io::copy(&mut std::io::stdin().lock(), &mut out)
        .map_err(lazarus_core::Error::io(&context))?;
    if copied == 0 {
        return Err(Error::Refused(
            "--import -: standard input was empty (pipe an archive in, e.g. `lazarus checkpoint \
             C --export - | lazarus restore --import -`)"
                .into(),
        ));
    }
    Ok(())
}

/// Restores the archive; returns the report `--json` prints. `guard` (the
/// command's [`RestoreGuard`]) is told the scratch directory and the
/// container before they are made.
pub async fn restore(
    args: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
    guard: Option<&RestoreGuard>,
) -> Result<ImportReport> {
    let started = Instant::now();
    let show = progress::wanted(args.json);
    let mut from_store = args.snapshot.as_ref().map(|s| s.reader()).transpose()?;
    let manifest = match &from_store {
        Some(reader) => reader.manifest().clone(),
        None => {
            // The manifest alone first: a file that is not an archive, or
            // is of a newer format, is refused at once.
            let manifest = archive::read_manifest(&args.file)?;
            args.grants.check_signature(config, &manifest, &args.file)?;
            refuse_early(args, endpoints).await?;
            manifest
        }
    };
    let (scratch, pages_bytes) = extract(args, config, guard, &manifest, from_store.as_mut())?;
    let dir = scratch.path().join("archive");
    // What follows is the restore proper, from the extracted image path.
    let extract_seconds = started.elapsed().as_secs_f64();
    if let Some(request) = &args.netlock {
        request.write(&dir.join(archive::CHECKPOINT_DIR))?;
    }
    let cfg = read_config(&dir)?;
    let recorded = read_engine_config(&dir)?;
    // What the archive asks of this host, from the configuration this
    // restore will replay: Docker's create request, or the OCI spec.
    let asked = match (&args.namespace, &recorded) {
        (None, Some(body)) => authority::of_docker(body),
        _ => authority::of_oci_spec(&read_spec(&dir)?),
    };
    let what = format!("checkpoint archive {}", args.file.display());
    args.grants.policy(config).check(&what, &asked)?;
    // A revert in place: the snapshot is out of the store whole and
    // allowed; only now does the container it replaces go.
    if let Some(current) = args.snapshot.as_ref().and_then(|s| s.replaces.as_ref()) {
        remove(
            &current.engine,
            &current.name,
            &current.namespace,
            endpoints,
        )
        .await?;
    }
    let (restored, made_volumes) =
        into_engine(args, endpoints, guard, (&cfg, recorded), &dir, show).await?;
    Ok(ImportReport {
        name: restored.name,
        id: restored.id,
        engine: restored.engine.into(),
        namespace: restored.namespace,
        from: args.file.clone(),
        extract_seconds,
        restore_seconds: started.elapsed().as_secs_f64(),
        start_seconds: restored.start_seconds,
        pages_bytes,
        volumes: made_volumes,
        restore_path: restored.path.into(),
        running: None,
    })
}

/// The restore proper, from the archive extracted in `dir`, into the
/// engine it came from (or containerd's namespace given by --namespace):
/// the container and the volumes made for it, or nothing of them left.
async fn into_engine(
    args: &ImportArgs,
    endpoints: &Endpoints,
    guard: Option<&RestoreGuard>,
    (cfg, recorded): (&ArchiveConfig, Option<Value>),
    dir: &Path,
    show: bool,
) -> Result<(Restored, Vec<String>)> {
    let docker = Docker::new(&endpoints.docker)?;
    let name = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    let mut made_volumes = Vec::new();
    let restored = match (&args.namespace, recorded) {
        (None, Some(recorded)) => {
            if !docker.reachable().await {
                return Err(Error::DockerUnreachable {
                    address: endpoints.docker.clone(),
                    why: format!(
                        "{} came from Docker; to restore it without Docker give --namespace",
                        args.file.display()
                    ),
                });
            }
            let made = Made {
                engine: "docker".into(),
                namespace: DOCKER_NAMESPACE.into(),
                name: name.clone(),
            };
            about_to_make(guard, made, endpoints).await?;
            if !args.ignore_volumes {
                made_volumes = volumes::restore_volumes(dir, &docker, guard).await?;
            }
            match docker::into_docker(args, &docker, cfg, &recorded, dir, show).await {
                Ok(r) => r,
                Err(e) => {
                    let cleanup = volumes::remove(&docker, &made_volumes).await;
                    return Err(e.with_cleanup(cleanup));
                }
            }
        }
        (namespace, _) => {
            let ns = namespace
                .clone()
                .unwrap_or_else(|| match cfg.namespace.as_str() {
                    "" | DOCKER_NAMESPACE => DEFAULT_NAMESPACE.to_string(),
                    ns => ns.to_string(),
                });
            lazarus_core::ids::check_component("container name", &name)?;
            let made = Made {
                engine: "containerd".into(),
                namespace: ns.clone(),
                name: name.clone(),
            };
            about_to_make(guard, made, endpoints).await?;
            containerd::into_containerd(args, endpoints, &ns, cfg, dir, show).await?
        }
    };
    Ok((restored, made_volumes))
}
