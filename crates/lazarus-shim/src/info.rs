//! `containerd-shim-lazarus-v2 -info`: what containerd asks a shim binary
//! about its runtime (containerd 2.x's introspection `PluginInfo` for the
//! task plugin, which the CRI plugin calls for every runtime handler).
//!
//! containerd writes the handler's runtime options (a protobuf Any, or
//! nothing) on stdin and reads a `containerd.types.RuntimeInfo` from
//! stdout. Its `features` field carries the OCI runtime-spec *features*
//! document (what `runc features` prints), as JSON in an Any. The CRI
//! plugin reads two things from it: whether the mount options include
//! `rro` (recursive read-only mounts, which Kubernetes then allows), and
//! whether user namespaces with id-mapped mounts are supported.
//!
//! Everything listed here is what libcontainer 0.7 does for this shim;
//! what is not known to work is left out (None means "unknown" in the
//! features document, not "unsupported").

use std::io::{Read, Write};

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedOutputStream, Message};
use oci_spec::runtime::LinuxNamespaceType;
use oci_spec::runtime::{
    CgroupBuilder, Features, FeaturesBuilder, LinuxFeatureBuilder, SeccompBuilder,
};

/// The type URL containerd registers for runtime-spec's features.Features
/// (typeurl's JSON encoding of a Go type: prefix, package path, name).
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// The mount options libcontainer 0.7's mount parser accepts (the
/// recursive `r*` ones through mount_setattr(2) with AT_RECURSIVE, kernel
/// 5.12 or later; containerd checks the kernel itself before using `rro`).
const MOUNT_OPTIONS: &[&str] = &[
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "bind",
    "rbind",
    "unbindable",
    "runbindable",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rrelatime",
    "rnorelatime",
    "rnoatime",
    "ratime",
    "rstrictatime",
    "rnostrictatime",
    "rnosymfollow",
    "rsymfollow",
];

/// The OCI hooks libcontainer runs (the shim refuses none of them; the
/// import policy decides which an archive may bring).
const HOOKS: &[&str] = &[
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

/// The runtime's features document.
pub fn features() -> Features {
    use LinuxNamespaceType::*;
    let namespaces = vec![Cgroup, Ipc, Mount, Network, Pid, User, Uts];
    let linux = LinuxFeatureBuilder::default()
        .namespaces(namespaces)
        // cgroupfs only: the shim drives libcontainer without systemd.
        .cgroup(
            CgroupBuilder::default()
                .v1(true)
                .v2(true)
                .systemd(false)
                .systemd_user(false)
                .build()
                .expect("every field has a value"),
        )
        .seccomp(
            SeccompBuilder::default()
                .enabled(true)
                .build()
                .expect("every field has a value"),
        )
        .build()
        .expect("every field has a value");
    FeaturesBuilder::default()
        .oci_version_min("1.0.0")
        .oci_version_max("1.2.0")
        .hooks(HOOKS.iter().map(|h| h.to_string()).collect::<Vec<_>>())
        .mount_options(
            MOUNT_OPTIONS
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>(),
        )
        .linux(linux)
        .build()
        .expect("every field has a value")
}

/// The RuntimeInfo message, encoded: name (1), version (2: version 1),
/// the options containerd sent, given back (3), features (4).
pub fn runtime_info(name: &str, version: &str, options: Option<&Any>) -> Vec<u8> {
    let features = Any {
        type_url: FEATURES_TYPE_URL.into(),
        value: serde_json::to_vec(&features()).expect("features serialise"),
        ..Default::default()
    };
    let mut out = Vec::new();
    let mut os = CodedOutputStream::vec(&mut out);
    // Writing into a Vec cannot fail.
    let encode = |os: &mut CodedOutputStream| -> containerd_shim_protos::protobuf::Result<()> {
        os.write_string(1, name)?;
        let mut v = Vec::new();
        {
            let mut vs = CodedOutputStream::vec(&mut v);
            vs.write_string(1, version)?;
            vs.flush()?;
        }
        os.write_bytes(2, &v)?;
        if let Some(options) = options {
            os.write_bytes(3, &options.write_to_bytes()?)?;
        }
        os.write_bytes(4, &features.write_to_bytes()?)?;
        os.flush()
    };
    encode(&mut os).expect("encoding into memory");
    drop(os);
    out
}

/// The `-info` command: options on stdin, RuntimeInfo on stdout. Returns
/// the exit code; an error goes to stderr, which containerd quotes.
pub fn main(name: &str) -> i32 {
    use std::io::IsTerminal;
    let mut bytes = Vec::new();
    let stdin = std::io::stdin();
    // By hand at a terminal: no options, rather than a wait for input.
    let read = match stdin.is_terminal() {
        true => Ok(0),
        false => stdin.take(1 << 20).read_to_end(&mut bytes),
    };
    if let Err(e) = read {
        eprintln!("{name} -info: read options: {e}");
        return 1;
    }
    let options = match bytes.is_empty() {
        true => None,
        false => match Any::parse_from_bytes(&bytes) {
            Ok(any) => Some(any),
            Err(e) => {
                eprintln!("{name} -info: runtime options on stdin are not a protobuf Any: {e}");
                return 1;
            }
        },
    };
    let info = runtime_info(name, env!("CARGO_PKG_VERSION"), options.as_ref());
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(&info).and_then(|()| stdout.flush()) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("{name} -info: write: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
    use containerd_shim_protos::protobuf::UnknownValueRef;

    fn field(msg: &Empty, n: u32) -> Vec<u8> {
        match msg.special_fields.unknown_fields().get(n) {
            Some(UnknownValueRef::LengthDelimited(b)) => b.to_vec(),
            other => panic!("field {n}: {other:?}"),
        }
    }

    #[test]
    fn runtime_info_carries_name_version_options_and_features() {
        let options = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![0x1a, 0x02, b'/', b'x'],
            ..Default::default()
        };
        let bytes = runtime_info("io.containerd.lazarus.v2", "0.2.0", Some(&options));
        let msg = Empty::parse_from_bytes(&bytes).unwrap();
        assert_eq!(field(&msg, 1), b"io.containerd.lazarus.v2");
        let version = Empty::parse_from_bytes(&field(&msg, 2)).unwrap();
        assert_eq!(field(&version, 1), b"0.2.0");
        assert_eq!(Any::parse_from_bytes(&field(&msg, 3)).unwrap(), options);
        let features = Any::parse_from_bytes(&field(&msg, 4)).unwrap();
        assert_eq!(features.type_url, FEATURES_TYPE_URL);
        let doc: serde_json::Value = serde_json::from_slice(&features.value).unwrap();
        let opts = doc["mountOptions"].as_array().unwrap();
        assert!(opts.iter().any(|o| o == "rro"), "{doc}");
        assert_eq!(doc["linux"]["cgroup"]["systemd"], false);
        // Without id-mapped mounts containerd's CRI does not offer user
        // namespaces: nothing here claims them.
        assert!(doc["linux"]["mountExtensions"].is_null(), "{doc}");
    }

    #[test]
    fn no_options_means_no_options_field() {
        let bytes = runtime_info("n", "v", None);
        let msg = Empty::parse_from_bytes(&bytes).unwrap();
        assert!(msg.special_fields.unknown_fields().get(3).is_none());
    }

    /// What libcontainer makes of one mount option: Ok(true) when it knows
    /// it (a flag or a recursive attribute), Ok(false) when it would pass
    /// it to the file system as data.
    fn understood(option: &str) -> bool {
        use oci_spec::runtime::MountBuilder;
        let mount = MountBuilder::default()
            .destination("/x")
            .typ("bind")
            .source("/tmp")
            .options(vec![option.to_string()])
            .build()
            .unwrap();
        let parsed = libcontainer::rootfs::utils::parse_mount(&mount).unwrap();
        parsed.data.is_empty()
    }

    #[test]
    fn every_advertised_mount_option_is_one_libcontainer_understands() {
        assert!(!understood("size=1m"), "file system data is not an option");
        for option in MOUNT_OPTIONS {
            assert!(
                understood(option),
                "libcontainer passes {option} on as data"
            );
        }
    }
}
