//! `lazarus checkpoint CONTAINER --export FILE`: the shim checkpoints the
//! container through containerd into a private scratch directory, then
//! the images, the root filesystem changes and the container's
//! configuration become one archive.
//!
//! Nothing is lost on failure: a dump that fails leaves the container
//! running (the shim's guarantee); if the container was stopped by the dump
//! and the archive then cannot be written, a Docker container is restored
//! in place from the images, and otherwise the images are kept and the
//! error says where.

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::{DateTime, Utc};
use containerd_client::services::v1::Container;
use containerd_client::types::v1::Status;
use lazarus_core::archive::{self, ArchiveConfig, ArchiveInput, Compression, RootfsDiff};
use lazarus_core::checkpoint::image;
use lazarus_core::config::Config;
use serde_json::{json, Value};

use crate::containerd::{CheckpointOptions, Containerd, LAZARUS_RUNTIME};
use crate::docker::Docker;
use crate::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::progress::{self, dir_bytes, Progress};
use crate::seal;
use crate::target::Target;
use crate::{docker_config, report};
use lazarus_core::checkpoint::postcopy::PageServer;

/// The Docker checkpoint a container stopped by a failed export is
/// restored from.
const UNDO_CHECKPOINT: &str = "lazarus-export-undo";

#[derive(clap::Args, Clone)]
pub struct ExportArgs {
    /// A Docker container's name or id, or a containerd container id
    #[arg(required_unless_present_any = ["group", "compose", "pod"])]
    pub container: Option<String>,
    /// Checkpoint these containers together, at one instant: all are
    /// frozen before any is dumped; all run on, or all stop (see above)
    #[arg(long, num_args = 1.., value_name = "CONTAINER", conflicts_with_all = ["container", "compose", "from_docker_checkpoint"], verbatim_doc_comment)]
    pub group: Vec<String>,
    /// Checkpoint the running containers of this Docker Compose project
    /// together, as --group does (label com.docker.compose.project)
    #[arg(long, value_name = "PROJECT", conflicts_with_all = ["container", "from_docker_checkpoint"], verbatim_doc_comment)]
    pub compose: Option<String>,
    /// Checkpoint the running containers of this Kubernetes pod together,
    /// as --group does (containerd's CRI labels; --namespace defaults to
    /// k8s.io here). Kubernetes' own checkpoints are per container
    #[arg(long, value_name = "[K8S_NAMESPACE/]POD", conflicts_with_all = ["container", "compose", "group", "from_docker_checkpoint"], verbatim_doc_comment)]
    pub pod: Option<String>,
    /// The archive to write
    #[arg(long, short = 'e', value_name = "FILE")]
    pub export: PathBuf,
    /// Keep the container running after the checkpoint
    #[arg(long, short = 'R')]
    pub leave_running: bool,
    /// Checkpoint established TCP connections (CRIU --tcp-established)
    #[arg(long)]
    pub tcp_established: bool,
    /// Checkpoint connections to unix sockets outside the container
    #[arg(long)]
    pub ext_unix_sk: bool,
    /// Allow a process attached to a terminal (CRIU --shell-job)
    #[arg(long)]
    pub shell_job: bool,
    /// Checkpoint file locks
    #[arg(long)]
    pub file_locks: bool,
    /// Compress the archive: zstd (on every core) or none
    #[arg(long, value_enum, default_value_t = Compress::Zstd)]
    pub compress: Compress,
    /// Print CRIU's dump statistics and the archive's sizes
    #[arg(long)]
    pub print_stats: bool,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    /// A containerd namespace: CONTAINER is a containerd container there
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Export Docker's checkpoint NAME of the container (taken with
    /// `docker checkpoint create`) instead of taking a new one
    #[arg(long, value_name = "NAME", verbatim_doc_comment)]
    pub from_docker_checkpoint: Option<String>,
    /// Sign the archive with this signing key (`lazarus keygen --sign`):
    /// an import with --require-signed then knows who made it
    #[arg(long, value_name = "KEY", verbatim_doc_comment)]
    pub sign: Option<PathBuf>,
    /// Encrypt the archive (age's format) to the recipients in FILE
    /// (`lazarus keygen --age` writes one; `age1...` keys, one a line):
    /// only their keys open it (`restore --import --identity KEY`)
    #[arg(long, value_name = "FILE", conflicts_with_all = ["group", "compose", "pod"], verbatim_doc_comment)]
    pub encrypt: Option<PathBuf>,
    /// Set by `lazarus migrate` only: a migration's checkpoint (see
    /// [`MigrationDump`]).
    #[arg(skip)]
    pub migration: Option<MigrationDump>,
}

/// A migration's checkpoint, whose memory goes through CRIU's page server
/// (`server.mode`): post-copy, the dump stops at the minimal state and
/// serves the memory from `server`; stop-and-copy, it pushes every page to
/// `server` (the receiver's) and keeps the container frozen until released
/// or called off. Either way the checkpoint's answer comes as soon as the
/// image directory is complete. The caller owns `dir` (the dump goes on
/// after the export returns, and is released or called off through it).
#[derive(Clone)]
pub struct MigrationDump {
    pub dir: PathBuf,
    pub server: PageServer,
}

impl MigrationDump {
    pub fn images(&self) -> PathBuf {
        self.dir.join(archive::CHECKPOINT_DIR)
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Compress {
    Zstd,
    None,
}

impl Compress {
    fn compression(self) -> Compression {
        match self {
            Compress::Zstd => Compression::default(),
            Compress::None => Compression::None,
        }
    }
}

pub async fn run(args: &ExportArgs, endpoints: &Endpoints, config: &Config) -> Result<()> {
    check_destination(&args.export)?;
    if !args.group.is_empty() || args.compose.is_some() || args.pod.is_some() {
        return crate::group::run(args, endpoints, config).await;
    }
    let name = args.container.as_deref().expect("clap requires one");
    let source = Source::resolve(
        name,
        args.namespace.as_deref(),
        args.from_docker_checkpoint.is_some(),
        endpoints,
    )
    .await?;
    let report = match &args.encrypt {
        None => export(args, &source, config).await?,
        Some(recipients) => sealed_export(args, recipients, &source, config).await?,
    };
    if args.json {
        println!("{report:#}");
    } else {
        println!("{}", args.export.display());
        if args.print_stats {
            print!("{}", report::export_text(&report));
        }
    }
    Ok(())
}

/// `--encrypt`: the archive is written into a private scratch directory
/// (where the checkpoint's plain images are anyway), then encrypted into
/// the destination. If encryption fails after the container was stopped,
/// the plain archive is kept there, and the error says where: the
/// checkpoint is never lost.
async fn sealed_export(
    args: &ExportArgs,
    recipients: &Path,
    source: &Source,
    config: &Config,
) -> Result<Value> {
    seal::recipients(recipients)?;
    let scratch = config.scratch_dir("seal")?;
    let plain = ExportArgs {
        export: scratch.path().join("archive.tar"),
        encrypt: None,
        ..args.clone()
    };
    let mut report = export(&plain, source, config).await?;
    if let Err(e) = seal::encrypt(&plain.export, &args.export, recipients) {
        let kept = scratch.keep();
        return Err(Error::Refused(format!(
            "{e}; the checkpoint is kept unencrypted in {} (import it from there, or encrypt it \
             with age by hand, then remove it)",
            kept.join("archive.tar").display()
        )));
    }
    report["archive"] = json!(args.export);
    report["encrypted"] = json!(true);
    report["archive_bytes"] = json!(fs::metadata(&args.export).map(|m| m.len()).unwrap_or(0));
    Ok(report)
}

/// The container to checkpoint, found and checked: the clients that reach
/// it, and its containerd record.
pub struct Source {
    pub target: Target,
    pub docker: Option<Docker>,
    pub ctr: Containerd,
    /// None only for a stopped Docker container exported from a checkpoint
    /// Docker took (`from_docker_checkpoint`).
    pub container: Option<Container>,
}

impl Source {
    /// Finds `name` (as `lazarus checkpoint` does) and refuses a container
    /// Lazarus does not run.
    pub async fn resolve(
        name: &str,
        namespace: Option<&str>,
        from_docker_checkpoint: bool,
        endpoints: &Endpoints,
    ) -> Result<Source> {
        let (target, docker) = Target::resolve(name, namespace, endpoints).await?;
        let ctr = Containerd::connect(&endpoints.containerd, &target.namespace).await?;
        let container = match ctr.container(&target.id).await {
            Ok(c) => Some(c),
            // A stopped Docker container has no containerd record: its Docker
            // checkpoint is all there is, and all that is needed.
            Err(e) if e.is_not_found() && target.docker.is_some() && from_docker_checkpoint => None,
            Err(e) if e.is_not_found() => return Err(not_found(&target, endpoints)),
            Err(e) => return Err(e),
        };
        if let Some(c) = &container {
            refuse_unless_lazarus(&target, c)?;
        }
        Ok(Source {
            target,
            docker,
            ctr,
            container,
        })
    }
}

/// Writes the archive of `source`; returns the report `--json` prints.
pub async fn export(args: &ExportArgs, source: &Source, config: &Config) -> Result<Value> {
    let Source {
        target,
        docker,
        ctr,
        container,
    } = source;
    let mut owned_scratch = None;
    let scratch: &Path = match &args.migration {
        Some(p) => &p.dir,
        None => owned_scratch.insert(config.scratch_dir("export")?).path(),
    };
    let images = scratch.join(archive::CHECKPOINT_DIR);
    let show = progress::wanted(args.json);
    let started = Instant::now();
    let (stopped, dumped_at) =
        match &args.from_docker_checkpoint {
            Some(name) => {
                let docker = docker.as_ref().ok_or_else(|| {
                    Error::Refused(format!(
                        "--from-docker-checkpoint: {} is not a Docker container",
                        target.name
                    ))
                })?;
                copy_docker_checkpoint(docker, target, name, &images).await?;
                if !images.join(image::METADATA_FILE).is_file() {
                    return Err(Error::Refused(format!(
                    "Docker checkpoint {name:?} of {} was not taken by Lazarus (it has no {}): \
                     only Lazarus checkpoints are exported",
                    target.name,
                    image::METADATA_FILE
                )));
                }
                (false, Utc::now())
            }
            None => {
                let exit = !args.leave_running;
                refuse_unless_checkpointable(ctr, target, exit).await?;
                fs::DirBuilder::new().mode(0o700).create(&images).map_err(
                    lazarus_core::Error::io(format!("create {}", images.display())),
                )?;
                // CRIU's work files (its log, the TLS files of a post-copy
                // dump) stay out of the archive.
                let work = scratch.join("work");
                let work_path = match &args.migration {
                    Some(p) => {
                        p.server.write(&images)?;
                        lazarus_core::checkpoint::control::write_lease(&images)?;
                        fs::DirBuilder::new().mode(0o700).create(&work).map_err(
                            lazarus_core::Error::io(format!("create {}", work.display())),
                        )?;
                        work.to_string_lossy().into_owned()
                    }
                    None => String::new(),
                };
                let options = CheckpointOptions {
                    exit,
                    open_tcp: args.tcp_established,
                    external_unix_sockets: args.ext_unix_sk,
                    terminal: args.shell_job,
                    file_locks: args.file_locks,
                    image_path: images.to_string_lossy().into_owned(),
                    work_path,
                    ..Default::default()
                };
                let bar = Progress::spinner(show, "checkpoint");
                let dump = ctr.checkpoint(&target.id, &options);
                tokio::pin!(dump);
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(200));
                let dumped = loop {
                    tokio::select! {
                        r = &mut dump => break r,
                        _ = tick.tick() => bar.set(dir_bytes(&images)),
                    }
                };
                bar.finish();
                dumped?;
                (exit, Utc::now())
            }
        };
    let checkpoint_seconds = started.elapsed().as_secs_f64();
    let archived = archive_it(args, target, container.as_ref(), ctr, scratch, dumped_at).await;
    let (manifest, diff) = match (archived, owned_scratch) {
        (Ok(m), _) => m,
        // (A post-copy caller calls its dump off instead.)
        (Err(e), Some(scratch)) if stopped => {
            return Err(undo_stop(e, target, docker.as_ref(), scratch).await)
        }
        (Err(e), _) => return Err(e),
    };
    let total = started.elapsed().as_secs_f64();
    let archive_bytes = fs::metadata(&args.export).map(|m| m.len()).unwrap_or(0);
    let stats = image::read_stats(&images.join("stats-dump")).unwrap_or_default();
    let v = json!({
        "archive": args.export,
        "container": target.name,
        "id": target.id,
        "engine": target.engine(),
        "namespace": target.namespace,
        "stopped": stopped,
        "archive_bytes": archive_bytes,
        "content_bytes": manifest.total_size(),
        "pages_bytes": report::pages_bytes(&manifest, &compressed_pages(&images)),
        "rootfs_diff_bytes": diff.map(|d| d.1).unwrap_or(0),
        "deleted_files": diff.map(|d| d.0).unwrap_or(0),
        "checkpoint_seconds": checkpoint_seconds,
        "export_seconds": total,
        "stats": stats,
    });
    Ok(v)
}

fn not_found(target: &Target, endpoints: &Endpoints) -> Error {
    match target.docker {
        Some(_) => Error::NotFound(format!(
            "Docker knows {} but the containerd at {} has no container {} in namespace {}: \
             is it running? (a checkpoint Docker took of it: --from-docker-checkpoint NAME); \
             otherwise give the socket of the containerd dockerd uses (--address or \
             CONTAINERD_ADDRESS)",
            target.name, endpoints.containerd, target.id, target.namespace
        )),
        None => Error::NotFound(format!(
            "no container {} in containerd namespace {} (at {}), and Docker at {} knows no such \
             name: check the name, --namespace, --address, --host",
            target.id, target.namespace, endpoints.containerd, endpoints.docker
        )),
    }
}

/// The destination's directory must exist: the archive is written next to
/// it and renamed into place.
pub(crate) fn check_destination(dest: &Path) -> Result<()> {
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} does not exist: the archive's directory must exist",
            dir.display()
        )));
    }
    if dest.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a directory: give the archive's file name (e.g. {}/checkpoint.tar.zst)",
            dest.display(),
            dest.display()
        )));
    }
    Ok(())
}

/// Only a container Lazarus runs can be checkpointed by Lazarus.
fn refuse_unless_lazarus(target: &Target, container: &Container) -> Result<()> {
    let runtime = container
        .runtime
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or("");
    if runtime != LAZARUS_RUNTIME {
        return Err(Error::Refused(format!(
            "{} runs {runtime:?}, not Lazarus ({LAZARUS_RUNTIME}): lazarus exports and migrates \
             only containers that run Lazarus (run it with --runtime lazarus)",
            target.name
        )));
    }
    Ok(())
}

pub(crate) async fn refuse_unless_checkpointable(
    ctr: &Containerd,
    target: &Target,
    exit: bool,
) -> Result<()> {
    match ctr.task_status(&target.id).await? {
        Some(Status::Running | Status::Paused) => {}
        status => {
            let status = status.map_or("not started".to_string(), |s| {
                format!("{s:?}").to_lowercase()
            });
            let hint = match target.docker {
                Some(_) => " (a checkpoint Docker already took: --from-docker-checkpoint NAME)",
                None => "",
            };
            return Err(Error::Refused(format!(
                "{} is {status}: only a running container can be checkpointed{hint}",
                target.name
            )));
        }
    }
    // Docker restarts a container with a restart policy when it exits, which
    // a checkpoint that stops it does: the restart would be a fresh start.
    if let (true, Some(v)) = (exit, &target.docker) {
        let policy = v["HostConfig"]["RestartPolicy"]["Name"]
            .as_str()
            .unwrap_or("");
        if !matches!(policy, "" | "no") {
            return Err(Error::Refused(format!(
                "{} has restart policy {policy:?}: Docker would start it afresh after the \
                 checkpoint stops it; use --leave-running, or `docker update --restart=no {}` first",
                target.name, target.name
            )));
        }
    }
    Ok(())
}

/// Copies Docker's own checkpoint `name` of the container (taken with
/// `docker checkpoint create`) into `images`.
async fn copy_docker_checkpoint(
    docker: &Docker,
    target: &Target,
    name: &str,
    images: &Path,
) -> Result<()> {
    let dir = docker.checkpoint_dir(&target.id, name).await?;
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} has no Docker checkpoint {name:?} (no {}): see `docker checkpoint ls {}`",
            target.name,
            dir.display(),
            target.name
        )));
    }
    copy_dir(&dir, images)
}

/// Moves (or, across file systems, copies) the images in `from` to `to`,
/// a new directory.
pub fn move_dir(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(lazarus_core::Error::io(format!(
                "create {}",
                parent.display()
            )))?;
    }
    match fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::CrossesDevices => copy_dir(from, to),
        Err(e) => {
            Err(
                lazarus_core::Error::io(format!("move {} to {}", from.display(), to.display()))(e)
                    .into(),
            )
        }
    }
}

pub fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    let io = |what: &Path| lazarus_core::Error::io(format!("copy {}", what.display()));
    fs::DirBuilder::new()
        .mode(0o700)
        .create(to)
        .map_err(io(to))?;
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let kind = entry.file_type().map_err(io(&src))?;
        if kind.is_dir() {
            copy_dir(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(io(&src))?;
            lazarus_core::checkpoint::image::make_private(&dst).map_err(io(&dst))?;
        }
    }
    Ok(())
}

/// Root filesystem diff, configuration and archive. Returns the manifest and
/// (deleted files, rootfs diff bytes) when there is a diff.
async fn archive_it(
    args: &ExportArgs,
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
    scratch: &Path,
    checkpointed: DateTime<Utc>,
) -> Result<(archive::Manifest, Option<(usize, u64)>)> {
    let images = scratch.join(archive::CHECKPOINT_DIR);
    let diff = match saved_rootfs_diff(&images, scratch)? {
        // The shim saved it as the dump ended (and Docker's checkpoint has
        // the one of its own time).
        Some(diff) => diff,
        None => {
            let upper = match &target.docker {
                Some(v) => docker_upper(v, &target.name)?,
                None => {
                    let c = container.expect("a containerd target has a container");
                    ctr.upper_dir(&c.snapshotter, &c.snapshot_key).await?
                }
            };
            let tar = scratch.join(archive::ROOTFS_DIFF_TAR);
            lazarus_core::checkpoint::rootfs::diff_from_overlay_upper(&upper, &tar)?
        }
    };
    let diff_bytes = fs::metadata(&diff.tar).map(|m| m.len()).unwrap_or(0);
    // Without a containerd record (a stopped Docker container) there is no
    // OCI spec to carry: Docker makes a new one from engine.dump.
    let spec = container
        .and_then(|c| c.spec.as_ref())
        .map(|s| s.value.clone())
        .unwrap_or_else(|| b"{}".to_vec());
    let (image_name, image_digest) = image_of(target, container, ctr).await?;
    let (engine_config, network) = match &target.docker {
        Some(v) => (
            Some(serde_json::to_vec_pretty(&docker_config::create_body(v)).expect("JSON")),
            Some(serde_json::to_vec_pretty(&v["NetworkSettings"]).expect("JSON")),
        ),
        None => (None, None),
    };
    let created = match &target.docker {
        Some(v) => v["Created"].as_str().and_then(|c| c.parse().ok()),
        None => container
            .and_then(|c| c.created_at.as_ref())
            .and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos as u32)),
    };
    let config = ArchiveConfig {
        id: target.id.clone(),
        name: target.name.clone(),
        image_name,
        image_digest,
        runtime: LAZARUS_RUNTIME.into(),
        created: created.unwrap_or(checkpointed),
        checkpointed,
        engine: target.engine().into(),
        namespace: target.namespace.clone(),
    };
    let dump_log = images.join(image::DUMP_LOG);
    let input = ArchiveInput {
        images_dir: &images,
        spec_json: &spec,
        config: &config,
        rootfs_diff: Some(&diff),
        dump_log: dump_log.is_file().then_some(dump_log.as_path()),
        network_status: network.as_deref(),
        engine_config: engine_config.as_deref(),
    };
    let total: u64 = progress::dir_bytes(&images) + diff_bytes;
    let bar = Progress::bytes(progress::wanted(args.json), "export", total);
    let signer = args
        .sign
        .as_deref()
        .map(archive::Signer::load)
        .transpose()?;
    let manifest = archive::write_signed(
        &input,
        &args.export,
        args.compress.compression(),
        signer.as_ref(),
        &mut |n| bar.set(n),
    );
    bar.finish();
    Ok((manifest?, Some((diff.deleted.len(), diff_bytes))))
}

/// The container's image: its name and the digest that identifies it
/// (Docker's image id; containerd's manifest or index digest).
pub async fn image_of(
    target: &Target,
    container: Option<&Container>,
    ctr: &Containerd,
) -> Result<(String, String)> {
    if let Some(v) = &target.docker {
        return Ok((
            v["Config"]["Image"].as_str().unwrap_or("").to_string(),
            v["Image"].as_str().unwrap_or("").to_string(),
        ));
    }
    let c = container
        .ok_or_else(|| Error::NotFound(format!("no containerd container {}", target.name)))?;
    let digest = ctr
        .image_target(&c.image)
        .await?
        .map(|t| t.1)
        .unwrap_or_default();
    Ok((c.image.clone(), digest))
}

/// The root filesystem diff the shim saved among the images, moved out of
/// them (the archive carries it at its top level, where Podman's is).
fn saved_rootfs_diff(images: &Path, scratch: &Path) -> Result<Option<RootfsDiff>> {
    let tar = images.join(archive::ROOTFS_DIFF_TAR);
    let deleted = images.join(archive::DELETED_FILES);
    if !tar.is_file() || !deleted.is_file() {
        return Ok(None);
    }
    let io = |p: &Path| lazarus_core::Error::io(format!("move {}", p.display()));
    let moved_tar = scratch.join(archive::ROOTFS_DIFF_TAR);
    fs::rename(&tar, &moved_tar).map_err(io(&tar))?;
    let deleted_list = lazarus_core::checkpoint::rootfs::read_deleted(&deleted)?;
    fs::remove_file(&deleted).map_err(io(&deleted))?;
    Ok(Some(RootfsDiff {
        tar: moved_tar,
        deleted: deleted_list,
    }))
}

/// Docker's overlay2 record of the container as overlay mount options.
pub fn docker_overlay(inspect: &Value, name: &str) -> Result<Vec<String>> {
    let data = &inspect["GraphDriver"]["Data"];
    let field = |k: &str| data[k].as_str().unwrap_or("");
    docker_upper(inspect, name)?;
    Ok(lazarus_core::host::overlay::docker_overlay_options(
        field("LowerDir"),
        field("UpperDir"),
        field("WorkDir"),
    ))
}

/// Docker's overlay2 upper directory of the container.
pub fn docker_upper(inspect: &Value, name: &str) -> Result<PathBuf> {
    let driver = inspect["GraphDriver"]["Name"].as_str().unwrap_or("");
    match inspect["GraphDriver"]["Data"]["UpperDir"].as_str() {
        Some(upper) if driver == "overlay2" => Ok(PathBuf::from(upper)),
        _ => Err(Error::Refused(format!(
            "{name} uses Docker's {driver:?} storage driver: Lazarus carries root filesystem \
             changes from overlay2 only"
        ))),
    }
}

/// The dump stopped the container and the archive failed: bring a Docker
/// container back from the images; otherwise keep them and say where.
async fn undo_stop(
    error: Error,
    target: &Target,
    docker: Option<&Docker>,
    scratch: lazarus_core::scratch::Scratch,
) -> Error {
    let kept = scratch.keep();
    let Some(docker) = docker else {
        return Error::Refused(format!(
            "{error}\n  {} was stopped by the checkpoint; its images are kept in {}",
            target.name,
            kept.display()
        ));
    };
    let images = kept.join(archive::CHECKPOINT_DIR);
    match restore_in_place(target, Some(docker), None, &images).await {
        Ok(()) => {
            let _ = fs::remove_dir_all(&kept);
            Error::Refused(format!(
                "{error}\n  {} was restored from its checkpoint and runs on",
                target.name
            ))
        }
        Err(e) => error.with_cleanup(Some(format!(
            "restoring {} in place failed ({e}); its images are kept as Docker checkpoint \
             {UNDO_CHECKPOINT} (or in {}): docker start --checkpoint {UNDO_CHECKPOINT} {}",
            target.name,
            kept.display(),
            target.name
        ))),
    }
}

/// Starts the container a checkpoint stopped again, from that checkpoint's
/// `images`, as itself: through Docker for a Docker container (its
/// checkpoint directory, then `start?checkpoint=`), else by replacing its
/// stopped containerd task with one restored from the images (`ctr` must
/// be given for that). The images are moved or used up.
async fn restore_in_place(
    target: &Target,
    docker: Option<&Docker>,
    ctr: Option<&Containerd>,
    images: &Path,
) -> Result<()> {
    if let Some(docker) = docker {
        let dir = docker.checkpoint_dir(&target.id, UNDO_CHECKPOINT).await?;
        move_dir(images, &dir)?;
        docker
            .start_from_checkpoint(&target.id, UNDO_CHECKPOINT)
            .await?;
        let _ = docker.remove_checkpoint(&target.id, UNDO_CHECKPOINT).await;
        return Ok(());
    }
    let ctr =
        ctr.ok_or_else(|| Error::Refused(format!("{} is not a Docker container", target.name)))?;
    let container = ctr.container(&target.id).await?;
    ctr.remove_task(&target.id).await?;
    let rootfs = ctr
        .snapshot_mounts(&container.snapshotter, &container.snapshot_key)
        .await?;
    ctr.create_restoring_task(&target.id, rootfs, images)
        .await?;
    if let Err(e) = ctr.start_task(&target.id).await {
        let cleanup = ctr
            .remove_task(&target.id)
            .await
            .err()
            .map(|c| c.to_string());
        return Err(e.with_cleanup(cleanup));
    }
    Ok(())
}

/// The page images the shim stored compressed, as lazarus.json lists them
/// (none for a checkpoint without one: its pages count as stored).
fn compressed_pages(images: &Path) -> Vec<lazarus_core::checkpoint::pages::CompressedFile> {
    image::Metadata::load(images)
        .map(|m| m.compressed_pages)
        .unwrap_or_default()
}
