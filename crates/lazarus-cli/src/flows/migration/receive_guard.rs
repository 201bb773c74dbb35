//! The guard of one received migration (see [`crate::guard`]): if the
//! agent dies between creating the container and the sender's
//! confirmation, the guard removes the container and the migration's
//! scratch directory.
//!
//! Without the confirmation the sender brings its source back, so a copy
//! left here would run twice (and hold the name, so the next migration of
//! that container would be refused). A live agent removes an unconfirmed
//! copy itself; a killed one cannot, and the engine may even finish a
//! restore it had asked for after its death. The guard keeps trying for
//! [`REMOVE_FOR`], which covers a restore still under way when the agent
//! died (the engine refuses to remove it until the restore ends).

use std::time::{Duration, Instant};

use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::Result;
use crate::flows::import;
use crate::guard::{self, Guard};

const REMOVE_FOR: Duration = Duration::from_secs(300);

/// `lazarus receive-guard`'s arguments (internal; started by `serve`).
#[derive(clap::Args)]
pub struct ReceiveGuardArgs {
    /// docker or containerd
    #[arg(long)]
    pub engine: String,
    /// The containerd namespace (containerd's containers)
    #[arg(long, default_value = "")]
    pub namespace: String,
    /// The container's name (Docker) or id (containerd)
    #[arg(long)]
    pub name: String,
    /// The migration's scratch directory, removed with the container
    #[arg(long)]
    pub scratch: std::path::PathBuf,
}

/// Starts the guard of the container `args` names, about to be restored.
pub fn start(endpoints: &Endpoints, args: &ReceiveGuardArgs) -> Result<Guard> {
    let argv: Vec<String> = [
        "--host",
        &endpoints.docker,
        "--address",
        &endpoints.containerd,
        "receive-guard",
        "--engine",
        &args.engine,
        "--namespace",
        &args.namespace,
        "--name",
        &args.name,
        "--scratch",
        &args.scratch.to_string_lossy(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    Guard::start(&argv, &format!("the migration of {}", args.name))
}

/// `lazarus receive-guard`: waits to be dismissed; without that, removes.
pub async fn run(args: &ReceiveGuardArgs, endpoints: &Endpoints) -> Result<()> {
    if guard::dismissed() {
        return Ok(());
    }
    let name = &args.name;
    eprintln!(
        "lazarus receive-guard: the agent ended before the sender confirmed {name}; removing it \
         here (the sender keeps its source)"
    );
    let deadline = Instant::now() + REMOVE_FOR;
    loop {
        match exists(args, endpoints).await {
            Ok(false) => {
                // The archive, and whatever the restore left beside it.
                let _ = std::fs::remove_dir_all(&args.scratch);
                eprintln!("lazarus receive-guard: {name} removed");
                return Ok(());
            }
            Ok(true) => {
                if let Err(e) = import::remove(&args.engine, name, &args.namespace, endpoints).await
                {
                    eprintln!("lazarus receive-guard: {name}: {e} (retrying)");
                }
            }
            Err(e) => eprintln!("lazarus receive-guard: {name}: {e} (retrying)"),
        }
        if Instant::now() >= deadline {
            eprintln!(
                "lazarus receive-guard: {name} is still here after {} s; remove it by hand",
                REMOVE_FOR.as_secs()
            );
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn exists(args: &ReceiveGuardArgs, endpoints: &Endpoints) -> Result<bool> {
    if args.engine == "docker" {
        return Ok(Docker::new(&endpoints.docker)?
            .container(&args.name)
            .await?
            .is_some());
    }
    let ctr = Containerd::connect(&endpoints.containerd, &args.namespace).await?;
    match ctr.container(&args.name).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}
