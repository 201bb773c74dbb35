//! The snapshot store's own passes, timed apart from CRIU and the engines:
//! one page image cut into a fresh store (sums, lookups, compression,
//! fsync), then read back out of it (every block checked) into a file on
//! one thread and on as many as the store uses.
//!
//! `cargo run --release -p lazarus-core --example store_bench -- [FILE | MIB]`
//!
//! FILE: a page image to ingest (for example a `pages-1.img` of a real
//! workload that `criu dump` wrote); MIB (default 1024): that many MiB made
//! here, a quarter random, a quarter zeros, half text of random digits,
//! every page different. The store and the copies live in a temporary
//! directory under the current one (the store's file system matters:
//! packs are fsynced), removed at the end.

use std::path::{Path, PathBuf};
use std::time::Instant;

use lazarus_core::store::{pack, Store};

fn main() {
    let arg = std::env::args().nth(1).unwrap_or_else(|| "1024".into());
    let dir = tempfile::tempdir_in(".").expect("a temporary directory here");
    let (images, name) = match arg.parse::<usize>() {
        Ok(mib) => (made(dir.path(), mib), "pages-1.img".to_string()),
        Err(_) => {
            let file = PathBuf::from(&arg);
            let name = file.file_name().expect("a file").to_string_lossy().into();
            (file.parent().unwrap_or(Path::new(".")).to_path_buf(), name)
        }
    };
    let bytes = std::fs::metadata(images.join(&name))
        .expect("the page image")
        .len();
    let mib = bytes as f64 / (1 << 20) as f64;
    println!("{name}: {mib:.0} MiB, {} threads", pack::threads());

    let store = Store::open(&dir.path().join("store")).expect("a store");
    let t = Instant::now();
    let mut w = store.writer().expect("a writer");
    w.ingest_files(&images, std::slice::from_ref(&name))
        .expect("ingest");
    let s = w
        .commit("bench", None, serde_json::Value::Null)
        .expect("commit");
    let took = t.elapsed().as_secs_f64();
    println!(
        "ingest: {took:.2} s ({:.0} MiB/s), {:.0} MiB in packs",
        mib / took,
        store.usage().expect("usage") as f64 / (1 << 20) as f64
    );

    let mut r = store.reader(&s).expect("a reader");
    for threads in [1, pack::threads()] {
        let out = dir.path().join("out");
        let f = std::fs::File::create(&out).expect("the copy");
        let t = Instant::now();
        r.write_file(&name, &f, threads).expect("read back");
        let took = t.elapsed().as_secs_f64();
        println!(
            "read back on {threads} thread(s): {took:.2} s ({:.0} MiB/s)",
            mib / took
        );
        drop(f);
        std::fs::remove_file(out).expect("remove the copy");
    }
}

/// `mib` MiB of pages as described above, in `dir/made/pages-1.img`.
fn made(dir: &Path, mib: usize) -> PathBuf {
    let images = dir.join("made");
    std::fs::create_dir(&images).expect("make the image directory");
    let mut buf = vec![0u8; mib << 20];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for (i, page) in buf.chunks_mut(4096).enumerate() {
        match i % 4 {
            0 => page.iter_mut().for_each(|b| *b = next() as u8),
            1 => {}
            _ => page
                .iter_mut()
                .for_each(|b| *b = b"0123456789abcdef"[(next() & 15) as usize]),
        }
    }
    std::fs::write(images.join("pages-1.img"), &buf).expect("write the page image");
    images
}
