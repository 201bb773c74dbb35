use std::os::unix::fs::PermissionsExt;

use super::*;

/// Memory as applications have it: zero pages and repeated records.
fn typical(len: usize) -> Vec<u8> {
    let record = b"{\"user\":1234,\"name\":\"lazarus\",\"state\":\"active\"}";
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(record);
        out.extend(std::iter::repeat_n(0u8, 4096 - record.len()));
    }
    out.truncate(len);
    out
}

/// Incompressible bytes, without a random-number crate: xorshift.
fn random(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn typical_pages_round_trip_through_a_private_zst() {
    let dir = tempfile::tempdir().unwrap();
    let data = typical(3 << 20);
    std::fs::write(dir.path().join("pages-1.img"), &data).unwrap();
    std::fs::write(dir.path().join("pagemap-1.img"), b"map").unwrap();
    let files = compress_dir(dir.path()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let f = &files[0];
    assert_eq!(
        (f.name.as_str(), f.raw_bytes),
        ("pages-1.img", data.len() as u64)
    );
    assert!(f.stored_bytes < f.raw_bytes / 10, "{f:?}");
    assert!(
        !dir.path().join("pages-1.img").exists(),
        "raw file replaced"
    );
    let zst = dir.path().join("pages-1.img.zst");
    assert_eq!(std::fs::metadata(&zst).unwrap().len(), f.stored_bytes);
    assert_eq!(mode(&zst), 0o600);
    assert_eq!(raw_size_of(&zst), Some(data.len() as u64));

    let out = tempfile::tempdir().unwrap();
    decompress_file(dir.path(), f, out.path()).unwrap();
    let raw = out.path().join("pages-1.img");
    assert!(
        std::fs::read(&raw).unwrap() == data,
        "round trip changed the pages"
    );
    assert_eq!(mode(&raw), 0o600);

    decompress_in_place(dir.path(), &files).unwrap();
    assert!(std::fs::read(dir.path().join("pages-1.img")).unwrap() == data);
    assert!(!zst.exists());
    // A second start of the same restore finds the work done.
    decompress_in_place(dir.path(), &files).unwrap();
}

#[test]
fn random_pages_stay_raw() {
    let dir = tempfile::tempdir().unwrap();
    let data = random(2 << 20);
    std::fs::write(dir.path().join("pages-1.img"), &data).unwrap();
    // Small files are not worth a frame either.
    std::fs::write(dir.path().join("pages-2.img"), typical(4096)).unwrap();
    assert!(compress_dir(dir.path()).unwrap().is_empty());
    assert!(std::fs::read(dir.path().join("pages-1.img")).unwrap() == data);
    assert!(!dir.path().join("pages-1.img.zst").exists());
    assert!(!dir.path().join("pages-2.img.zst").exists());
}

#[test]
fn a_sample_that_misleads_is_caught_by_the_final_size() {
    // Compressible where sampled (the first 256 KiB of each eighth),
    // random everywhere else: the result would not be smaller enough.
    let len = 32usize << 20;
    let mut data = random(len);
    for i in 0..8 {
        let at = i * (len / 8);
        data[at..at + (256 << 10)].fill(0);
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pages-1.img"), &data).unwrap();
    assert_eq!(compress_file(dir.path(), "pages-1.img").unwrap(), None);
    assert!(std::fs::read(dir.path().join("pages-1.img")).unwrap() == data);
    assert!(!dir.path().join("pages-1.img.zst").exists());
}

#[test]
fn a_damaged_zst_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("pages-1.img"), typical(1 << 20)).unwrap();
    let files = compress_dir(dir.path()).unwrap();
    let zst = dir.path().join("pages-1.img.zst");
    let good = std::fs::read(&zst).unwrap();
    let out = tempfile::tempdir().unwrap();

    let mut corrupt = good.clone();
    let mid = corrupt.len() / 2;
    corrupt[mid..].iter_mut().for_each(|b| *b ^= 0x5a);
    let truncated = good[..good.len() / 2].to_vec();
    for (what, bytes) in [
        ("corrupt", corrupt),
        ("truncated", truncated),
        ("not zstd", b"garbage".to_vec()),
    ] {
        std::fs::write(&zst, bytes).unwrap();
        let err = decompress_file(dir.path(), &files[0], out.path()).unwrap_err();
        assert_eq!(
            err.kind(),
            crate::error::ErrorKind::InvalidArgument,
            "{what}: {err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("pages-1.img.zst") && text.contains("damaged"),
            "{what}: {text}"
        );
        assert!(
            !out.path().join("pages-1.img").exists(),
            "{what}: partial file left"
        );
    }

    // The size lazarus.json recorded is checked too.
    std::fs::write(&zst, &good).unwrap();
    let mut wrong = files[0].clone();
    wrong.raw_bytes += 1;
    let err = decompress_file(dir.path(), &wrong, out.path()).unwrap_err();
    assert!(err.to_string().contains("lazarus.json says"), "{err}");
}

#[test]
fn a_private_copy_leaves_the_images_as_they_were() {
    let images = tempfile::tempdir().unwrap();
    let data = typical(1 << 20);
    std::fs::write(images.path().join("pages-1.img"), &data).unwrap();
    std::fs::write(images.path().join("inventory.img"), b"inv").unwrap();
    let files = compress_dir(images.path()).unwrap();
    let before = names(images.path());

    let root = tempfile::tempdir().unwrap();
    let scratch_root = root.path().join("work");
    let copy = decompressed_copy(images.path(), &files, &scratch_root).unwrap();
    assert_eq!(mode(copy.path()), 0o700);
    assert_eq!(names(copy.path()), ["inventory.img", "pages-1.img"]);
    assert!(std::fs::read(copy.path().join("pages-1.img")).unwrap() == data);
    assert_eq!(
        std::fs::read(copy.path().join("inventory.img")).unwrap(),
        b"inv"
    );
    assert_eq!(mode(&copy.path().join("inventory.img")), 0o600);
    assert_eq!(names(images.path()), before);
    let path = copy.path().to_owned();
    drop(copy);
    assert!(!path.exists(), "the scratch copy is removed with its guard");
}

#[test]
fn listed_names_cannot_leave_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    for name in ["../pages-1.img", "inventory.img", "pages-1.img/../../x.img"] {
        let f = CompressedFile {
            name: name.into(),
            raw_bytes: 1,
            stored_bytes: 1,
        };
        let err = decompress_in_place(dir.path(), &[f]).unwrap_err();
        assert!(err.to_string().contains("not a page image name"), "{err}");
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}
