//! `lazarus checkpoint CONTAINER --export FILE --leave-running` (and
//! `--from-docker-checkpoint`): the shim checkpoints the container through
//! containerd into a private scratch directory, then the images, the root
//! filesystem changes and the container's configuration become one
//! archive. A checkpoint that stops its container is a frozen checkpoint
//! of one ([`crate::flows::group::stop_one`]), which uses this module's
//! [`export`] while the container is frozen.
//!
//! Nothing is lost on failure: a dump that fails leaves the container
//! running (the shim's guarantee); the archive is written beside its
//! destination and appears there only whole.
//!
//! Here: the arguments, finding the container ([`Source`]) and `--encrypt`;
//! the flow itself in `flow.rs` (against [`Steps`], unit-tested on a
//! fake), what it refuses in `checks.rs`, the archive's contents in
//! `write.rs`, copying Docker's checkpoint in `docker_checkpoint.rs`, the
//! real steps in `live.rs`. `--group` is [`crate::flows::group`]'s.

use std::fs;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::Container;
use lazarus_core::archive::{self, Compression};
use lazarus_core::checkpoint::postcopy::PageServer;
use lazarus_core::config::Config;

use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::engine::target::Target;
use crate::engine::Selected;
use crate::error::{Error, Result};
use crate::progress;
use crate::report::ExportReport;
use crate::seal;

mod checks;
mod docker_checkpoint;
mod flow;
mod live;
mod write;

pub use checks::is_stdout;
pub(crate) use checks::{check_destination, checkpointable};
use checks::{not_found, refuse_unless_lazarus};
pub use flow::Steps;
pub use write::image_of;

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
    /// The archive to write; - writes it to standard output (for a pipe:
    /// `| ssh B lazarus restore --import -`)
    #[arg(long, short = 'e', value_name = "FILE", verbatim_doc_comment)]
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
    /// Leave the container's named volumes out of the archive (by default
    /// their contents travel with it, as with Podman)
    #[arg(long, verbatim_doc_comment)]
    pub ignore_volumes: bool,
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
    /// Set by `lazarus snapshot` only: make the scratch directory in this
    /// one (the store writer's, removed with it if the command dies).
    #[arg(skip)]
    pub scratch_in: Option<PathBuf>,
    /// Set by `lazarus snapshot` only: dump into memory (a tmpfs scratch,
    /// `scratch::in_memory`) when the container's memory fits, so the
    /// freeze lasts as long as CRIU takes to copy the memory and not as
    /// long as the disk takes to write it. Only for a dump that leaves the
    /// container running: a tmpfs does not outlive the host.
    #[arg(skip)]
    pub dump_in_memory: bool,
    /// Set by `lazarus snapshot` only: the content goes here instead of
    /// into an archive at `export` (the store's writer, which cuts each
    /// file into blocks where it lies).
    #[arg(skip)]
    pub into: Option<std::sync::Arc<dyn ContentSink>>,
    /// Set by `lazarus snapshot` only, where the kernel tracks dirty
    /// memory: the dump tracks it, and dumps only what changed since the
    /// parent this gives (see `lazarus_core::checkpoint::incremental`).
    #[arg(skip)]
    pub incremental: Option<std::sync::Arc<dyn DirtyTracking>>,
}

/// Where a dump that tracks dirty memory finds its parent.
pub trait DirtyTracking: Send + Sync {
    /// Claims the parent directory of container `id`'s next dump, if it
    /// has one (None: a whole dump, which tracks memory from there).
    fn parent(&self, id: &str) -> lazarus_core::Result<Option<PathBuf>>;
}

/// What takes an export's content in place of an archive file; returns
/// the manifest of what it took (as an archive's would be).
pub trait ContentSink: Send + Sync {
    fn take(&self, input: &archive::ArchiveInput) -> lazarus_core::Result<archive::Manifest>;
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
    pub fn compression(self) -> Compression {
        match self {
            Compress::Zstd => Compression::default(),
            Compress::None => Compression::None,
        }
    }
}

/// Checkpoints one container into `args.export`, leaving it running, or
/// copies Docker's checkpoint of it. A checkpoint that stops a container
/// is [`crate::flows::group::stop_one`]'s, and groups are
/// [`crate::flows::group`]'s: [`crate::flows::checkpoint`] decides.
pub async fn run(
    args: &ExportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<ExportReport> {
    if args.stops_one() || args.is_group() {
        return Err(Error::Refused(
            "internal: a checkpoint that stops its container, or a group's, goes through \
             flows::checkpoint"
                .into(),
        ));
    }
    check_destination(&args.export)?;
    let name = args.container.as_deref().ok_or_else(|| {
        Error::Refused("name the container to checkpoint (or --group, --compose, --pod)".into())
    })?;
    let source = Source::resolve(
        name,
        args.namespace.as_deref(),
        args.from_docker_checkpoint.is_some(),
        endpoints,
    )
    .await?;
    match &args.encrypt {
        None => export(args, &source, config).await,
        Some(recipients) => sealed_export(args, recipients, &source, config).await,
    }
}

impl ExportArgs {
    /// Several containers at one instant: `--group`, `--compose` or `--pod`.
    pub fn is_group(&self) -> bool {
        !self.group.is_empty() || self.compose.is_some() || self.pod.is_some()
    }

    /// One container, whose checkpoint is to stop it (not a copy of a
    /// Docker checkpoint, nor a migration's dump, which has its own
    /// call-off).
    pub fn stops_one(&self) -> bool {
        !self.is_group()
            && !self.leave_running
            && self.from_docker_checkpoint.is_none()
            && self.migration.is_none()
    }
}

/// `--encrypt`: the archive is written into a private scratch directory
/// (where the checkpoint's plain images are anyway), then encrypted into
/// the destination. (The container runs on: a stopping checkpoint is
/// encrypted by [`crate::flows::group::stop_one`] before the stop.)
async fn sealed_export(
    args: &ExportArgs,
    recipients: &Path,
    source: &Source,
    config: &Config,
) -> Result<ExportReport> {
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
    report.archive = args.export.clone();
    report.encrypted = true;
    report.archive_bytes = fs::metadata(&args.export).map(|m| m.len()).unwrap_or(0);
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

impl Source {
    /// The engine that owns the container, chosen once: Docker for a
    /// Docker container, else containerd.
    pub fn engine(&self) -> Selected<'_> {
        match &self.docker {
            Some(d) => Selected::Docker(d),
            None => Selected::Containerd(&self.ctr),
        }
    }
}

/// Writes the archive of `source`; returns the report `--json` prints.
pub async fn export(args: &ExportArgs, source: &Source, config: &Config) -> Result<ExportReport> {
    let live = live::Live {
        source,
        show: progress::wanted(args.json),
    };
    flow::export(&live, args, config).await
}
