//! The checkpoint image directory: CRIU's images plus what restore needs to
//! be self-contained (only this directory survives Docker's and nerdctl's
//! round trip through containerd's content store):
//!
//! - `descriptors.json`: what the init's fds 0-2 were (runc's format), so
//!   restore can hand new stdio pipes to CRIU with inherit_fd;
//! - `lazarus.json`: [`Metadata`], written last: an image without it is
//!   incomplete and restore refuses it.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use protobuf::well_known_types::empty::Empty;
use protobuf::{Message, UnknownValueRef};
use serde::{Deserialize, Serialize};

use super::identity::ImageIdentity;
use super::request::CgroupsMode;
use crate::error::{Error, Result};

pub const METADATA_FILE: &str = "lazarus.json";
pub const DESCRIPTORS_FILE: &str = "descriptors.json";
pub const DUMP_LOG: &str = "dump.log";
pub const RESTORE_LOG: &str = "restore.log";
const FORMAT: u32 = 1;

/// CRIU options restore must repeat (runc needs /etc/criu/runc.conf for it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DumpOptions {
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub cgroups_mode: CgroupsMode,
    pub empty_namespaces: Vec<String>,
}

/// One cgroup v1 bind mount in the container: where it is (e.g.
/// /sys/fs/cgroup/memory) and which cgroup of that hierarchy it shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupMount {
    pub mountpoint: String,
    pub root: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    pub format: u32,
    pub lazarus_version: String,
    pub criu_version: String,
    pub container_id: String,
    pub options: DumpOptions,
    /// Mount destinations CRIU was told are external (bind mounts, masked
    /// files): the restoring bundle must provide each of them.
    pub external_mounts: Vec<String>,
    /// Namespace types joined from outside the container (e.g. Docker's
    /// network namespace): the restoring spec must name a path for each.
    pub external_namespaces: Vec<String>,
    /// cgroup v1 hierarchies bind-mounted into the container.
    #[serde(default)]
    pub cgroup_mounts: Vec<CgroupMount>,
    pub cgroup_path: String,
    pub terminal: bool,
    /// What identifies the checkpointed container's image (absent in
    /// checkpoints of older Lazarus versions: then nothing is checked).
    #[serde(default)]
    pub image: Option<ImageIdentity>,
    /// The dump saved the root filesystem's changes beside the images
    /// (`rootfs-diff.tar`, `deleted.files`): a restore into another
    /// container applies them first.
    #[serde(default)]
    pub rootfs_diff: bool,
    /// CRIU page images stored zstd-compressed (`<name>.zst`); restore
    /// needs them back raw. Empty in uncompressed checkpoints, among them
    /// every one of older Lazarus versions.
    #[serde(default)]
    pub compressed_pages: Vec<super::pages::CompressedFile>,
}

impl Metadata {
    pub fn new(container_id: &str, criu_version: (u32, u32, u32)) -> Self {
        Metadata {
            format: FORMAT,
            lazarus_version: env!("CARGO_PKG_VERSION").into(),
            criu_version: format!("{}.{}.{}", criu_version.0, criu_version.1, criu_version.2),
            container_id: container_id.into(),
            options: DumpOptions::default(),
            external_mounts: Vec::new(),
            external_namespaces: Vec::new(),
            cgroup_mounts: Vec::new(),
            cgroup_path: String::new(),
            terminal: false,
            image: None,
            rootfs_diff: false,
            compressed_pages: Vec::new(),
        }
    }

    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(METADATA_FILE);
        let text = std::fs::read(&path).map_err(|e| {
            Error::InvalidArgument(format!(
                "{} is not a complete Lazarus checkpoint ({}: {e}){}",
                dir.display(),
                path.display(),
                why_incomplete(dir)
            ))
        })?;
        let m: Metadata = serde_json::from_slice(&text)
            .map_err(|e| Error::InvalidArgument(format!("invalid {}: {e}", path.display())))?;
        if m.format != FORMAT {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} has format {} but this Lazarus reads format {FORMAT}",
                dir.display(),
                m.format
            )));
        }
        // Restore bind-mounts /sys/fs/cgroup/<hierarchy>/<root> into the
        // container: a tampered image must not reach outside /sys/fs/cgroup.
        for mount in &m.cgroup_mounts {
            for (field, value) in [("mountpoint", &mount.mountpoint), ("root", &mount.root)] {
                if Path::new(value)
                    .components()
                    .any(|c| c == std::path::Component::ParentDir)
                {
                    return Err(Error::InvalidArgument(format!(
                        "invalid {}: cgroup_mounts {field} {value:?} climbs out with ..",
                        path.display()
                    )));
                }
            }
        }
        // Restore writes each listed page image back by its name.
        for file in &m.compressed_pages {
            if !super::pages::valid_name(&file.name) {
                return Err(Error::InvalidArgument(format!(
                    "invalid {}: compressed_pages: {:?} is not a page image name (pages-N.img)",
                    path.display(),
                    file.name
                )));
            }
        }
        Ok(m)
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        write_private(&dir.join(METADATA_FILE), &serde_json::to_vec_pretty(self)?)
    }
}

/// Where a checkpoint into an image path most often goes astray: ctr 1.7
/// (`withCheckpointOpts`, "only suitable for runc runtime now") sends a
/// runtime not named io.containerd.runc* no options at all, so its
/// `--image-path` and `--exit` never reach the shim and the checkpoint goes
/// to containerd's content store instead.
pub const CTR_17_IMAGE_PATH_HINT: &str =
    "ctr 1.7's `ctr task checkpoint --image-path` passes the path only to runtimes named \
     io.containerd.runc*: with Lazarus the checkpoint went to containerd's content store. \
     Checkpoint into a path with ctr >= 2.0 or the containerd API (WithCheckpointImagePath), \
     or use `ctr container checkpoint --task` and `ctr container restore`";

/// What an image directory without lazarus.json holds instead, said in
/// terms of the likely cause (empty: nothing was ever dumped there).
fn why_incomplete(dir: &Path) -> String {
    let entries = names(dir);
    if entries.is_empty() {
        return format!(
            ": the directory is empty, no checkpoint was written there ({CTR_17_IMAGE_PATH_HINT})"
        );
    }
    let criu_images = entries
        .iter()
        .any(|n| n.to_string_lossy().ends_with(".img"));
    match criu_images {
        true => ": it holds CRIU images but no lazarus.json, so it was taken by another runtime \
                 (runc?) or its checkpoint did not finish; Lazarus restores only checkpoints it took"
            .into(),
        false => String::new(),
    }
}

/// The targets of /proc/<pid>/fd/0..2 ("pipe:[123]", "/dev/null", ...).
pub fn save_descriptors(dir: &Path, pid: i32) -> Result<()> {
    let fds: Vec<String> = (0..3)
        .map(|fd| {
            std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    write_private(&dir.join(DESCRIPTORS_FILE), &serde_json::to_vec(&fds)?)
}

pub fn load_descriptors(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join(DESCRIPTORS_FILE);
    // As for lazarus.json: an image whose file is missing or unreadable is
    // bad input, not a missing object (NotFound reads as "no such task").
    let text = std::fs::read(&path).map_err(|e| {
        Error::InvalidArgument(format!(
            "{} is not a complete Lazarus checkpoint ({}: {e})",
            dir.display(),
            path.display()
        ))
    })?;
    serde_json::from_slice(&text)
        .map_err(|e| Error::InvalidArgument(format!("invalid {}: {e}", path.display())))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(Error::io(format!("create {}", path.display())))?;
    f.write_all(bytes)
        .map_err(Error::io(format!("write {}", path.display())))
}

use std::os::unix::fs::OpenOptionsExt;

/// Creates the image directory private to root (it will hold process
/// memory). A directory that exists already is the client's: left as it is.
pub fn create_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(Error::io(format!("create {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(Error::io(format!("chmod {}", dir.display())))
}

/// Removes a temporary image directory, unless something is mounted
/// inside it (a cgroup yard a killed CRIU left): removing would then reach
/// into the mounted filesystem.
pub fn remove_temporary(dir: &Path) {
    let mounted = procfs::process::Process::myself()
        .and_then(|p| p.mountinfo())
        .map(|m| m.iter().any(|m| m.mount_point.starts_with(dir)))
        .unwrap_or(true);
    if mounted {
        log::warn!("not removing {}: something is mounted in it", dir.display());
        return;
    }
    if let Err(e) = std::fs::remove_dir_all(dir) {
        log::warn!("remove {}: {e}", dir.display());
    }
}

/// What an image or work directory held before a dump, so that afterwards
/// only what the dump wrote is made private or, after a failure, removed:
/// a client may point the dump at a directory holding files of its own.
pub struct Listing {
    started: std::time::SystemTime,
    images: Vec<std::ffi::OsString>,
    work: Vec<std::ffi::OsString>,
}

impl Listing {
    pub fn take(images: &Path, work: &Path) -> Self {
        Listing {
            // File times are coarser than the clock: allow for it.
            started: std::time::SystemTime::now() - std::time::Duration::from_millis(20),
            images: names(images),
            work: names(work),
        }
    }

    /// The entries of `dir` the dump created or rewrote.
    fn written(&self, dir: &Path, before: &[std::ffi::OsString]) -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| {
                !before.contains(&e.file_name())
                    || e.metadata()
                        .and_then(|m| m.modified())
                        .is_ok_and(|t| t >= self.started)
            })
            .map(|e| e.path())
            .collect()
    }

    fn both(&self, images: &Path, work: &Path) -> Vec<PathBuf> {
        let mut out = self.written(images, &self.images);
        if work != images {
            out.extend(self.written(work, &self.work));
        }
        out
    }

    /// Files 0600, directories 0700 (recursively), for what the dump wrote.
    pub fn make_new_private(&self, images: &Path, work: &Path) {
        for path in self.both(images, work) {
            if let Err(e) = make_private(&path) {
                log::warn!("make {} private: {e}", path.display());
            }
        }
    }

    /// Removes what the dump wrote, except its log (kept for the user) and
    /// a post-copy client's control files (its request, its call-off).
    pub fn discard_new(&self, images: &Path, work: &Path, log: &Path) {
        for path in self.both(images, work) {
            if path == log || super::control::is_control_file(&path) {
                continue;
            }
            let removed = match path.is_dir() && !path.is_symlink() {
                true => std::fs::remove_dir_all(&path),
                false => std::fs::remove_file(&path),
            };
            if let Err(e) = removed {
                log::warn!("remove {} after a failed dump: {e}", path.display());
            }
        }
    }
}

fn names(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name())
        .collect()
}

/// Makes a file 0600, or a directory and everything in it 0700/0600.
pub fn make_private(path: &Path) -> std::io::Result<()> {
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            make_private(&entry?.path())?;
        }
    }
    let mode = if meta.is_dir() { 0o700 } else { 0o600 };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
}

/// CRIU's DumpStatsEntry fields (images/stats.proto): number and name; the
/// times are in microseconds. Read here and by `inspect`.
pub const DUMP_STATS: [(u32, &str); 6] = [
    (1, "freezing_time_us"),
    (2, "frozen_time_us"),
    (3, "memdump_time_us"),
    (4, "memwrite_time_us"),
    (5, "pages_scanned"),
    (7, "pages_written"),
];

/// CRIU's statistics (`stats-dump` / `stats-restore`): a CRIU image holding
/// one StatsEntry. Decoded with protobuf's generic field access, since the
/// stats schema is not among rust-criu's generated types. Field numbers are
/// from CRIU's images/stats.proto.
pub fn read_stats(file: &Path) -> Option<BTreeMap<&'static str, u64>> {
    const RESTORE: [(u32, &str); 3] = [
        (3, "forking_time_us"),
        (4, "restore_time_us"),
        (5, "pages_restored"),
    ];
    let bytes = std::fs::read(file).ok()?;
    // Two magic numbers, then a u32 length and the entry.
    let len = u32::from_le_bytes(bytes.get(8..12)?.try_into().ok()?) as usize;
    let entry = Empty::parse_from_bytes(bytes.get(12..12 + len)?).ok()?;
    let mut out = BTreeMap::new();
    for (field, names) in [(1u32, &DUMP_STATS[..]), (2u32, &RESTORE[..])] {
        let Some(UnknownValueRef::LengthDelimited(sub)) =
            entry.special_fields.unknown_fields().get(field)
        else {
            continue;
        };
        let sub = Empty::parse_from_bytes(sub).ok()?;
        for (n, name) in names {
            if let Some(UnknownValueRef::Varint(v)) = sub.special_fields.unknown_fields().get(*n) {
                out.insert(*name, v);
            }
        }
    }
    Some(out)
}

/// Where CRIU put a stats file: the work dir if there is one, else the images.
pub fn stats_file(images: &Path, work: &Path, name: &str) -> PathBuf {
    let in_work = work.join(name);
    if in_work.exists() {
        in_work
    } else {
        images.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_incomplete_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = Metadata::load(dir.path()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(
            err.to_string()
                .contains("not a complete Lazarus checkpoint"),
            "{err}"
        );
        assert!(err.to_string().contains("directory is empty"), "{err}");
        std::fs::write(dir.path().join("pstree.img"), b"x").unwrap();
        let err = Metadata::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("CRIU images but no lazarus.json"), "{err}");
        std::fs::remove_file(dir.path().join("pstree.img")).unwrap();
        let mut m = Metadata::new("c1", (4, 2, 1));
        m.options.tcp_established = true;
        m.external_mounts = vec!["/etc/hosts".into()];
        m.save(dir.path()).unwrap();
        assert_eq!(Metadata::load(dir.path()).unwrap(), m);
        let mode = std::fs::metadata(dir.path().join(METADATA_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn metadata_of_older_lazarus_without_compressed_pages_loads() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = serde_json::to_value(Metadata::new("c1", (4, 2, 1))).unwrap();
        v.as_object_mut().unwrap().remove("compressed_pages");
        std::fs::write(dir.path().join(METADATA_FILE), v.to_string()).unwrap();
        let m = Metadata::load(dir.path()).unwrap();
        assert!(m.compressed_pages.is_empty());
    }

    #[test]
    fn compressed_pages_written_after_the_listing_are_the_dumps() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let listing = Listing::take(d, d);
        std::fs::write(d.join("pages-1.img"), vec![0u8; 1 << 20]).unwrap();
        let files = super::super::pages::compress_dir(d).unwrap();
        assert_eq!(files.len(), 1);
        listing.discard_new(d, d, &d.join(DUMP_LOG));
        assert!(
            names(d).is_empty(),
            "left after a failed dump: {:?}",
            names(d)
        );
    }

    #[test]
    fn only_what_the_dump_wrote_is_made_private_or_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join("theirs"), b"a file of the client's").unwrap();
        std::fs::set_permissions(d.join("theirs"), std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::create_dir(d.join("their-dir")).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(50));
        let listing = Listing::take(d, d);
        std::fs::write(d.join("pages-1.img"), b"secret").unwrap();
        std::fs::create_dir(d.join("sub")).unwrap();
        std::fs::write(d.join("sub/x"), b"x").unwrap();
        std::fs::write(d.join(DUMP_LOG), b"log").unwrap();
        listing.make_new_private(d, d);
        let mode = |p: &str| std::fs::metadata(d.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("pages-1.img"), 0o600);
        assert_eq!(mode("sub"), 0o700);
        assert_eq!(mode("sub/x"), 0o600);
        assert_eq!(
            mode("theirs"),
            0o644,
            "a file the dump did not write is left alone"
        );
        listing.discard_new(d, d, &d.join(DUMP_LOG));
        assert!(!d.join("pages-1.img").exists() && !d.join("sub").exists());
        assert!(d.join("theirs").exists() && d.join("their-dir").exists());
        assert!(d.join(DUMP_LOG).exists(), "the log stays for the user");
    }

    #[test]
    fn stats_entry_decodes() {
        let mut dump = Empty::new();
        dump.special_fields.mut_unknown_fields().add_varint(1, 1500);
        dump.special_fields.mut_unknown_fields().add_varint(7, 42);
        let mut entry = Empty::new();
        entry
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(1, dump.write_to_bytes().unwrap());
        let body = entry.write_to_bytes().unwrap();
        let mut file = vec![0u8; 8];
        file.extend((body.len() as u32).to_le_bytes());
        file.extend(body);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("stats-dump"), file).unwrap();
        let stats = read_stats(&dir.path().join("stats-dump")).unwrap();
        assert_eq!(stats.get("freezing_time_us"), Some(&1500));
        assert_eq!(stats.get("pages_written"), Some(&42));
    }

    /// The stats-dump CRIU 4.2 wrote for testdata/listen-fork, as the
    /// export's report reads it.
    #[test]
    fn crius_own_stats_dump_decodes() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/listen-fork/stats-dump");
        let stats = read_stats(&file).expect("CRIU's stats-dump");
        assert!(
            stats.get("frozen_time_us").is_some_and(|&t| t > 0),
            "{stats:?}"
        );
        assert!(
            stats.get("pages_written").is_some_and(|&p| p > 0),
            "{stats:?}"
        );
    }
}

#[cfg(test)]
#[path = "image_prop_tests.rs"]
mod prop_tests;
