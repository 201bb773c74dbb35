//! The store on real files: dedup, read-back, crash leftovers, collection.

use std::fs;
use std::path::{Path, PathBuf};

use super::*;
use crate::archive::{self, ArchiveConfig, ArchiveInput, Compression};

/// An uncompressed archive whose `checkpoint/pages-1.img` is `pages`.
fn archive_of(dir: &Path, name: &str, pages: &[u8]) -> PathBuf {
    let out = dir.join(format!("{name}.tar"));
    with_input(dir, name, pages, |input| {
        archive::write(input, &out, Compression::None, &mut |_| {}).unwrap()
    });
    out
}

/// Runs `f` on the content of a checkpoint whose `checkpoint/pages-1.img`
/// is `pages`, made in `dir`.
fn with_input<T>(dir: &Path, name: &str, pages: &[u8], f: impl FnOnce(&ArchiveInput) -> T) -> T {
    let images = dir.join(format!("{name}-images"));
    fs::create_dir_all(&images).unwrap();
    fs::write(images.join("pages-1.img"), pages).unwrap();
    fs::write(images.join("inventory.img"), b"small image").unwrap();
    let config = ArchiveConfig {
        id: "c1".into(),
        name: "c1".into(),
        image_name: String::new(),
        image_digest: String::new(),
        runtime: String::new(),
        created: chrono::DateTime::UNIX_EPOCH,
        checkpointed: chrono::DateTime::UNIX_EPOCH,
        engine: "containerd".into(),
        namespace: "default".into(),
    };
    f(&ArchiveInput {
        images_dir: &images,
        spec_json: b"{}",
        config: &config,
        rootfs_diff: None,
        dump_log: None,
        network_status: None,
        engine_config: None,
        volumes: &[],
    })
}

/// `n` pages of pseudo-random bytes (incompressible), from `seed`.
fn random_pages(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n * 4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn snapshot(store: &Store, dir: &Path, name: &str, pages: &[u8]) -> Snapshot {
    let tar = archive_of(dir, name, pages);
    let mut w = store.writer().unwrap();
    w.ingest_archive(&tar).unwrap();
    w.commit("c1", None, serde_json::Value::Null).unwrap()
}

fn pages_back(store: &Store, s: &Snapshot) -> Vec<u8> {
    let mut out = Vec::new();
    store
        .reader(s)
        .unwrap()
        .copy_file("checkpoint/pages-1.img", &mut out)
        .unwrap();
    out
}

#[test]
fn an_unchanged_snapshot_adds_almost_nothing_and_both_come_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut pages = random_pages(256, 1);
    pages.extend(vec![0u8; 64 * 4096]);
    let first = snapshot(&store, dir.path(), "a", &pages);
    assert!(first.bytes_added >= 256 * 4096, "{first:?}");
    assert_eq!(first.zero_blocks, 64);
    let second = snapshot(&store, dir.path(), "b", &pages);
    // Only the small files' blocks that differ (none here: same content).
    assert!(
        second.bytes_added < first.bytes_added / 10,
        "{}",
        second.bytes_added
    );
    // 5% of the pages changed: about 5% more.
    let mut changed = pages.clone();
    for p in (0..256).step_by(20) {
        changed[p * 4096] ^= 0xff;
    }
    let third = snapshot(&store, dir.path(), "c", &changed);
    assert!(third.new_blocks <= 14, "{}", third.new_blocks);
    assert_eq!(pages_back(&store, &first), pages);
    assert_eq!(pages_back(&store, &third), changed);
    assert_eq!(store.list().unwrap().len(), 3);
}

/// `lazarus snapshot` hands the export's content to the store where it
/// lies; the snapshot is the one an archive of it would have made: the
/// same manifest, the same blocks (so the second adds no page).
#[test]
fn a_snapshot_taken_without_an_archive_is_the_one_an_archive_makes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut pages = random_pages(100, 3);
    pages.extend(vec![0u8; 16 * 4096]);
    let via_archive = snapshot(&store, dir.path(), "a", &pages);
    let mut w = store.writer().unwrap();
    let taken = with_input(dir.path(), "b", &pages, |input| w.ingest_input(input)).unwrap();
    let direct = w.commit("c1", None, serde_json::Value::Null).unwrap();
    assert_eq!(taken, direct.manifest);
    assert_eq!(direct.manifest, via_archive.manifest);
    assert_eq!(direct.zero_blocks, 16);
    assert!(
        direct.bytes_added < 4096,
        "every page was the archive's: {}",
        direct.bytes_added
    );
    assert_eq!(pages_back(&store, &direct), pages);
}

#[test]
fn a_snapshot_materializes_as_an_extracted_archive_and_exports_as_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let pages = random_pages(70, 2);
    let s = snapshot(&store, dir.path(), "a", &pages);
    let dest = dir.path().join("out");
    store
        .reader(&s)
        .unwrap()
        .materialize(&dest, &mut |_| {})
        .unwrap();
    assert_eq!(
        fs::read(dest.join("checkpoint/pages-1.img")).unwrap(),
        pages
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(dest.join("checkpoint"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700, "the runtime refuses anything else");
    let exported = dir.path().join("again.tar.zst");
    let mut reader = store.reader(&s).unwrap();
    archive::write_known(
        &s.manifest,
        &mut reader,
        &exported,
        Compression::default(),
        None,
        &mut |_| {},
    )
    .unwrap();
    let back = dir.path().join("back");
    archive::extract(&exported, &back).unwrap();
    assert_eq!(
        fs::read(back.join("checkpoint/pages-1.img")).unwrap(),
        pages
    );
}

#[test]
fn removing_snapshots_leaves_no_block_that_none_uses() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let a = random_pages(64, 3);
    let mut b = a.clone();
    b.extend(random_pages(64, 4));
    let first = snapshot(&store, dir.path(), "a", &a);
    let second = snapshot(&store, dir.path(), "b", &b);
    let full = store.usage().unwrap();
    // The first's pack holds blocks the second uses: it is kept.
    store.remove(&first.id).unwrap();
    assert_eq!(
        pages_back(&store, &store.find(None, &second.id).unwrap()),
        b
    );
    store.remove(&second.id).unwrap();
    assert_eq!(store.usage().unwrap(), 0, "from {full}");
    // Now with compaction: a pack partly used is rewritten.
    let first = snapshot(&store, dir.path(), "a", &b);
    let second = snapshot(&store, dir.path(), "b", &a);
    store.remove(&first.id).unwrap();
    let left = store.usage().unwrap();
    assert!(left < 64 * 4096 + 8192, "{left}");
    assert_eq!(
        pages_back(&store, &store.find(None, &second.id).unwrap()),
        a
    );
}

#[test]
fn a_writer_that_died_leaves_nothing_after_the_next_open() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    let tar = archive_of(dir.path(), "a", &random_pages(8, 5));
    let mut w = store.writer().unwrap();
    w.ingest_archive(&tar).unwrap();
    // Killed: the lock goes with the process; here, leak the directory
    // and drop only the lock.
    let leftover = w.dir().to_path_buf();
    std::mem::forget(w);
    // (The forgotten Flock is still held by this process: unlock it the
    // way the kernel would for a dead one.)
    let f = fs::File::open(leftover.join("lock")).unwrap();
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::Unlock).ok();
    // A commit that died between the pack and the record: a pack no
    // record names.
    fs::write(root.join("packs/deadbeef0000.pack"), b"x").unwrap();
    fs::write(root.join("packs/deadbeef0000.idx"), b"LZIDX01\n").unwrap();
    let store = Store::open(&root).unwrap();
    store.collect().unwrap();
    assert!(fs::read_dir(root.join("packs")).unwrap().next().is_none());
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn tags_find_snapshots_and_are_unique_per_container() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let tar = archive_of(dir.path(), "a", &random_pages(4, 6));
    let mut w = store.writer().unwrap();
    w.ingest_archive(&tar).unwrap();
    let s = w
        .commit("c1", Some("good"), serde_json::Value::Null)
        .unwrap();
    assert_eq!(store.find(Some("c1"), "good").unwrap().id, s.id);
    assert_eq!(store.find(None, &s.id[..4]).unwrap().id, s.id);
    assert!(store.find(Some("c2"), "good").is_err());
    let mut w = store.writer().unwrap();
    w.ingest_archive(&tar).unwrap();
    let err = w
        .commit("c1", Some("good"), serde_json::Value::Null)
        .unwrap_err();
    assert!(
        err.to_string().contains("already has a snapshot tagged"),
        "{err}"
    );
}

#[test]
fn the_cap_removes_the_oldest_untagged_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let a = snapshot(&store, dir.path(), "a", &random_pages(32, 7));
    let b = snapshot(&store, dir.path(), "b", &random_pages(32, 8));
    let c = snapshot(&store, dir.path(), "c", &random_pages(32, 9));
    let removed = store.enforce_cap(70 * 4096, &c.id).unwrap();
    assert_eq!(removed, vec![a.id.clone()]);
    assert!(store.find(None, &b.id).is_ok());
}

#[test]
fn store_files_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let store = Store::open(&root).unwrap();
    snapshot(&store, dir.path(), "a", &random_pages(4, 10));
    for sub in ["", "packs", "snapshots", "tmp"] {
        let mode = fs::metadata(root.join(sub)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{sub}");
    }
    for sub in ["packs", "snapshots"] {
        for e in fs::read_dir(root.join(sub)).unwrap() {
            let mode = e.unwrap().metadata().unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
    }
}

#[test]
fn snapshots_of_two_containers_taken_at_once_both_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let shared = random_pages(32, 11);
    let tars: Vec<PathBuf> = (0..2)
        .map(|i| {
            let mut pages = shared.clone();
            pages.extend(random_pages(16, 20 + i));
            archive_of(dir.path(), &format!("c{i}"), &pages)
        })
        .collect();
    // Both ingest before either commits: neither sees the other's blocks.
    let mut writers: Vec<Writer> = tars
        .iter()
        .map(|t| {
            let mut w = store.writer().unwrap();
            w.ingest_archive(t).unwrap();
            w
        })
        .collect();
    let second = writers.pop().unwrap();
    let first = writers.pop().unwrap();
    let handles = [("a", first), ("b", second)].map(|(name, w)| {
        std::thread::spawn(move || w.commit(name, None, serde_json::Value::Null).unwrap())
    });
    let snaps: Vec<Snapshot> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(store.list().unwrap().len(), 2);
    for (s, tar) in snaps.iter().zip(&tars) {
        let back = dir.path().join(format!("back-{}", s.id));
        store
            .reader(s)
            .unwrap()
            .materialize(&back, &mut |_| {})
            .unwrap();
        let want = dir.path().join(format!("want-{}", s.id));
        archive::extract(tar, &want).unwrap();
        assert_eq!(
            fs::read(back.join("checkpoint/pages-1.img")).unwrap(),
            fs::read(want.join("checkpoint/pages-1.img")).unwrap()
        );
    }
    // A third, after both, stores none of the shared pages again (only
    // its config.dump, whose times differ).
    let again = snapshot(&store, dir.path(), "again", &shared);
    assert!(again.new_blocks <= 1, "{again:?}");
}

#[test]
fn write_file_puts_back_every_byte_on_any_number_of_threads() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    // Random, zero (holes), text, and a last block that is not whole.
    let mut pages = random_pages(37, 7);
    pages.extend(vec![0u8; 5 * 4096]);
    pages.extend(b"key:1 value ".repeat(3000));
    pages.extend(random_pages(3, 8));
    pages.extend(vec![0u8; 2 * 4096]);
    pages.extend(b"tail");
    let s = snapshot(&store, dir.path(), "a", &pages);
    assert!(s.blocks_sha256.is_some());
    let mut r = store.reader(&s).unwrap();
    for threads in 1..=5 {
        for (name, want) in [
            ("checkpoint/pages-1.img", &pages[..]),
            ("checkpoint/inventory.img", b"small image".as_slice()),
        ] {
            let path = dir.path().join(format!("out-{threads}"));
            let f = fs::File::create(&path).unwrap();
            assert_eq!(r.write_file(name, &f, threads).unwrap(), want.len() as u64);
            drop(f);
            assert!(
                fs::read(&path).unwrap() == want,
                "{name} on {threads} threads"
            );
            fs::remove_file(&path).unwrap();
        }
    }
}

#[test]
fn a_damaged_block_list_is_refused_before_any_block_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let s = snapshot(&store, dir.path(), "a", &random_pages(8, 3));
    let list = store.snapshots_dir().join(format!("{}.blocks", s.id));
    let mut bytes = fs::read(&list).unwrap();
    // Swapping two digests keeps every block a stored one: only the
    // list's sum sees it.
    let (a, b) = bytes.split_at_mut(32);
    a.swap_with_slice(&mut b[..32]);
    fs::write(&list, bytes).unwrap();
    let err = store.reader(&s).err().expect("refused").to_string();
    assert!(
        err.contains("does not match") && err.contains(&s.id),
        "{err}"
    );
}

#[test]
fn a_record_from_before_the_list_sum_reads_back_checked_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let pages = random_pages(9, 4);
    let mut s = snapshot(&store, dir.path(), "a", &pages);
    s.blocks_sha256 = None;
    let json = serde_json::to_vec_pretty(&s).unwrap();
    fs::write(store.snapshots_dir().join(format!("{}.json", s.id)), json).unwrap();
    let s = store.find(None, &s.id).unwrap();
    assert_eq!(s.blocks_sha256, None);
    assert_eq!(pages_back(&store, &s), pages);
    let path = dir.path().join("out");
    let f = fs::File::create(&path).unwrap();
    store
        .reader(&s)
        .unwrap()
        .write_file("checkpoint/pages-1.img", &f, 2)
        .unwrap();
    assert_eq!(fs::read(&path).unwrap(), pages);
}

#[test]
fn a_snapshot_gives_an_incremental_dump_its_parents_pages_and_images() {
    use crate::checkpoint::incremental::ParentPages;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let mut pages = random_pages(5, 7);
    pages[2 * 4096..3 * 4096].fill(0); // a zero block, never stored
    let s = snapshot(&store, dir.path(), "a", &pages);
    let mut reader = store.reader(&s).unwrap();
    let mut out = Vec::new();
    reader.copy_pages("pages-1.img", 1, 3, &mut out).unwrap();
    assert!(out == pages[4096..4 * 4096]);
    assert_eq!(
        reader.image("inventory.img").unwrap().as_deref(),
        Some(&b"small image"[..])
    );
    assert_eq!(reader.image("pagemap-9.img").unwrap(), None);
    let err = reader
        .copy_pages("pages-1.img", 4, 2, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no page 5 of checkpoint/pages-1.img"), "{err}");
}

#[test]
fn a_parent_record_is_claimed_once_and_only_while_its_snapshot_lives() {
    use crate::criu::images::tests::build::{image, msg, varint};
    use crate::criu::images::{IMG_COMMON_MAGIC, PAGEMAP_MAGIC};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store")).unwrap();
    let s = snapshot(&store, dir.path(), "a", &random_pages(2, 1));
    // A complete dump's images: a pagemap and the inventory.
    let images = dir.path().join("dump");
    fs::create_dir(&images).unwrap();
    let mut head = msg();
    varint(&mut head, 1, 1);
    fs::write(
        images.join("pagemap-1.img"),
        image(Some(IMG_COMMON_MAGIC), PAGEMAP_MAGIC, &[head]),
    )
    .unwrap();
    fs::write(images.join("inventory.img"), b"inventory").unwrap();

    let writer = store.writer().unwrap();
    assert!(store
        .claim_parent("abc123", writer.dir())
        .unwrap()
        .is_none());
    assert!(store.prepare_parent("abc123", &images).unwrap());
    assert!(
        store
            .claim_parent("abc123", writer.dir())
            .unwrap()
            .is_none(),
        "prepared, not kept: its snapshot is not committed"
    );
    store.keep_parent("abc123", &s.id).unwrap();
    let claimed = store.claim_parent("abc123", writer.dir()).unwrap().unwrap();
    assert_eq!(claimed.snapshot.id, s.id);
    assert!(claimed.dir.starts_with(writer.dir()));
    assert!(claimed.dir.join("pagemap-1.img").is_file());
    assert_eq!(
        fs::metadata(claimed.dir.join("pages-1.img")).unwrap().len(),
        0
    );
    // Claimed: gone from the store, so a dump that does not commit leaves
    // no parent behind; the writer's directory takes it with it.
    assert!(store
        .claim_parent("abc123", writer.dir())
        .unwrap()
        .is_none());
    drop(writer);
    assert!(!claimed.dir.exists());

    // A record whose snapshot was removed is no parent.
    store.prepare_parent("abc123", &images).unwrap();
    store.keep_parent("abc123", &s.id).unwrap();
    store.remove(&s.id).unwrap();
    let writer = store.writer().unwrap();
    assert!(store
        .claim_parent("abc123", writer.dir())
        .unwrap()
        .is_none());
    // A container id that is no file name has no record.
    assert!(!store.prepare_parent("../x", &images).unwrap());
    store.keep_parent("../x", &s.id).unwrap();
    assert!(!dir.path().join("store/x").exists());
    assert!(store.claim_parent("../x", writer.dir()).unwrap().is_none());
}
