//! `lazarus restore C --snapshot ID`: the container back as it was then,
//! through the import's restore (the same engine, configuration, networks
//! and policy as `restore --import`), from the store instead of an
//! archive.
//!
//! In place (no --name): the snapshot is read out of the store whole and
//! checked (a damaged block is refused by name, the container untouched),
//! the import policy is applied, and only then is the current container
//! removed and the snapshot restored under its name. With --name, a copy
//! runs beside it.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

use lazarus_core::config::Config;
use lazarus_core::store::Snapshot;

use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::{Error, Result};
use crate::flows::import::{self, FromSnapshot, ImportArgs};
use crate::flows::restore_guard::{self, Made, RestoreGuard};
use crate::report::ImportReport;

#[derive(clap::Args, Clone)]
pub struct RevertArgs {
    /// Restore CONTAINER from one of its snapshots (`lazarus snapshots`):
    /// its id, a unique prefix or its tag. In place (the current state is
    /// replaced, after a confirmation unless --yes), or beside it with
    /// --name
    #[arg(long, value_name = "ID|TAG", requires = "container", conflicts_with_all = ["file", "all"], verbatim_doc_comment)]
    pub snapshot: Option<String>,
    /// With --snapshot: the container to revert
    #[arg(requires = "snapshot")]
    pub container: Option<String>,
    /// With --snapshot: replace the running container without asking
    #[arg(long, short = 'y', requires = "snapshot")]
    pub yes: bool,
}

/// Reverts (or copies, with `import.name`) `args.container` to the
/// snapshot `args.snapshot`.
pub async fn run(
    args: &RevertArgs,
    import: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<ImportReport> {
    let (Some(container), Some(key)) = (&args.container, &args.snapshot) else {
        return Err(Error::Refused("restore --snapshot ID CONTAINER".into()));
    };
    let store = super::store(config)?;
    let snapshot = store.find(Some(container), key)?;
    lazarus_core::store::pages_ref::refuse_pages_only(&snapshot, "restored")?;
    let current = current(&snapshot, container, import);
    let replaces = match &import.name {
        // A copy beside it: the import refuses a name already taken.
        Some(_) => None,
        None => match restore_guard::exists(&current, endpoints).await? {
            false => None,
            true => {
                if !args.yes {
                    confirm(container, &snapshot)?;
                }
                Some(current)
            }
        },
    };
    let import_args = ImportArgs {
        file: PathBuf::from(format!("snapshot {}", snapshot.id)),
        name: Some(import.name.clone().unwrap_or_else(|| container.clone())),
        snapshot: Some(FromSnapshot {
            store_root: config.store_root.clone(),
            id: snapshot.id.clone(),
            replaces,
        }),
        ..import.clone()
    };
    let guard = RestoreGuard::start(
        endpoints,
        &format!("the restore of snapshot {}", snapshot.id),
    )?;
    let restored = import::restore(&import_args, endpoints, config, Some(&guard)).await;
    guard.dismiss();
    restored
}

/// The container a revert in place replaces: where the snapshot's
/// container ran (Docker by name, containerd by id in its namespace).
fn current(snapshot: &Snapshot, container: &str, import: &ImportArgs) -> Made {
    let engine = snapshot.info["engine"].as_str().unwrap_or("containerd");
    let docker = engine == "docker" && import.namespace.is_none();
    let namespace = match (docker, &import.namespace) {
        (true, _) => DOCKER_NAMESPACE.to_string(),
        (false, Some(ns)) => ns.clone(),
        (false, None) => match snapshot.info["namespace"].as_str() {
            None | Some("") | Some(DOCKER_NAMESPACE) => DEFAULT_NAMESPACE.to_string(),
            Some(ns) => ns.to_string(),
        },
    };
    Made {
        engine: if docker { "docker" } else { "containerd" }.into(),
        namespace,
        name: container.to_string(),
    }
}

/// Asks on the terminal; without one, --yes is needed.
fn confirm(container: &str, snapshot: &Snapshot) -> Result<()> {
    let refused = || {
        Error::Refused(format!(
            "restoring snapshot {} replaces the running container {container} (its current \
             state is lost: `lazarus snapshot {container}` keeps it first); give --yes to \
             confirm, or --name NEW to restore a copy beside it",
            snapshot.id
        ))
    };
    if !std::io::stdin().is_terminal() {
        return Err(refused());
    }
    eprint!(
        "Replace {container} with snapshot {} of {}? Its current state is lost. [y/N] ",
        snapshot.id,
        snapshot.created.format("%Y-%m-%d %H:%M:%S")
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().read_line(&mut line);
    match line.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(refused()),
    }
}
