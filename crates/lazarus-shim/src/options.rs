//! containerd's option types (runc.v1 and the legacy linux.runc ones),
//! decoded into the core's [`CheckpointRequest`] and restore paths.

use std::path::{Path, PathBuf};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, UnknownValueRef};
use containerd_shim_protos::shim::oci::{CheckpointOptions, Options};
use lazarus_core::checkpoint::request::{CgroupsMode, CheckpointRequest};

use crate::error::{Error, Result};

/// containerd >= 2 sends this for every runtime; 1.x for `io.containerd.runc*`.
const RUNC_V1_CHECKPOINT: &str = "containerd.runc.v1.CheckpointOptions";
/// What containerd 1.x's client sends for runtimes not named runc. Its field
/// numbers are the same as runc.v1's.
const LEGACY_CHECKPOINT: &str = "containerd.linux.runc.CheckpointOptions";
const RUNC_V1_OPTIONS: &str = "containerd.runc.v1.Options";
const LEGACY_CREATE_OPTIONS: &str = "containerd.linux.runc.CreateOptions";
/// In the legacy CreateOptions, shim_cgroup, criu_work_path and
/// criu_image_path are fields 9, 12 and 13 (runc.v1's Options numbers them
/// differently).
const LEGACY_SHIM_CGROUP: u32 = 9;
const LEGACY_CRIU_WORK_PATH: u32 = 12;
const LEGACY_CRIU_IMAGE_PATH: u32 = 13;

/// A Checkpoint request's options. None (Docker, nerdctl and CRI send a
/// runtime not named runc nothing) leaves every decision to the policy.
pub fn decode_checkpoint(options: Option<&Any>) -> Result<CheckpointRequest> {
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
    let o: CheckpointOptions = parse(any, "checkpoint options")?;
    // The legacy type numbers its paths the other way round (8 work_path,
    // 9 image_path; runc.v1: 8 image_path, 9 work_path): what containerd's
    // Go client sends a runtime not named runc for WithCheckpointImagePath.
    let (image_path, work_path) = match name == LEGACY_CHECKPOINT {
        true => (o.work_path.clone(), o.image_path.clone()),
        false => (o.image_path.clone(), o.work_path.clone()),
    };
    Ok(CheckpointRequest {
        exit: Some(o.exit),
        tcp_established: o.open_tcp,
        ext_unix_sk: o.external_unix_sockets,
        shell_job: o.terminal,
        file_locks: o.file_locks,
        empty_namespaces: o.empty_namespaces.clone(),
        cgroups_mode: CgroupsMode::parse(&o.cgroups_mode)?,
        image_path,
        work_path,
    })
}

/// Decodes `any`'s bytes as `M`; a failure names what and which type.
fn parse<M: Message>(any: &Any, what: &str) -> Result<M> {
    M::parse_from_bytes(&any.value).map_err(|e| {
        Error::InvalidArgument(format!("cannot decode {what} {:?}: {e}", any.type_url))
    })
}

/// Where a Create restores from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestoreSource {
    pub images: String,
    /// CRIU's work directory ("": the image directory).
    pub work: String,
    /// `images` is containerd's own unpacked copy of a checkpoint image,
    /// made for this restore and left for the runtime to remove.
    pub temporary: bool,
}

/// Where a Create restores from, if anywhere: an explicit criu_image_path
/// wins over the request's checkpoint, as containerd decides for runc (it
/// then unpacks no checkpoint image); for other runtimes containerd passes
/// criu_image_path on in the options only.
pub fn restore_source(checkpoint: &str, options: Option<&Any>) -> Result<Option<RestoreSource>> {
    let (image_path, work) = restore_paths(options)?;
    let explicit = !image_path.is_empty();
    let images = match explicit {
        true => image_path,
        false => checkpoint.to_string(),
    };
    let temporary = !explicit && work.is_empty() && is_containerd_copy(Path::new(&images));
    Ok((!images.is_empty()).then_some(RestoreSource {
        images,
        work,
        temporary,
    }))
}

/// Whether `dir` is a directory containerd made to unpack a checkpoint
/// image into (`os.MkdirTemp($XDG_RUNTIME_DIR, "ctrd-checkpoint")`, the
/// temporary directory when that is unset; the shim has containerd's
/// environment). containerd never removes it.
fn is_containerd_copy(dir: &Path) -> bool {
    let parent = std::env::var_os("XDG_RUNTIME_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let named = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with("ctrd-checkpoint"));
    named && dir.parent() == Some(parent.as_path())
}

/// What Lazarus reads of a Create's runtime options (runc.v1's Options, or
/// the legacy CreateOptions containerd 1.x's client sends a runtime not
/// named runc); empty strings where a field is not set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreateOptions {
    pub criu_image_path: String,
    pub criu_work_path: String,
    /// The cgroup the client wants the shim process in
    /// (`WithShimCgroup`); a path relative to each hierarchy's root.
    pub shim_cgroup: String,
}

/// Where a Create's options say to restore from, if anywhere:
/// (criu_image_path, criu_work_path).
fn restore_paths(options: Option<&Any>) -> Result<(String, String)> {
    let o = decode_create(options)?;
    Ok((o.criu_image_path, o.criu_work_path))
}

/// Decodes a Create's (or `shim start`'s) runtime options.
pub fn decode_create(options: Option<&Any>) -> Result<CreateOptions> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(Default::default());
    };
    match type_name(any) {
        RUNC_V1_OPTIONS => {
            let o: Options = parse(any, "runtime options")?;
            Ok(CreateOptions {
                criu_image_path: o.criu_image_path.clone(),
                criu_work_path: o.criu_work_path.clone(),
                shim_cgroup: o.shim_cgroup.clone(),
            })
        }
        LEGACY_CREATE_OPTIONS => {
            // No generated type for the legacy message: read its string
            // fields from protobuf's unknown-field set, checked as the
            // generated code would (a string, and UTF-8).
            let e: Empty = parse(any, "runtime options")?;
            let field = |n, name| match e.special_fields.unknown_fields().get(n) {
                None => Ok(String::new()),
                Some(UnknownValueRef::LengthDelimited(b)) => {
                    String::from_utf8(b.to_vec()).map_err(|_| {
                        Error::InvalidArgument(format!(
                            "{LEGACY_CREATE_OPTIONS} field {n} ({name}) is not UTF-8"
                        ))
                    })
                }
                Some(_) => Err(Error::InvalidArgument(format!(
                    "{LEGACY_CREATE_OPTIONS} field {n} ({name}) is not a string"
                ))),
            };
            Ok(CreateOptions {
                criu_image_path: field(LEGACY_CRIU_IMAGE_PATH, "criu_image_path")?,
                criu_work_path: field(LEGACY_CRIU_WORK_PATH, "criu_work_path")?,
                shim_cgroup: field(LEGACY_SHIM_CGROUP, "shim_cgroup")?,
            })
        }
        _ => Err(Error::InvalidArgument(format!(
            "unsupported runtime options type {:?}: send {RUNC_V1_OPTIONS} (or none)",
            any.type_url
        ))),
    }
}

/// The shim cgroup in what containerd wrote on `shim start`'s stdin, if
/// any. containerd 1.7 to 2.2 write the task's options there (a protobuf
/// Any, or nothing); 2.3 and later a BootstrapParams message instead, and a
/// client may send option types of its own: whatever is not runc's options
/// (or unreadable) asks for no shim cgroup, and never fails the start.
pub fn shim_cgroup_on_start(stdin: impl std::io::Read) -> Option<String> {
    let options = read_start_options(stdin).ok()??;
    let cgroup = decode_create(Some(&options)).ok()?.shim_cgroup;
    (!cgroup.is_empty()).then_some(cgroup)
}

/// The runtime options containerd writes on `shim start`'s stdin (1.7 to
/// 2.2: the task's options as a protobuf Any, or nothing). At most 1 MiB is
/// read.
pub fn read_start_options(stdin: impl std::io::Read) -> Result<Option<Any>> {
    use std::io::Read;
    let mut bytes = Vec::new();
    stdin
        .take(1 << 20)
        .read_to_end(&mut bytes)
        .map_err(Error::io("read the runtime options on stdin"))?;
    if bytes.is_empty() {
        return Ok(None);
    }
    Any::parse_from_bytes(&bytes)
        .map(Some)
        .map_err(|e| Error::InvalidArgument(format!("runtime options on stdin: {e}")))
}

/// containerd's typeurl writes bare names; protobuf's Any::pack adds a host.
fn type_name(any: &Any) -> &str {
    any.type_url.rsplit('/').next().unwrap_or_default()
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
            decode_checkpoint(None).unwrap(),
            CheckpointRequest::default()
        );
        assert_eq!(decode_checkpoint(Some(&Any::new())).unwrap().exit, None);
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
        // The legacy message (containerd's Go client's WithCheckpointImagePath
        // for a runtime not named runc) numbers the paths the other way
        // round: its bytes read as runc.v1's have them swapped.
        let legacy = CheckpointOptions {
            image_path: "/work".into(),
            work_path: "/img".into(),
            ..o.clone()
        };
        for (url, sent) in [
            (RUNC_V1_CHECKPOINT, &o),
            (LEGACY_CHECKPOINT, &legacy),
            (
                "type.googleapis.com/containerd.runc.v1.CheckpointOptions",
                &o,
            ),
        ] {
            let r = decode_checkpoint(Some(&any(url, sent))).unwrap();
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
            decode_checkpoint(Some(&bad)),
            Err(Error::InvalidArgument(_))
        ));
        let mode = CheckpointOptions {
            cgroups_mode: "loose".into(),
            ..Default::default()
        };
        let err = decode_checkpoint(Some(&any(RUNC_V1_CHECKPOINT, &mode))).unwrap_err();
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
        legacy
            .special_fields
            .mut_unknown_fields()
            .add_length_delimited(LEGACY_SHIM_CGROUP, b"/shims".to_vec());
        let got = restore_paths(Some(&any(LEGACY_CREATE_OPTIONS, &legacy))).unwrap();
        assert_eq!(got, ("/old".into(), "/ow".into()));
        let got = decode_create(Some(&any(LEGACY_CREATE_OPTIONS, &legacy))).unwrap();
        assert_eq!(got.shim_cgroup, "/shims");
        assert_eq!(restore_paths(None).unwrap(), (String::new(), String::new()));
    }

    #[test]
    fn the_shim_cgroup_comes_from_either_options_type_on_stdin() {
        let o = Options {
            shim_cgroup: "/def".into(),
            ..Default::default()
        };
        let bytes = any(RUNC_V1_OPTIONS, &o).write_to_bytes().unwrap();
        let read = read_start_options(bytes.as_slice()).unwrap();
        assert_eq!(decode_create(read.as_ref()).unwrap().shim_cgroup, "/def");
        assert_eq!(read_start_options(&b""[..]).unwrap(), None);
        let err = read_start_options(&b"\xff\xff"[..]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
        assert_eq!(
            shim_cgroup_on_start(bytes.as_slice()).as_deref(),
            Some("/def")
        );
    }

    #[test]
    fn what_is_not_runcs_options_on_stdin_asks_for_no_shim_cgroup() {
        // containerd 2.3's BootstrapParams: instance_id (1), namespace (2),
        // ... which reads as an Any of an unknown type.
        let mut bootstrap = Empty::new();
        let fields = bootstrap.special_fields.mut_unknown_fields();
        fields.add_length_delimited(1, b"c1".to_vec());
        fields.add_length_delimited(2, b"default".to_vec());
        let bytes = bootstrap.write_to_bytes().unwrap();
        assert_eq!(shim_cgroup_on_start(bytes.as_slice()), None);
        assert_eq!(shim_cgroup_on_start(&b"\xff\xff"[..]), None, "unreadable");
        assert_eq!(shim_cgroup_on_start(&b""[..]), None, "nothing");
        let no_cgroup = any(RUNC_V1_OPTIONS, &Options::default())
            .write_to_bytes()
            .unwrap();
        assert_eq!(shim_cgroup_on_start(no_cgroup.as_slice()), None);
    }

    #[test]
    fn an_explicit_image_path_wins_over_the_checkpoint() {
        let o = Options {
            criu_image_path: "/img".into(),
            ..Default::default()
        };
        let o = any(RUNC_V1_OPTIONS, &o);
        let copy = std::env::temp_dir().join("ctrd-checkpoint1");
        let copy = copy.to_str().unwrap();
        let got = restore_source(copy, Some(&o)).unwrap().unwrap();
        assert_eq!(got.images, "/img");
        assert!(!got.temporary, "an explicit image path is the client's");
        let got = restore_source(copy, None).unwrap().unwrap();
        assert_eq!(got.images, copy);
        assert!(got.temporary, "containerd's unpacked copy");
        let got = restore_source("/var/cp/ctrd-checkpoint1", None)
            .unwrap()
            .unwrap();
        assert!(!got.temporary, "not in the temporary directory");
        assert_eq!(restore_source("", None).unwrap(), None);
    }
}

#[cfg(test)]
#[path = "options_prop_tests.rs"]
mod prop_tests;
