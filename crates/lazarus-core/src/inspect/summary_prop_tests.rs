//! Properties of [`summarize`] on image directories where one file is
//! arbitrary bytes or a mutation of the real one: a summary, or an error
//! naming that file; never a panic. (summary_tests.rs covers truncation at
//! every length with a fixed seed; this draws new inputs on every run.)

use std::path::PathBuf;

use proptest::prelude::*;

use super::tests::synthetic_dump;
use super::*;

/// Every file of the synthetic dump that summarize reads.
const FILES: [&str; 8] = [
    "inventory.img",
    "pstree.img",
    "core-100.img",
    "core-200.img",
    "files.img",
    "mountpoints-5.img",
    "stats-dump",
    "dump.log",
];

#[derive(Debug, Clone)]
enum Damage {
    /// The whole file replaced.
    Replace(Vec<u8>),
    /// (index, byte) pairs overwritten, indexes taken modulo the length.
    Flip(Vec<(usize, u8)>),
    /// Cut at this fraction (in 1/256ths) of the length, then these appended.
    CutAndAppend(u8, Vec<u8>),
}

fn damage() -> impl Strategy<Value = Damage> {
    let noise = || prop::collection::vec(any::<u8>(), 0..64);
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512).prop_map(Damage::Replace),
        prop::collection::vec((any::<usize>(), any::<u8>()), 1..6).prop_map(Damage::Flip),
        (any::<u8>(), noise()).prop_map(|(at, tail)| Damage::CutAndAppend(at, tail)),
    ]
}

fn apply(good: &[u8], damage: &Damage) -> Vec<u8> {
    match damage {
        Damage::Replace(bytes) => bytes.clone(),
        Damage::Flip(changes) => {
            let mut v = good.to_vec();
            for (at, byte) in changes {
                if !v.is_empty() {
                    let i = at % v.len();
                    v[i] = *byte;
                }
            }
            v
        }
        Damage::CutAndAppend(at, tail) => {
            let cut = good.len() * usize::from(*at) / 256;
            [&good[..cut], tail].concat()
        }
    }
}

thread_local! {
    /// One synthetic dump per test thread (proptest runs a test's cases on
    /// its thread, one after another): writing a whole dump per case made
    /// these the slowest unit tests.
    static DUMP: tempfile::TempDir = {
        let dir = tempfile::tempdir().unwrap();
        synthetic_dump(dir.path());
        dir
    };
}

fn dump_dir() -> PathBuf {
    DUMP.with(|d| d.path().to_owned())
}

/// Puts a file back as it was (or removes it) when a case ends, passed or
/// failed, so the next case starts from the good dump.
struct Restore(PathBuf, Option<Vec<u8>>);

impl Drop for Restore {
    fn drop(&mut self) {
        match &self.1 {
            Some(good) => std::fs::write(&self.0, good).unwrap(),
            None => std::fs::remove_file(&self.0).unwrap(),
        }
    }
}

proptest! {
    #[test]
    fn one_damaged_file_is_summarised_or_named(
        file in prop::sample::select(FILES.to_vec()),
        damage in damage(),
    ) {
        let dir = dump_dir();
        let path = dir.join(file);
        let good = std::fs::read(&path).unwrap();
        let _restore = Restore(path.clone(), Some(good.clone()));
        std::fs::write(&path, apply(&good, &damage)).unwrap();
        match summarize(&dir) {
            // The text rendering must cope with whatever was decoded.
            Ok(s) => drop(render_text(&s)),
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.contains(&path.display().to_string()), "{}: {}", file, msg);
                prop_assert!(matches!(crate::Error::from(e), crate::Error::InvalidArgument(_)));
            }
        }
    }

    /// Extra images CRIU may write (more mount namespaces), holding noise.
    #[test]
    fn an_extra_noisy_mount_image_is_named(
        n in 0u32..100,
        content in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        let dir = dump_dir();
        let path = dir.join(format!("mountpoints-{n}.img"));
        let _restore = Restore(path.clone(), std::fs::read(&path).ok());
        std::fs::write(&path, &content).unwrap();
        if let Err(e) = summarize(&dir) {
            let msg = e.to_string();
            prop_assert!(msg.contains(&path.display().to_string()), "{}", msg);
        }
    }
}
