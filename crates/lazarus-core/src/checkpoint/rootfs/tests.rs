//! The root filesystem diff from a real overlay mount (these tests need
//! root, as the shim does), and apply refusing diffs that would write
//! outside the root filesystem.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use super::*;

/// Unmounts in Drop, so a failing assertion leaves no mount behind.
struct Overlay(PathBuf);

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = umount2(&self.0, MntFlags::MNT_DETACH);
    }
}

fn sh(script: &str, cwd: &Path) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[derive(Debug, PartialEq)]
struct Node {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: i64,
    content: Vec<u8>,
}

/// Everything under `root` (not root itself), without following symlinks:
/// type and permission bits, owner, mtime, file content or link target.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    fn walk(dir: &Path, rel: &str, out: &mut BTreeMap<String, Node>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let path = e.path();
            let rel = format!("{rel}/{}", e.file_name().to_str().unwrap());
            let m = fs::symlink_metadata(&path).unwrap();
            let content = if m.is_file() {
                fs::read(&path).unwrap()
            } else if m.file_type().is_symlink() {
                fs::read_link(&path)
                    .unwrap()
                    .into_os_string()
                    .into_encoded_bytes()
            } else {
                Vec::new()
            };
            let node = Node {
                mode: m.mode(),
                uid: m.uid(),
                gid: m.gid(),
                mtime: m.mtime(),
                content,
            };
            out.insert(rel.clone(), node);
            if m.is_dir() {
                walk(&path, &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

#[test]
fn diff_of_a_real_overlay_applied_to_the_lower_gives_the_merged_tree() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test mounts an overlay: run it as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for sub in ["lower", "upper", "work", "merged"] {
        fs::create_dir(d.join(sub)).unwrap();
    }
    sh(
        "cd lower && mkdir -p etc opq gone usr/bin && echo hi > etc/motd && echo keep > etc/keep \
         && echo old > opq/old && echo x > gone/x && echo old > modme \
         && printf '#!/bin/sh\\n' > usr/bin/tool && chmod 755 usr/bin/tool \
         && ln -s etc/keep lnk && echo mine > owned && chown 1000:1000 owned",
        d,
    );
    let merged = d.join("merged");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={},redirect_dir=off,metacopy=off",
        d.join("lower").display(),
        d.join("upper").display(),
        d.join("work").display()
    );
    mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(opts.as_str()),
    )
    .expect("mount -t overlay (needs root and overlayfs)");
    let _guard = Overlay(merged.clone());
    sh(
        "rm etc/motd && echo new > modme && mkdir -p new/dir && echo f > new/dir/file \
         && chmod 640 new/dir/file && chown 1234:5678 new/dir/file && ln -s /etc/keep newlink \
         && rm -r opq && mkdir opq && echo fresh > opq/fresh && rm -r gone \
         && chmod 700 usr/bin/tool && chmod 4755 owned && touch -h -d 2001-02-03 lnk modme \
         && mkfifo -m 620 new/pipe",
        &merged,
    );

    let diff = diff_from_overlay_upper(&d.join("upper"), &d.join("diff.tar")).unwrap();
    assert_eq!(
        diff.deleted,
        ["/etc/motd", "/gone", "/opq"],
        "whiteouts and the opaque dir"
    );
    assert_eq!(
        fs::metadata(&diff.tar).unwrap().permissions().mode() & 0o7777,
        0o600
    );
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(fs::File::open(&diff.tar).unwrap());
    for e in archive.entries().unwrap() {
        names.push(String::from_utf8(e.unwrap().path_bytes().into_owned()).unwrap());
    }
    assert!(
        !names
            .iter()
            .any(|n| n.contains("motd") || n.starts_with("gone")),
        "{names:?}"
    );
    assert!(names.contains(&"opq/fresh".to_string()) && !names.contains(&"opq/old".to_string()));

    let fresh = d.join("fresh");
    sh("cp -a lower fresh", d);
    apply(&diff.tar, &diff.deleted, &fresh).unwrap();
    let (want, got) = (tree(&merged), tree(&fresh));
    assert!(want.contains_key("/new/dir/file") && !want.contains_key("/etc/motd"));
    assert_eq!(want["/new/pipe"].mode, libc::S_IFIFO | 0o620, "a fifo");
    assert_eq!(want["/owned"].mode & 0o7777, 0o4755);
    for key in want.keys().chain(got.keys()) {
        assert_eq!(want.get(key), got.get(key), "{key}");
    }
}

fn rootfs_with_outside() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("a/rootfs");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&rootfs).unwrap();
    fs::create_dir_all(&outside).unwrap();
    (dir, rootfs, outside)
}

fn refused(entries: &[(&[u8], tar::EntryType, &[u8])], deleted: &[&str], needle: &str) {
    let (dir, rootfs, outside) = rootfs_with_outside();
    fs::write(outside.join("victim"), b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, rootfs.join("preexisting")).unwrap();
    let tar = dir.path().join("diff.tar");
    fs::write(&tar, craft(entries)).unwrap();
    let deleted: Vec<String> = deleted.iter().map(|s| s.to_string()).collect();
    let err = apply(&tar, &deleted, &rootfs).unwrap_err().to_string();
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    assert_eq!(fs::read(outside.join("victim")).unwrap(), b"keep me");
    assert_eq!(listing(&outside), ["victim"], "nothing written outside");
    assert_eq!(listing(dir.path()), ["a", "diff.tar", "outside"]);
}

const FILE: tar::EntryType = tar::EntryType::Regular;
const SYMLINK: tar::EntryType = tar::EntryType::Symlink;

#[test]
fn apply_refuses_writing_through_a_symlink_that_escapes() {
    // craft() points every symlink at ../../etc/passwd: out of the rootfs.
    refused(
        &[(b"esc", SYMLINK, b""), (b"esc/victim", FILE, b"owned")],
        &[],
        "esc is a symlink",
    );
    refused(
        &[(b"preexisting/victim", FILE, b"owned")],
        &[],
        "preexisting is a symlink",
    );
    refused(&[], &["/preexisting/victim"], "preexisting is a symlink");
}

#[test]
fn apply_refuses_paths_out_of_the_rootfs() {
    refused(
        &[(b"../outside/victim", FILE, b"x")],
        &[],
        "is not a relative path inside it",
    );
    refused(
        &[(b"/outside/victim", FILE, b"x")],
        &[],
        "is not a relative path inside it",
    );
    refused(
        &[(b"a/../../x", FILE, b"x")],
        &[],
        "is not a relative path inside it",
    );
    refused(&[], &["/../outside/victim"], "is not a path inside it");
    refused(&[], &["/"], "is not a path inside it");
    refused(
        &[(b"dev", tar::EntryType::Char, b"")],
        &[],
        "holds only files, directories, symlinks and fifos",
    );
    refused(
        &[(b"hard", tar::EntryType::Link, b"")],
        &[],
        "holds only files, directories, symlinks and fifos",
    );
}

#[test]
fn apply_replaces_a_symlink_instead_of_writing_through_it() {
    let (dir, rootfs, outside) = rootfs_with_outside();
    std::os::unix::fs::symlink(outside.join("victim"), rootfs.join("f")).unwrap();
    let tar = dir.path().join("diff.tar");
    fs::write(&tar, craft(&[(b"f", FILE, b"inside")])).unwrap();
    apply(&tar, &[], &rootfs).unwrap();
    assert_eq!(fs::read(rootfs.join("f")).unwrap(), b"inside");
    assert!(!outside.join("victim").exists());
}

/// What is in `dir`, sorted, for "nothing left behind" checks.
pub(crate) fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// A tar of `entries` as given (names, kinds, data), unchecked: symlinks
/// and hard links point out of any root.
pub(crate) fn craft(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_entry_type(*kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
            h.set_link_name("../../etc/passwd").unwrap();
        }
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}
