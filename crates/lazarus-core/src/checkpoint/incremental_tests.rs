//! The incremental dump's request, and completing a dump from its parent,
//! on image files made here as CRIU writes them.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;

use super::*;
use crate::criu::images::tests::build::{image, msg, varint};
use crate::criu::images::{IMG_COMMON_MAGIC, PAGEMAP_MAGIC};

const BASE: u64 = 0x7f00_0000_0000;

/// A pagemap: head `pages_id`, then (vaddr page, pages, flags) entries.
fn pagemap(pages_id: u64, runs: &[(u64, u64, u64)]) -> Vec<u8> {
    let mut head = msg();
    varint(&mut head, 1, pages_id);
    let mut entries = vec![head];
    for &(page, n, flags) in runs {
        let mut e = msg();
        varint(&mut e, 1, BASE + page * PAGE);
        varint(&mut e, 2, n);
        varint(&mut e, 4, flags);
        entries.push(e);
    }
    image(Some(IMG_COMMON_MAGIC), PAGEMAP_MAGIC, &entries)
}

/// A page filled with the byte `b`.
fn page(b: u8) -> Vec<u8> {
    vec![b; PAGE as usize]
}

/// The parent's images in memory, as the store would give them.
#[derive(Default)]
struct Parent {
    images: HashMap<String, Vec<u8>>,
    reads: Vec<(String, u64, u64)>,
}

impl ParentPages for Parent {
    fn image(&mut self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.images.get(name).cloned())
    }
    fn copy_pages(
        &mut self,
        name: &str,
        first: u64,
        count: u64,
        out: &mut dyn Write,
    ) -> Result<()> {
        self.reads.push((name.to_string(), first, count));
        let b = &self.images[name];
        let (from, to) = ((first * PAGE) as usize, ((first + count) * PAGE) as usize);
        out.write_all(&b[from..to]).unwrap();
        Ok(())
    }
}

/// (vaddr page, pages, flags) of a pagemap image's entries.
fn runs_of(path: &Path) -> (u32, Vec<(u64, u64, u64)>) {
    let entries = img::read_image(path, PAGEMAP_MAGIC).unwrap();
    let runs = entries[1..]
        .iter()
        .map(|e| {
            let r = PagemapEntry::of(e).unwrap();
            ((r.vaddr - BASE) / PAGE, r.pages, r.flags)
        })
        .collect();
    (entries[0].u32(1, "pages_id").unwrap(), runs)
}

#[test]
fn the_request_is_taken_out_of_the_images_and_built_into_criu_options() {
    let images = tempfile::tempdir().unwrap();
    let parent = tempfile::tempdir().unwrap();
    assert_eq!(Incremental::take(images.path()).unwrap(), None);

    let asked = Incremental {
        parent: Some(parent.path().to_path_buf()),
    };
    asked.write(images.path()).unwrap();
    let mode = fs::metadata(images.path().join(REQUEST_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let taken = Incremental::take(images.path()).unwrap().unwrap();
    assert_eq!(taken, asked);
    assert!(
        !images.path().join(REQUEST_FILE).exists(),
        "taken out: no archive or store sees it"
    );

    let mut opts = rpc::Criu_opts::new();
    taken.apply(&mut opts);
    assert!(opts.track_mem());
    assert_eq!(opts.parent_img(), parent.path().to_str().unwrap());

    // The first dump of a series tracks memory and has no parent.
    let mut first = rpc::Criu_opts::new();
    Incremental { parent: None }.apply(&mut first);
    assert!(first.track_mem() && !first.has_parent_img());

    // A relative or missing parent is refused before CRIU sees it.
    for bad in ["relative/dir", "/no/such/parent"] {
        let err = Incremental {
            parent: Some(bad.into()),
        }
        .write(images.path())
        .unwrap_err()
        .to_string();
        assert!(err.contains(bad), "{err}");
    }
}

#[test]
fn a_dump_is_completed_with_its_parents_pages_in_place() {
    let images = tempfile::tempdir().unwrap();
    let dir = images.path();
    // The child: 2 pages written at 0 and 1, pages 2-6 in the parent,
    // page 7 written, pages 8-9 in the parent.
    let child = pagemap(
        3,
        &[
            (0, 2, PE_PRESENT),
            (2, 5, PE_PARENT),
            (7, 1, PE_PRESENT),
            (8, 2, PE_PARENT),
        ],
    );
    fs::write(dir.join("pagemap-1.img"), child).unwrap();
    fs::write(
        dir.join("pages-3.img"),
        [page(0xa0), page(0xa1), page(0xa7)].concat(),
    )
    .unwrap();
    std::os::unix::fs::symlink("/somewhere", dir.join(PARENT_LINK)).unwrap();
    // A process whose pages were all written: left as it is.
    let whole = pagemap(4, &[(0, 1, PE_PRESENT)]);
    fs::write(dir.join("pagemap-2.img"), &whole).unwrap();
    fs::write(dir.join("pages-4.img"), page(0xb0)).unwrap();

    // The parent (complete, as every snapshot is): pages 0-3 in one run,
    // 4-9 in another, its page image numbered 1.
    let mut parent = Parent::default();
    parent.images.insert(
        "pagemap-1.img".into(),
        pagemap(1, &[(0, 4, PE_PRESENT), (4, 6, PE_PRESENT)]),
    );
    parent.images.insert(
        "pages-1.img".into(),
        (0..10).flat_map(|i| page(0x10 + i)).collect(),
    );

    let done = complete(dir, &mut parent).unwrap();
    assert_eq!(
        done,
        Completed {
            dumped_pages: 4,
            parent_pages: 7
        }
    );
    // Pages 2-6 span the parent's two runs: two reads; 8-9 one.
    assert_eq!(
        parent.reads,
        [
            ("pages-1.img".to_string(), 2, 2),
            ("pages-1.img".to_string(), 4, 3),
            ("pages-1.img".to_string(), 8, 2)
        ]
    );
    let want: Vec<u8> = [0xa0, 0xa1, 0x12, 0x13, 0x14, 0x15, 0x16, 0xa7, 0x18, 0x19]
        .into_iter()
        .flat_map(page)
        .collect();
    assert!(fs::read(dir.join("pages-3.img")).unwrap() == want);
    let (pages_id, runs) = runs_of(&dir.join("pagemap-1.img"));
    assert_eq!(pages_id, 3);
    assert_eq!(
        runs,
        [
            (0, 2, PE_PRESENT),
            (2, 5, PE_PRESENT),
            (7, 1, PE_PRESENT),
            (8, 2, PE_PRESENT)
        ]
    );
    assert_eq!(fs::read(dir.join("pagemap-2.img")).unwrap(), whole);
    assert!(
        fs::symlink_metadata(dir.join(PARENT_LINK)).is_err(),
        "CRIU's parent link is gone: the images stand alone"
    );
    for f in ["pages-3.img", "pagemap-1.img"] {
        let mode = fs::metadata(dir.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let left: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".whole"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn a_page_the_parent_lacks_is_an_error_naming_it() {
    let images = tempfile::tempdir().unwrap();
    let dir = images.path();
    let child = pagemap(1, &[(0, 1, PE_PRESENT), (5, 2, PE_PARENT)]);
    fs::write(dir.join("pagemap-1.img"), &child).unwrap();
    fs::write(dir.join("pages-1.img"), page(1)).unwrap();
    let mut parent = Parent::default();
    // The parent has page 5 but not 6.
    parent
        .images
        .insert("pagemap-1.img".into(), pagemap(1, &[(5, 1, PE_PRESENT)]));
    parent.images.insert("pages-1.img".into(), page(5));
    let err = complete(dir, &mut parent).unwrap_err().to_string();
    let missing = format!("{:#x}", BASE + 6 * PAGE);
    assert!(
        err.contains(&missing) && err.contains("pagemap-1.img"),
        "{err}"
    );
    // Nothing was replaced, and nothing is left beside.
    assert_eq!(fs::read(dir.join("pagemap-1.img")).unwrap(), child);
    assert_eq!(fs::read(dir.join("pages-1.img")).unwrap(), page(1));
    assert_eq!(fs::read_dir(dir).unwrap().count(), 2);

    // A parent without the process's pagemap at all.
    let err = complete(dir, &mut Parent::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no pagemap-1.img"), "{err}");
}

#[test]
fn the_parent_saved_for_criu_is_its_pagemaps_and_inventory_without_pages() {
    let images = tempfile::tempdir().unwrap();
    let dir = images.path();
    let map = pagemap(7, &[(0, 2, PE_PRESENT)]);
    fs::write(dir.join("pagemap-1.img"), &map).unwrap();
    fs::write(dir.join("pages-7.img"), [page(1), page(2)].concat()).unwrap();
    fs::write(dir.join("inventory.img"), b"inventory").unwrap();
    fs::write(dir.join("core-1.img"), b"core").unwrap();
    let dest = tempfile::tempdir().unwrap();
    let parent = dest.path().join("parent");
    save_parent(dir, &parent).unwrap();

    let mut names: Vec<_> = fs::read_dir(&parent)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["inventory.img", "pagemap-1.img", "pages-7.img"]);
    assert_eq!(fs::read(parent.join("pagemap-1.img")).unwrap(), map);
    assert_eq!(fs::metadata(parent.join("pages-7.img")).unwrap().len(), 0);
    assert_eq!(
        fs::metadata(&parent).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for n in &names {
        let mode = fs::metadata(parent.join(n)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{n}");
    }
}
