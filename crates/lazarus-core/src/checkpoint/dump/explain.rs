//! A failed dump's (or restore's) CRIU log made into its error: the real
//! cause first, CRIU's error lines and the log's tail, the option CRIU
//! asked for named as the runc option and the annotation that give it, and
//! a bounded copy of the log kept where the user can read it.

use std::path::Path;

use crate::checkpoint::request;
use crate::criu::{self, CriuError, CriuFailure};

/// How many of the log's last lines an error carries.
const LOG_TAIL_LINES: usize = 15;

/// CRIU's advice when a dump needs an option, the runc option and the
/// Lazarus annotation that give it.
pub(super) const OPTION_ADVICE: [(&str, &str, &str); 3] = [
    (
        "--tcp-established",
        "open_tcp",
        request::TCP_ESTABLISHED_ANNOTATION,
    ),
    (
        "--ext-unix-sk",
        "external_unix_sockets",
        request::EXT_UNIX_SK_ANNOTATION,
    ),
    ("--file-locks", "file_locks", request::FILE_LOCKS_ANNOTATION),
];

/// Fills a CRIU error in from its log: the error lines, the tail, a hint,
/// and a bounded copy of the log kept at `keep` (the log's own directory
/// may be a client's temporary one, deleted as soon as the call returns).
pub(in crate::checkpoint) fn explain(
    err: &mut CriuError,
    log: &Path,
    keep: Option<&Path>,
    advice: &[(&str, &str, &str)],
) {
    let excerpt = criu::log::excerpt(log, LOG_TAIL_LINES);
    // CRIU answers with its first error message, which under a container
    // manager's rlimits is a harmless one: lead with the real cause.
    if let CriuFailure::Refused { message, .. } = &mut err.failure {
        if criu::log::is_harmless(message) {
            *message = excerpt.errors.first().cloned().unwrap_or_default();
        }
    }
    err.hint = criu::log::option_hint(&excerpt, advice);
    err.errors = excerpt.errors;
    if let CriuFailure::Refused { message, .. } = &err.failure {
        // Said once: in the first line.
        err.errors.retain(|l| l != message);
    }
    err.log_tail = excerpt.tail;
    err.log = Some(log.to_path_buf());
    if let Some(keep) = keep {
        match criu::log::keep_copy(log, keep, KEPT_LOG_MAX) {
            Ok(()) => err.log = Some(keep.to_path_buf()),
            Err(e) => ::log::warn!(
                "keep a copy of {} at {}: {e}",
                log.display(),
                keep.display()
            ),
        }
    }
}

/// The most of a failed operation's CRIU log that is kept.
const KEPT_LOG_MAX: u64 = 8 << 20;
