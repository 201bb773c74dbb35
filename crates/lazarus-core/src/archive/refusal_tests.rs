//! Every way a damaged or hostile archive must be refused, with a clear
//! message and nothing left behind.

use std::fs;
use std::path::{Path, PathBuf};

use super::tests::{craft, fixture, listing, manifest_for, PAGE_MARKER};
use super::*;

/// Asserts extract fails with `needle` in its message, and that verify
/// agrees, leaving nothing next to the destination.
pub(super) fn assert_refused(archive: &Path, needle: &str) {
    let err = verify(archive).unwrap_err().to_string();
    assert!(err.contains(needle), "verify: {err:?} lacks {needle:?}");
    let parent = tempfile::tempdir().unwrap();
    let dest = parent.path().join("dest");
    let err = extract(archive, &dest).unwrap_err().to_string();
    assert!(err.contains(needle), "extract: {err:?} lacks {needle:?}");
    assert!(
        listing(parent.path()).is_empty(),
        "left behind: {:?}",
        listing(parent.path())
    );
}

#[test]
fn truncated_archives_are_refused() {
    for compression in [
        Compression::None,
        Compression::Zstd {
            level: 3,
            threads: 0,
        },
    ] {
        let f = fixture();
        let dest = f.write(compression);
        let bytes = fs::read(&dest).unwrap();
        // Cut in the page file, and just before the end-of-archive blocks
        // (a whole last entry missing).
        for cut in [bytes.len() / 2, bytes.len() - 1024 - 512 - 1] {
            fs::write(&dest, &bytes[..cut]).unwrap();
            let err = verify(&dest).unwrap_err().to_string();
            assert!(
                err.contains("truncated"),
                "{compression:?} cut at {cut}: {err}"
            );
            assert_refused(&dest, "truncated");
        }
    }
}

#[test]
fn a_flipped_byte_in_a_page_file_is_refused() {
    let f = fixture();
    let dest = f.write(Compression::None);
    let mut bytes = fs::read(&dest).unwrap();
    let at = bytes
        .windows(PAGE_MARKER.len())
        .position(|w| w == PAGE_MARKER)
        .unwrap();
    bytes[at + 1000] ^= 0x01;
    fs::write(&dest, &bytes).unwrap();
    assert_refused(
        &dest,
        "\"checkpoint/pages-1.img\" does not match its sha256",
    );
}

#[test]
fn a_flipped_byte_in_a_compressed_archive_is_refused() {
    let f = fixture();
    let dest = f.write(Compression::Zstd {
        level: 3,
        threads: 0,
    });
    let mut bytes = fs::read(&dest).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x40;
    fs::write(&dest, &bytes).unwrap();
    // zstd's own checksum or the manifest's, whichever notices first.
    let err = verify(&dest).unwrap_err().to_string();
    assert!(err.contains("corrupt"), "{err}");
    assert_refused(&dest, "corrupt");
}

fn crafted(entries: &[(&[u8], tar::EntryType, &[u8])]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crafted.tar");
    fs::write(&path, craft(entries)).unwrap();
    (dir, path)
}

const FILE: tar::EntryType = tar::EntryType::Regular;

#[test]
fn a_newer_format_is_refused_naming_both_versions() {
    let mut m: serde_json::Value = serde_json::from_slice(&manifest_for(&[])).unwrap();
    m["format"] = 2.into();
    m["entries"] = "changed in format 2".into();
    let m = serde_json::to_vec(&m).unwrap();
    let (_d, path) = crafted(&[(MANIFEST_FILE.as_bytes(), FILE, &m)]);
    let err = read_manifest(&path).unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::FailedPrecondition);
    let err = err.to_string();
    assert!(err.contains("format 2, newer than format 1"), "{err}");
    assert_refused(&path, "format 2, newer than format 1");
}

#[test]
fn an_entry_not_in_the_manifest_is_refused() {
    let m = manifest_for(&[("spec.dump", b"{}")]);
    let (_d, path) = crafted(&[
        (MANIFEST_FILE.as_bytes(), FILE, &m),
        (b"spec.dump", FILE, b"{}"),
        (b"extra", FILE, b"surprise"),
    ]);
    assert_refused(&path, "entry \"extra\" is not listed in its manifest");
}

#[test]
fn a_duplicate_entry_is_refused() {
    let m = manifest_for(&[("spec.dump", b"{}")]);
    let (_d, path) = crafted(&[
        (MANIFEST_FILE.as_bytes(), FILE, &m),
        (b"spec.dump", FILE, b"{}"),
        (b"spec.dump", FILE, b"{}"),
    ]);
    assert_refused(&path, "entry \"spec.dump\" appears twice");
}

#[test]
fn path_traversal_is_refused_and_nothing_lands_outside() {
    for name in [
        &b"../evil"[..],
        b"/tmp/lazarus-evil",
        b"checkpoint/../../evil",
        b"./evil",
    ] {
        let m = manifest_for(&[]);
        let (dir, path) = crafted(&[(MANIFEST_FILE.as_bytes(), FILE, &m), (name, FILE, b"x")]);
        assert_refused(&path, "is not a plain relative path");
        assert!(!dir.path().join("evil").exists());
    }
    assert!(!Path::new("/tmp/lazarus-evil").exists());
    // Even a manifest listing such a name is refused before any entry.
    let m = manifest_for(&[("../evil", b"x")]);
    let (_d, path) = crafted(&[
        (MANIFEST_FILE.as_bytes(), FILE, &m),
        (b"../evil", FILE, b"x"),
    ]);
    assert_refused(&path, "is not a plain relative path");
}

#[test]
fn links_and_devices_are_refused() {
    for kind in [
        tar::EntryType::Symlink,
        tar::EntryType::Link,
        tar::EntryType::Char,
        tar::EntryType::Fifo,
    ] {
        let m = manifest_for(&[("checkpoint/x", b"")]);
        let (_d, path) = crafted(&[
            (MANIFEST_FILE.as_bytes(), FILE, &m),
            (b"checkpoint/x", kind, b""),
        ]);
        assert_refused(&path, "only files and directories are accepted");
    }
}

#[test]
fn what_is_not_a_lazarus_archive_is_refused() {
    let (_d, path) = crafted(&[(b"spec.dump", FILE, b"{}")]);
    assert_refused(
        &path,
        "its first entry is \"spec.dump\", not lazarus-manifest.json",
    );
    fs::write(&path, [0x1f, 0x8b, 8, 0, 0, 0]).unwrap();
    assert_refused(&path, "gzip-compressed");
    fs::write(&path, b"").unwrap();
    assert_refused(&path, "neither zstd-compressed nor a tar");
    fs::write(&path, b"hello").unwrap();
    assert_refused(&path, "not a Lazarus checkpoint archive");
}

#[test]
fn extract_refuses_an_existing_destination() {
    let f = fixture();
    let dest = f.write(Compression::None);
    let out = f.dir.path().join("images");
    let err = extract(&dest, &out).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
}

/// The limits refuse before anything is written, each naming its setting.
#[test]
fn oversized_archives_are_refused_before_unpacking() {
    let f = fixture();
    let zstd = Compression::Zstd {
        level: 3,
        threads: 0,
    };
    let archive = f.write(zstd);
    let defaults = Limits::default();
    let cases = [
        (
            Limits {
                max_entries: 3,
                ..defaults
            },
            "max_entries",
        ),
        (
            Limits {
                max_ratio: 0,
                ..defaults
            },
            "max_ratio",
        ),
        (
            Limits {
                free_margin_bytes: u64::MAX / 2,
                ..defaults
            },
            "not enough space",
        ),
    ];
    for (limits, needle) in cases {
        let parent = tempfile::tempdir().unwrap();
        let dest = parent.path().join("dest");
        let err = extract_with(&archive, &dest, &limits, &|_| true, &mut |_| {})
            .unwrap_err()
            .to_string();
        assert!(err.contains(needle), "{needle}: {err}");
        assert!(listing(parent.path()).is_empty(), "{needle}: left behind");
    }
    // Within the defaults the same archive unpacks.
    let parent = tempfile::tempdir().unwrap();
    extract_with(
        &archive,
        &parent.path().join("d"),
        &defaults,
        &|_| true,
        &mut |_| {},
    )
    .unwrap();
}
