//! The import's own steps without an engine: received memory moved in, and
//! an archive the import policy refuses.

use super::unpack::move_pages;
use super::*;

#[test]
fn received_pages_move_in_beside_the_archives_images() {
    let pages = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    std::fs::write(pages.path().join("pagemap-1.img"), [1u8; 10]).unwrap();
    std::fs::write(pages.path().join("pages-1.img"), [2u8; 4096]).unwrap();
    std::fs::write(images.path().join("inventory.img"), b"").unwrap();
    assert_eq!(move_pages(pages.path(), images.path()).unwrap(), 4106);
    assert!(images.path().join("pages-1.img").is_file());
    assert!(images.path().join("pagemap-1.img").is_file());
    assert_eq!(std::fs::read_dir(pages.path()).unwrap().count(), 0);
}

#[test]
fn an_archive_with_pages_of_its_own_is_not_one_dump() {
    let pages = tempfile::tempdir().unwrap();
    let images = tempfile::tempdir().unwrap();
    std::fs::write(pages.path().join("pages-1.img"), b"received").unwrap();
    std::fs::write(images.path().join("pages-1.img"), b"archived").unwrap();
    let e = move_pages(pages.path(), images.path())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not one dump"), "{e}");
    assert_eq!(
        std::fs::read(images.path().join("pages-1.img")).unwrap(),
        b"archived"
    );
}

/// An archive whose spec asks for an OCI hook (refused by default),
/// written as export writes one.
fn archive_asking_for_a_hook(dir: &Path) -> std::path::PathBuf {
    let images = dir.join("images");
    std::fs::create_dir(&images).unwrap();
    std::fs::write(images.join("inventory.img"), b"x").unwrap();
    let now = chrono::Utc::now();
    let config = ArchiveConfig {
        id: "web".into(),
        name: "web".into(),
        image_name: "docker.io/library/busybox:latest".into(),
        image_digest: String::new(),
        runtime: crate::engine::containerd::LAZARUS_RUNTIME.into(),
        created: now,
        checkpointed: now,
        engine: "containerd".into(),
        namespace: "default".into(),
    };
    let input = archive::ArchiveInput {
        images_dir: &images,
        spec_json: br#"{"ociVersion":"1.0.2","hooks":{"prestart":[{"path":"/bin/true"}]},
            "linux":{"namespaces":[{"type":"pid"},{"type":"ipc"},{"type":"uts"},
            {"type":"mount"},{"type":"network"}]}}"#,
        config: &config,
        rootfs_diff: None,
        dump_log: None,
        network_status: None,
        engine_config: None,
        volumes: &[],
    };
    let file = dir.join("web.tar");
    archive::write(&input, &file, archive::Compression::None, &mut |_| {}).unwrap();
    file
}

/// The policy is checked on the extracted archive before any engine is
/// asked for anything: here there are none (the sockets do not exist),
/// and the error is the policy's, naming the flag that would grant it.
#[test]
fn an_import_the_policy_refuses_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = archive_asking_for_a_hook(dir.path());
    let config = Config {
        work_root: dir.path().join("lib"),
        ..Default::default()
    };
    let endpoints = Endpoints {
        docker: "unix:///nonexistent/docker.sock".into(),
        containerd: "/nonexistent/containerd.sock".into(),
    };
    let mut args = ImportArgs {
        file,
        name: None,
        namespace: Some("default".into()),
        runtime: None,
        json: true,
        // What a bare spec asks beyond the hook is not the point here.
        grants: GrantArgs {
            allow_security_options: true,
            ..Default::default()
        },
        identity: None,
        ignore_volumes: false,
        netlock: None,
        scratch_in: None,
        pages: None,
        pump_plan: None,
        snapshot: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt
        .block_on(restore(&args, &endpoints, &config, None))
        .unwrap_err();
    let text = e.to_string();
    assert!(text.contains("prestart hook: /bin/true"), "{text}");
    assert!(text.contains("Nothing was created"), "{text}");
    // (Its scratch went into memory when this host had room, else here.)
    let work = dir.path().join("lib/work");
    assert_eq!(
        std::fs::read_dir(&work).map_or(0, |d| d.count()),
        0,
        "scratch removed"
    );
    // Granted, it goes on to containerd (absent here).
    args.grants.allow_hooks = true;
    let e = rt
        .block_on(restore(&args, &endpoints, &config, None))
        .unwrap_err();
    assert!(matches!(e, Error::ContainerdUnreachable { .. }), "{e}");
}
