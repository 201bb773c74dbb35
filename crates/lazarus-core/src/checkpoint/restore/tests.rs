//! A restore plan's images (its own copy for post-copy, others' read in
//! place) and the cgroup mounts a checkpoint may ask for.

use super::*;

fn plan(images: &Path, page_server: Option<PageServer>) -> RestorePlan {
    RestorePlan {
        images: images.into(),
        work: images.into(),
        metadata: Metadata::new("c1", (4, 2, 1)),
        descriptors: Vec::new(),
        temporary: false,
        page_server,
        memory: None,
    }
}

#[test]
fn a_postcopy_restore_works_on_its_own_copy_of_anothers_images() {
    let (images, bundle) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::fs::write(images.path().join("pstree.img"), b"tree").unwrap();
    let server = super::super::postcopy::stand_in(27000, super::super::postcopy::PageMode::Lazy);
    let mut p = plan(images.path(), Some(server));
    p.own_postcopy_images(bundle.path()).unwrap();
    assert!(p.temporary && p.images.starts_with(bundle.path()), "{p:?}");
    assert_eq!(p.work, p.images, "the daemon works beside the copy");
    // The owner removes its directory as soon as the container runs.
    drop(images);
    assert_eq!(std::fs::read(p.images.join("pstree.img")).unwrap(), b"tree");
    p.discard_temporary_images();
    assert!(!p.images.exists(), "removed once the daemon is done");
}

#[test]
fn other_restores_read_the_images_where_they_lie() {
    let (images, bundle) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut p = plan(images.path(), None);
    p.own_postcopy_images(bundle.path()).unwrap();
    assert!(!p.temporary && p.images == images.path());
    assert_eq!(std::fs::read_dir(bundle.path()).unwrap().count(), 0);
}

#[test]
fn a_cgroup_mount_outside_the_hierarchies_is_refused() {
    let mut m = Metadata::new("c1", (4, 2, 1));
    let at = Path::new("/cp");
    for (mountpoint, root) in [
        ("/sys/fs/cgroup/memory", "/default/c1"),
        ("/sys/fs/cgroup/systemd", "/"),
    ] {
        m.cgroup_mounts = vec![image::CgroupMount {
            mountpoint: mountpoint.into(),
            root: root.into(),
        }];
        check_cgroup_mounts(at, &m).unwrap();
    }
    for (mountpoint, root) in [
        ("/sys/fs/cgroup/memory", "/../../../etc"),
        ("/sys/fs/cgroup/..", "/"),
        ("/sys/fs/cgroup/memory", "etc"),
        ("/", "/"),
    ] {
        m.cgroup_mounts = vec![image::CgroupMount {
            mountpoint: mountpoint.into(),
            root: root.into(),
        }];
        let e = check_cgroup_mounts(at, &m).unwrap_err().to_string();
        assert!(
            e.contains("not a cgroup hierarchy"),
            "{mountpoint} {root}: {e}"
        );
    }
}
