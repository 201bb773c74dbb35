//! Tests of the summary: synthetic image directories built through the same
//! unknown-fields API, garbage, and real CRIU dumps.

use std::path::Path;

use super::*;
use crate::criu::images::tests::build::{bytes, image, msg, sub, varint};
use crate::criu::images::*;

fn write(dir: &Path, name: &str, data: &[u8]) {
    std::fs::write(dir.join(name), data).unwrap();
}

fn pstree_entry(pid: u32, ppid: u32, threads: &[u32]) -> protobuf::well_known_types::empty::Empty {
    let mut e = msg();
    for (n, v) in [(1, pid), (2, ppid), (3, pid), (4, pid)] {
        varint(&mut e, n, v.into());
    }
    threads.iter().for_each(|&t| varint(&mut e, 5, t.into()));
    e
}

/// A FileEntry (type 4, isk) holding an InetSkEntry.
fn inet_file(
    id: u32,
    family: u32,
    ty: u32,
    state: u32,
    src: (&[u32], u32),
    dst: (&[u32], u32),
) -> protobuf::well_known_types::empty::Empty {
    let mut sk = msg();
    for (n, v) in [
        (1, id),
        (2, id),
        (3, family),
        (4, ty),
        (5, 6),
        (6, state),
        (7, src.1),
        (8, dst.1),
    ] {
        varint(&mut sk, n, v.into());
    }
    src.0.iter().for_each(|&w| varint(&mut sk, 11, w.into()));
    dst.0.iter().for_each(|&w| varint(&mut sk, 12, w.into()));
    let mut f = msg();
    varint(&mut f, 1, 4);
    varint(&mut f, 2, id.into());
    sub(&mut f, 4, &sk);
    f
}

/// A small dump: a three-process tree, sockets, mounts, stats and a log.
pub(super) fn synthetic_dump(dir: &Path) {
    let mut inv = msg();
    varint(&mut inv, 1, 2);
    write(dir, "inventory.img", &image(None, INVENTORY_MAGIC, &[inv]));
    let tree = [
        pstree_entry(100, 0, &[100, 101]),
        pstree_entry(200, 100, &[200]),
        pstree_entry(300, 200, &[300]),
    ];
    write(
        dir,
        "pstree.img",
        &image(Some(IMG_COMMON_MAGIC), PSTREE_MAGIC, &tree),
    );
    for (pid, comm) in [(100, "python3"), (200, "worker")] {
        let (mut core, mut tc) = (msg(), msg());
        varint(&mut core, 1, 1);
        bytes(&mut tc, 6, comm.as_bytes());
        sub(&mut core, 3, &tc);
        write(
            dir,
            &format!("core-{pid}.img"),
            &image(Some(IMG_COMMON_MAGIC), CORE_MAGIC, &[core]),
        );
    }
    let mut reg = msg();
    varint(&mut reg, 1, 1);
    varint(&mut reg, 2, 1);
    let localhost = u32::from_le_bytes([127, 0, 0, 1]);
    let v6 = [0, 0, 0, u32::from_le_bytes([0, 0, 0, 1])];
    let files = [
        reg,
        inet_file(2, 2, 1, 10, (&[localhost], 8080), (&[0], 0)),
        inet_file(3, 10, 1, 1, (&v6, 443), (&v6, 51000)),
        inet_file(4, 2, 2, 7, (&[0], 53), (&[0], 0)), // UDP: not listed
    ];
    write(
        dir,
        "files.img",
        &image(Some(IMG_COMMON_MAGIC), FILES_MAGIC, &files),
    );
    let mut mounts = Vec::new();
    for (fstype, mountpoint, fsname) in [
        (1, "/proc", None),
        (16, "/", Some("ext4")),
        (23, "/sys/fs/cgroup", None),
    ] {
        let mut m = msg();
        varint(&mut m, 1, fstype);
        bytes(&mut m, 7, mountpoint.as_bytes());
        if let Some(name) = fsname {
            bytes(&mut m, 14, name.as_bytes());
        }
        mounts.push(m);
    }
    write(
        dir,
        "mountpoints-5.img",
        &image(Some(IMG_COMMON_MAGIC), MNTS_MAGIC, &mounts),
    );
    let (mut stats, mut dump) = (msg(), msg());
    for (n, v) in [
        (1, 1500),
        (2, 2500),
        (3, 700),
        (4, 300),
        (5, 1000),
        (6, 0),
        (7, 900),
    ] {
        varint(&mut dump, n, v);
    }
    sub(&mut stats, 1, &dump);
    write(
        dir,
        "stats-dump",
        &image(Some(IMG_SERVICE_MAGIC), STATS_MAGIC, &[stats]),
    );
    write(dir, "pages-1.img", &[0; 8192]);
    write(
        dir,
        "dump.log",
        b"(00.000000) Unable to get $HOME\n(00.000170) Version: 4.2.1 (gitid 0)\n",
    );
    std::os::unix::fs::symlink("/nonexistent", dir.join("parent")).unwrap();
}

#[test]
fn summarizes_a_synthetic_dump() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_dump(dir.path());
    let s = summarize(dir.path()).unwrap();
    let proc = |pid, ppid, comm: Option<&str>, threads| ProcessInfo {
        pid,
        ppid,
        comm: comm.map(str::to_string),
        threads,
    };
    let want = [
        proc(100, 0, Some("python3"), 2),
        proc(200, 100, Some("worker"), 1),
        proc(300, 200, None, 1),
    ];
    assert_eq!(s.processes, want);
    let sock = |state: &str, local: &str, remote: &str| SocketInfo {
        state: state.into(),
        local: local.into(),
        remote: remote.into(),
    };
    let want = [
        sock("LISTEN", "127.0.0.1:8080", "0.0.0.0:0"),
        sock("ESTABLISHED", "[::1]:443", "[::1]:51000"),
    ];
    assert_eq!(s.tcp, want);
    let fstypes: Vec<_> = s
        .mounts
        .iter()
        .map(|m| (m.fstype.as_str(), m.mountpoint.as_str()))
        .collect();
    assert_eq!(
        fstypes,
        [
            ("ext4", "/"),
            ("proc", "/proc"),
            ("cgroup2", "/sys/fs/cgroup")
        ]
    );
    assert_eq!(s.pages_bytes, 8192);
    assert_eq!(s.files, 9, "the parent symlink is not a file");
    let sizes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| p.metadata().unwrap().len())
        .sum();
    assert_eq!(s.total_bytes, sizes);
    assert_eq!(s.criu_version.as_deref(), Some("4.2.1"));
    let stats: Vec<_> = s.stats.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let want = [
        ("freezing_time_us", 1500),
        ("frozen_time_us", 2500),
        ("memdump_time_us", 700),
        ("memwrite_time_us", 300),
        ("pages_scanned", 1000),
        ("pages_written", 900),
    ];
    assert_eq!(stats, want);
    let text = render_text(&s);
    for line in [
        "       100        0       2  python3",
        "       200      100       1    worker",
        "       300      200       1      ?",
        "  LISTEN       127.0.0.1:8080  0.0.0.0:0",
        "  ext4         /",
        " in 9 files, 8.0 KiB of memory pages\n",
        "Dump:              frozen for 2.5 ms (freezing 1.5 ms, memory dump 0.7 ms, \
         memory write 0.3 ms); pages: 1000 scanned, 900 written\n",
    ] {
        assert!(text.contains(line), "{line:?} not in\n{text}");
    }
    let json = serde_json::to_value(&s).unwrap();
    assert_eq!(json["processes"][0]["comm"], "python3");
    assert_eq!(json["stats"]["pages_written"], 900);
}

#[test]
fn optional_images_may_be_missing() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_dump(dir.path());
    for name in [
        "files.img",
        "mountpoints-5.img",
        "stats-dump",
        "dump.log",
        "core-100.img",
    ] {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    let s = summarize(dir.path()).unwrap();
    assert_eq!(
        (s.processes.len(), s.processes[0].comm.as_deref()),
        (3, None)
    );
    assert!(s.tcp.is_empty() && s.mounts.is_empty() && s.stats.is_empty());
    assert_eq!(s.criu_version, None);
    let text = render_text(&s);
    assert!(text.contains("CRIU version:      not recorded"), "{text}");
    assert!(
        !text.contains("Dump:"),
        "no statistics, no dump line: {text}"
    );
}

#[test]
fn a_directory_without_inventory_or_pstree_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let err = summarize(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains("not a CRIU image directory (inventory.img is missing)"),
        "{err}"
    );
    synthetic_dump(dir.path());
    std::fs::remove_file(dir.path().join("pstree.img")).unwrap();
    let err = summarize(dir.path()).unwrap_err().to_string();
    assert!(err.contains("(pstree.img is missing)"), "{err}");
    let err = summarize(Path::new("/nonexistent"))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("/nonexistent: not a CRIU image directory"),
        "{err}"
    );
}

/// Every image cut short at every length, and overwritten with noise: an
/// error naming the file or a summary, never a panic.
#[test]
fn garbage_images_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_dump(dir.path());
    // xorshift32: repeatable noise without a dependency.
    let mut seed = 0x2545_f491_u32;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed as usize
    };
    let names = ["inventory.img", "pstree.img", "core-100.img", "files.img"];
    for name in names.into_iter().chain(["mountpoints-5.img", "stats-dump"]) {
        let path = dir.path().join(name);
        let good = std::fs::read(&path).unwrap();
        let mut variants: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
        // A few bytes changed past the magics, so decoding goes deep.
        for _ in 0..150 {
            let mut v = good.clone();
            for _ in 0..1 + rand() % 3 {
                let at = 8 + rand() % (good.len() - 8);
                v[at] = rand() as u8;
            }
            variants.push(v);
        }
        for v in variants {
            std::fs::write(&path, &v).unwrap();
            if let Err(e) = summarize(dir.path()) {
                assert!(e.to_string().contains(name), "{name}: {e}");
            }
        }
        std::fs::write(&path, &good).unwrap();
    }
}

#[test]
fn a_pstree_cycle_still_lists_every_process() {
    let p = |pid, ppid| ProcessInfo {
        pid,
        ppid,
        comm: None,
        threads: 1,
    };
    let s = ImageSummary {
        processes: vec![p(1, 2), p(2, 1), p(3, 3), p(4, 0)],
        ..Default::default()
    };
    let order: Vec<_> = tree_order(&s.processes)
        .iter()
        .map(|(p, d)| (p.pid, *d))
        .collect();
    assert_eq!(order, [(4, 0), (1, 0), (2, 1), (3, 0)]);
}

#[test]
fn compressed_pages_count_raw_and_stored() {
    let dir = tempfile::tempdir().unwrap();
    synthetic_dump(dir.path());
    write(dir.path(), "pages-1.img", &vec![7u8; 1 << 20]);
    let files = crate::checkpoint::pages::compress_dir(dir.path()).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let s = summarize(dir.path()).unwrap();
    assert_eq!(s.pages_bytes, 1 << 20);
    assert_eq!(s.pages_stored_bytes, files[0].stored_bytes);
    let text = render_text(&s);
    assert!(
        text.contains("1.0 MiB of memory pages (stored compressed in "),
        "{text}"
    );
}
