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

#[derive(Parser)]
#[command(
    name = "lazarus",
    version,
    about = "Checkpoints of Lazarus containers: inspect them (export, import and migration come next)",
    long_about = "Lazarus is a containerd runtime (io.containerd.lazarus.v2) whose containers can be \
                  checkpointed with CRIU and restored later or elsewhere. This tool works on those \
                  checkpoints.\n\nSettings come from /etc/lazarus/config.toml (or the file in \
                  LAZARUS_CONFIG)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print the versions of Lazarus and of the CRIU it would use.
    Version {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Show what a checkpoint directory holds: container, CRIU version, dump
    /// options, sizes, process tree, TCP sockets, mounts.
    ///
    /// DIR is a checkpoint image directory: e.g. one Docker took
    /// (/var/lib/docker/containers/<id>/checkpoints/<name>) or one given to
    /// `ctr task checkpoint --image-path`.
    Inspect {
        /// The checkpoint directory.
        dir: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
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

fn version(json: bool) -> lazarus_core::Result<()> {
    let config = Config::load()?;
    let criu = SwrkCriu {
        binary: config.criu_path.clone(),
        limits: config.criu_limits(),
        waiter: Box::new(DirectWait),
    };
    let criu_version = criu
        .version()
        .map(|(a, b, c)| format!("{a}.{b}.{c}"))
        .unwrap_or_else(|e| format!("unavailable ({e})"));
    let lazarus = env!("CARGO_PKG_VERSION");
    if json {
        let v = serde_json::json!({ "lazarus": lazarus, "criu": criu_version });
        println!("{v:#}");
    } else {
        println!("lazarus {lazarus}\ncriu    {criu_version}");
    }
    Ok(())
}
