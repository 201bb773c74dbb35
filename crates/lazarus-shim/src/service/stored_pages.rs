//! Store-backed Docker checkpoints (config `docker_checkpoints = "store"`,
//! core `store::pages_ref`): after the dump, the page images go into the
//! host's snapshot store and a reference stays in containerd's directory;
//! at Create, a reference is resolved back into page images (or refused at
//! once when this host's store lacks its snapshot).

use std::path::{Path, PathBuf};

use lazarus_core::checkpoint::restore::RestorePlan;
use lazarus_core::scratch::Scratch;
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

/// Where a store-backed dump writes first: a private directory in memory
/// (`scratch::in_memory`) sized by the container's memory use. CRIU then
/// writes the pages at memory speed while the container is frozen and the
/// store reads them from there; only the small images reach containerd's
/// directory. None (dump where containerd asked) when the container's
/// memory use is unknown or does not fit.
pub(super) fn dump_scratch(memory_root: &Path, pid: i32) -> Option<Scratch> {
    let in_use = lazarus_core::host::memory::cgroup_memory(u32::try_from(pid).ok()?)?;
    lazarus_core::scratch::in_memory(memory_root, "dump", in_use)
}

/// Moves what a dump wrote into the memory scratch `from` (all of it, or
/// what the store left: the small images and the reference) into
/// containerd's directory `to`, as private files.
pub(super) fn move_dump(from: &Path, to: &Path) -> Result<()> {
    copy_images(from, to, true)
}

/// Copies (and with `remove`, moves) the regular files of the image
/// directory `from` into `to`, as private files, never over one there.
fn copy_images(from: &Path, to: &Path, remove: bool) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let list = |e| lazarus_core::Error::io(format!("list {}", from.display()))(e);
    for entry in std::fs::read_dir(from).map_err(list)? {
        let entry = entry.map_err(list)?;
        let name = entry.file_name();
        let kind = entry.file_type().map_err(list)?;
        // A scratch's own lock; CRIU writes and reads regular files only.
        if !kind.is_file() || name == ".owner" {
            continue;
        }
        let dest = to.join(&name);
        let context = format!("copy {} to {}", entry.path().display(), dest.display());
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&dest)
            .map_err(lazarus_core::Error::io(&context))?;
        let mut src =
            std::fs::File::open(entry.path()).map_err(lazarus_core::Error::io(&context))?;
        std::io::copy(&mut src, &mut out).map_err(lazarus_core::Error::io(&context))?;
        if remove {
            std::fs::remove_file(entry.path()).map_err(lazarus_core::Error::io(&context))?;
        }
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
pub(super) fn resolve(
    plan: &mut RestorePlan,
    store_root: &Path,
    memory_root: &Path,
    bundle: &Path,
) -> Result<()> {
    let Some(r) = PagesRef::read(&plan.images)? else {
        return Ok(());
    };
    r.check_available(store_root, &plan.images)?;
    let started = std::time::Instant::now();
    let bytes: u64 = r.files.iter().map(|f| f.size).sum();
    if let Some(memory) = lazarus_core::scratch::in_memory(memory_root, "restore", bytes) {
        // The pages go into memory, beside a copy of the small images:
        // written there, they cost no disk writes (CRIU reads them once,
        // and they are removed right after the restore).
        copy_images(&plan.images, memory.path(), false)?;
        let n = r.resolve(store_root, &plan.images, memory.path())?;
        if plan.temporary {
            lazarus_core::checkpoint::image::remove_temporary(&plan.images);
        }
        if plan.work == plan.images {
            plan.work = memory.path().into();
        }
        plan.images = memory.path().into();
        plan.temporary = true;
        plan.memory = Some(std::sync::Arc::new(memory));
        log::info!(
            "restore from {}: {n} bytes of page images from store snapshot {} in {:?}",
            plan.images.display(),
            r.snapshot,
            started.elapsed()
        );
        return Ok(());
    }
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
    use super::{docker_dir, move_dump};
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

    /// What the store left of a dump in memory lands in containerd's
    /// directory as private files, and nothing of it stays in memory but
    /// the scratch's own lock.
    #[test]
    fn a_dump_in_memory_moves_whole_into_containerds_directory() {
        use std::os::unix::fs::PermissionsExt;
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join("inventory.img"), b"small").unwrap();
        std::fs::write(from.path().join("lazarus-store-ref.json"), b"{}").unwrap();
        std::fs::write(from.path().join(".owner"), b"").unwrap();
        move_dump(from.path(), to.path()).unwrap();
        let left: Vec<_> = std::fs::read_dir(from.path()).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "{left:?}");
        let inv = to.path().join("inventory.img");
        assert_eq!(std::fs::read(&inv).unwrap(), b"small");
        let mode = std::fs::metadata(&inv).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(to.path().join("lazarus-store-ref.json").is_file());
        assert!(!to.path().join(".owner").exists());
    }

    /// A file already in containerd's directory is never overwritten.
    #[test]
    fn a_dump_in_memory_never_replaces_a_file_in_containerds_directory() {
        let from = tempfile::tempdir().unwrap();
        let to = tempfile::tempdir().unwrap();
        std::fs::write(from.path().join("inventory.img"), b"new").unwrap();
        std::fs::write(to.path().join("inventory.img"), b"old").unwrap();
        let err = move_dump(from.path(), to.path()).unwrap_err().to_string();
        assert!(err.contains("inventory.img"), "{err}");
        assert_eq!(
            std::fs::read(to.path().join("inventory.img")).unwrap(),
            b"old"
        );
        assert!(from.path().join("inventory.img").is_file());
    }
}
