//! The core's errors. Each says what kind of failure it is, so a front door
//! can answer with the right code (the shim maps kinds to ttrpc codes, the
//! CLI to exit codes) and a caller can tell "an option is missing" from
//! "CRIU crashed" from "CRIU did not answer in time".

mod criu;

pub use criu::{CriuError, CriuFailure, CriuOp};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The request names something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The request or its input is malformed: bad spec, options, image.
    #[error("{0}")]
    InvalidArgument(String),
    /// The request is fine but cannot be done in the current state (CRIU
    /// missing or too old, a bundle that cannot host the checkpoint).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The input asks for more than the user granted (an archive's hooks
    /// or privileges, a checkpoint's credentials beyond its container's).
    #[error("{0}")]
    PermissionDenied(String),
    /// CRIU ran and failed, crashed or timed out.
    #[error(transparent)]
    Criu(#[from] Box<CriuError>),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{context}: {source}")]
    Sys {
        context: String,
        #[source]
        source: nix::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// What kind of failure an [`Error`] is, for front doors mapping errors to
/// their own codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    NotFound,
    InvalidArgument,
    FailedPrecondition,
    PermissionDenied,
    /// CRIU refused (its own error), crashed, or broke the protocol.
    CriuFailed,
    /// A deadline ran out (CRIU or a peer stopped answering).
    DeadlineExceeded,
    Internal,
}

impl Error {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let context = context.into();
        move |source| Error::Io { context, source }
    }

    pub fn sys(context: impl Into<String>) -> impl FnOnce(nix::Error) -> Error {
        let context = context.into();
        move |source| Error::Sys { context, source }
    }

    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotFound(_) => ErrorKind::NotFound,
            Error::InvalidArgument(_) => ErrorKind::InvalidArgument,
            Error::FailedPrecondition(_) => ErrorKind::FailedPrecondition,
            Error::PermissionDenied(_) => ErrorKind::PermissionDenied,
            Error::Criu(e) => e.kind(),
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorKind::NotFound
            }
            Error::Io { .. } | Error::Sys { .. } | Error::Other(_) => ErrorKind::Internal,
        }
    }

    /// The CRIU failure behind this error, if it is one.
    pub fn criu(&self) -> Option<&CriuError> {
        match self {
            Error::Criu(e) => Some(e),
            _ => None,
        }
    }
}

/// A full file system said as such, not as whatever the failed write was
/// part of: None unless `e` is ENOSPC or EDQUOT. `dir` is where it was
/// written, `what` what was being written there and `needed` about how
/// many bytes it takes; `fix` says what else to do than free some space.
pub fn no_space(
    e: &std::io::Error,
    dir: &std::path::Path,
    what: &str,
    needed: Option<u64>,
    fix: &str,
) -> Option<Error> {
    if !matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)) {
        return None;
    }
    let (mount, device) = mount_of(dir);
    let on = match device {
        Some(d) => format!("{d} ({})", mount.display()),
        None => mount.display().to_string(),
    };
    let free = nix::sys::statvfs::statvfs(dir)
        .map(|s| s.blocks_available().saturating_mul(s.fragment_size()) >> 20)
        .ok();
    let needs = match (needed, free) {
        (Some(n), Some(f)) => format!(": needs {} MiB, {f} MiB free", n.div_ceil(1 << 20)),
        (Some(n), None) => format!(": needs {} MiB", n.div_ceil(1 << 20)),
        (None, _) => String::new(),
    };
    Some(Error::FailedPrecondition(format!(
        "no space left on {on} for {what} in {}{needs}; free some space there, or {fix} ({e})",
        dir.display()
    )))
}

/// The mount point `path` is on (the highest ancestor on its device), and
/// the device mounted there as /proc/self/mountinfo names it.
fn mount_of(path: &std::path::Path) -> (std::path::PathBuf, Option<String>) {
    use std::os::unix::fs::MetadataExt;
    let mut path = path.to_path_buf();
    while !path.exists() {
        match path.parent() {
            Some(p) => path = p.to_path_buf(),
            None => break,
        }
    }
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    let dev = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.dev()).ok();
    let mut mount = path.clone();
    while let Some(parent) = mount.parent() {
        if dev(parent).is_none() || dev(parent) != dev(&mount) {
            break;
        }
        mount = parent.to_path_buf();
    }
    let device = std::fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|info| {
            info.lines().rev().find_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let sep = f.iter().position(|&x| x == "-")?;
                (f.get(4) == Some(&mount.to_str()?))
                    .then(|| f.get(sep + 2).map(|s| s.to_string()))?
            })
        });
    (mount, device)
}

impl From<CriuError> for Error {
    fn from(e: CriuError) -> Self {
        Error::Criu(Box::new(e))
    }
}

impl From<serde_json::Error> for Error {
    fn from(err: serde_json::Error) -> Self {
        Error::InvalidArgument(format!("invalid JSON: {err}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_names_the_file_system_what_it_needs_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = no_space(
            &full,
            dir.path(),
            "pages-1.img of checkpoint archive a.tar",
            Some(3 << 20),
            "set work_root to a larger file system",
        )
        .expect("ENOSPC is a full disk");
        let text = e.to_string();
        assert!(text.starts_with("no space left on "), "{text}");
        assert!(
            text.contains("needs 3 MiB") && text.contains("MiB free"),
            "{text}"
        );
        assert!(text.contains("set work_root"), "{text}");
        assert!(!text.contains("corrupt"), "{text}");
        assert_eq!(e.kind(), ErrorKind::FailedPrecondition);
        // The mount point is an ancestor of the directory.
        let (mount, _) = mount_of(&dir.path().join("not-yet/made"));
        assert!(
            dir.path().canonicalize().unwrap().starts_with(&mount),
            "{mount:?}"
        );
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert!(no_space(&quota, dir.path(), "x", None, "y").is_some());
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert!(no_space(&other, dir.path(), "x", None, "y").is_none());
    }
}
