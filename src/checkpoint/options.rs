//! What a Checkpoint or a Create asks for, decoded from containerd's option
//! types, and the exit-or-leave-running policy.

use std::collections::HashMap;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::{CheckpointOptions, Options};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// containerd >= 2 sends this for every runtime; 1.x for `io.containerd.runc*`.
const RUNC_V1_CHECKPOINT: &str = "containerd.runc.v1.CheckpointOptions";
/// What containerd 1.x's client sends for runtimes not named runc. Its field
/// numbers are the same as runc.v1's.
const LEGACY_CHECKPOINT: &str = "containerd.linux.runc.CheckpointOptions";
const RUNC_V1_OPTIONS: &str = "containerd.runc.v1.Options";
const LEGACY_CREATE_OPTIONS: &str = "containerd.linux.runc.CreateOptions";
/// In the legacy CreateOptions, criu_work_path and criu_image_path are
/// fields 12 and 13 (runc.v1's Options numbers them differently).
const LEGACY_CRIU_WORK_PATH: u32 = 12;
const LEGACY_CRIU_IMAGE_PATH: u32 = 13;

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
    pub fn decode(options: Option<&Any>) -> Result<Self> {
        let Some(any) = options.filter(|a| !a.type_url.is_empty() || !a.value.is_empty()) else {
            return Ok(CheckpointRequest::default());
        };
        let name = type_name(any);
        if name != RUNC_V1_CHECKPOINT && name != LEGACY_CHECKPOINT {
            return Err(Error::InvalidArgument(format!(
                "unsupported checkpoint options type {:?}: send {RUNC_V1_CHECKPOINT} (or none)",
                any.type_url
            )));
        }
        let o = CheckpointOptions::parse_from_bytes(&any.value)?;
        Ok(CheckpointRequest {
            exit: Some(o.exit),
            tcp_established: o.open_tcp,
            ext_unix_sk: o.external_unix_sockets,
            shell_job: o.terminal,
            file_locks: o.file_locks,
            empty_namespaces: o.empty_namespaces.clone(),
            cgroups_mode: CgroupsMode::parse(&o.cgroups_mode)?,
            image_path: o.image_path.clone(),
            work_path: o.work_path.clone(),
        })
    }

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

/// Where a Create's options say to restore from, if anywhere:
/// (criu_image_path, criu_work_path).
pub fn restore_paths(options: Option<&Any>) -> Result<(String, String)> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(Default::default());
    };
    match type_name(any) {
        RUNC_V1_OPTIONS => {
            let o = Options::parse_from_bytes(&any.value)?;
            Ok((o.criu_image_path.clone(), o.criu_work_path.clone()))
        }
        LEGACY_CREATE_OPTIONS => {
            // No generated type for the legacy message: read its two path
            // fields from protobuf's unknown-field set.
            let e = Empty::parse_from_bytes(&any.value)?;
            let field = |n| {
                e.special_fields
                    .unknown_fields()
                    .get(n)
                    .and_then(|v| match v {
                        containerd_shim_protos::protobuf::UnknownValueRef::LengthDelimited(b) => {
                            Some(String::from_utf8_lossy(b).into_owned())
                        }
                        _ => None,
                    })
                    .unwrap_or_default()
            };
            Ok((field(LEGACY_CRIU_IMAGE_PATH), field(LEGACY_CRIU_WORK_PATH)))
        }
        _ => Err(Error::InvalidArgument(format!(
            "unsupported runtime options type {:?}: send {RUNC_V1_OPTIONS} (or none)",
            any.type_url
        ))),
    }
}

/// containerd's typeurl writes bare names; protobuf's Any::pack adds a host.
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
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

    fn any(type_url: &str, message: &dyn containerd_shim_protos::protobuf::MessageDyn) -> Any {
        Any {
            type_url: type_url.into(),
            value: message.write_to_bytes_dyn().unwrap(),
            ..Default::default()
        }
    }

    #[test]
    fn absent_or_empty_options_leave_the_decision_open() {
        assert_eq!(
            CheckpointRequest::decode(None).unwrap(),
            CheckpointRequest::default()
        );
        assert_eq!(
            CheckpointRequest::decode(Some(&Any::new())).unwrap().exit,
            None
        );
    }

    #[test]
    fn runc_v1_and_legacy_checkpoint_options_decode_alike() {
        let o = CheckpointOptions {
            exit: true,
            open_tcp: true,
            external_unix_sockets: true,
            terminal: true,
            file_locks: true,
            empty_namespaces: vec!["network".into()],
            cgroups_mode: "full".into(),
            image_path: "/img".into(),
            work_path: "/work".into(),
            ..Default::default()
        };
        for url in [
            RUNC_V1_CHECKPOINT,
            LEGACY_CHECKPOINT,
            "type.googleapis.com/containerd.runc.v1.CheckpointOptions",
        ] {
            let r = CheckpointRequest::decode(Some(&any(url, &o))).unwrap();
            assert_eq!(r.exit, Some(true));
            assert!(r.tcp_established && r.ext_unix_sk && r.shell_job && r.file_locks);
            assert_eq!(r.empty_namespaces, ["network"]);
            assert_eq!(r.cgroups_mode, CgroupsMode::Full);
            assert_eq!(
                (r.image_path.as_str(), r.work_path.as_str()),
                ("/img", "/work")
            );
        }
        let bad = any("containerd.runc.v1.Options", &o);
        assert!(matches!(
            CheckpointRequest::decode(Some(&bad)),
            Err(Error::InvalidArgument(_))
        ));
        let mode = CheckpointOptions {
            cgroups_mode: "loose".into(),
            ..Default::default()
        };
        let err = CheckpointRequest::decode(Some(&any(RUNC_V1_CHECKPOINT, &mode))).unwrap_err();
        assert!(err.to_string().contains("loose"), "{err}");
    }

    #[test]
    fn restore_paths_from_runc_v1_and_legacy_create_options() {
        let o = Options {
            criu_image_path: "/img".into(),
            criu_work_path: "/w".into(),
            ..Default::default()
        };
        assert_eq!(
            restore_paths(Some(&any(RUNC_V1_OPTIONS, &o))).unwrap(),
            ("/img".into(), "/w".into())
        );
        let mut legacy = Empty::new();
        legacy
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(LEGACY_CRIU_IMAGE_PATH, b"/old".to_vec());
        legacy
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(LEGACY_CRIU_WORK_PATH, b"/ow".to_vec());
        legacy.special_fields.mut_unknown_fields().add_varint(1, 1); // no_pivot_root
        let got = restore_paths(Some(&any(LEGACY_CREATE_OPTIONS, &legacy))).unwrap();
        assert_eq!(got, ("/old".into(), "/ow".into()));
        assert_eq!(restore_paths(None).unwrap(), (String::new(), String::new()));
    }

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
