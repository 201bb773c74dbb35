//! `lazarus version`: the CLI's version, the installed shim's (the
//! `containerd-shim-lazarus-v2` on PATH, asked with `-v`) and that of the
//! CRIU it would use, asked over CRIU's RPC interface as the runtime asks
//! it. The only CRIU run by the CLI, waited for directly ([`DirectWait`]):
//! this is an ordinary process that reaps its own children.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lazarus_core::config::Config;
use lazarus_core::criu::{Criu, CriuFailure, DirectWait, SwrkCriu};

use crate::engine::runtimes::LAZARUS_SHIM;
use crate::error::Result;
use crate::report::VersionReport;

/// What a component missing from this host is reported as.
pub const NOT_FOUND: &str = "not found";
/// How long the shim may take to print its version.
const SHIM_TIMEOUT: Duration = Duration::from_secs(5);

/// The three versions. A shim or CRIU that is not installed is "not
/// found"; a CRIU that is there but cannot be asked is "unavailable",
/// with CRIU's error beside the report.
pub fn version() -> Result<(VersionReport, Option<lazarus_core::Error>)> {
    let config = Config::load()?;
    let criu = SwrkCriu {
        binary: config.criu_path.clone(),
        limits: config.criu_limits(),
        waiter: Box::new(DirectWait),
    };
    let (criu, error) = match criu.version() {
        Ok((a, b, c)) => (format!("{a}.{b}.{c}"), None),
        Err(e)
            if matches!(
                e.criu().map(|c| &c.failure),
                Some(CriuFailure::NotInstalled(_))
            ) =>
        {
            (NOT_FOUND.to_string(), None)
        }
        Err(e) => ("unavailable".to_string(), Some(e)),
    };
    let shim_path = on_path(LAZARUS_SHIM, &std::env::var("PATH").unwrap_or_default());
    let shim = match &shim_path {
        Some(p) => shim_version(p),
        None => NOT_FOUND.to_string(),
    };
    let report = VersionReport {
        lazarus: env!("CARGO_PKG_VERSION").to_string(),
        shim,
        shim_path,
        criu,
    };
    Ok((report, error))
}

/// The first executable file `name` in the directories of `path`.
pub fn on_path(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// What `SHIM -v` says its version is ("containerd-shim-lazarus-v2
/// version 0.2.0"), else why not.
fn shim_version(shim: &Path) -> String {
    let child = Command::new(shim)
        .arg("-v")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => return format!("unavailable ({e})"),
    };
    let deadline = Instant::now() + SHIM_TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return format!("unavailable (no answer to -v within {SHIM_TIMEOUT:?})");
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut stdout, &mut out);
    }
    parse_shim_version(&out).unwrap_or_else(|| format!("unavailable (-v printed {:?})", out.trim()))
}

fn parse_shim_version(out: &str) -> Option<String> {
    out.lines()
        .find_map(|l| l.split_once(" version "))
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let p = dir.join(LAZARUS_SHIM);
        std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        p
    }

    #[test]
    fn the_shim_on_path_is_found_and_asked() {
        let empty = tempfile::tempdir().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let shim = script(
            dir.path(),
            "[ \"$1\" = -v ] && echo 'containerd-shim-lazarus-v2 version 9.8.7'",
        );
        let path = format!("{}:{}", empty.path().display(), dir.path().display());
        assert_eq!(on_path(LAZARUS_SHIM, &path), Some(shim.clone()));
        assert_eq!(on_path(LAZARUS_SHIM, empty.path().to_str().unwrap()), None);
        assert_eq!(shim_version(&shim), "9.8.7");
        let odd = script(dir.path(), "echo hello");
        assert!(
            shim_version(&odd).starts_with("unavailable"),
            "{}",
            shim_version(&odd)
        );
        // Not executable: not the shim containerd would run.
        std::fs::set_permissions(&odd, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(on_path(LAZARUS_SHIM, dir.path().to_str().unwrap()), None);
    }
}
