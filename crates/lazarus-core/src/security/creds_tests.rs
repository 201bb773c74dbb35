use std::path::Path;

use oci_spec::runtime::Spec;

use super::*;
use crate::criu::images::tests::build::*;
use crate::criu::images::{CORE_MAGIC, IMG_COMMON_MAGIC, MNTS_MAGIC};

struct Thread {
    tid: u32,
    uid: u32,
    caps: u64,
    nnp: bool,
    seccomp: u64,
    leader: bool,
}

/// A core image as CRIU writes it: tc with the comm, thread_core with
/// the credentials and seccomp mode.
fn core_image(t: &Thread) -> Vec<u8> {
    let mut creds = msg();
    for n in [1, 2, 3, 4, 5, 6, 7, 8] {
        varint(&mut creds, n, u64::from(t.uid));
    }
    for n in [10, 11, 12] {
        varint(&mut creds, n, t.caps & 0xffff_ffff);
        varint(&mut creds, n, t.caps >> 32);
    }
    varint(&mut creds, 13, 0);
    varint(&mut creds, 18, u64::from(t.nnp));
    let mut thread = msg();
    sub(&mut thread, 10, &creds);
    // As CRIU writes it: the mode only where there is a filter.
    if t.seccomp != 0 {
        varint(&mut thread, 11, t.seccomp);
    }
    bytes(&mut thread, 13, b"app");
    let mut core = msg();
    varint(&mut core, 1, 1);
    if t.leader {
        let mut tc = msg();
        bytes(&mut tc, 6, b"app");
        sub(&mut core, 3, &tc);
    }
    sub(&mut core, 5, &thread);
    image(Some(IMG_COMMON_MAGIC), CORE_MAGIC, &[core])
}

fn mount_image(mounts: &[(&str, u32, u64)]) -> Vec<u8> {
    let entries: Vec<_> = mounts
        .iter()
        .map(|(at, fstype, flags)| {
            let mut m = msg();
            varint(&mut m, 1, u64::from(*fstype));
            varint(&mut m, 5, *flags);
            bytes(&mut m, 7, at.as_bytes());
            m
        })
        .collect();
    image(Some(IMG_COMMON_MAGIC), MNTS_MAGIC, &entries)
}

fn images(threads: &[Thread], mounts: &[(&str, u32, u64)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for t in threads {
        let path = dir.path().join(format!("core-{}.img", t.tid));
        std::fs::write(path, core_image(t)).unwrap();
    }
    std::fs::write(dir.path().join("mountpoints-13.img"), mount_image(mounts)).unwrap();
    dir
}

/// docker run's spec, as far as credentials go: the default bounding set,
/// a seccomp profile, /sys read-only, root.
fn docker_spec(extra: &str) -> Spec {
    let caps: Vec<String> = crate::security::caps::DEFAULT
        .iter()
        .map(|c| format!("{c:?}"))
        .collect();
    let caps = caps.join(",");
    let json = format!(
        r#"{{"ociVersion":"1.0.2","root":{{"path":"rootfs"}},
        "process":{{"cwd":"/","user":{{"uid":0,"gid":0}},"args":["sh"],
          "capabilities":{{"bounding":[{caps}],"effective":[{caps}],"permitted":[{caps}]}}
          {extra}}},
        "mounts":[{{"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","ro"]}}],
        "linux":{{"seccomp":{{"defaultAction":"SCMP_ACT_ERRNO"}},
          "namespaces":[{{"type":"pid"}},{{"type":"mount"}}]}}}}"#
    );
    serde_json::from_str(&json).unwrap()
}

const DEFAULT_CAPS: u64 = 0xa80425fb;
const SYSFS: u32 = 2;
const PROC: u32 = 1;
const DEVTMPFS: u32 = 3;

fn ordinary(tid: u32) -> Thread {
    Thread {
        tid,
        uid: 0,
        caps: DEFAULT_CAPS,
        nnp: false,
        seccomp: 2,
        leader: true,
    }
}

/// A thread that is not its process's first: CRIU records no seccomp
/// mode for it (it gets the process's at restore).
fn other_thread(tid: u32) -> Thread {
    Thread {
        seccomp: 0,
        leader: false,
        ..ordinary(tid)
    }
}

#[test]
fn an_ordinary_containers_images_restore_into_the_same_configuration() {
    let dir = images(
        &[ordinary(1), other_thread(7)],
        &[("/proc", PROC, 0), ("/sys", SYSFS, 1)],
    );
    check_restore(dir.path(), &docker_spec(""), &[]).unwrap();
    let creds = read_creds(dir.path()).unwrap();
    assert_eq!(creds.len(), 2);
    assert_eq!((creds[0].tid, creds[0].comm.as_str()), (1, "app"));
    assert_eq!(creds[0].bounding.0, DEFAULT_CAPS);
}

#[test]
fn a_zombie_in_the_tree_has_no_credentials_to_check() {
    let dir = images(&[ordinary(1)], &[("/proc", PROC, 0)]);
    // As CRIU dumps a zombie: the task's state (TASK_DEAD) and exit code,
    // no thread_core.
    let mut tc = msg();
    varint(&mut tc, 1, 2);
    varint(&mut tc, 2, 0);
    bytes(&mut tc, 6, b"sleep");
    let mut core = msg();
    varint(&mut core, 1, 1);
    sub(&mut core, 3, &tc);
    let zombie = image(Some(IMG_COMMON_MAGIC), CORE_MAGIC, &[core]);
    std::fs::write(dir.path().join("core-41.img"), zombie).unwrap();
    check_restore(dir.path(), &docker_spec(""), &[]).unwrap();
    let creds = read_creds(dir.path()).unwrap();
    assert_eq!(creds.iter().map(|c| c.tid).collect::<Vec<_>>(), [1]);
    // A live thread without credentials is still refused.
    let mut tc = msg();
    varint(&mut tc, 1, 1);
    let mut core = msg();
    varint(&mut core, 1, 1);
    sub(&mut core, 3, &tc);
    let broken = image(Some(IMG_COMMON_MAGIC), CORE_MAGIC, &[core]);
    std::fs::write(dir.path().join("core-42.img"), broken).unwrap();
    let e = read_creds(dir.path()).unwrap_err().to_string();
    assert!(e.contains("thread 42 has no credentials"), "{e}");
}

#[test]
fn privileged_credentials_under_an_unprivileged_configuration_are_refused() {
    let privileged = Thread {
        caps: 0x1ff_ffff_ffff,
        seccomp: 0,
        ..ordinary(1)
    };
    let dir = images(&[privileged], &[]);
    let e = check_restore(dir.path(), &docker_spec(""), &[]).unwrap_err();
    assert_eq!(e.kind(), crate::error::ErrorKind::PermissionDenied);
    let text = e.to_string();
    for want in [
        "thread 1 (app)",
        "effective capabilities",
        "CAP_SYS_ADMIN",
        "no seccomp filter",
    ] {
        assert!(text.contains(want), "{want:?} not in {text}");
    }
    assert!(
        !text.contains("CAP_CHOWN"),
        "a default capability is not excess: {text}"
    );
}

#[test]
fn no_new_privs_and_a_non_root_user_are_kept() {
    let dir = images(&[ordinary(1)], &[]);
    let nnp = docker_spec(r#","noNewPrivileges":true"#);
    let text = check_restore(dir.path(), &nnp, &[])
        .unwrap_err()
        .to_string();
    assert!(text.contains("no_new_privs off"), "{text}");
    let with_nnp = images(
        &[Thread {
            nnp: true,
            ..ordinary(1)
        }],
        &[],
    );
    check_restore(with_nnp.path(), &nnp, &[]).unwrap();

    let mut user = docker_spec("");
    let mut process = user.process().clone().unwrap();
    let mut u = process.user().clone();
    u.set_uid(1000);
    process.set_user(u);
    user.set_process(Some(process));
    let text = check_restore(dir.path(), &user, &[])
        .unwrap_err()
        .to_string();
    assert!(text.contains("uid 0"), "{text}");
    let as_user = images(
        &[Thread {
            uid: 1000,
            ..ordinary(1)
        }],
        &[],
    );
    check_restore(as_user.path(), &user, &[]).unwrap();
}

#[test]
fn mounts_a_container_never_gets_are_refused_unless_its_own() {
    let dir = images(
        &[ordinary(1)],
        &[("/dev/host", DEVTMPFS, 0), ("/sys", SYSFS, 0)],
    );
    let text = check_restore(dir.path(), &docker_spec(""), &[])
        .unwrap_err()
        .to_string();
    assert!(text.contains("/dev/host of type devtmpfs"), "{text}");
    assert!(text.contains("sysfs mounted read-write"), "{text}");
    // The same mount point bound from the new container's own mounts.
    let text = check_restore(dir.path(), &docker_spec(""), &["/dev/host".into()])
        .unwrap_err()
        .to_string();
    assert!(!text.contains("devtmpfs"), "{text}");
}

#[test]
fn a_spec_without_capabilities_grants_roots() {
    let privileged = Thread {
        caps: 0x1ff_ffff_ffff,
        ..ordinary(1)
    };
    let dir = images(&[privileged], &[]);
    let spec: Spec = serde_json::from_str(
        r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},
        "process":{"cwd":"/","user":{"uid":0,"gid":0},"args":["sh"]}}"#,
    )
    .unwrap();
    check_restore(dir.path(), &spec, &[]).unwrap();
}

/// testdata/listen-fork was dumped by CRIU 4.2.1 from a root shell: its
/// threads' credentials decode to root's full set, without seccomp.
#[test]
fn a_real_dumps_credentials_decode() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/listen-fork");
    let creds = read_creds(&dir).unwrap();
    assert_eq!(creds.len(), 2);
    for t in &creds {
        assert_eq!(t.comm, "listen-fork");
        assert_eq!(t.uids, [0; 4]);
        assert_eq!(t.seccomp_mode, 0);
        assert!(t.bounding.0 & (1 << 21) != 0, "{:?}", t.bounding);
    }
}

proptest::proptest! {
    /// Whatever bytes a core or mount image holds, the check answers (an
    /// error naming the file, or a verdict) and never panics.
    #[test]
    fn any_image_bytes_are_an_answer_not_a_panic(
        body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        magic in 0usize..3,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut bytes = match magic {
            0 => Vec::new(),
            1 => [IMG_COMMON_MAGIC, CORE_MAGIC].iter().flat_map(|m| m.to_le_bytes()).collect(),
            _ => [IMG_COMMON_MAGIC, MNTS_MAGIC].iter().flat_map(|m| m.to_le_bytes()).collect(),
        };
        bytes.extend(body);
        let name = if magic == 2 { "mountpoints-1.img" } else { "core-1.img" };
        std::fs::write(dir.path().join(name), bytes).unwrap();
        let _ = check_restore(dir.path(), &docker_spec(""), &[]);
    }
}
