//! The shim's own configuration file (TOML), `/etc/lazarus/config.toml` or
//! the path in `LAZARUS_CONFIG`. Every key is optional; see config/lazarus.toml.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

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
}

impl Default for Config {
    fn default() -> Self {
        Config {
            root: PathBuf::from("/run/lazarus"),
            log_level: "info".into(),
            criu_path: PathBuf::from("criu"),
            checkpoint_exit: HashMap::new(),
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
        let text = std::fs::read_to_string(path)
            .map_err(Error::io(format!("read Lazarus config {}", path.display())))?;
        toml::from_str(&text).map_err(|e| {
            Error::InvalidArgument(format!("invalid Lazarus config {}: {e}", path.display()))
        })
    }

    /// libcontainer's state root for one containerd namespace.
    pub fn state_root(&self, namespace: &str) -> PathBuf {
        self.root.join(namespace)
    }

    /// Console sockets live here: short, because socket paths are limited.
    pub fn console_dir(&self) -> PathBuf {
        self.root.join("c")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.state_root("moby"), PathBuf::from("/tmp/x/moby"));
        assert_eq!(c.log_level, "debug");
        assert_eq!(c.checkpoint_exit.get("default"), Some(&true));
        std::fs::write(&path, "rooot = \"/tmp/x\"\n").unwrap();
        let err = Config::from_file(&path).unwrap_err().to_string();
        assert!(err.contains("rooot"), "{err}");
    }
}
