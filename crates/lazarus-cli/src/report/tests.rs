//! The reports' text and JSON: what people read and what scripts parse.

use lazarus_core::archive::{Manifest, ManifestEntry};
use lazarus_core::checkpoint::pages::CompressedFile;

use super::*;

#[test]
fn pages_are_the_page_images_only() {
    let m = Manifest::new(vec![
        ManifestEntry::dir("checkpoint"),
        ManifestEntry::file("checkpoint/pages-1.img", 4096, String::new()),
        ManifestEntry::file("checkpoint/pages-2.img", 8192, String::new()),
        ManifestEntry::file("checkpoint/pagemap-1.img", 10, String::new()),
        ManifestEntry::file("checkpoint/pages-3.img.zst", 100, String::new()),
        ManifestEntry::file("rootfs-diff.tar", 512, String::new()),
    ]);
    // Without lazarus.json's record, a .zst counts as what it stores.
    assert_eq!(pages_bytes(&m, &[]), 12388);
    let listed = CompressedFile {
        name: "pages-3.img".into(),
        raw_bytes: 1 << 20,
        stored_bytes: 100,
    };
    assert_eq!(pages_bytes(&m, &[listed]), 12288 + (1 << 20));
}

#[test]
fn sizes_read_as_people_write_them() {
    assert_eq!(human(512), "512 B");
    assert_eq!(human(1536), "1.5 KiB");
    assert_eq!(human(3 << 30), "3.0 GiB");
    assert_eq!(ratio(50, 100), "0.50 of its content (100 B in 50 B)");
}

fn exported() -> ExportReport {
    ExportReport {
        archive: "/b/web.tar.zst".into(),
        container: "web".into(),
        id: "0123".into(),
        engine: "docker".into(),
        namespace: "moby".into(),
        stopped: true,
        encrypted: false,
        archive_bytes: 512,
        content_bytes: 1024,
        pages_bytes: 8192,
        rootfs_diff_bytes: 2048,
        deleted_files: 3,
        checkpoint_seconds: 1.25,
        export_seconds: 2.5,
        stats: DumpStats {
            freezing_time_us: Some(1500),
            frozen_time_us: Some(42_000),
            memdump_time_us: Some(2000),
            memwrite_time_us: Some(3000),
            pages_scanned: Some(77),
            pages_written: Some(66),
        },
        volumes: Vec::new(),
        not_carried: Vec::new(),
    }
}

/// `--print-stats` once printed zeros: it read a report by string keys
/// with silent defaults. Every number comes from a typed field now.
#[test]
fn print_stats_shows_the_reports_numbers() {
    let text = export_text(&exported());
    for shown in [
        "web (docker)",
        "0.50 of its content (1.0 KiB in 512 B)",
        "8.0 KiB",
        "2.0 KiB, 3 deleted",
        "42.0 ms (freezing 1.5 ms, memory dump 2.0 ms, memory write 3.0 ms)",
        "77 scanned, 66 written",
        "1.25 s checkpoint, 2.50 s in all",
    ] {
        assert!(text.contains(shown), "{shown:?} not in:\n{text}");
    }
}

/// `--json` keeps the keys it had: scripts read them.
#[test]
fn the_json_reports_keep_their_keys() {
    let v = serde_json::to_value(exported()).unwrap();
    let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "archive",
            "archive_bytes",
            "checkpoint_seconds",
            "container",
            "content_bytes",
            "deleted_files",
            "engine",
            "export_seconds",
            "id",
            "namespace",
            "pages_bytes",
            "rootfs_diff_bytes",
            "stats",
            "stopped",
        ],
        "encrypted only when it is"
    );
    assert_eq!(v["stats"]["frozen_time_us"], 42_000);
    // Statistics CRIU did not write are absent, not zero.
    let bare = ExportReport {
        stats: DumpStats::default(),
        encrypted: true,
        ..exported()
    };
    let v = serde_json::to_value(bare).unwrap();
    assert_eq!(v["stats"], serde_json::json!({}));
    assert_eq!(v["encrypted"], true);
}

/// People read what was done on stderr; stdout stays the archive or
/// the name, for scripts.
#[test]
fn a_finished_command_says_what_where_how_big_and_how_long() {
    let r = ExportReport {
        stopped: true,
        ..exported()
    };
    let one = Exported::One(Box::new(r.clone()));
    let said = one.said().unwrap();
    assert!(said.starts_with("lazarus: checkpointed "), "{said}");
    assert!(said.contains(&r.archive.display().to_string()), "{said}");
    assert!(
        said.ends_with(&format!("{} is stopped", r.container)),
        "{said}"
    );
    assert_eq!(
        one.summary().lines().next().unwrap(),
        r.archive.display().to_string()
    );
    let running = Exported::One(Box::new(ExportReport {
        stopped: false,
        ..r
    }));
    assert!(running.said().unwrap().ends_with("runs on"));
}

/// The import's last stage says whether the container runs.
#[test]
fn an_import_says_whether_its_container_runs() {
    let r = ImportReport {
        name: "web".into(),
        start_seconds: Some(1.25),
        id: "0123".into(),
        engine: "docker".into(),
        namespace: "moby".into(),
        from: "/r/web.tar".into(),
        extract_seconds: 0.5,
        restore_seconds: 1.5,
        pages_bytes: None,
        volumes: Vec::new(),
        restore_path: PATH_HAND_OFF.into(),
        running: Some(true),
    };
    let said = |r: &ImportReport| Imported::One(r.clone()).said().unwrap();
    assert!(said(&r).ends_with("; it runs"), "{}", said(&r));
    let ended = ImportReport {
        running: Some(false),
        ..r.clone()
    };
    assert!(said(&ended).contains("NOT running"), "{}", said(&ended));
    assert!(said(&ended).contains("docker logs web"), "{}", said(&ended));
    let unknown = ImportReport { running: None, ..r };
    assert!(said(&unknown).ends_with("s)"), "{}", said(&unknown));
}

/// The receiver's restore report crosses the migration channel.
#[test]
fn an_import_report_reads_back_as_it_was_sent() {
    let r = ImportReport {
        name: "web".into(),
        start_seconds: Some(1.25),
        id: "0123".into(),
        engine: "containerd".into(),
        namespace: "default".into(),
        from: "/r/archive.tar".into(),
        extract_seconds: 0.5,
        restore_seconds: 1.5,
        pages_bytes: Some(4096),
        volumes: vec!["redis-data".into()],
        restore_path: PATH_CONTAINERD.into(),
        running: None,
    };
    let back: ImportReport = serde_json::from_str(&json(&r)).unwrap();
    assert_eq!(back, r);
    // An older receiver's says nothing of the path.
    let mut old = serde_json::to_value(&r).unwrap();
    old.as_object_mut().unwrap().remove("restore_path");
    old.as_object_mut().unwrap().remove("start_seconds");
    let back: ImportReport = serde_json::from_value(old).unwrap();
    assert_eq!(back.restore_path, "");
    assert_eq!(back.start_seconds, None);
}

/// A migration's line gives the downtime's parts, the runtime's restore
/// among them when the receiver measured it.
#[test]
fn a_migration_says_where_its_downtime_went() {
    let restored = ImportReport {
        name: "web".into(),
        id: "0123".into(),
        engine: "docker".into(),
        namespace: "moby".into(),
        from: "/r/archive.tar".into(),
        extract_seconds: 0.02,
        restore_seconds: 0.28,
        start_seconds: Some(0.21),
        pages_bytes: None,
        volumes: Vec::new(),
        restore_path: PATH_HAND_OFF.into(),
        running: None,
    };
    let mut m = MigrationReport {
        container: "web".into(),
        to: "10.0.0.2:7470".into(),
        mode: "postcopy".into(),
        restored: Some(restored),
        source: "removed".into(),
        downtime_seconds: 0.45,
        checkpoint_seconds: 0.15,
        archive_seconds: 0.16,
        transfer_seconds: 0.01,
        restore_seconds: Some(0.28),
        archive_bytes: 26_000,
        memory_seconds: Some(1.1),
        memory_bytes: Some(256 << 20),
        total_seconds: 1.9,
        page_stream: None,
        not_carried: Vec::new(),
    };
    let line = m.summary();
    assert!(
        line.contains("downtime 0.45s (checkpoint and archive 0.16s, transfer 0.01s of")
            && line.contains("restore 0.28s, of which the runtime's 0.21s)"),
        "{line}"
    );
    m.restored.as_mut().unwrap().start_seconds = None;
    assert!(m.summary().contains("restore 0.28s)"), "{}", m.summary());
}
