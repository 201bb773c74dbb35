//! The archive with real files in temp dirs: round trips, and the helpers
//! the refusal and property tests share.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::hex;
use super::*;
pub(super) use crate::checkpoint::rootfs::tests::{craft, listing};

pub(super) const PAGE_MARKER: &[u8] = b"PAGE-FILE-START";

/// Bytes that do not compress away (a xorshift stream), after a marker a
/// test can find in an uncompressed archive.
pub(super) fn noise(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = PAGE_MARKER.to_vec();
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub(super) struct Fixture {
    pub dir: tempfile::TempDir,
    pub images: PathBuf,
    pub diff: RootfsDiff,
    pub log: PathBuf,
    pub config: ArchiveConfig,
}

pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("images");
    fs::create_dir_all(images.join("sub")).unwrap();
    fs::write(images.join("pages-1.img"), noise(300_000, 7)).unwrap();
    fs::write(images.join("inventory.img"), b"inventory").unwrap();
    fs::write(images.join("lazarus.json"), b"{\"format\":1}").unwrap();
    fs::write(images.join("stats-dump"), b"stats").unwrap();
    fs::write(images.join("sub/empty.img"), b"").unwrap();
    let tar = dir.path().join("diff.tar");
    fs::write(&tar, b"not really a tar, but bytes to carry").unwrap();
    let log = dir.path().join("dump.log");
    fs::write(&log, b"(00.001) dump log\n").unwrap();
    let config = ArchiveConfig {
        id: "c1".into(),
        name: "web".into(),
        image_name: "docker.io/library/busybox:latest".into(),
        image_digest: "sha256:abc".into(),
        runtime: "io.containerd.lazarus.v2".into(),
        created: "2024-05-06T07:08:09Z".parse().unwrap(),
        checkpointed: "2024-05-06T07:18:09.5Z".parse().unwrap(),
        engine: "docker".into(),
        namespace: "moby".into(),
    };
    let diff = RootfsDiff {
        tar,
        deleted: vec!["/etc/motd".into()],
    };
    Fixture {
        dir,
        images,
        diff,
        log,
        config,
    }
}

impl Fixture {
    pub fn write(&self, compression: Compression) -> PathBuf {
        let dest = self.dir.path().join("out").join("ckpt.tar");
        fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let input = ArchiveInput {
            images_dir: &self.images,
            spec_json: br#"{"ociVersion":"1.0.2","annotations":{"a":"b"}}"#,
            config: &self.config,
            rootfs_diff: Some(&self.diff),
            dump_log: Some(&self.log),
            network_status: Some(b"[]"),
            engine_config: None,
            volumes: &[],
        };
        write(&input, &dest, compression, &mut |_| {}).unwrap();
        dest
    }
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn round_trip(compression: Compression) {
    let f = fixture();
    let dest = f.write(compression);
    assert_eq!(
        listing(dest.parent().unwrap()),
        ["ckpt.tar"],
        "no temp file left"
    );
    assert_eq!(mode(&dest), 0o600);
    let manifest = verify(&dest).unwrap();
    assert_eq!(read_manifest(&dest).unwrap(), manifest);

    let out = f.dir.path().join("out/extracted");
    assert_eq!(extract(&dest, &out).unwrap(), manifest);
    assert_eq!(mode(&out), 0o700);
    for (src, name) in [
        ("images/pages-1.img", "checkpoint/pages-1.img"),
        ("images/inventory.img", "checkpoint/inventory.img"),
        ("images/lazarus.json", "checkpoint/lazarus.json"),
        ("images/sub/empty.img", "checkpoint/sub/empty.img"),
        ("images/stats-dump", "stats-dump"),
        ("diff.tar", ROOTFS_DIFF_TAR),
        ("dump.log", DUMP_LOG),
    ] {
        let got = out.join(name);
        assert_eq!(
            fs::read(&got).unwrap(),
            fs::read(f.dir.path().join(src)).unwrap(),
            "{name}"
        );
        assert_eq!(mode(&got), 0o600, "{name}");
    }
    for d in ["checkpoint", "checkpoint/sub"] {
        assert_eq!(mode(&out.join(d)), 0o700, "{d}");
    }
    assert_eq!(fs::read(out.join(NETWORK_STATUS)).unwrap(), b"[]");
    let deleted: Vec<String> =
        serde_json::from_slice(&fs::read(out.join(DELETED_FILES)).unwrap()).unwrap();
    assert_eq!(deleted, ["/etc/motd"]);
    let spec: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(SPEC_DUMP)).unwrap()).unwrap();
    assert_eq!(spec["annotations"][MANAGER_ANNOTATION], "lazarus");
    assert_eq!(
        spec["annotations"]["a"], "b",
        "the spec's own annotations stay"
    );
    let config: serde_json::Value =
        serde_json::from_slice(&fs::read(out.join(CONFIG_DUMP)).unwrap()).unwrap();
    // The keys checkpointctl's ContainerConfig reads, times as Go parses them.
    assert_eq!(
        config["rootfsImageName"],
        "docker.io/library/busybox:latest"
    );
    assert_eq!(config["createdTime"], "2024-05-06T07:08:09Z");
    assert_eq!(config["checkpointedTime"], "2024-05-06T07:18:09.500Z");
    assert_eq!(config["runtime"], "io.containerd.lazarus.v2");
    let back: ArchiveConfig = serde_json::from_value(config).unwrap();
    assert_eq!(back, f.config);
    let names: Vec<&str> = manifest.entries.iter().map(|e| e.name.as_str()).collect();
    assert!(
        names.contains(&"checkpoint") && !names.contains(&"lazarus.json"),
        "{names:?}"
    );
    let mut kept = listing(&out);
    kept.retain(|n| n == MANIFEST_FILE);
    assert_eq!(kept.len(), 1, "the manifest is kept");
}

#[test]
fn round_trip_zstd() {
    round_trip(Compression::Zstd {
        level: 3,
        threads: 2,
    });
}

#[test]
fn round_trip_zstd_single_thread() {
    round_trip(Compression::Zstd {
        level: 1,
        threads: 0,
    });
}

#[test]
fn round_trip_uncompressed() {
    round_trip(Compression::None);
}

#[test]
fn progress_counts_up_to_the_total() {
    let f = fixture();
    let dest = f.dir.path().join("a.tar");
    let mut seen = Vec::new();
    let input = ArchiveInput {
        images_dir: &f.images,
        spec_json: b"{}",
        config: &f.config,
        rootfs_diff: None,
        dump_log: None,
        network_status: None,
        engine_config: None,
        volumes: &[],
    };
    let m = write(&input, &dest, Compression::default(), &mut |n| seen.push(n)).unwrap();
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "monotonic");
    let files: u64 = [
        "pages-1.img",
        "inventory.img",
        "lazarus.json",
        "stats-dump",
        "sub/empty.img",
    ]
    .iter()
    .map(|n| fs::metadata(f.images.join(n)).unwrap().len())
    .sum::<u64>()
        + fs::metadata(f.images.join("stats-dump")).unwrap().len();
    assert_eq!(
        *seen.last().unwrap(),
        files,
        "progress counts the streamed files"
    );
    assert!(
        m.total_size() > files,
        "the manifest also counts spec and config"
    );
    assert!(!m
        .entries
        .iter()
        .any(|e| e.name == ROOTFS_DIFF_TAR || e.name == DUMP_LOG));
}

#[test]
fn write_refuses_a_symlink_in_the_images() {
    let f = fixture();
    std::os::unix::fs::symlink("/etc/passwd", f.images.join("link.img")).unwrap();
    let dest = f.dir.path().join("a.tar");
    let input = ArchiveInput {
        images_dir: &f.images,
        spec_json: b"{}",
        config: &f.config,
        rootfs_diff: None,
        dump_log: None,
        network_status: None,
        engine_config: None,
        volumes: &[],
    };
    let err = write(&input, &dest, Compression::None, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("link.img is neither a file nor a directory"),
        "{err}"
    );
    assert!(!dest.exists());
}

/// A tar made by hand: raw names, any entry type.
pub(super) fn manifest_for(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries = files
        .iter()
        .map(|(n, d)| ManifestEntry::file(n, d.len() as u64, hex(&Sha256::digest(d))))
        .collect();
    serde_json::to_vec(&Manifest::new(entries)).unwrap()
}

/// An import reads the archive's small descriptions before it verifies
/// the rest: they come first, each checked against the manifest.
#[test]
fn the_descriptions_are_read_before_the_images() {
    let f = fixture();
    for compression in [Compression::None, Compression::default()] {
        let dest = f.write(compression);
        let wanted = [CONFIG_DUMP, ENGINE_DUMP, SPEC_DUMP];
        let found = read_leading(&dest, &wanted, 1 << 20).unwrap();
        let config: ArchiveConfig = serde_json::from_slice(&found[CONFIG_DUMP]).unwrap();
        assert_eq!(config.name, f.config.name);
        assert!(found.contains_key(SPEC_DUMP));
        assert!(!found.contains_key(ENGINE_DUMP), "the fixture has none");
        // What is not asked for ends the reading: nothing beyond it.
        let found = read_leading(&dest, &[SPEC_DUMP], 1 << 20).unwrap();
        assert!(found.is_empty(), "config.dump comes first");
    }
}
