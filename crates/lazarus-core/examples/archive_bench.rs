//! What the archive costs: write, verify and extract one page file of
//! random or zero bytes, uncompressed and with zstd, printing sizes and
//! times. `cargo run --release -p lazarus-core --example archive_bench --
//! [MiB] [DIR]` (default 256 MiB in a temp dir). The files are in the page
//! cache, so this measures CPU (hashing, compression), not the disk.

use std::fs;
use std::path::Path;
use std::time::Instant;

use lazarus_core::archive::{self, ArchiveConfig, ArchiveInput, Compression};

fn main() {
    let mut args = std::env::args().skip(1);
    let mib: usize = args.next().map_or(256, |a| a.parse().expect("MiB"));
    let base = args.next().map(std::path::PathBuf::from);
    let dir = match &base {
        Some(b) => tempfile::tempdir_in(b),
        None => tempfile::tempdir(),
    }
    .unwrap();
    let config = ArchiveConfig {
        id: "bench".into(),
        name: "bench".into(),
        image_name: String::new(),
        image_digest: String::new(),
        runtime: String::new(),
        created: chrono::Utc::now(),
        checkpointed: chrono::Utc::now(),
        engine: String::new(),
        namespace: String::new(),
    };
    println!(
        "{:<7} {:<18} {:>10} {:>9} {:>9} {:>9}",
        "pages", "compression", "archive", "write", "verify", "extract"
    );
    let kinds = [
        ("random", random(mib << 20)),
        ("zero", vec![0u8; mib << 20]),
        ("binary", binaries(mib << 20)),
    ];
    for (kind, bytes) in kinds {
        let images = dir.path().join(format!("images-{kind}"));
        fs::create_dir(&images).unwrap();
        fs::write(images.join("pages-1.img"), &bytes).unwrap();
        drop(bytes);
        for compression in [
            Compression::None,
            Compression::Zstd {
                level: 3,
                threads: 0,
            },
            Compression::Zstd {
                level: 3,
                threads: 2,
            },
            Compression::Zstd {
                level: 1,
                threads: 2,
            },
        ] {
            run(dir.path(), &images, &config, kind, compression);
        }
    }
}

fn run(dir: &Path, images: &Path, config: &ArchiveConfig, kind: &str, compression: Compression) {
    let dest = dir.join("bench.tar");
    let out = dir.join("extracted");
    let input = ArchiveInput {
        images_dir: images,
        spec_json: b"{}",
        config,
        rootfs_diff: None,
        dump_log: None,
        network_status: None,
        engine_config: None,
        volumes: &[],
    };
    let t = Instant::now();
    archive::write(&input, &dest, compression, &mut |_| {}).unwrap();
    let write = t.elapsed();
    let size = fs::metadata(&dest).unwrap().len();
    let t = Instant::now();
    archive::verify(&dest).unwrap();
    let verify = t.elapsed();
    let t = Instant::now();
    archive::extract(&dest, &out).unwrap();
    let extract = t.elapsed();
    let name = match compression {
        Compression::None => "none".to_string(),
        Compression::Zstd { level, threads } => format!("zstd -{level} {threads} thr"),
    };
    println!(
        "{kind:<7} {name:<18} {:>10} {:>7.2} s {:>7.2} s {:>7.2} s",
        human(size),
        write.as_secs_f64(),
        verify.as_secs_f64(),
        extract.as_secs_f64()
    );
    fs::remove_file(&dest).unwrap();
    fs::remove_dir_all(&out).unwrap();
}

fn human(n: u64) -> String {
    if n >= 1 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", n as f64 / 1024.0)
    }
}

/// Something like a process's memory: the machine's own executables (code,
/// tables, strings), one after the other.
fn binaries(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut names: Vec<_> = fs::read_dir("/usr/bin")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    for path in names.iter().cycle() {
        if out.len() >= len {
            break;
        }
        if let Ok(b) = fs::read(path) {
            out.extend_from_slice(&b);
        }
    }
    out.truncate(len);
    out
}

/// Incompressible bytes without a dependency (xorshift).
fn random(len: usize) -> Vec<u8> {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out
}
