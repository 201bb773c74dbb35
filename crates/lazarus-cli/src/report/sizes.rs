//! An archive's sizes as people read them: the memory pages it carries
//! (raw, however they were stored) and its size against its content.
//! Shared by the export's report and `inspect` of an archive.

use lazarus_core::archive::{Manifest, CHECKPOINT_DIR};
use lazarus_core::checkpoint::pages::{self, is_pages_image, CompressedFile};
use lazarus_core::inspect::human;

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
