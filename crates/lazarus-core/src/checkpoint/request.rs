//! What a checkpoint asks for, whoever asked (containerd's options, a
//! container's annotations, the CLI), and the exit-or-leave-running policy.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The OCI annotation a user sets per container (`docker run --annotation
/// io.lazarus.checkpoint.exit=false`) to choose what a checkpoint without
/// options does: "true" stops the container, "false" leaves it running.
pub const EXIT_ANNOTATION: &str = "io.lazarus.checkpoint.exit";

/// Per-container OCI annotations that turn CRIU dump options on, for
/// clients that send no options to a runtime not named runc (Docker,
/// nerdctl): `docker run --annotation io.lazarus.checkpoint.tcp-established=true`.
/// They add to the request's options; the option is then recorded in the
/// image and re-applied at restore.
pub const TCP_ESTABLISHED_ANNOTATION: &str = "io.lazarus.checkpoint.tcp-established";
pub const EXT_UNIX_SK_ANNOTATION: &str = "io.lazarus.checkpoint.ext-unix-sk";
pub const FILE_LOCKS_ANNOTATION: &str = "io.lazarus.checkpoint.file-locks";
pub const SHELL_JOB_ANNOTATION: &str = "io.lazarus.checkpoint.shell-job";

/// Every `io.lazarus.checkpoint.*` and `io.lazarus.restore.*` annotation
/// Lazarus knows; each takes "true" or "false".
pub const ANNOTATIONS: [&str; 6] = [
    EXIT_ANNOTATION,
    TCP_ESTABLISHED_ANNOTATION,
    EXT_UNIX_SK_ANNOTATION,
    FILE_LOCKS_ANNOTATION,
    SHELL_JOB_ANNOTATION,
    super::identity::SKIP_IMAGE_CHECK_ANNOTATION,
];
const ANNOTATION_PREFIXES: [&str; 2] = ["io.lazarus.checkpoint.", "io.lazarus.restore."];

/// Checks a container's Lazarus annotations when it is created, so a typo
/// is an error from `docker run`, not from the first checkpoint days later.
pub fn validate_annotations(annotations: &HashMap<String, String>) -> Result<()> {
    let mut keys: Vec<&String> = annotations.keys().collect();
    keys.sort();
    for key in keys {
        if !ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p)) {
            continue;
        }
        if !ANNOTATIONS.contains(&key.as_str()) {
            return Err(Error::InvalidArgument(format!(
                "unknown annotation {key}: Lazarus knows {}",
                ANNOTATIONS.join(", ")
            )));
        }
        parse_bool_annotation(key, &annotations[key])?;
    }
    Ok(())
}

/// How CRIU treats cgroups (runc's `cgroups_mode` strings).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupsMode {
    #[default]
    Soft,
    Full,
    Strict,
    Ignore,
}

impl CgroupsMode {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "" | "soft" => Ok(CgroupsMode::Soft),
            "full" => Ok(CgroupsMode::Full),
            "strict" => Ok(CgroupsMode::Strict),
            "ignore" => Ok(CgroupsMode::Ignore),
            other => Err(Error::InvalidArgument(format!(
                "unknown cgroups_mode {other:?}: use soft, full, strict or ignore"
            ))),
        }
    }
}

/// A checkpoint request with containerd's options applied.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointRequest {
    /// Some(..) when the options said so; None lets the policy decide.
    pub exit: Option<bool>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub empty_namespaces: Vec<String>,
    pub cgroups_mode: CgroupsMode,
    pub image_path: String,
    pub work_path: String,
}

impl CheckpointRequest {
    /// Turns on the dump options the container's annotations ask for.
    /// Protobuf cannot tell an option left unset from one set to false, so an
    /// annotation only ever adds an option.
    pub fn apply_annotations(&mut self, annotations: &HashMap<String, String>) -> Result<()> {
        for (key, flag) in [
            (TCP_ESTABLISHED_ANNOTATION, &mut self.tcp_established),
            (EXT_UNIX_SK_ANNOTATION, &mut self.ext_unix_sk),
            (FILE_LOCKS_ANNOTATION, &mut self.file_locks),
            (SHELL_JOB_ANNOTATION, &mut self.shell_job),
        ] {
            if let Some(value) = annotations.get(key) {
                *flag |= parse_bool_annotation(key, value)?;
            }
        }
        Ok(())
    }
}

fn parse_bool_annotation(key: &str, value: &str) -> Result<bool> {
    match value {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(Error::InvalidArgument(format!(
            "annotation {key}={other:?}: use \"true\" or \"false\""
        ))),
    }
}

/// Decides whether a checkpoint stops the container, in this order: the
/// request's options; the container's annotation; the shim config for the
/// namespace; the namespace's client default (Docker's `moby`: exit, as
/// `docker checkpoint create` does; everything else, CRI's `k8s.io`
/// included: leave running, as containerd's runc shim does without options).
pub fn should_exit(
    request: &CheckpointRequest,
    annotations: &HashMap<String, String>,
    configured: &HashMap<String, bool>,
    namespace: &str,
) -> Result<bool> {
    if let Some(exit) = request.exit {
        return Ok(exit);
    }
    if let Some(value) = annotations.get(EXIT_ANNOTATION) {
        return parse_bool_annotation(EXIT_ANNOTATION, value);
    }
    if let Some(exit) = configured.get(namespace) {
        return Ok(*exit);
    }
    Ok(namespace == "moby")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_add_dump_options_and_reject_bad_values() {
        let mut r = CheckpointRequest {
            file_locks: true,
            ..Default::default()
        };
        let ann = HashMap::from([
            (TCP_ESTABLISHED_ANNOTATION.to_string(), "true".to_string()),
            (FILE_LOCKS_ANNOTATION.to_string(), "false".to_string()),
        ]);
        r.apply_annotations(&ann).unwrap();
        assert!(r.tcp_established && r.file_locks);
        assert!(!r.ext_unix_sk && !r.shell_job);
        let bad = HashMap::from([(EXT_UNIX_SK_ANNOTATION.to_string(), "1".to_string())]);
        let err = r.apply_annotations(&bad).unwrap_err();
        assert!(err.to_string().contains(EXT_UNIX_SK_ANNOTATION), "{err}");
    }

    #[test]
    fn annotations_are_checked_at_create() {
        let ok = HashMap::from([
            (EXIT_ANNOTATION.to_string(), "false".to_string()),
            (
                crate::checkpoint::identity::SKIP_IMAGE_CHECK_ANNOTATION.to_string(),
                "true".to_string(),
            ),
            ("org.other".to_string(), "anything".to_string()),
        ]);
        validate_annotations(&ok).unwrap();
        let bad = HashMap::from([(EXIT_ANNOTATION.to_string(), "maybe".to_string())]);
        let err = validate_annotations(&bad).unwrap_err().to_string();
        assert!(
            err.contains("maybe") && err.contains(EXIT_ANNOTATION),
            "{err}"
        );
        let typo = HashMap::from([(
            "io.lazarus.checkpoint.tcp-establised".to_string(),
            "true".to_string(),
        )]);
        let err = validate_annotations(&typo).unwrap_err().to_string();
        assert!(
            err.contains("tcp-establised") && err.contains(TCP_ESTABLISHED_ANNOTATION),
            "{err}"
        );
        let typo = HashMap::from([(
            "io.lazarus.restore.skip-image-chek".to_string(),
            "true".to_string(),
        )]);
        assert!(validate_annotations(&typo).is_err());
    }

    #[test]
    fn exit_policy_order() {
        let none = CheckpointRequest::default();
        let empty = HashMap::new();
        let unset = HashMap::new();
        assert!(should_exit(&none, &empty, &unset, "moby").unwrap());
        assert!(!should_exit(&none, &empty, &unset, "k8s.io").unwrap());
        assert!(!should_exit(&none, &empty, &unset, "default").unwrap());
        let configured = HashMap::from([("default".to_string(), true)]);
        assert!(should_exit(&none, &empty, &configured, "default").unwrap());
        let ann = HashMap::from([(EXIT_ANNOTATION.to_string(), "false".to_string())]);
        assert!(!should_exit(&none, &ann, &configured, "moby").unwrap());
        let explicit = CheckpointRequest {
            exit: Some(true),
            ..Default::default()
        };
        assert!(should_exit(&explicit, &ann, &unset, "k8s.io").unwrap());
        let bad = HashMap::from([(EXIT_ANNOTATION.to_string(), "yes".to_string())]);
        assert!(should_exit(&none, &bad, &unset, "moby").is_err());
    }
}

#[cfg(test)]
#[path = "request_prop_tests.rs"]
mod prop_tests;
