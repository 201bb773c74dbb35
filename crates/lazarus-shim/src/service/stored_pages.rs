//! Store-backed Docker checkpoints (config `docker_checkpoints = "store"`,
//! core `store::pages_ref`): after the dump, the page images go into the
//! host's snapshot store and a reference stays in containerd's directory;
//! at Create, a reference is resolved back into page images (or refused at
//! once when this host's store lacks its snapshot).

use std::path::{Path, PathBuf};

use lazarus_core::checkpoint::restore::RestorePlan;
use lazarus_core::store::pages_ref::{self, PagesRef};
use lazarus_core::store::{release, Store};
use oci_spec::runtime::Spec;

use crate::error::Result;

/// Moves the pages of the dump in `images` into the store at `store_root`,
/// then sweeps the store for Docker checkpoints Docker no longer holds
/// (`store::release`; a failed sweep is logged, the checkpoint stands).
/// Runs after CRIU, with no lock held but the store's own for its commit.
pub(super) fn stash(
    store_root: &Path,
    images: &Path,
    namespace: &str,
    id: &str,
    spec: &Spec,
) -> Result<()> {
    let started = std::time::Instant::now();
    let store = Store::open(store_root)?;
    let docker_dir = docker_dir(spec, id);
    let r = pages_ref::stash(
        &store,
        images,
        &format!("{namespace}/{id}"),
        docker_dir.as_deref(),
    )?;
    let bytes: u64 = r.files.iter().map(|f| f.size).sum();
    log::info!(
        "checkpoint of {id}: {} page images ({bytes} bytes) into store snapshot {} in {:?}",
        r.files.len(),
        r.snapshot,
        started.elapsed()
    );
    if docker_dir.is_none() {
        log::warn!(
            "checkpoint of {id}: its Docker directory is not in its spec; snapshot {} is not \
             released with the checkpoint (`lazarus snapshot rm {}` does)",
            r.snapshot,
            r.snapshot
        );
    }
    match release::sweep(&store, release::GRACE) {
        Ok(s) if !s.released.is_empty() => log::info!(
            "released store-backed checkpoints Docker no longer holds: {}",
            s.released.join(", ")
        ),
        Ok(_) => {}
        Err(e) => log::warn!("sweep of store-backed checkpoints: {e}"),
    }
    Ok(())
}

/// The container's directory in Docker's data root
/// (`DATA_ROOT/containers/ID`), where Docker keeps its checkpoints: the
/// directory of the file Docker binds on /etc/hostname, if it is named
/// after the container.
fn docker_dir(spec: &Spec, id: &str) -> Option<PathBuf> {
    let mounts = spec.mounts().as_ref()?;
    let hostname = mounts
        .iter()
        .find(|m| m.destination() == Path::new("/etc/hostname"))?;
    let dir = hostname.source().as_ref()?.parent()?;
    (dir.file_name()? == id && dir.parent()?.file_name()? == "containers")
        .then(|| dir.to_path_buf())
}

/// A store-backed checkpoint's pages, put back for the restore: in place
/// in containerd's temporary copy, else (a directory that must stay as it
/// is) in a private copy in the bundle, which the plan then owns. A
/// reference this host's store cannot resolve is refused here, at Create.
pub(super) fn resolve(plan: &mut RestorePlan, store_root: &Path, bundle: &Path) -> Result<()> {
    let Some(r) = PagesRef::read(&plan.images)? else {
        return Ok(());
    };
    r.check_available(store_root, &plan.images)?;
    let started = std::time::Instant::now();
    if !plan.temporary {
        let copy =
            lazarus_core::checkpoint::pages::decompressed_copy(&plan.images, &[], bundle)?.keep();
        if plan.work == plan.images {
            plan.work = copy.clone();
        }
        plan.images = copy;
        plan.temporary = true;
    }
    let bytes = r.resolve(store_root, &plan.images, &plan.images)?;
    log::info!(
        "restore from {}: {bytes} bytes of page images from store snapshot {} in {:?}",
        plan.images.display(),
        r.snapshot,
        started.elapsed()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::docker_dir;
    use oci_spec::runtime::{MountBuilder, Spec, SpecBuilder};
    use std::path::Path;

    fn spec_with_hostname(source: &str) -> Spec {
        let m = MountBuilder::default()
            .destination("/etc/hostname")
            .source(source)
            .typ("bind")
            .build()
            .unwrap();
        SpecBuilder::default().mounts(vec![m]).build().unwrap()
    }

    /// Docker binds DATA_ROOT/containers/ID/hostname: its directory is where
    /// Docker keeps the container's checkpoints, whatever the data root.
    #[test]
    fn the_docker_directory_comes_from_the_hostname_bind() {
        let spec = spec_with_hostname("/srv/docker/containers/abc123/hostname");
        assert_eq!(
            docker_dir(&spec, "abc123").as_deref(),
            Some(Path::new("/srv/docker/containers/abc123"))
        );
        // Another container's file, or not Docker's layout: none.
        assert_eq!(docker_dir(&spec, "other"), None);
        let spec = spec_with_hostname("/etc/myhostname");
        assert_eq!(docker_dir(&spec, "etc"), None);
        let bare = SpecBuilder::default().mounts(vec![]).build().unwrap();
        assert_eq!(docker_dir(&bare, "abc123"), None);
    }
}
