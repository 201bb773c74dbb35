//! `lazarus restore --import FILE`: the archive is verified whole and
//! extracted to a private scratch directory before anything is created;
//! then a new container is made from it (through Docker when it came from
//! Docker, else through containerd), its root filesystem changes applied,
//! and it is started from the checkpoint. A failure after the container was
//! created removes it again: nothing is left behind; and if this process
//! dies first, its guard ([`crate::flows::restore_guard`]) removes it.
//!
//! Here: the arguments, decryption, verification, extraction and the
//! import policy (all before any engine is asked to make anything); the
//! engines' restores in `docker.rs` and `containerd.rs`, a group
//! archive's in `group.rs`, each against its own steps, unit-tested on a
//! fake.

use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::Instant;

use lazarus_core::archive::{self, ArchiveConfig};

use lazarus_core::config::Config;
use lazarus_core::host::netlock::NetlockRequest;
use lazarus_core::security::authority;
use serde_json::Value;

use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;

use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::{Error, Result};

use crate::flows::restore_guard::{self, Made, RestoreGuard};
use crate::grants::GrantArgs;
use crate::progress::{self, Progress};
use crate::report::{ImportReport, Imported};
use crate::seal;
use lazarus_core::host::overlay::OverlayMount;

mod containerd;
mod docker;
mod group;
mod volumes;

pub use docker::{docker_image, image_refusal};

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
    pub lazy_runs: Option<LazyRunsSlot>,
    /// Set by `restore C --snapshot ID` only: restore from the store, not
    /// from `file` (which then only names it in messages).
    #[arg(skip)]
    pub snapshot: Option<FromSnapshot>,
}

/// Where the import tells the page tunnel the dump's lazy runs (and
/// `serve`, that the restore is done).
pub type LazyRunsSlot = std::sync::Arc<lazarus_core::channel::tunnel::PumpPlan>;

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
        pages_bytes,
        volumes: made_volumes,
        restore_path: restored.path.into(),
        running: None,
    })
}

/// Verifies and extracts the archive (or materializes the snapshot) into
/// a new scratch directory's `archive/` (the guard told of it first), and
/// moves in the memory a stop-and-copy migration received; the scratch
/// directory, and the bytes of memory moved in.
fn extract(
    args: &ImportArgs,
    config: &Config,
    guard: Option<&RestoreGuard>,
    manifest: &archive::Manifest,
    from_store: Option<&mut lazarus_core::store::SnapshotReader>,
) -> Result<(lazarus_core::scratch::Scratch, Option<u64>)> {
    let scratch = match &args.scratch_in {
        Some(parent) => lazarus_core::scratch::Scratch::new_in(parent, "import")?,
        None => config.scratch_dir("import")?,
    };
    if let Some(g) = guard {
        g.scratch(scratch.path())?;
    }
    let dir = scratch.path().join("archive");
    let bar = Progress::bytes(progress::wanted(args.json), "verify", manifest.total_size());
    let limits = config.import.limits();
    let extracted = match from_store {
        Some(reader) => reader
            .materialize(&dir, &mut |n| bar.set(n))
            .map_err(Error::from),
        None => archive::extract_with(&args.file, &dir, &limits, &|_| true, &mut |n| bar.set(n))
            .map(drop)
            .map_err(Error::from),
    };
    bar.finish();
    extracted?;
    let pages_bytes = match &args.pages {
        Some(pages) => Some(move_pages(pages, &dir.join(archive::CHECKPOINT_DIR))?),
        None => None,
    };
    if let Some(slot) = &args.lazy_runs {
        // Without them the tunnel still carries the daemon's requests one
        // by one: slower, not wrong.
        match lazarus_core::checkpoint::postcopy::lazy_runs(&dir.join(archive::CHECKPOINT_DIR)) {
            Ok(runs) => slot.set_runs(runs),
            Err(e) => eprintln!("lazarus: warning: the page pump is off: {e}"),
        }
    }
    Ok((scratch, pages_bytes))
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

/// What would refuse the archive after its verification anyway (a name
/// taken here, Docker's image missing), said before it: the verification
/// of a large archive takes seconds. From the archive's leading
/// descriptions (none in archives older than 0.2: then nothing is checked
/// early, and the same checks come later).
async fn refuse_early(args: &ImportArgs, endpoints: &Endpoints) -> Result<()> {
    let small = archive::read_leading(
        &args.file,
        &[archive::CONFIG_DUMP, archive::ENGINE_DUMP],
        4 << 20,
    )?;
    let Some(cfg) = small.get(archive::CONFIG_DUMP) else {
        return Ok(());
    };
    let Ok(cfg) = serde_json::from_slice::<ArchiveConfig>(cfg) else {
        return Ok(()); // said, with the reason, once it is verified
    };
    let name = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    let made = match (&args.namespace, small.contains_key(archive::ENGINE_DUMP)) {
        (None, true) => {
            let docker = Docker::new(&endpoints.docker)?;
            if !docker.reachable().await {
                return Ok(()); // said later, with what to do
            }
            docker::docker_image(&docker, &cfg.image_name, &cfg.image_digest).await?;
            Made {
                engine: "docker".into(),
                namespace: DOCKER_NAMESPACE.into(),
                name,
            }
        }
        (namespace, _) => Made {
            engine: "containerd".into(),
            namespace: namespace
                .clone()
                .unwrap_or_else(|| match cfg.namespace.as_str() {
                    "" | DOCKER_NAMESPACE => DEFAULT_NAMESPACE.to_string(),
                    ns => ns.to_string(),
                }),
            name,
        },
    };
    match restore_guard::exists(&made, endpoints).await {
        Ok(true) => Err(name_taken(&made)),
        // Unreachable engines are said later, with what to do.
        _ => Ok(()),
    }
}

/// A restore's name is taken here.
fn name_taken(made: &Made) -> Error {
    Error::Conflict(match made.engine.as_str() {
        "docker" => format!(
            "a container named {} already exists on this host: give the restored one another \
             name with --name",
            made.name
        ),
        _ => format!(
            "a container {} already exists in namespace {}: give the restored one another name \
             with --name",
            made.name, made.namespace
        ),
    })
}

/// Refuses a name already taken (the engine would, later), then tells the
/// guard: it removes only what this restore makes.
async fn about_to_make(
    guard: Option<&RestoreGuard>,
    made: Made,
    endpoints: &Endpoints,
) -> Result<()> {
    let Some(guard) = guard else {
        return Ok(());
    };
    if restore_guard::exists(&made, endpoints).await? {
        return Err(name_taken(&made));
    }
    guard.will_make(made)
}

/// Moves every file of `pages` (a page server's images directory) into the
/// extracted `images`, which must not have them already: an archive that
/// carried its own would be a different dump. Returns the bytes moved.
fn move_pages(pages: &Path, images: &Path) -> Result<u64> {
    let read = |e| lazarus_core::Error::io(format!("read {}", pages.display()))(e);
    let mut bytes = 0;
    for entry in std::fs::read_dir(pages).map_err(read)? {
        let entry = entry.map_err(read)?;
        let to = images.join(entry.file_name());
        if to.symlink_metadata().is_ok() {
            return Err(Error::Refused(format!(
                "the archive has its own {} beside the memory the page server received: not \
                 one dump",
                to.display()
            )));
        }
        bytes += entry.metadata().map_err(read)?.len();
        std::fs::rename(entry.path(), &to).map_err(lazarus_core::Error::io(format!(
            "move {} into {}",
            entry.path().display(),
            images.display()
        )))?;
    }
    Ok(bytes)
}

fn read_config(dir: &Path) -> Result<ArchiveConfig> {
    let path = dir.join(archive::CONFIG_DUMP);
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not what Lazarus writes: {e}",
            archive::CONFIG_DUMP
        ))
    })
}

/// The archive's OCI spec, as JSON (its shape is checked where used).
fn read_spec(dir: &Path) -> Result<Value> {
    let bytes = std::fs::read(dir.join(archive::SPEC_DUMP)).map_err(lazarus_core::Error::io(
        format!("read {}", archive::SPEC_DUMP),
    ))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::SPEC_DUMP
        ))
    })
}

fn read_engine_config(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join(archive::ENGINE_DUMP);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::ENGINE_DUMP
        ))
    })
}

/// Applies the archive's root filesystem changes to the new container's
/// root filesystem, mounted for this at a private directory.
fn apply_rootfs_diff(dir: &Path, overlay: &[String]) -> Result<()> {
    let merged = dir.join("rootfs");
    std::fs::create_dir(&merged).map_err(lazarus_core::Error::io(format!(
        "create {}",
        merged.display()
    )))?;
    let mounted = OverlayMount::mount(overlay, &merged)?;
    lazarus_core::checkpoint::rootfs::apply_extracted(dir, mounted.path())?;
    Ok(())
}

/// Removes what [`restore`] made (its report names it): the container and
/// the volumes made for it. A migration whose sender never confirmed must
/// not leave a second copy, nor a group restore a member of a group that
/// did not come back whole.
pub async fn remove_restored(r: &ImportReport, endpoints: &Endpoints) -> Result<()> {
    remove(&r.engine, &r.id, &r.namespace, endpoints).await?;
    if r.volumes.is_empty() {
        return Ok(());
    }
    match volumes::remove(&Docker::new(&endpoints.docker)?, &r.volumes).await {
        None => Ok(()),
        Some(failed) => Err(Error::Refused(failed)),
    }
}

/// Whether a container [`restore`] made still runs.
pub async fn is_running(r: &ImportReport, endpoints: &Endpoints) -> Result<bool> {
    match r.engine.as_str() {
        "docker" => Ok(Docker::new(&endpoints.docker)?
            .container(&r.id)
            .await?
            .is_some_and(|c| c["State"]["Running"].as_bool() == Some(true))),
        _ => {
            let ns = match r.namespace.as_str() {
                "" => DEFAULT_NAMESPACE,
                ns => ns,
            };
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            Ok(matches!(
                ctr.task_status(&r.id).await?,
                Some(crate::engine::containerd::Status::Running)
            ))
        }
    }
}

/// Removes a container [`restore`] made (engine, id and namespace as its
/// report names them).
pub async fn remove(engine: &str, id: &str, namespace: &str, endpoints: &Endpoints) -> Result<()> {
    match engine {
        "docker" => Docker::new(&endpoints.docker)?.remove(id).await,
        _ => {
            let ns = match namespace {
                "" => DEFAULT_NAMESPACE,
                ns => ns,
            };
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            ctr.remove_task(id).await?;
            ctr.remove_container(id).await?;
            ctr.remove_snapshot(SNAPSHOTTER, id).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_pages_move_in_beside_the_archives_images() {
        let pages = tempfile::tempdir().unwrap();
        let images = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("pagemap-1.img"), [1u8; 10]).unwrap();
        std::fs::write(pages.path().join("pages-1.img"), [2u8; 4096]).unwrap();
        std::fs::write(images.path().join("inventory.img"), b"").unwrap();
        assert_eq!(move_pages(pages.path(), images.path()).unwrap(), 4106);
        assert!(images.path().join("pages-1.img").is_file());
        assert!(images.path().join("pagemap-1.img").is_file());
        assert_eq!(std::fs::read_dir(pages.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_archive_with_pages_of_its_own_is_not_one_dump() {
        let pages = tempfile::tempdir().unwrap();
        let images = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("pages-1.img"), b"received").unwrap();
        std::fs::write(images.path().join("pages-1.img"), b"archived").unwrap();
        let e = move_pages(pages.path(), images.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one dump"), "{e}");
        assert_eq!(
            std::fs::read(images.path().join("pages-1.img")).unwrap(),
            b"archived"
        );
    }

    /// An archive whose spec asks for an OCI hook (refused by default),
    /// written as export writes one.
    fn archive_asking_for_a_hook(dir: &Path) -> std::path::PathBuf {
        let images = dir.join("images");
        std::fs::create_dir(&images).unwrap();
        std::fs::write(images.join("inventory.img"), b"x").unwrap();
        let now = chrono::Utc::now();
        let config = ArchiveConfig {
            id: "web".into(),
            name: "web".into(),
            image_name: "docker.io/library/busybox:latest".into(),
            image_digest: String::new(),
            runtime: crate::engine::containerd::LAZARUS_RUNTIME.into(),
            created: now,
            checkpointed: now,
            engine: "containerd".into(),
            namespace: "default".into(),
        };
        let input = archive::ArchiveInput {
            images_dir: &images,
            spec_json: br#"{"ociVersion":"1.0.2","hooks":{"prestart":[{"path":"/bin/true"}]},
                "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},
                {"type":"mount"},{"type":"network"}]}}"#,
            config: &config,
            rootfs_diff: None,
            dump_log: None,
            network_status: None,
            engine_config: None,
            volumes: &[],
        };
        let file = dir.join("web.tar");
        archive::write(&input, &file, archive::Compression::None, &mut |_| {}).unwrap();
        file
    }

    /// The policy is checked on the extracted archive before any engine is
    /// asked for anything: here there are none (the sockets do not exist),
    /// and the error is the policy's, naming the flag that would grant it.
    #[test]
    fn an_import_the_policy_refuses_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = archive_asking_for_a_hook(dir.path());
        let config = Config {
            work_root: dir.path().join("lib"),
            ..Default::default()
        };
        let endpoints = Endpoints {
            docker: "unix:///nonexistent/docker.sock".into(),
            containerd: "/nonexistent/containerd.sock".into(),
        };
        let mut args = ImportArgs {
            file,
            name: None,
            namespace: Some("default".into()),
            runtime: None,
            json: true,
            // What a bare spec asks beyond the hook is not the point here.
            grants: GrantArgs {
                allow_security_options: true,
                ..Default::default()
            },
            identity: None,
            ignore_volumes: false,
            netlock: None,
            scratch_in: None,
            pages: None,
            lazy_runs: None,
            snapshot: None,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let e = rt
            .block_on(restore(&args, &endpoints, &config, None))
            .unwrap_err();
        let text = e.to_string();
        assert!(text.contains("prestart hook: /bin/true"), "{text}");
        assert!(text.contains("Nothing was created"), "{text}");
        let work = dir.path().join("lib/work");
        assert_eq!(
            std::fs::read_dir(&work).unwrap().count(),
            0,
            "scratch removed"
        );
        // Granted, it goes on to containerd (absent here).
        args.grants.allow_hooks = true;
        let e = rt
            .block_on(restore(&args, &endpoints, &config, None))
            .unwrap_err();
        assert!(matches!(e, Error::ContainerdUnreachable { .. }), "{e}");
    }
}
