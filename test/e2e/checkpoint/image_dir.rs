//! A checkpoint into a directory that already holds files of the user's
//! (`ctr task checkpoint --image-path DIR`, WithCheckpointImagePath):
//! the dump makes private, and after a failure removes, only what it wrote
//! itself. Against the runtime under test (runc as the reference for what
//! must survive; runc leaves a failed dump's partial images behind).

use crate::checkpoint::image_path::try_checkpoint_into;
use crate::containerd::api::{count, Api, COUNTER};
use crate::support::cmd::{poll, run, wait_until};
use crate::support::config::IMAGE_CTR;
use crate::support::harness::Daemons;
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const LAZARUS: &str = "io.containerd.lazarus.v2";
const WAIT: Duration = Duration::from_secs(30);

/// Puts the user's own files into `dir`: a 1 MiB file (0644) and a
/// directory (0755) holding a file (0644).
fn add_foreign_files(dir: &Path) {
    fs::write(dir.join("notes.bin"), vec![7u8; 1 << 20]).unwrap();
    fs::set_permissions(dir.join("notes.bin"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::create_dir(dir.join("mine")).unwrap();
    fs::set_permissions(dir.join("mine"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(dir.join("mine/keep.txt"), b"mine").unwrap();
    fs::set_permissions(dir.join("mine/keep.txt"), fs::Permissions::from_mode(0o644)).unwrap();
}

/// Mode, size and mtime of each of the user's files.
fn foreign_state(dir: &Path) -> BTreeMap<&'static str, (u32, u64, i64)> {
    ["notes.bin", "mine", "mine/keep.txt"]
        .into_iter()
        .map(|name| {
            let m = fs::symlink_metadata(dir.join(name))
                .unwrap_or_else(|e| panic!("{name} of the user's is gone: {e}"));
            (name, (m.mode() & 0o7777, m.len(), m.mtime()))
        })
        .collect()
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The freezer cgroup of ctr's container `id` (ctr's default cgroupsPath
/// is /<namespace>/<id>).
fn freezer_state(d: &Daemons, id: &str) -> String {
    let path = PathBuf::from("/sys/fs/cgroup/freezer")
        .join(&d.id)
        .join(id)
        .join("freezer.state");
    fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
        .trim()
        .to_string()
}

/// Runs `script` as ctr container `id` and waits until its counter passes 5.
fn start(d: &Daemons, id: &str, script: &str, n: &mut u32) -> u64 {
    let run = ["run", "-d", "--runtime", d.runtime(), IMAGE_CTR, id];
    d.ctr(&[&run[..], &["sh", "-c", script]].concat()).ok();
    wait_until("the counter to pass 5", WAIT, || {
        count(d, id, n).filter(|&c| c > 5)
    })
}

#[test]
fn checkpoint_into_a_directory_leaves_the_users_files_alone() {
    let d = Daemons::containerd_only("image_dir_foreign");
    let id = d.name("c");
    let dir = d.path("user-dir");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    add_foreign_files(&dir);
    let before = foreign_state(&dir);
    let mut n = 0;
    start(&d, &id, COUNTER, &mut n);
    let api = Api::connect(&d);
    if let Err(status) = try_checkpoint_into(&api, &d, &id, &dir, None, false) {
        panic!("checkpoint into {} failed: {status:?}", dir.display());
    }
    assert!(dir.join("pstree.img").is_file(), "{:?}", entries(&dir));
    assert_eq!(
        foreign_state(&dir),
        before,
        "the dump changed files it did not write"
    );
    let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
    assert_eq!(
        mode, 0o755,
        "the user's directory itself was re-permissioned"
    );
    if d.runtime() == LAZARUS {
        for name in entries(&dir) {
            if ["notes.bin", "mine"].contains(&name.as_str()) {
                continue;
            }
            let m = fs::symlink_metadata(dir.join(&name)).unwrap();
            let want = if m.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(m.mode() & 0o777, want, "{name} of the dump is not private");
        }
    }
    api.kill_and_delete(&id);
}

/// A dump that runs out of space (a 2 MiB tmpfs, a container holding
/// 8 MiB) fails; the user's files stay, what the dump wrote goes (Lazarus
/// keeps only CRIU's log), and the container runs on, thawed.
#[test]
fn a_failed_checkpoint_into_a_directory_removes_only_its_own_files() {
    let d = Daemons::containerd_only("image_dir_full");
    let id = d.name("c");
    let dir = d.path("small");
    fs::create_dir(&dir).unwrap();
    let mount = run(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m,mode=0755", "tmpfs"])
        .arg(&dir));
    assert_eq!(mount.code, Some(0), "{mount}");
    add_foreign_files(&dir);
    let before = foreign_state(&dir);
    let mut n = 0;
    let script = format!("memhog 8 >/dev/null & {COUNTER}");
    let t = start(&d, &id, &script, &mut n);
    let api = Api::connect(&d);
    let status = try_checkpoint_into(&api, &d, &id, &dir, None, false)
        .expect_err("an 8 MiB dump into a 2 MiB tmpfs must fail");
    eprintln!("checkpoint failed as it should: {status:?}");
    assert_eq!(
        foreign_state(&dir),
        before,
        "the failed dump touched the user's files"
    );
    if d.runtime() == LAZARUS {
        let left: Vec<String> = entries(&dir)
            .into_iter()
            .filter(|e| !["notes.bin", "mine", "dump.log"].contains(&e.as_str()))
            .collect();
        assert!(left.is_empty(), "the failed dump left {left:?}");
    }
    assert_eq!(
        api.status(&id),
        containerd_client::types::v1::Status::Running
    );
    assert_eq!(freezer_state(&d, &id), "THAWED");
    let on = poll(WAIT, || count(&d, &id, &mut n).filter(|&c| c > t + 10));
    assert!(
        on.is_some(),
        "the counter did not go on after the failed dump"
    );
    api.kill_and_delete(&id);
}
