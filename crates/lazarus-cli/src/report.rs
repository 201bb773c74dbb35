//! What the archive commands print for people (`--print-stats`, inspect of
//! an archive); `--json` prints the same numbers as they are.

use lazarus_core::archive::{Manifest, CHECKPOINT_DIR};
use lazarus_core::checkpoint::pages::{self, is_pages_image, CompressedFile};
use lazarus_core::inspect::field;
pub use lazarus_core::inspect::human;
use serde_json::Value;

/// The bytes of CRIU's memory pages in an archive (its
/// `checkpoint/pages-*.img` entries), raw: a page image stored compressed
/// (`pages-*.img.zst`) counts with the size lazarus.json recorded.
pub fn pages_bytes(m: &Manifest, compressed: &[CompressedFile]) -> u64 {
    let prefix = format!("{CHECKPOINT_DIR}/pages-");
    m.entries
        .iter()
        .filter_map(|e| {
            let name = e.name.strip_prefix(&format!("{CHECKPOINT_DIR}/"))?;
            if !e.name.starts_with(&prefix) {
                return None;
            }
            if is_pages_image(name) {
                return Some(e.size);
            }
            let raw = name
                .strip_suffix(pages::SUFFIX)
                .filter(|n| is_pages_image(n))?;
            let listed = compressed.iter().find(|c| c.name == raw);
            Some(listed.map_or(e.size, |c| c.raw_bytes))
        })
        .sum()
}

/// `archive / content` as "0.42 of its content (1.0 GiB in 430.0 MiB)".
pub fn ratio(archive: u64, content: u64) -> String {
    let r = match content {
        0 => 1.0,
        c => archive as f64 / c as f64,
    };
    format!(
        "{r:.2} of its content ({} in {})",
        human(content),
        human(archive)
    )
}

/// The `--print-stats` lines of an export.
pub fn export_text(v: &Value) -> String {
    let n = |k: &str| v[k].as_u64().unwrap_or(0);
    let s = |k: &str| v["stats"][k].as_u64().unwrap_or(0);
    let ms = |us: u64| format!("{:.1} ms", us as f64 / 1000.0);
    [
        (
            "Container",
            format!(
                "{} ({})",
                v["container"].as_str().unwrap_or(""),
                v["engine"].as_str().unwrap_or("")
            ),
        ),
        ("Archive", ratio(n("archive_bytes"), n("content_bytes"))),
        ("Memory pages", human(n("pages_bytes"))),
        (
            "Rootfs diff",
            format!(
                "{}, {} deleted",
                human(n("rootfs_diff_bytes")),
                n("deleted_files")
            ),
        ),
        (
            "Frozen",
            format!(
                "{} (freezing {}, memory dump {}, memory write {})",
                ms(s("frozen_time_us")),
                ms(s("freezing_time_us")),
                ms(s("memdump_time_us")),
                ms(s("memwrite_time_us"))
            ),
        ),
        (
            "Pages",
            format!(
                "{} scanned, {} written",
                s("pages_scanned"),
                s("pages_written")
            ),
        ),
        (
            "Took",
            format!(
                "{:.2} s checkpoint, {:.2} s in all",
                v["checkpoint_seconds"].as_f64().unwrap_or(0.0),
                v["export_seconds"].as_f64().unwrap_or(0.0)
            ),
        ),
    ]
    .iter()
    .map(|(k, v)| field(k, v))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use lazarus_core::archive::ManifestEntry;

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
}
