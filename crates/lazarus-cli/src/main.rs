//! `lazarus`: the command line over Lazarus's core.
//!
//! A thin front door: parsing (clap) and printing here, everything else in
//! lazarus-core. CRIU is waited for directly ([`DirectWait`]): this is an
//! ordinary process that reaps its own children.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use lazarus_core::config::Config;
use lazarus_core::criu::{Criu, DirectWait, SwrkCriu};

mod inspect;

/// Inspect checkpoints of Lazarus containers
///
/// Lazarus is a containerd runtime (io.containerd.lazarus.v2) whose
/// containers can be checkpointed with CRIU (`docker checkpoint create`,
/// `ctr task checkpoint`) and restored later or on another host. This tool
/// works on those checkpoints; export, import and migration come next.
///
/// Settings (criu_path, criu_timeout_seconds, ...) come from
/// /etc/lazarus/config.toml, or from the file named by LAZARUS_CONFIG.
// Doc comments are shown verbatim: their line breaks are the help's (clap
// wraps only with its wrap_help feature, which is not worth a dependency).
#[derive(Parser)]
#[command(name = "lazarus", version, verbatim_doc_comment)]
struct Cli {
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
    /// Show what a checkpoint directory holds
    ///
    /// The container, the Lazarus and CRIU versions and dump options (from
    /// lazarus.json), then from CRIU's images: sizes, how long the dump
    /// kept the processes frozen, the process tree, TCP sockets, mounts.
    ///
    /// Reads the directory only; CRIU is not run. A checkpoint Lazarus did
    /// not take (e.g. runc's, or a plain `criu dump`) has no lazarus.json:
    /// its CRIU images are still summarised.
    #[command(
        verbatim_doc_comment,
        after_help = "Examples:\n  \
        lazarus inspect /var/lib/docker/containers/<id>/checkpoints/<name>\n  \
        lazarus inspect --json ./images   # from ctr task checkpoint --image-path ./images"
    )]
    Inspect {
        /// The checkpoint directory (CRIU's image files).
        dir: PathBuf,
        /// Print JSON instead of text:
        /// {"lazarus": lazarus.json or null, "criu": CRIU's images summarised}
        #[arg(long, verbatim_doc_comment)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Version { json } => version(json),
        Command::Inspect { dir, json } => inspect::run(&dir, json),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lazarus: {e}");
            ExitCode::FAILURE
        }
    }
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
