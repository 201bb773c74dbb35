//! Names from requests that become one path component: container ids, exec
//! ids, containerd namespaces. containerd validates them (its
//! `identifiers.Validate`: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most 76
//! characters), but the shim is reachable by anything that can open its
//! socket, so it checks for itself that such a name cannot leave the
//! directory it is joined to (`../../etc`, `a/b`, a NUL).

use crate::error::{Error, Result};

/// The longest name accepted. Shorter than NAME_MAX (255) because the
/// runtime derives file names from a container id
/// (`<id>-<pid>-<seq>.stderr`, `<id>-exec-<pid>.<nanos>.json`) that must
/// fit too; far above containerd's own limit of 76.
pub const MAX_LEN: usize = 200;

/// Refuses a `kind` (e.g. "container id") that is not one safe path
/// component: empty, `.` or `..`, holding `/` or NUL, or longer than
/// [`MAX_LEN`] bytes. Anything containerd accepts passes.
pub fn check_component(kind: &str, value: &str) -> Result<()> {
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value == "." || value == ".." {
        "must not be . or .."
    } else if value.contains('/') {
        "must not contain /"
    } else if value.contains('\0') {
        "must not contain a NUL byte"
    } else if value.len() > MAX_LEN {
        "is too long"
    } else {
        return Ok(());
    };
    // Debug formatting shows a NUL or a newline as an escape, and a long
    // value is cut so the message stays readable.
    let shown: String = value.chars().take(80).collect();
    let more = if shown.len() < value.len() { "..." } else { "" };
    Err(Error::InvalidArgument(format!(
        "invalid {kind} {shown:?}{more} ({} bytes): {problem}; use letters, digits and \
         . _ - (at most {MAX_LEN} bytes), as containerd does",
        value.len()
    )))
}

#[cfg(test)]
#[path = "ids_prop_tests.rs"]
mod prop_tests;
