//! `lazarus`: the command line over Lazarus's core.
//!
//! Only the front door: the arguments (clap), the call into the library
//! (`lazarus_cli`, whose flows do the work and return typed reports), and
//! the printing of those reports, as text or with `--json` as JSON.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};
use lazarus_core::config::Config;
use serde::Serialize;

use lazarus_cli::engine::endpoints::Endpoints;
use lazarus_cli::flows::keys::{self, KeyKind};
use lazarus_cli::flows::migration::{filter, send, serve};
use lazarus_cli::flows::snapshot::{self, manage, revert, take, SnapshotAction, SnapshotsAction};
use lazarus_cli::flows::{
    self, all, export, group_guard, image, import, inspect, restore_guard, version,
};
use lazarus_cli::report::{self, Exported, Imported, Summary};
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
struct Cli {
    /// The engines' sockets may also come before the command (as the
    /// internal guards are started); the command's own flags win.
    #[command(flatten)]
    engines: TopEngineArgs,
    #[command(subcommand)]
    command: Command,
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
struct EngineArgs {
    /// Docker's socket (unix:///path); default $DOCKER_HOST, else
    /// unix:///var/run/docker.sock
    #[arg(short = 'H', long = "host", verbatim_doc_comment)]
    host: Option<String>,
    /// containerd's socket; default $CONTAINERD_ADDRESS, else the one
    /// dockerd uses (when a dockerd answers), else
    /// /run/containerd/containerd.sock
    #[arg(short = 'a', long = "address", verbatim_doc_comment)]
    address: Option<String>,
}

/// [`EngineArgs`] given before the command (`lazarus -a SOCK group-guard`):
/// accepted, not shown.
#[derive(clap::Args, Clone, Default)]
struct TopEngineArgs {
    #[arg(short = 'H', long = "host", hide = true)]
    host: Option<String>,
    #[arg(short = 'a', long = "address", hide = true)]
    address: Option<String>,
}

impl EngineArgs {
    /// Where the engines are: this command's flags, else those before it,
    /// else the environment and what dockerd says.
    fn endpoints(&self, top: &TopEngineArgs) -> Result<Endpoints> {
        let host = self.host.clone().or_else(|| top.host.clone());
        let address = self.address.clone().or_else(|| top.address.clone());
        block_on(async { Ok(Endpoints::discover(host, address).await) })
    }
}

#[derive(Subcommand)]
enum Command {
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
    /// --export FILE --snapshot ID`. Every snapshot is a full dump
    /// (incremental dumps need the kernel's memory dirty tracking, which
    /// the report says is missing or unused); the store's dedup is what
    /// makes the series small. Named volumes are not part of a snapshot:
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
struct CheckpointArgs {
    #[command(flatten)]
    one: export::ExportArgs,
    #[command(flatten)]
    all: all::CheckpointAllArgs,
    /// Write this snapshot of the store (`lazarus snapshots`) as the
    /// archive instead of checkpointing a container: any state of a series
    /// ships as an ordinary archive
    #[arg(long, value_name = "ID|TAG", conflicts_with_all = ["container", "group", "compose", "pod", "all", "from_docker_checkpoint", "leave_running"], verbatim_doc_comment)]
    snapshot: Option<String>,
    /// Make the checkpoint image (--export oci-archive:F|oci:DIR, or
    /// --push) of this archive (e.g. one Kubernetes' checkpoint API wrote)
    /// instead of checkpointing a container
    #[arg(long, value_name = "FILE", conflicts_with_all = ["container", "group", "compose", "pod", "all", "snapshot", "from_docker_checkpoint"], verbatim_doc_comment)]
    from_archive: Option<PathBuf>,
    /// Push the checkpoint image to REGISTRY/NAME:TAG (with skopeo; a
    /// registry on loopback over plain HTTP) instead of writing a file
    #[arg(
        long,
        value_name = "REFERENCE",
        conflicts_with = "all",
        verbatim_doc_comment
    )]
    push: Option<String>,
}

impl CheckpointArgs {
    /// `--export oci-archive:F|oci:DIR` or `--push`: a checkpoint image.
    fn image_dest(&self) -> Option<image::ImageDest> {
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
struct RestoreArgs {
    #[command(flatten)]
    one: import::ImportArgs,
    #[command(flatten)]
    all: all::RestoreAllArgs,
    #[command(flatten)]
    snapshot: revert::RevertArgs,
}

/// The shells `completion` writes for.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Shell {
    Bash,
    Zsh,
    Fish,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command, &cli.engines) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazarus: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

/// One arm per command and form, each a few lines that call the library
/// and print its report: long as a whole (over 80 lines), kept whole so
/// that the whole dispatch reads in one place.
fn run(command: Command, top: &TopEngineArgs) -> Result<()> {
    match command {
        Command::Version { json } => {
            let (report, criu_error) = version::version()?;
            print(&report, json);
            criu_error.map_or(Ok(()), |e| Err(e.into()))
        }
        Command::Inspect {
            path,
            json,
            identity,
        } => {
            print(&inspect::run(&path, json, identity.as_deref())?, json);
            Ok(())
        }
        Command::Checkpoint { args, engine } if args.image_dest().is_some() => {
            let dest = args.image_dest().expect("checked");
            let source = match (&args.snapshot, &args.from_archive) {
                (Some(key), _) => image::ImageSource::Snapshot(key),
                (_, Some(file)) => image::ImageSource::Archive(file),
                _ => image::ImageSource::Container(&args.one),
            };
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = block_on(image::run(source, &dest, endpoints, &config))?;
            print(&report, args.one.json);
            Ok(())
        }
        Command::Checkpoint {
            args:
                CheckpointArgs {
                    from_archive: Some(_),
                    ..
                },
            ..
        } => Err(lazarus_cli::Error::Refused(
            "--from-archive makes a checkpoint image: give --export oci-archive:FILE, \
             --export oci:DIR or --push REFERENCE"
                .into(),
        )),
        Command::Checkpoint {
            args:
                CheckpointArgs {
                    one,
                    snapshot: Some(key),
                    ..
                },
            ..
        } => {
            let config = Config::load()?;
            let report = manage::export(
                &config,
                &key,
                &one.export,
                one.compress,
                one.sign.as_deref(),
                one.encrypt.as_deref(),
            )?;
            print(&report, one.json);
            Ok(())
        }
        Command::Checkpoint {
            args: CheckpointArgs { one, all, .. },
            engine,
        } if all.all => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = all::checkpoint::run(&all, &one, endpoints, &config)?;
            print(&report, one.json);
            all_failed(report.failed, report.containers.len())
        }
        Command::Checkpoint {
            args: CheckpointArgs { one: args, .. },
            engine,
        } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = block_on(flows::checkpoint(&args, endpoints, &config))?;
            let mut text = match args.json {
                true => report::json(&report),
                false => report.summary(),
            };
            if let (Exported::One(r), true, false) = (&report, args.print_stats, args.json) {
                text = format!("{text}\n{}", report::export_text(r).trim_end());
            }
            // `--export -`: standard output is the archive's.
            match export::is_stdout(&args.export) {
                true => eprintln!("{text}"),
                false => println!("{text}"),
            }
            if let (false, Some(said)) = (args.json, report.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Restore {
            args: RestoreArgs { one, snapshot, .. },
            engine,
        } if snapshot.snapshot.is_some() => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = Imported::One(block_on(revert::run(&snapshot, &one, endpoints, &config))?);
            print(&report, one.json);
            if let (false, Some(said)) = (one.json, report.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Restore {
            args: RestoreArgs { one, all, .. },
            engine,
        } if all.all => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let report = all::restore::run(&all, &one, endpoints, &config)?;
            print(&report, one.json);
            all_failed(report.failed, report.containers.len())
        }
        Command::Restore {
            args: RestoreArgs { one: args, .. },
            engine,
        } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let imported = block_on(import::run(&args, endpoints, &config))?;
            print(&imported, args.json);
            if let (false, Some(said)) = (args.json, imported.said()) {
                eprintln!("{said}");
            }
            Ok(())
        }
        Command::Snapshot {
            action: Some(SnapshotAction::Import(args)),
            ..
        } => {
            let report = manage::import(&Config::load()?, &args)?;
            print(&report, args.json);
            Ok(())
        }
        Command::Snapshot {
            action: Some(SnapshotAction::Rm { ids, json }),
            ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::remove(&store, &ids)?, json);
            Ok(())
        }
        Command::Snapshot { take, engine, .. } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            let json = take.json;
            let mut said = |r: &snapshot::report::SnapshotReport| {
                print(r, json);
                if let (false, Some(said)) = (json, r.said()) {
                    eprintln!("{said}");
                }
            };
            match take.every {
                Some(period) => block_on(take::every(&take, period, endpoints, &config, &mut said)),
                None => {
                    said(&block_on(take::take(&take, endpoints, &config))?);
                    Ok(())
                }
            }
        }
        Command::Snapshots {
            action: Some(SnapshotsAction::Prune(args)),
            ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::prune(&store, &args)?, args.json);
            Ok(())
        }
        Command::Snapshots {
            container, json, ..
        } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&manage::list(&store, container.as_deref())?, json);
            Ok(())
        }
        Command::Diff { a, b, json } => {
            let store = snapshot::store(&Config::load()?)?;
            print(&snapshot::diff::run(&store, &a, &b)?, json);
            Ok(())
        }
        Command::Migrate { args, engine } => {
            let endpoints = &engine.endpoints(top)?;
            let config = Config::load()?;
            print(&block_on(send::run(&args, endpoints, &config))?, args.json);
            Ok(())
        }
        Command::Serve { args, engine } => {
            let endpoints = &engine.endpoints(top)?;
            block_on(serve::run(&args, endpoints, &Config::load()?))
        }
        // The guards are given both sockets: nothing is discovered.
        Command::GroupGuard { args, engine } => {
            let address = engine.address.or_else(|| top.address.clone());
            let endpoints = Endpoints::resolve(None, address);
            block_on(group_guard::run(&args, &endpoints.containerd))
        }
        Command::RestoreGuard { args, engine } => {
            let host = engine.host.or_else(|| top.host.clone());
            let address = engine.address.or_else(|| top.address.clone());
            block_on(restore_guard::run(
                &args,
                &Endpoints::resolve(host, address),
            ))
        }
        Command::FilterGuard(args) => filter::run_guard(&args),
        Command::Keygen { file, sign, age } => {
            let kind = match (sign, age) {
                (true, _) => KeyKind::Signing,
                (_, true) => KeyKind::Age,
                _ => KeyKind::Migration,
            };
            println!("{}", keys::keygen(file, kind)?.summary());
            Ok(())
        }
        Command::Completion { shell } => completion(shell),
        Command::Man { dir } => man_pages(&dir),
    }
}

/// `--all`: the report is printed; the command fails if any container did.
fn all_failed(failed: usize, of: usize) -> Result<()> {
    match failed {
        0 => Ok(()),
        n => Err(lazarus_cli::Error::Refused(format!(
            "{n} of {of} containers failed (named above)"
        ))),
    }
}

/// A report as JSON (`--json`), else its line for people.
fn print<R: Serialize + Summary>(report: &R, json: bool) {
    match json {
        true => println!("{}", report::json(report)),
        false => println!("{}", report.summary()),
    }
}

/// The script is made in memory first: clap_complete panics on a write
/// error (a closed pipe), this says it.
fn completion(shell: Shell) -> Result<()> {
    let shell = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "lazarus", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(lazarus_core::Error::io("write the completion script"))?;
    Ok(())
}

/// lazarus.1, and lazarus-COMMAND.1 for every command people use (the
/// hidden internal ones have none).
fn man_pages(dir: &Path) -> Result<()> {
    let io = |what: &Path| lazarus_core::Error::io(format!("write {}", what.display()));
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut cli = Cli::command();
    cli.build();
    let mut pages = vec![("lazarus".to_string(), cli.clone())];
    let documented = |s: &&clap::Command| !s.is_hide_set() && s.get_name() != "help";
    for sub in cli.get_subcommands().filter(documented) {
        let name = format!("lazarus-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().display_name(name)));
    }
    for (name, command) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command)
            .render(&mut page)
            .map_err(io(&path))?;
        std::fs::write(&path, page).map_err(io(&path))?;
        println!("{}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn only_the_commands_that_talk_to_an_engine_take_its_sockets() {
        let engines = [
            "checkpoint",
            "restore",
            "migrate",
            "serve",
            "group-guard",
            "restore-guard",
            "snapshot",
        ];
        for sub in Cli::command().get_subcommands() {
            for (long, short) in [("host", 'H'), ("address", 'a')] {
                let arg = sub.get_arguments().find(|a| a.get_long() == Some(long));
                assert_eq!(
                    arg.is_some(),
                    engines.contains(&sub.get_name()),
                    "{} --{long}",
                    sub.get_name()
                );
                if let Some(arg) = arg {
                    assert_eq!(arg.get_short(), Some(short));
                }
            }
        }
        let keygen = Cli::command()
            .find_subcommand_mut("keygen")
            .unwrap()
            .render_long_help()
            .to_string();
        assert!(
            !keygen.contains("--host") && !keygen.contains("--address"),
            "{keygen}"
        );
        // Given after the command, or before it (as the guards are
        // started): the command's own wins.
        let cli = Cli::try_parse_from([
            "lazarus",
            "-a",
            "/top",
            "checkpoint",
            "-a",
            "/own",
            "web",
            "--export",
            "f",
        ])
        .unwrap();
        let Command::Checkpoint { engine, .. } = cli.command else {
            panic!("not checkpoint")
        };
        assert_eq!(engine.address.as_deref(), Some("/own"));
        let cli = Cli::try_parse_from([
            "lazarus",
            "--address",
            "/c",
            "group-guard",
            "--member",
            "n/i",
        ])
        .unwrap();
        assert_eq!(cli.engines.address.as_deref(), Some("/c"));
        assert!(Cli::try_parse_from(["lazarus", "keygen", "-H", "unix:///d"]).is_err());
    }

    #[test]
    fn every_command_people_use_has_a_man_page_and_the_internal_ones_none() {
        let dir = tempfile::tempdir().unwrap();
        man_pages(dir.path()).unwrap();
        let mut pages: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        pages.sort();
        assert_eq!(
            pages,
            [
                "lazarus-checkpoint.1",
                "lazarus-completion.1",
                "lazarus-diff.1",
                "lazarus-inspect.1",
                "lazarus-keygen.1",
                "lazarus-migrate.1",
                "lazarus-restore.1",
                "lazarus-serve.1",
                "lazarus-snapshot.1",
                "lazarus-snapshots.1",
                "lazarus-version.1",
                "lazarus.1",
            ]
        );
        let checkpoint = std::fs::read_to_string(dir.path().join("lazarus-checkpoint.1")).unwrap();
        assert!(checkpoint.contains("lazarus\\-checkpoint"), "{checkpoint}");
        assert!(checkpoint.contains("leave\\-running"), "{checkpoint}");
    }

    #[test]
    fn completion_scripts_know_the_commands_and_their_flags() {
        for shell in [
            clap_complete::Shell::Bash,
            clap_complete::Shell::Zsh,
            clap_complete::Shell::Fish,
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "lazarus", &mut script);
            let script = String::from_utf8(script).unwrap();
            for word in [
                "checkpoint",
                "restore",
                "migrate",
                "leave-running",
                "import",
            ] {
                assert!(script.contains(word), "{shell}: no {word}");
            }
        }
    }
}
