//! The refusals that come before any work: what would refuse the archive
//! after its verification anyway (a name taken here, Docker's image
//! missing), said before it; and, right before a container is made, its
//! name checked again and the guard told.

use lazarus_core::archive::{self, ArchiveConfig};

use super::{docker, ImportArgs};
use crate::engine::docker::Docker;
use crate::engine::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::{Error, Result};
use crate::flows::restore_guard::{self, Made, RestoreGuard};

/// What would refuse the archive after its verification anyway (a name
/// taken here, Docker's image missing), said before it: the verification
/// of a large archive takes seconds. From the archive's leading
/// descriptions (none in archives older than 0.2: then nothing is checked
/// early, and the same checks come later).
pub(super) async fn refuse_early(args: &ImportArgs, endpoints: &Endpoints) -> Result<()> {
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
pub(super) async fn about_to_make(
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
