//! `lazarus`: the command line over Lazarus's core.
//!
//! A thin front door: parsing (clap), the containerd and Docker clients
//! and printing here; archives, CRIU images and host facts in lazarus-core.
//! A checkpoint is always taken by the container's shim, asked through
//! containerd; the only CRIU run here is `lazarus version`'s, waited for
//! directly ([`DirectWait`]): this is an ordinary process that reaps its
//! own children.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lazarus_core::config::Config;
use lazarus_core::criu::{Criu, DirectWait, SwrkCriu};

use endpoints::Endpoints;
use error::{Error, Result};

mod containerd;
mod docker;
mod docker_config;
mod endpoints;
mod error;
mod export;
mod grants;
mod group;
mod group_guard;
mod guard;
mod image_chain;
mod import;
mod inspect;
mod migration;
mod progress;
mod report;
mod seal;
mod target;

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
/// --address or CONTAINERD_ADDRESS (default /run/containerd/containerd.sock;
/// for Docker containers, the containerd dockerd uses).
///
/// Settings (criu_path, work_root, ...) come from /etc/lazarus/config.toml,
/// or from the file named by LAZARUS_CONFIG.
// Doc comments are shown verbatim: their line breaks are the help's (clap
// wraps only with its wrap_help feature, which is not worth a dependency).
#[derive(Parser)]
#[command(name = "lazarus", version, verbatim_doc_comment)]
struct Cli {
    /// Docker's socket (unix:///path); default $DOCKER_HOST, else
    /// unix:///var/run/docker.sock
    #[arg(short = 'H', long = "host", global = true, verbatim_doc_comment)]
    host: Option<String>,
    /// containerd's socket; default $CONTAINERD_ADDRESS, else
    /// /run/containerd/containerd.sock
    #[arg(short = 'a', long = "address", global = true, verbatim_doc_comment)]
    address: Option<String>,
    #[command(subcommand)]
    command: Command,
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
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus checkpoint looper --export /backup/looper.tar.zst\n  \
        lazarus checkpoint --group app redis --tcp-established --export shop.tar\n  \
        lazarus checkpoint --leave-running --print-stats redis --export redis.tar.zst\n  \
        lazarus -a /run/k/containerd.sock checkpoint --namespace default web --export web.tar"
    )]
    Checkpoint(export::ExportArgs),
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
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus restore --import /backup/looper.tar.zst\n  \
        lazarus restore --import looper.tar.zst --name looper2\n  \
        lazarus restore --import web.tar.zst --require-signed /etc/lazarus/signers.pub\n  \
        lazarus restore --import web.tar.age --identity /etc/lazarus/archive.age"
    )]
    Restore(import::ImportArgs),
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
    /// CRIU page server (TLS, one-time certificates) until every page is
    /// there. If this host or the link fails before then, the copy there
    /// is killed and the container thaws here. Stop-and-copy: the container
    /// is down until all of its memory is dumped, sent and restored.
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
    Migrate(migration::send::MigrateArgs),
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
    Serve(migration::serve::ServeArgs),
    /// Internal: the guard `checkpoint --group` starts (thaws and unlocks
    /// the members if that checkpoint dies)
    #[command(hide = true)]
    GroupGuard(group_guard::GuardArgs),
    /// Internal: the guard `serve` starts for each received container
    /// (removes it if the agent dies before the sender confirmed it)
    #[command(hide = true)]
    ReceiveGuard(migration::receive_guard::ReceiveGuardArgs),
    /// Internal: the guard of a page server's packet filter rule (removes
    /// it if the migration's process dies first)
    #[command(hide = true)]
    FilterGuard(migration::filter::FilterGuardArgs),
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let endpoints = Endpoints::resolve(cli.host, cli.address);
    let result = match cli.command {
        Command::Version { json } => version(json).map_err(Error::from),
        Command::Inspect {
            path,
            json,
            identity,
        } => inspect::run(&path, json, identity.as_deref()),
        Command::Checkpoint(args) => {
            with_config(|config| block_on(export::run(&args, &endpoints, config)))
        }
        Command::Restore(args) => {
            with_config(|config| block_on(import::run(&args, &endpoints, config)))
        }
        Command::Migrate(args) => {
            with_config(|config| block_on(migration::send::run(&args, &endpoints, config)))
        }
        Command::Serve(args) => {
            with_config(|config| block_on(migration::serve::run(&args, &endpoints, config)))
        }
        Command::GroupGuard(args) => block_on(group_guard::run(&args, &endpoints.containerd)),
        Command::ReceiveGuard(args) => block_on(migration::receive_guard::run(&args, &endpoints)),
        Command::FilterGuard(args) => migration::filter::run_guard(&args),
        Command::Keygen { file, sign, age } => keygen(file, sign, age),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazarus: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The default signing key file.
const DEFAULT_SIGNING_KEY: &str = "/etc/lazarus/signing.key";

/// The default age identity file.
const DEFAULT_AGE_KEY: &str = "/etc/lazarus/archive.age";

fn keygen(file: Option<PathBuf>, sign: bool, age: bool) -> Result<()> {
    if age {
        let file = file.unwrap_or_else(|| PathBuf::from(DEFAULT_AGE_KEY));
        let (recipient, public) = seal::keygen(&file)?;
        println!(
            "identity     {} (secret: opens the archives)",
            file.display()
        );
        println!(
            "recipient    {} ({recipient}): export with --encrypt {}",
            public.display(),
            public.display()
        );
        return Ok(());
    }
    if !sign {
        let file = file.unwrap_or_else(|| PathBuf::from(migration::DEFAULT_KEY));
        lazarus_core::channel::Key::create(&file)?;
        println!("{}", file.display());
        return Ok(());
    }
    let file = file.unwrap_or_else(|| PathBuf::from(DEFAULT_SIGNING_KEY));
    let (signer, public) = lazarus_core::archive::Signer::create(&file)?;
    println!("signing key  {} (secret: keep it here)", file.display());
    println!(
        "public key   {} ({}): give it to importing hosts",
        public.display(),
        signer.public_hex()
    );
    Ok(())
}

fn with_config(f: impl FnOnce(&Config) -> Result<()>) -> Result<()> {
    f(&Config::load()?)
}

/// One thread: the CLI does one thing at a time, and zstd has its own.
fn block_on<F: std::future::Future<Output = Result<()>>>(f: F) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Core(lazarus_core::Error::io("start the async runtime")(e)))?
        .block_on(f)
}

/// Prints both versions; a CRIU that cannot be asked is printed as
/// unavailable and makes the exit status 1, with CRIU's error on stderr.
fn version(json: bool) -> lazarus_core::Result<()> {
    let config = Config::load()?;
    let criu = SwrkCriu {
        binary: config.criu_path.clone(),
        limits: config.criu_limits(),
        waiter: Box::new(DirectWait),
    };
    let asked = criu.version();
    let criu_version = match &asked {
        Ok((a, b, c)) => format!("{a}.{b}.{c}"),
        Err(_) => "unavailable".to_string(),
    };
    let lazarus = env!("CARGO_PKG_VERSION");
    if json {
        let v = serde_json::json!({ "lazarus": lazarus, "criu": criu_version });
        println!("{v:#}");
    } else {
        println!("lazarus {lazarus}\ncriu    {criu_version}");
    }
    asked.map(drop)
}
