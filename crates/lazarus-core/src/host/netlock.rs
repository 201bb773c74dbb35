//! The network lock of a group checkpoint or restore: while it is held, a
//! container's network namespace drops every packet that does not stay on
//! its loopback (two iptables rules, first in INPUT and OUTPUT, tagged
//! with [`COMMENT`]).
//!
//! Why: the members of a group hold TCP connections to each other. CRIU
//! locks a container's connections only while it dumps or restores that
//! container; between two members' turns a packet from one can reach the
//! other when its state is not the checkpoint's (at a restore: its address
//! is up and its socket not yet restored, so the kernel answers with a
//! reset and the connection dies). Held from before the first member's
//! turn until after the last one's, the lock turns that packet into a loss
//! TCP retransmits once the lock is gone.
//!
//! The rules are added and removed by running `iptables` inside the
//! namespace (the child enters it before exec). Removing is idempotent, and
//! a restore's lock carries an expiry ([`NetlockRequest`]) after which the
//! shim removes it itself, so a group restore whose client died does not
//! leave its containers cut off.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sched::{setns, CloneFlags};
use serde::{Deserialize, Serialize};

use crate::criu::ChildWaiter;
use crate::error::{Error, Result};

/// The request a group restore puts beside each member's images: lock the
/// container's network namespace before CRIU restores it, until the client
/// unlocks it or `expires_at` (seconds since the epoch) passes.
pub const NETLOCK_FILE: &str = "lazarus-netlock.json";
/// The rules' tag: only rules carrying it are ever removed.
pub const COMMENT: &str = "lazarus-netlock";
const IPTABLES_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetlockRequest {
    pub expires_at: i64,
}

impl NetlockRequest {
    /// Writes the request into `images` (0600).
    pub fn write(&self, images: &Path) -> Result<()> {
        let path = images.join(NETLOCK_FILE);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io(format!("create {}", path.display())))?;
        f.write_all(&serde_json::to_vec(self).expect("serialises"))
            .map_err(Error::io(format!("write {}", path.display())))
    }

    /// The request in `images`, if there is one.
    pub fn read(images: &Path) -> Result<Option<NetlockRequest>> {
        let path = images.join(NETLOCK_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Error::InvalidArgument(format!(
                    "{}: not a network lock request: {e}",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("read {}", path.display()))(e)),
        }
    }
}

/// The network namespace a container's spec joins (a path), if any: where
/// a restore's lock goes before CRIU restores into it.
pub fn spec_netns(spec: &oci_spec::runtime::Spec) -> Option<std::path::PathBuf> {
    use oci_spec::runtime::LinuxNamespaceType;
    spec.linux()
        .as_ref()?
        .namespaces()
        .as_ref()?
        .iter()
        .find(|n| n.typ() == LinuxNamespaceType::Network)?
        .path()
        .clone()
}

/// The rules, as iptables arguments after the chain: drop what does not
/// come in or go out by loopback.
fn rules() -> [(&'static str, [&'static str; 9]); 2] {
    let rule = |chain, dir| {
        (
            chain,
            [
                "!",
                dir,
                "lo",
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "DROP",
            ],
        )
    };
    [rule("INPUT", "-i"), rule("OUTPUT", "-o")]
}

/// Locks the network namespace at `netns` (a path such as
/// `/proc/PID/ns/net` or a bind-mounted namespace); false, and nothing
/// done, when that is the caller's own namespace (a container on the
/// host's network: locking it would cut the host off).
pub fn lock(netns: &Path, waiter: &dyn ChildWaiter) -> Result<bool> {
    let ns = open(netns)?;
    if same_namespace(&ns, Path::new("/proc/self/ns/net")) {
        return Ok(false);
    }
    for (chain, rule) in rules() {
        let mut args = vec!["-w", "5", "-I", chain, "1"];
        args.extend(rule);
        iptables(&ns, &args, waiter).inspect_err(|_| {
            // Half a lock is no lock: take back what was added.
            let _ = unlock_ns(&ns, waiter);
        })?;
    }
    Ok(true)
}

/// Whether `ns` is the namespace at `other` (same device and inode).
fn same_namespace(ns: &File, other: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (ns.metadata(), std::fs::metadata(other)) {
        (Ok(a), Ok(b)) => (a.dev(), a.ino()) == (b.dev(), b.ino()),
        _ => false,
    }
}

/// Removes the lock's rules from the namespace at `netns`; true if there
/// were any. A namespace that is gone has nothing to unlock.
pub fn unlock(netns: &Path, waiter: &dyn ChildWaiter) -> Result<bool> {
    match File::open(netns) {
        Ok(ns) => unlock_ns(&ns, waiter),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io(format!(
            "open network namespace {}",
            netns.display()
        ))(e)),
    }
}

/// Whether the namespace at `netns` holds both of the lock's rules.
pub fn is_locked(netns: &Path, waiter: &dyn ChildWaiter) -> Result<bool> {
    let ns = open(netns)?;
    for (chain, rule) in rules() {
        let mut args = vec!["-w", "5", "-C", chain];
        args.extend(rule);
        if iptables(&ns, &args, waiter).is_err() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn unlock_ns(ns: &File, waiter: &dyn ChildWaiter) -> Result<bool> {
    let mut removed = false;
    for (chain, rule) in rules() {
        // -D removes one copy; a lock taken twice has two.
        for _ in 0..8 {
            let mut args = vec!["-w", "5", "-D", chain];
            args.extend(rule);
            match iptables(ns, &args, waiter) {
                Ok(()) => removed = true,
                Err(_) => break,
            }
        }
    }
    Ok(removed)
}

fn open(netns: &Path) -> Result<File> {
    File::open(netns).map_err(Error::io(format!(
        "open network namespace {}",
        netns.display()
    )))
}

/// Runs `iptables ARGS` inside `ns`, waited for through `waiter`.
fn iptables(ns: &File, args: &[&str], waiter: &dyn ChildWaiter) -> Result<()> {
    let what = format!("iptables {}", args.join(" "));
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new("iptables");
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setns is async-signal-safe; the child enters the namespace
    // before exec and nothing else runs in it.
    unsafe {
        cmd.pre_exec(move || {
            let ns = std::os::fd::BorrowedFd::borrow_raw(fd);
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)
        });
    }
    let mut watch = waiter.watch()?;
    let mut child = cmd
        .spawn()
        .map_err(Error::io(format!("run {what} (is iptables installed?)")))?;
    match watch.wait(&mut child, IPTABLES_TIMEOUT) {
        Some(0) => Ok(()),
        Some(code) => Err(Error::Other(format!("{what} exited with {code}"))),
        None => {
            let _ = child.kill();
            let _ = watch.wait(&mut child, Duration::from_secs(5));
            Err(Error::Other(format!(
                "{what} did not finish within {IPTABLES_TIMEOUT:?}"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criu::DirectWait;

    #[test]
    fn the_rules_drop_all_but_loopback() {
        let [(c1, r1), (c2, r2)] = rules();
        assert_eq!((c1, c2), ("INPUT", "OUTPUT"));
        assert_eq!(
            r1,
            [
                "!",
                "-i",
                "lo",
                "-m",
                "comment",
                "--comment",
                COMMENT,
                "-j",
                "DROP"
            ]
        );
        assert_eq!(r2[..3], ["!", "-o", "lo"]);
    }

    #[test]
    fn a_request_round_trips_at_0600_and_a_bad_one_is_named() {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        assert_eq!(NetlockRequest::read(t.path()).unwrap(), None);
        let r = NetlockRequest {
            expires_at: 1_900_000_000,
        };
        r.write(t.path()).unwrap();
        assert_eq!(NetlockRequest::read(t.path()).unwrap(), Some(r));
        let mode = std::fs::metadata(t.path().join(NETLOCK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        std::fs::write(t.path().join(NETLOCK_FILE), b"{").unwrap();
        let err = NetlockRequest::read(t.path()).unwrap_err().to_string();
        assert!(err.contains(NETLOCK_FILE), "{err}");
    }

    /// Root only (CI runs as root): a namespace of a thread's own.
    #[test]
    fn a_lock_is_taken_and_released_in_a_fresh_namespace() {
        if !nix::unistd::Uid::effective().is_root() {
            panic!("this test needs root (a network namespace and iptables)");
        }
        std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            let ns = std::path::PathBuf::from(format!(
                "/proc/self/task/{}/ns/net",
                nix::unistd::gettid()
            ));
            assert!(!is_locked(&ns, &DirectWait).unwrap());
            assert!(lock(&ns, &DirectWait).unwrap());
            assert!(is_locked(&ns, &DirectWait).unwrap());
            // The process's main thread's namespace (the host's) is untouched.
            let host = format!("/proc/{}/ns/net", nix::unistd::getpid());
            assert!(!is_locked(Path::new(&host), &DirectWait).unwrap());
            assert!(unlock(&ns, &DirectWait).unwrap());
            assert!(!is_locked(&ns, &DirectWait).unwrap());
            assert!(
                !unlock(&ns, &DirectWait).unwrap(),
                "a second unlock found rules"
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_callers_own_namespace_is_never_locked() {
        assert!(!lock(Path::new("/proc/self/ns/net"), &DirectWait).unwrap());
        assert!(!is_locked(Path::new("/proc/self/ns/net"), &DirectWait).unwrap());
    }

    #[test]
    fn unlocking_a_namespace_that_is_gone_is_nothing_to_do() {
        let gone = Path::new("/proc/2147483646/ns/net");
        assert!(!unlock(gone, &DirectWait).unwrap());
    }
}
