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

/// containerd's longest identifier (its `identifiers.Validate`).
pub const MAX_IDENTIFIER: usize = 76;

/// Refuses a `kind` (e.g. "containerd namespace") that containerd's
/// identifier rule refuses: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most
/// [`MAX_IDENTIFIER`] bytes. Checked before a namespace becomes gRPC
/// metadata, which holds visible ASCII only: containerd would refuse
/// anything else anyway, and this says why in its words.
pub fn check_identifier(kind: &str, value: &str) -> Result<()> {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    let separator = |c: char| matches!(c, '.' | '_' | '-');
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_IDENTIFIER {
        "is too long"
    } else if !value.chars().all(|c| alnum(c) || separator(c)) {
        "may hold only ASCII letters, digits and . _ -"
    } else if !value.starts_with(alnum) || !value.ends_with(alnum) {
        "must begin and end with a letter or digit"
    } else if value
        .as_bytes()
        .windows(2)
        .any(|w| separator(w[0] as char) && separator(w[1] as char))
    {
        "must not hold two of . _ - in a row"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "invalid {kind} {}: {problem} (containerd's rule: letters and digits, joined by single \
         . _ or -, at most {MAX_IDENTIFIER} bytes)",
        shown(value)
    )))
}

/// Refuses a container `kind` (e.g. "container name") whose characters
/// neither Docker nor containerd accepts: it must begin with an ASCII
/// letter or digit and hold only those and `. _ -` (both engines' rules
/// are narrower still, and say so themselves), at most [`MAX_LEN`] bytes.
/// Such a name is one safe path component, URL segment and command-line
/// argument (no leading `-`).
pub fn check_name(kind: &str, value: &str) -> Result<()> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    let problem = if value.is_empty() {
        "must not be empty"
    } else if value.len() > MAX_LEN {
        "is too long"
    } else if !value.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        "must begin with a letter or digit"
    } else if !value.chars().all(allowed) {
        "may hold only ASCII letters, digits and . _ -"
    } else {
        return Ok(());
    };
    Err(Error::InvalidArgument(format!(
        "invalid {kind} {}: {problem}",
        shown(value)
    )))
}

/// A name from outside in a message: Debug-quoted (escapes for control
/// characters), cut at 80 characters, with its length.
fn shown(value: &str) -> String {
    let cut: String = value.chars().take(80).collect();
    let more = if cut.len() < value.len() { "..." } else { "" };
    format!("{cut:?}{more} ({} bytes)", value.len())
}

#[cfg(test)]
#[path = "ids_prop_tests.rs"]
mod prop_tests;
