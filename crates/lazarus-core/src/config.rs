//! Lazarus's configuration file (TOML), `/etc/lazarus/config.toml` or the
//! path in `LAZARUS_CONFIG`, read by the shim and the CLI. Every key is
//! optional; config/lazarus.toml lists each with its default.

use std::collections::HashMap;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::ids;

pub const DEFAULT_PATH: &str = "/etc/lazarus/config.toml";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Runtime state root; each containerd namespace gets a directory in it.
    pub root: PathBuf,
    /// Log level for the shim and its helper (error, warn, info, debug, trace).
    pub log_level: String,
    /// The CRIU binary (a name is looked up on PATH).
    pub criu_path: PathBuf,
    /// Per containerd namespace: does a checkpoint without options stop the
    /// container? Overrides the built-in default (moby: true, others: false).
    pub checkpoint_exit: HashMap<String, bool>,
    /// The longest one CRIU conversation (a dump, a restore) may take.
    pub criu_timeout_seconds: u64,
    /// CRIU's log may not grow past this (a CRIU looping on a damaged image
    /// writes gigabytes a minute); CRIU is stopped when it does.
    pub criu_log_max_mib: u64,
    /// The `lazarus` CLI's scratch space: a checkpoint's images before they
    /// are archived, an imported archive until its container has restored.
    /// On disk, not in /run: it holds whole memory images.
    pub work_root: PathBuf,
    /// Compress CRIU's page images after a dump into containerd's own
    /// directory (zstd, skipped for pages that would not shrink):
    /// everything containerd and Docker copy of a checkpoint gets smaller
    /// and faster to copy. Never for a client's image path (read in place).
    pub compress_pages: bool,
    /// Where `lazarus serve` receives a stop-and-copy migration (CRIU's page
    /// server writes the container's memory there, the restore reads it,
    /// then it is removed). A memory filesystem by default, so that no page
    /// touches a disk on either host; a directory on disk for containers
    /// whose memory would not fit in it.
    pub receive_root: PathBuf,
    /// Where images that need not outlive the host go when they fit in
    /// memory (a snapshot's dump, an import's unpacked archive, a
    /// store-backed Docker checkpoint's dump and restore): a directory on
    /// a tmpfs, used only while it and the host have room. Empty: never.
    pub memory_root: PathBuf,
    /// The snapshot store (`lazarus snapshot`): every snapshot of every
    /// container, deduplicated in page-sized blocks (see `store`).
    pub store_root: PathBuf,
    /// The store's cap in GiB (0: none). Past it, a new snapshot removes
    /// the oldest untagged ones; tagged snapshots are never removed by it.
    pub store_max_gib: u64,
    /// Where the memory of a checkpoint Docker (containerd's `moby`
    /// namespace) takes goes: "archive" keeps CRIU's page images in the
    /// checkpoint directory, which containerd and Docker copy; "store"
    /// keeps them in the snapshot store and leaves a small reference there
    /// (see `store::pages_ref`), good on this host only.
    pub docker_checkpoints: DockerCheckpoints,
    /// What an imported archive (`restore --import`, a migration `serve`
    /// receives) may ask for and how big it may be.
    pub import: ImportSettings,
}

/// Config `docker_checkpoints`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DockerCheckpoints {
    /// The page images in the checkpoint directory (portable: copy it to
    /// another host's Docker and `docker start --checkpoint` there).
    #[default]
    Archive,
    /// The page images in this host's snapshot store, a reference in the
    /// checkpoint directory: nothing of the memory is copied by containerd
    /// or Docker; the checkpoint restores on this host only.
    Store,
}

/// `[import]`: the operator's side of the import policy (see
/// [`crate::security`]). Flags of `restore --import` add to `allow`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ImportSettings {
    /// What every import may ask for without a flag: hooks, privileged,
    /// capabilities, host-namespaces, host-mounts, devices,
    /// security-options, sysctls. None by default.
    pub allow: Vec<crate::security::Grant>,
    /// The most entries an archive (and its root filesystem diff) may hold.
    pub max_entries: u64,
    /// The most bytes an archive may unpack to per byte of its file.
    pub max_ratio: u64,
    /// Free space an extraction must leave on its file system, in MiB.
    pub free_margin_mib: u64,
    /// A file of trusted signers' public keys (one hex ed25519 key a line,
    /// `lazarus keygen --sign` writes them): when set, only archives signed
    /// by one of them are imported.
    pub trusted_keys: Option<PathBuf>,
}

/// The same numbers as `archive::Limits::DEFAULT` (a test keeps them so).
impl Default for ImportSettings {
    fn default() -> Self {
        ImportSettings {
            allow: Vec::new(),
            max_entries: 100_000,
            // A GiB of zero pages compresses about 33,000-fold: legitimate
            // archives of idle memory come close to that.
            max_ratio: 50_000,
            free_margin_mib: 256,
            trusted_keys: None,
        }
    }
}

#[cfg(feature = "archive")]
impl ImportSettings {
    /// The archive limits these settings set.
    pub fn limits(&self) -> crate::archive::Limits {
        crate::archive::Limits {
            max_entries: self.max_entries,
            max_ratio: self.max_ratio,
            free_margin_bytes: self.free_margin_mib.saturating_mul(1 << 20),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/run/lazarus"),
            log_level: "info".into(),
            criu_path: PathBuf::from("criu"),
            checkpoint_exit: HashMap::new(),
            criu_timeout_seconds: 600,
            criu_log_max_mib: 256,
            work_root: PathBuf::from("/var/lib/lazarus"),
            compress_pages: true,
            receive_root: PathBuf::from("/dev/shm/lazarus"),
            memory_root: PathBuf::from("/dev/shm/lazarus"),
            store_root: PathBuf::from("/var/lib/lazarus/store"),
            store_max_gib: 0,
            docker_checkpoints: DockerCheckpoints::Archive,
            import: ImportSettings::default(),
        }
    }
}

impl Config {
    pub fn load() -> Result<Config> {
        let path = std::env::var_os("LAZARUS_CONFIG").map(PathBuf::from);
        let explicit = path.is_some();
        let path = path.unwrap_or_else(|| PathBuf::from(DEFAULT_PATH));
        if !explicit && !path.exists() {
            return Ok(Config::default());
        }
        Self::from_file(&path)
    }

    pub fn from_file(path: &Path) -> Result<Config> {
        let bytes = std::fs::read(path)
            .map_err(Error::io(format!("read Lazarus config {}", path.display())))?;
        // Not UTF-8 is bad input like any other TOML error, not an I/O one.
        let text = String::from_utf8(bytes).map_err(|e| {
            Error::InvalidArgument(format!(
                "invalid Lazarus config {}: not UTF-8 text ({e})",
                path.display()
            ))
        })?;
        toml::from_str(&text).map_err(|e| {
            Error::InvalidArgument(format!("invalid Lazarus config {}: {e}", path.display()))
        })
    }

    /// libcontainer's state root for one containerd namespace.
    pub fn state_root(&self, namespace: &str) -> Result<PathBuf> {
        ids::check_component("namespace", namespace)?;
        Ok(self.root.join(namespace))
    }

    /// Where the CRIU logs of a namespace's failed checkpoints and restores
    /// are kept, one directory per container.
    pub fn logs_dir(&self, namespace: &str) -> Result<PathBuf> {
        ids::check_component("namespace", namespace)?;
        Ok(self.root.join("logs").join(namespace))
    }

    /// The limits every CRIU conversation runs under.
    pub fn criu_limits(&self) -> crate::criu::Limits {
        crate::criu::Limits {
            timeout: std::time::Duration::from_secs(self.criu_timeout_seconds.max(1))
                .min(crate::criu::MAX_TIMEOUT),
            // Saturating: a huge setting means "no practical limit", not a
            // shift that wraps to a tiny or zero limit.
            log_max_bytes: self.criu_log_max_mib.max(1).saturating_mul(1 << 20),
        }
    }

    /// Where the CRIU log of a container's last failed checkpoint or
    /// restore is kept (the image directory may be a client's temporary one).
    pub fn failed_log(&self, namespace: &str, id: &str, what: &str) -> Result<PathBuf> {
        ids::check_component("container id", id)?;
        ids::check_component("log name", what)?;
        Ok(self
            .logs_dir(namespace)?
            .join(id)
            .join(format!("{what}.log")))
    }

    /// The CLI's scratch space, `work_root/work` (0700), made if missing.
    pub fn work_dir(&self) -> Result<PathBuf> {
        let dir = self.work_root.join("work");
        make_private_dir(&dir)?;
        Ok(dir)
    }

    /// A new private (0700) scratch directory for one CLI operation, removed
    /// when the returned guard is dropped (or, if its operation is killed,
    /// by a later one: see [`crate::scratch`]).
    pub fn scratch_dir(&self, what: &str) -> Result<crate::scratch::Scratch> {
        crate::scratch::Scratch::new_in(&self.work_dir()?, what)
    }

    /// `receive_root` (0700), made if missing.
    pub fn receive_dir(&self) -> Result<PathBuf> {
        make_private_dir(&self.receive_root)?;
        Ok(self.receive_root.clone())
    }

    /// A new private scratch directory under `receive_root` (see
    /// [`Self::scratch_dir`]).
    pub fn receive_scratch_dir(&self, what: &str) -> Result<crate::scratch::Scratch> {
        crate::scratch::Scratch::new_in(&self.receive_dir()?, what)
    }

    /// Where the shim decompresses the pages of a checkpoint that must stay
    /// as it is (a user's image path) for CRIU to read, one private
    /// directory per restore, removed after it.
    pub fn restore_scratch(&self) -> PathBuf {
        self.work_root.join("work")
    }

    /// Console sockets live here: short, because socket paths are limited.
    pub fn console_dir(&self) -> PathBuf {
        self.root.join("c")
    }
}

/// Makes `dir` and its missing parents, new ones 0700 (scratch spaces hold
/// process memory).
fn make_private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(Error::io(format!("create {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// config/lazarus.toml documents every setting with its default: it
    /// must parse, and to exactly the defaults.
    #[test]
    fn the_shipped_config_file_is_the_defaults() {
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/lazarus.toml");
        assert_eq!(Config::from_file(&shipped).unwrap(), Config::default());
        let text = std::fs::read_to_string(&shipped).unwrap();
        for key in [
            "root",
            "log_level",
            "criu_path",
            "criu_timeout_seconds",
            "criu_log_max_mib",
            "work_root",
            "compress_pages",
            "store_root",
            "store_max_gib",
            "docker_checkpoints",
            "[checkpoint_exit]",
            "[import]",
        ] {
            assert!(
                text.contains(&format!("\n{key}")),
                "config/lazarus.toml does not list {key}"
            );
        }
    }

    /// The `[import]` defaults are the archive's own (kept apart so that the
    /// configuration builds without the archive, as in the shim).
    #[cfg(feature = "archive")]
    #[test]
    fn the_import_defaults_are_the_archives() {
        assert_eq!(
            ImportSettings::default().limits(),
            crate::archive::Limits::DEFAULT
        );
    }

    #[test]
    fn empty_file_gives_defaults_and_unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "").unwrap();
        assert_eq!(Config::from_file(&path).unwrap(), Config::default());
        std::fs::write(
            &path,
            "root = \"/tmp/x\"\nlog_level = \"debug\"\n[checkpoint_exit]\ndefault = true\n",
        )
        .unwrap();
        let c = Config::from_file(&path).unwrap();
        assert_eq!(c.state_root("moby").unwrap(), PathBuf::from("/tmp/x/moby"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.checkpoint_exit.get("default"), Some(&true));
        std::fs::write(&path, "rooot = \"/tmp/x\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("rooot"), "{err}");
    }

    #[test]
    fn request_names_never_leave_the_root() {
        let c = Config::default();
        assert_eq!(
            c.failed_log("moby", "c1", "dump").unwrap(),
            PathBuf::from("/run/lazarus/logs/moby/c1/dump.log")
        );
        for (ns, id) in [("../..", "c1"), ("moby", "../../etc/x"), ("a/b", "c")] {
            let err = c.failed_log(ns, id, "dump").unwrap_err();
            assert_eq!(err.kind(), crate::error::ErrorKind::InvalidArgument);
        }
        let err = c.state_root("../etc").unwrap_err().to_string();
        assert!(err.contains("namespace") && err.contains("../etc"), "{err}");
        assert!(c.logs_dir("").is_err());
    }
}

#[cfg(test)]
#[path = "config_prop_tests.rs"]
mod prop_tests;
