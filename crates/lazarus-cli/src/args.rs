//! The command line's definition (clap's derive): the top-level `Cli`,
//! every command and its flags, the engines' socket flags and the exit
//! codes shown under `--help`. Its doc comments are the help text, which
//! docs/cli.md holds verbatim (`cargo test -p lazarus-cli --test docs`).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use lazarus_cli::engine::endpoints::Endpoints;
use lazarus_cli::flows::migration::{filter, send, serve};
use lazarus_cli::flows::snapshot::{revert, take, SnapshotAction, SnapshotsAction};
use lazarus_cli::flows::{all, export, group_guard, image, import, restore_guard};
use lazarus_cli::{block_on, Result};

/// Checkpoint Lazarus containers into portable archives, restore them
/// anywhere, migrate them between hosts, inspect checkpoints
///
/// Lazarus is a containerd runtime (io.containerd.lazarus.v2) whose
/// containers can be checkpointed with CRIU (`docker checkpoint create`,
/// `ctr task checkpoint`) and restored later. This tool moves them between
/// hosts: `checkpoint --export` writes one archive file (CRIU's images, the
/// root filesystem changes, the configuration), `restore --import` makes a
/// new container from it on this or another host, and `migrate` moves a
/// running container to a host running `serve`, in one step.
///
/// Daemons are found as docker and ctr find them: Docker at --host or
/// DOCKER_HOST (default unix:///var/run/docker.sock), containerd at
/// --address or CONTAINERD_ADDRESS (default: the containerd that dockerd
/// uses, as its `docker info` (Docker 27+) or its command line and
/// daemon.json say; without a dockerd, /run/containerd/containerd.sock).
///
/// Settings (criu_path, work_root, ...) come from /etc/lazarus/config.toml,
/// or from the file named by LAZARUS_CONFIG.
// Doc comments are shown verbatim: their line breaks are the help's (clap
// wraps only with its wrap_help feature, which is not worth a dependency).
#[derive(Parser)]
#[command(
    name = "lazarus",
    version,
    verbatim_doc_comment,
    after_help = EXIT_CODES
)]
pub(crate) struct Cli {
    /// The engines' sockets may also come before the command (as the
    /// internal guards are started); the command's own flags win.
    #[command(flatten)]
    pub(crate) engines: TopEngineArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The exit codes, by kind of failure (error.rs's `exit`).
const EXIT_CODES: &str = "Exit status:
  0    done
  1    any other failure
  2    usage: the command line is malformed
  3    not found: no such container, image, archive or file
  4    refused: by the import policy, a signature, the runtime (not Lazarus), the state
       (not running), a peer
  5    conflict: the name is taken, or another agent is busy with it
  6    an engine (containerd, Docker) cannot be reached, or not as this user
  7    CRIU failed (dump or restore), crashed or timed out
  130  interrupted (SIGINT); 143: terminated (SIGTERM)";

/// The engines a command talks to: where their sockets are. Only on the
/// commands that talk to one.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct EngineArgs {
    /// Docker's socket (unix:///path); default $DOCKER_HOST, else
    /// unix:///var/run/docker.sock
    #[arg(short = 'H', long = "host", verbatim_doc_comment)]
    pub(crate) host: Option<String>,
    /// containerd's socket; default $CONTAINERD_ADDRESS, else the one
    /// dockerd uses (when a dockerd answers), else
    /// /run/containerd/containerd.sock
    #[arg(short = 'a', long = "address", verbatim_doc_comment)]
    pub(crate) address: Option<String>,
}

/// [`EngineArgs`] given before the command (`lazarus -a SOCK group-guard`):
/// accepted, not shown.
#[derive(clap::Args, Clone, Default)]
pub(crate) struct TopEngineArgs {
    #[arg(short = 'H', long = "host", hide = true)]
    pub(crate) host: Option<String>,
    #[arg(short = 'a', long = "address", hide = true)]
    pub(crate) address: Option<String>,
}

impl EngineArgs {
    /// Where the engines are: this command's flags, else those before it,
    /// else the environment and what dockerd says.
    pub(crate) fn endpoints(&self, top: &TopEngineArgs) -> Result<Endpoints> {
        let host = self.host.clone().or_else(|| top.host.clone());
        let address = self.address.clone().or_else(|| top.address.clone());
        block_on(async { Ok(Endpoints::discover(host, address).await) })
    }
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Print the versions of Lazarus and of the CRIU it would use
    ///
    /// CRIU is the binary criu_path names in the settings ("criu" on PATH
    /// by default), asked over its RPC interface as the runtime asks it.
    #[command(verbatim_doc_comment)]
    Version {
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Checkpoint a running container into one portable archive file
    ///
    /// The container's runtime (Lazarus's shim) dumps it with CRIU, asked
    /// through containerd; then CRIU's images, the changes the container
    /// made to its root filesystem (overlay upper directory: added, changed
    /// and deleted files) and its configuration are written to FILE as one
    /// tar (zstd-compressed by default), laid out as Podman's and CRI-O's
    /// checkpoint archives are, with a manifest of sha256 sums. FILE is
    /// written atomically, mode 0600: it holds the processes' memory.
    ///
    /// CONTAINER is a Docker container's name or id when dockerd knows it,
    /// else a containerd container id (in --namespace, default "default").
    /// Like `podman container checkpoint`, the container is stopped unless
    /// --leave-running. If the archive cannot be written after the
    /// container was stopped, a Docker container is restored in place.
    ///
    /// Not carried: volume and bind-mount contents (they are the host's),
    /// the container's address on Docker's networks (a new one is given,
    /// unless it was fixed with --ip).
    ///
    /// --group A B ... (or --compose PROJECT) checkpoints several
    /// containers at one instant: all are frozen before any is dumped, each
    /// is dumped frozen, then all are stopped (SIGKILL, while still frozen)
    /// or, with --leave-running, thawed. If any member fails, all are
    /// thawed and run on and nothing is written. FILE then holds every
    /// member's archive; `restore --import FILE` restores them all.
    ///
    /// --export oci-archive:FILE or oci:DIR (or --push REGISTRY/NAME:TAG)
    /// writes a checkpoint OCI image instead: the archive's content as one
    /// layer, annotated (org.criu.checkpoint.container.name) so that
    /// containerd's CRI (2.1-2.3) restores a container whose image it is.
    /// Of this container, of a snapshot (--snapshot ID), or of an archive
    /// (--from-archive FILE: e.g. one Kubernetes' checkpoint API wrote).
    ///
    /// --all checkpoints (and stops) every running Lazarus container of
    /// this host before a reboot: Docker's and those of every containerd
    /// namespace (k8s.io only with --namespace k8s.io), each a snapshot of
    /// the store (a Compose project one group archive beside the record),
    /// --parallel at once, with the record STORE_ROOT/all/lazarus-all.json
    /// that `restore --all` reads; --export-dir DIR writes one archive
    /// each, and the record, in DIR instead. Containers of other runtimes are left alone and named. A
    /// Docker restart policy is cleared for the checkpoint (and put back by
    /// the restore). A container that fails runs on; the others go on, and
    /// the command then exits non-zero. See docs/reboot.md.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus checkpoint looper --export /backup/looper.tar.zst\n  \
        lazarus checkpoint --from-archive checkpoint-web.tar --push registry:5000/web:ckpt\n  \
        lazarus checkpoint --all\n  \
        lazarus checkpoint --group app redis --tcp-established --export shop.tar\n  \
        lazarus checkpoint --leave-running --print-stats redis --export redis.tar.zst\n  \
        lazarus checkpoint -a /run/k/containerd.sock --namespace default web --export web.tar"
    )]
    Checkpoint {
        #[command(flatten)]
        args: CheckpointArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Create a new container from a checkpoint archive and restore it
    ///
    /// The archive is verified whole (every entry against its sha256) and
    /// unpacked into a private directory under work_root before anything is
    /// created. An archive taken from a Docker container is restored through
    /// Docker, as the same container (command, environment, mounts, labels,
    /// networks) from the same image, which must be on this host; otherwise
    /// (or with --namespace) through containerd. The root filesystem changes
    /// are applied, then the container starts from the checkpoint. If
    /// anything fails, the new container is removed again.
    ///
    /// The same archive can be restored several times (use --name).
    ///
    /// An archive is trusted with no more than a plain container: one
    /// whose recorded configuration asks for hooks, privileged mode,
    /// capabilities beyond the default, host namespaces, host paths,
    /// devices, weakened security options or sysctls is refused before
    /// anything is created, naming each item and the --allow-* flag that
    /// grants it (or the [import] section of the settings). Its cgroup
    /// path is never used. At the restore, no process may come back with
    /// capabilities, seccomp, no_new_privs or uid beyond the new container's.
    /// `lazarus inspect FILE` shows what an archive asks for.
    ///
    /// --all restores what `checkpoint --all` recorded (in the store; or in
    /// --import-dir DIR, alias --from), in the recorded order, each under
    /// its name,
    /// a Compose project all or none, and puts Docker restart policies
    /// back. A container already running under its name as the recorded
    /// one (or as one an interrupted restore --all made) is skipped; one
    /// that fails is named and the others still come back. The record is
    /// kept until every container runs, so running it again finishes the
    /// set; once it is whole again, a stored set's snapshots are removed
    /// from the store. --dry-run says what would be done.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus restore --import /backup/looper.tar.zst\n  \
        lazarus restore --all --dry-run\n  \
        lazarus restore --import looper.tar.zst --name looper2\n  \
        lazarus restore --import web.tar.zst --require-signed /etc/lazarus/signers.pub\n  \
        lazarus restore --import web.tar.age --identity /etc/lazarus/archive.age"
    )]
    Restore {
        #[command(flatten)]
        args: RestoreArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Snapshot a running container into this host's snapshot store
    ///
    /// The container is checkpointed and keeps running: it is frozen only
    /// while CRIU dumps it (the report says for how long). The checkpoint
    /// is cut into page-sized blocks and only blocks the store does not
    /// hold yet are written (zstd where it pays), so a series of
    /// snapshots of one container costs about what changed between them.
    /// The store is store_root in the settings (/var/lib/lazarus/store;
    /// 0700, files 0600), capped by store_max_gib.
    ///
    /// Revert to any snapshot, in any order, as often as wanted, with
    /// `lazarus restore CONTAINER --snapshot ID`; list them with
    /// `lazarus snapshots`; ship one elsewhere with `lazarus checkpoint
    /// --export FILE --snapshot ID`. Where the kernel tracks dirty memory,
    /// a snapshot after the first dumps only what changed (the report says
    /// which it was); everywhere the store's dedup is what makes the series
    /// small. Named volumes are not part of a snapshot:
    /// a revert leaves them as they are.
    ///
    /// `snapshot rm ID...` removes snapshots; blocks no other snapshot uses
    /// are freed at once.
    #[command(
        verbatim_doc_comment,
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  \
        lazarus snapshot redis --tag before-migration\n  \
        lazarus snapshot redis --every 5m --keep 12\n  \
        lazarus snapshot rm 3f9a1c"
    )]
    Snapshot {
        #[command(subcommand)]
        action: Option<SnapshotAction>,
        #[command(flatten)]
        take: take::TakeArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// List the snapshots in this host's store (`lazarus snapshot`)
    ///
    /// Per snapshot: its id, container, time, tag, how long the container
    /// was frozen, the bytes it added to the store and the bytes it holds,
    /// and its processes. `snapshots prune` removes old ones.
    #[command(
        verbatim_doc_comment,
        args_conflicts_with_subcommands = true,
        after_help = "Examples:\n  \
        lazarus snapshots redis\n  \
        lazarus snapshots prune --keep 5\n  \
        lazarus snapshots prune --older-than 7d redis"
    )]
    Snapshots {
        #[command(subcommand)]
        action: Option<SnapshotsAction>,
        /// Only this container's snapshots
        container: Option<String>,
        /// Print JSON instead of a table
        #[arg(long)]
        json: bool,
    },
    /// Show what changed between two snapshots of a container
    ///
    /// Memory: the bytes that differ, per process and mapping ([heap],
    /// [stack], a file's path, anonymous), compared page by page. Files:
    /// the root filesystem changes added, changed and deleted. Processes
    /// and threads that came or went, and the TCP connections. Reads the
    /// store only; CRIU is not run.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus diff first 3f9a1c\n  \
        lazarus diff --json 3f9a1c 77b0e2"
    )]
    Diff {
        /// The earlier snapshot (id, unique prefix or tag)
        a: String,
        /// The later snapshot
        b: String,
        /// Print JSON instead of text
        #[arg(long)]
        json: bool,
    },
    /// Show what a checkpoint archive or directory holds
    ///
    /// The container, image and engine (archives), the Lazarus and CRIU
    /// versions and dump options (lazarus.json), then from CRIU's images:
    /// sizes, how long the dump kept the processes frozen, the process
    /// tree, TCP sockets, mounts. An archive's sizes include its root
    /// filesystem changes and its compression ratio.
    ///
    /// Reads only; CRIU is not run. An archive is verified whole while it is
    /// read. A checkpoint Lazarus did not take (e.g. runc's, or a plain
    /// `criu dump`) has no lazarus.json: its CRIU images are still
    /// summarised.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus inspect looper.tar.zst\n  \
        lazarus inspect /var/lib/docker/containers/<id>/checkpoints/<name>\n  \
        lazarus inspect --json ./images   # from ctr task checkpoint --image-path ./images"
    )]
    Inspect {
        /// The archive, or the checkpoint directory (CRIU's image files).
        path: PathBuf,
        /// Print JSON instead of text:
        /// {"lazarus": lazarus.json or null, "criu": CRIU's images summarised,
        ///  "credentials": each thread's as CRIU would restore them,
        ///  "archive": for an archive, its config.dump, sizes, signer and
        ///  what it asks for}
        #[arg(long, verbatim_doc_comment)]
        json: bool,
        /// The age identity an encrypted archive is opened with
        #[arg(long, value_name = "FILE")]
        identity: Option<PathBuf>,
    },
    /// Move a running container to another host
    ///
    /// The receiving host runs `lazarus serve`; both hold the same key file.
    /// The receiver is asked first and checks what it can before anything
    /// stops (its engine answers, the name is free, the same image is
    /// there, and whether it can restore post-copy). Then the container is
    /// checkpointed (frozen), its archive (root filesystem changes,
    /// configuration and, stop-and-copy, its memory) streamed over an
    /// authenticated, encrypted connection (Noise, keyed by the shared
    /// key), and restored there as an ordinary container of the same
    /// engine, under the same name unless --name.
    ///
    /// Post-copy (the default when both hosts can): the container runs
    /// there after its minimal state; its memory follows from this host's
    /// CRIU page server (on loopback only; the pages cross in an encrypted
    /// tunnel keyed by the shared key) until every page is there. If this
    /// host or the link fails before then, the copy there is killed and
    /// the container thaws here. Stop-and-copy: the container is down until
    /// all of its memory is dumped, sent and restored.
    /// Either way, until the receiver says it runs, any failure (refusal,
    /// lost connection, failed restore) leaves the container running here,
    /// where it stopped. Afterwards the source is left stopped (or removed
    /// with --rm).
    ///
    /// Not carried: volume and bind-mount contents. The container's
    /// address on a Docker network comes from that network on the
    /// receiver: a fixed one (--ip) on a network both hosts share at layer
    /// 2 (macvlan on the same segment) moves with it, and with
    /// --tcp-established connections from outside survive; otherwise it
    /// gets a new address and outside connections break.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus migrate redis --to 10.0.0.2\n  \
        lazarus migrate --rm --key /etc/lazarus/k looper --to hostb:7470 --name looper2"
    )]
    Migrate {
        #[command(flatten)]
        args: send::MigrateArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Receive migrations from other hosts (`lazarus migrate`)
    ///
    /// Listens on ADDR and accepts peers holding the same key file; anyone
    /// else is refused and logged. Each migration becomes a container of
    /// this host's Docker (when it came from Docker) or containerd, found
    /// as --host/DOCKER_HOST and --address/CONTAINERD_ADDRESS say. One
    /// migration at a time; a log line per peer on stderr. What a sender's
    /// container may ask of this host is the [import] section of the
    /// settings (nothing beyond a plain container by default), as for
    /// `restore --import`.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus keygen /etc/lazarus/migration.key   # then copy it to the other host\n  \
        lazarus serve --listen 10.0.0.2"
    )]
    Serve {
        #[command(flatten)]
        args: serve::ServeArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Internal: the guard `checkpoint --group` starts (thaws and unlocks
    /// the members if that checkpoint dies)
    #[command(hide = true)]
    GroupGuard {
        #[command(flatten)]
        args: group_guard::GuardArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Internal: the guard `restore --import` and `serve` start (removes
    /// the containers being restored if the command dies first, or, for
    /// `serve`, before the sender confirmed)
    #[command(hide = true)]
    RestoreGuard {
        #[command(flatten)]
        args: restore_guard::RestoreGuardArgs,
        #[command(flatten)]
        engine: EngineArgs,
    },
    /// Internal: the guard of a page server's packet filter rule (removes
    /// it if the migration's process dies first)
    #[command(hide = true)]
    FilterGuard(filter::FilterGuardArgs),
    /// Write a new migration key file (mode 0600) to copy to both hosts,
    /// or with --sign a signing key for archives
    ///
    /// --sign writes an ed25519 signing key to FILE (mode 0600; default
    /// /etc/lazarus/signing.key) and its public key to FILE.pub: sign
    /// exports with `checkpoint --export F --sign FILE`, and give FILE.pub
    /// to the hosts that import them (`restore --import F --require-signed
    /// FILE.pub`, or the trusted_keys setting).
    #[command(verbatim_doc_comment)]
    Keygen {
        /// Where to write it (never overwritten; default
        /// /etc/lazarus/migration.key, with --sign /etc/lazarus/signing.key)
        #[arg(verbatim_doc_comment)]
        file: Option<PathBuf>,
        /// Make a signing key for archives instead of a migration key
        #[arg(long, conflicts_with = "age")]
        sign: bool,
        /// Make an age key for encrypted archives (FILE, and the recipient
        /// to encrypt to in FILE.pub) instead of a migration key
        #[arg(long, verbatim_doc_comment)]
        age: bool,
    },
    /// Print a shell completion script (bash, zsh or fish) on stdout
    ///
    /// scripts/install.sh installs them; by hand, e.g.
    /// `lazarus completion bash > /usr/share/bash-completion/completions/lazarus`.
    #[command(verbatim_doc_comment)]
    Completion {
        #[arg(value_enum)]
        shell: Shell,
    },
    /// Internal: write the man pages (lazarus.1, and lazarus-COMMAND.1 for
    /// each command) into DIR, as scripts/install.sh does
    #[command(hide = true)]
    Man {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

/// `checkpoint`: one container, a group, or with --all every Lazarus
/// container of the host (whose own flags relax the single export's
/// required ones).
#[derive(clap::Args)]
#[command(
    mut_arg("container", |a| a.required_unless_present_any(["all", "snapshot", "from_archive"])),
    mut_arg("export", |a| a
        .required(false)
        .required_unless_present_any(["all", "push"])
        .default_value_if("all", "true", Some("-"))
        .default_value_if("push", clap::builder::ArgPredicate::IsPresent, Some("-"))
        .hide_default_value(true)),
)]
pub(crate) struct CheckpointArgs {
    #[command(flatten)]
    pub(crate) one: export::ExportArgs,
    #[command(flatten)]
    pub(crate) all: all::CheckpointAllArgs,
    /// Write this snapshot of the store (`lazarus snapshots`) as the
    /// archive instead of checkpointing a container: any state of a series
    /// ships as an ordinary archive
    #[arg(long, value_name = "ID|TAG", conflicts_with_all = ["container", "group", "compose", "pod", "all", "from_docker_checkpoint", "leave_running"], verbatim_doc_comment)]
    pub(crate) snapshot: Option<String>,
    /// Make the checkpoint image (--export oci-archive:F|oci:DIR, or
    /// --push) of this archive (e.g. one Kubernetes' checkpoint API wrote)
    /// instead of checkpointing a container
    #[arg(long, value_name = "FILE", conflicts_with_all = ["container", "group", "compose", "pod", "all", "snapshot", "from_docker_checkpoint"], verbatim_doc_comment)]
    pub(crate) from_archive: Option<PathBuf>,
    /// Push the checkpoint image to REGISTRY/NAME:TAG (with skopeo; a
    /// registry on loopback over plain HTTP) instead of writing a file
    #[arg(
        long,
        value_name = "REFERENCE",
        conflicts_with = "all",
        verbatim_doc_comment
    )]
    pub(crate) push: Option<String>,
}

impl CheckpointArgs {
    /// `--export oci-archive:F|oci:DIR` or `--push`: a checkpoint image.
    pub(crate) fn image_dest(&self) -> Option<image::ImageDest> {
        image::ImageDest::parse(&self.one.export, self.push.as_deref())
    }
}

/// `restore`: one archive, or with --all what `checkpoint --all` recorded.
#[derive(clap::Args)]
#[command(mut_arg("file", |a| a
    .required(false)
    .required_unless_present_any(["all", "snapshot"])
    .default_value_if("all", "true", Some("-"))
    .default_value_if("snapshot", clap::builder::ArgPredicate::IsPresent, Some("-"))
    .hide_default_value(true)))]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    pub(crate) one: import::ImportArgs,
    #[command(flatten)]
    pub(crate) all: all::RestoreAllArgs,
    #[command(flatten)]
    pub(crate) snapshot: revert::RevertArgs,
}

/// The shells `completion` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
pub(crate) enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[cfg(test)]
mod tests;
