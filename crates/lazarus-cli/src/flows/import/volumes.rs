//! The named volumes an archive carries (`volumes/NAME.tar`, see
//! lazarus-core's `archive::volumes`), made afresh on this Docker and
//! filled from their copies before the container that mounts them is
//! created (Docker would otherwise make them empty).
//!
//! A volume of that name already here is refused, before any is made: it
//! may hold another service's data, and which copy should win is the
//! user's call (`docker volume rm`, or `--ignore-volumes` to keep it as
//! it is).

use std::path::Path;

use lazarus_core::archive::volumes;

use crate::engine::docker::Docker;
use crate::error::{Error, Result};
use crate::flows::restore_guard::RestoreGuard;

/// Makes and fills every volume the archive extracted in `dir` carries;
/// the names made. On failure, removes those it made.
pub(super) async fn restore_volumes(
    dir: &Path,
    docker: &Docker,
    guard: Option<&RestoreGuard>,
) -> Result<Vec<String>> {
    let carried = volumes::extracted(dir)?;
    for (name, _) in &carried {
        if docker.volume(name).await?.is_some() {
            return Err(Error::Conflict(format!(
                "volume {name} already exists on this host: remove it (docker volume rm {name}) \
                 to restore the archive's copy, or import with --ignore-volumes to use it as it is"
            )));
        }
    }
    let mut made = Vec::with_capacity(carried.len());
    for (name, tar) in &carried {
        if let Some(g) = guard {
            g.will_make_volume(name)?;
        }
        let filled = async {
            let volume = docker.create_volume(name).await?;
            made.push(name.clone());
            let at = volume["Mountpoint"].as_str().ok_or_else(|| {
                Error::Refused(format!("Docker made volume {name} but said not where"))
            })?;
            Ok::<_, Error>(volumes::unpack(tar, Path::new(at))?)
        }
        .await;
        if let Err(e) = filled {
            let cleanup = remove(docker, &made).await;
            return Err(e.with_cleanup(cleanup));
        }
    }
    Ok(made)
}

/// Removes the volumes `names`; the failures as one line, if any.
pub(super) async fn remove(docker: &Docker, names: &[String]) -> Option<String> {
    let mut failed = Vec::new();
    for n in names {
        if let Err(e) = docker.remove_volume(n).await {
            failed.push(format!("volume {n}: {e}"));
        }
    }
    (!failed.is_empty()).then(|| failed.join("; "))
}
