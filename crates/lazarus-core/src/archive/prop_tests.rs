//! Properties of reading archives from outside: whatever the bytes, no
//! panic, and nothing is ever written outside the destination (nor left
//! next to it on a refusal).

use std::fs;
use std::path::Path;

use proptest::prelude::*;

use super::tests::{craft, fixture, listing, manifest_for};
use super::*;

/// Reads `bytes` as an archive every way there is. Returns the extraction
/// result after checking where things landed.
fn read_all_ways(bytes: &[u8]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("in.tar");
    fs::write(&archive, bytes).unwrap();
    let _ = read_manifest(&archive);
    let verified = verify(&archive);
    let parent = dir.path().join("parent");
    fs::create_dir(&parent).unwrap();
    let dest = parent.join("dest");
    let extracted = extract(&archive, &dest);
    assert_eq!(
        verified.is_ok(),
        extracted.is_ok(),
        "verify and extract agree"
    );
    assert_eq!(
        listing(dir.path()),
        ["in.tar", "parent"],
        "nothing next to the archive"
    );
    match &extracted {
        Ok(_) => assert_eq!(listing(&parent), ["dest"]),
        Err(_) => assert!(
            listing(&parent).is_empty(),
            "left behind: {:?}",
            listing(&parent)
        ),
    }
    extracted.map(|_| ()).map_err(|e| e.to_string())
}

/// Names rich in what matters: dots, slashes, NULs, other bytes.
fn hostile_name() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"..".to_vec()),
        Just(b".".to_vec()),
        Just(b"/".to_vec()),
        Just(b"\0".to_vec()),
        "[a-z]{1,4}".prop_map(String::into_bytes),
        prop::collection::vec(any::<u8>(), 1..4),
    ];
    prop::collection::vec(piece, 1..8)
        .prop_map(|v| v.concat())
        .prop_filter("fits a tar name field", |n| n.len() <= 99)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_escape(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read_all_ways(&bytes);
    }

    #[test]
    fn zstd_magic_then_garbage_never_panics(rest in prop::collection::vec(any::<u8>(), 0..2048)) {
        let mut bytes = vec![0x28, 0xb5, 0x2f, 0xfd];
        bytes.extend(rest);
        prop_assert!(read_all_ways(&bytes).is_err());
    }

    /// An entry with any name, listed in the manifest so that only the
    /// name checks stand between it and the file system.
    #[test]
    fn a_listed_hostile_name_stays_inside_dest(name in hostile_name()) {
        let Ok(text) = std::str::from_utf8(&name) else { return Ok(()) };
        let manifest = manifest_for(&[(text, b"x")]);
        let bytes = craft(&[
            (MANIFEST_FILE.as_bytes(), tar::EntryType::Regular, &manifest),
            (&name, tar::EntryType::Regular, b"x"),
        ]);
        // Ok only for a plain relative name; read_all_ways checked the rest.
        let safe = text.split('/').all(|c| !c.is_empty() && c != "." && c != "..")
            && !text.contains('\0');
        prop_assert_eq!(read_all_ways(&bytes).is_ok(), safe, "{:?}", text);
    }
}

/// One damaged byte anywhere in a real archive: refused, or (a byte in tar
/// padding, say) extracted with every file intact.
fn flip_anywhere(compression: Compression) {
    let f = fixture();
    let path = f.write(compression);
    let good = fs::read(&path).unwrap();
    let reference = f.dir.path().join("reference");
    extract(&path, &reference).unwrap();
    let cases = ProptestConfig {
        cases: 48,
        ..ProptestConfig::default()
    };
    proptest!(cases, |(at in 0..good.len(), bit in 0u8..8)| {
        let mut bytes = good.clone();
        bytes[at] ^= 1 << bit;
        let dir = tempfile::tempdir().unwrap();
        let archive = dir.path().join("a.tar");
        fs::write(&archive, &bytes).unwrap();
        let dest = dir.path().join("dest");
        if extract(&archive, &dest).is_ok() {
            assert_same_files(&reference, &dest);
        } else {
            prop_assert_eq!(listing(dir.path()), ["a.tar"]);
        }
    });
}

fn assert_same_files(a: &Path, b: &Path) {
    assert_eq!(listing(a), listing(b));
    for name in listing(a) {
        let (x, y) = (a.join(&name), b.join(&name));
        if x.is_dir() {
            assert_same_files(&x, &y);
        } else if name != MANIFEST_FILE {
            assert_eq!(
                fs::read(&x).unwrap(),
                fs::read(&y).unwrap(),
                "{}",
                x.display()
            );
        }
    }
}

#[test]
fn a_flipped_bit_anywhere_is_refused_or_harmless_uncompressed() {
    flip_anywhere(Compression::None);
}

#[test]
fn a_flipped_bit_anywhere_is_refused_or_harmless_zstd() {
    flip_anywhere(Compression::Zstd {
        level: 3,
        threads: 0,
    });
}
