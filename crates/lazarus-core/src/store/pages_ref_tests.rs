//! Store-backed checkpoints without root: the reference replaces the page
//! images, parses back, resolves to the same bytes, and is refused (by
//! name) copied to a host whose store lacks it, edited, or from a newer
//! Lazarus.

use std::fs;
use std::path::Path;

use super::pages_ref::{self, PagesRef, RefError, REF_FILE};
use super::Store;

fn pages(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 8192 < 4096 { (i as u8) ^ seed } else { 0 })
        .collect()
}

/// A CRIU-like image directory: two page images and a small image.
fn images(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    fs::create_dir_all(&images).unwrap();
    fs::write(images.join("pages-1.img"), pages(1, 40_000)).unwrap();
    fs::write(images.join("pages-2.img"), pages(2, 4096 * 3)).unwrap();
    fs::write(images.join("inventory.img"), b"small image").unwrap();
    images
}

#[test]
fn the_reference_replaces_the_pages_and_resolves_to_the_same_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = pages_ref::stash(&store, &images, "moby/c1", None).unwrap();
    assert!(!images.join("pages-1.img").exists());
    assert!(!images.join("pages-2.img").exists());
    assert!(images.join("inventory.img").exists());
    let read = PagesRef::read(&images).unwrap().unwrap();
    assert_eq!(read, r);
    assert_eq!(r.files.len(), 2);
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].info["kind"], pages_ref::KIND);
    let refused = pages_ref::refuse_pages_only(&listed[0], "exported").unwrap_err();
    assert!(
        refused.to_string().contains("--from-docker-checkpoint"),
        "{refused}"
    );
    let out = tmp.path().join("out");
    fs::create_dir(&out).unwrap();
    let n = read.resolve(store.root(), &images, &out).unwrap();
    assert_eq!(n, 40_000 + 4096 * 3);
    assert_eq!(fs::read(out.join("pages-1.img")).unwrap(), pages(1, 40_000));
    assert_eq!(
        fs::read(out.join("pages-2.img")).unwrap(),
        pages(2, 4096 * 3)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(out.join("pages-1.img"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn a_directory_without_a_reference_is_not_store_backed() {
    let tmp = tempfile::tempdir().unwrap();
    assert_eq!(PagesRef::read(&images(tmp.path())).unwrap(), None);
}

/// The copied reference: another host's store (here an empty one, or none
/// at all) refuses at once and names the way to ship it.
#[test]
fn a_reference_without_its_objects_is_refused_naming_the_export() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = pages_ref::stash(&store, &images, "moby/c1", None).unwrap();
    for other in [tmp.path().join("other-store"), tmp.path().join("none")] {
        if other.ends_with("other-store") {
            Store::open(&other).unwrap();
        }
        let e = r.check_available(&other, &images).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("lazarus checkpoint --export"), "{msg}");
        assert!(msg.contains(&r.snapshot), "{msg}");
        assert!(
            matches!(e, crate::error::Error::FailedPrecondition(_)),
            "{e:?}"
        );
        assert!(!other.ends_with("none") || !other.exists(), "made a store");
    }
    // Released (removed from the store): the same refusal.
    store.remove(&r.snapshot).unwrap();
    let msg = r
        .check_available(store.root(), &images)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("lazarus checkpoint --export"), "{msg}");
}

#[test]
fn an_edited_or_newer_reference_is_refused_by_name() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = pages_ref::stash(&store, &images, "moby/c1", None).unwrap();
    let path = images.join(REF_FILE);

    let mut edited = r.clone();
    edited.files[0].size += 1;
    let bytes = serde_json::to_vec(&edited).unwrap();
    assert!(matches!(
        PagesRef::parse(&path, &bytes),
        Err(RefError::Check { .. })
    ));

    let mut newer = serde_json::to_value(&r).unwrap();
    newer["format"] = 99.into();
    let bytes = serde_json::to_vec(&newer).unwrap();
    assert!(matches!(
        PagesRef::parse(&path, &bytes),
        Err(RefError::Format { found: 99, .. })
    ));

    assert!(matches!(
        PagesRef::parse(&path, b"not json"),
        Err(RefError::Malformed { .. })
    ));
}

/// A reference whose check holds but which names a file that is not a
/// page image (it would be written into the image directory) is refused.
#[test]
fn a_reference_naming_other_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let images = images(tmp.path());
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = pages_ref::stash(&store, &images, "moby/c1", None).unwrap();
    let mut bad = r.clone();
    bad.files[0].name = "../inventory.img".into();
    bad.check.clear();
    // The check recomputed, as a forger would.
    let plain = serde_json::to_vec(&bad).unwrap();
    bad.check = <sha2::Sha256 as sha2::Digest>::digest(&plain)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let bytes = serde_json::to_vec(&bad).unwrap();
    assert!(matches!(
        PagesRef::parse(&images.join(REF_FILE), &bytes),
        Err(RefError::Malformed { .. })
    ));
}

/// Docker's data root as the release sees it: the container's directory
/// `containers/c1`, its checkpoints under `checkpoints/NAME/`.
fn docker_copy(root: &Path, images: &Path, container: &str, cp: &str) -> std::path::PathBuf {
    let dir = root
        .join("containers")
        .join(container)
        .join("checkpoints")
        .join(cp);
    fs::create_dir_all(&dir).unwrap();
    fs::copy(images.join(REF_FILE), dir.join(REF_FILE)).unwrap();
    dir
}

/// `docker checkpoint rm` (the reference gone from Docker's directory)
/// releases a snapshot a sweep saw held; a copy in another container's
/// checkpoints holds it too; one never held waits out the grace.
#[test]
fn a_sweep_releases_what_docker_no_longer_holds() {
    use super::release::{sweep, GRACE};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let docker = tmp.path().join("docker");
    let c1 = docker.join("containers/c1");
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let images = images(tmp.path());
    let r = pages_ref::stash(&store, &images, "moby/c1", Some(&c1)).unwrap();
    let cp = docker_copy(&docker, &images, "c1", "cp1");
    let copy = docker_copy(&docker, &images, "c2", "cp1");

    let swept = sweep(&store, GRACE).unwrap();
    assert_eq!((swept.held, swept.released.len()), (1, 0));
    fs::remove_dir_all(&cp).unwrap();
    assert_eq!(sweep(&store, GRACE).unwrap().held, 1, "the copy holds it");
    fs::remove_dir_all(&copy).unwrap();
    let swept = sweep(&store, GRACE).unwrap();
    assert_eq!(swept.released, vec![r.snapshot.clone()]);
    assert!(store.list().unwrap().is_empty());
    assert_eq!(store.usage().unwrap(), 0, "its blocks were collected");

    // Never held: kept within the grace, released after it.
    let images = tmp.path().join("again");
    fs::create_dir_all(&images).unwrap();
    fs::write(images.join("pages-1.img"), pages(3, 8192)).unwrap();
    let r = pages_ref::stash(&store, &images, "moby/c1", Some(&c1)).unwrap();
    assert!(sweep(&store, GRACE).unwrap().released.is_empty());
    assert_eq!(
        sweep(&store, Duration::ZERO).unwrap().released,
        vec![r.snapshot]
    );

    // Without a Docker directory: never released by a sweep.
    let images = tmp.path().join("third");
    fs::create_dir_all(&images).unwrap();
    fs::write(images.join("pages-1.img"), pages(4, 8192)).unwrap();
    pages_ref::stash(&store, &images, "default/c3", None).unwrap();
    assert!(sweep(&store, Duration::ZERO).unwrap().released.is_empty());
}
