//! What CRIU will give the restored processes, read from its images before
//! the restore: CRIU restores each thread's credentials (uids, capability
//! sets, no_new_privs), seccomp mode and mounts as the images say, whatever
//! the new container's configuration grants. An image made elsewhere (an
//! imported archive, a migration) could therefore carry more authority than
//! the container it is restored into; [`check_restore`] refuses that.
//!
//! Field numbers are CRIU's (images/core.proto, creds.proto, mnt.proto):
//! CoreEntry tc=3 (TaskCoreEntry comm=6, old_seccomp_mode=11) and
//! thread_core=5 (ThreadCoreEntry creds=10, seccomp_mode=11); CredsEntry
//! uid=1 euid=3 suid=5 fsuid=7, cap_inh=9 cap_prm=10 cap_eff=11 cap_bnd=12,
//! no_new_privs=18, cap_amb=19; MntEntry fstype=1, flags=5, mountpoint=7,
//! fsname=14, sb_flags=17.

use std::path::Path;

use oci_spec::runtime::{LinuxNamespaceType, Spec};
use serde::Serialize;

use super::caps::CapSet;
use crate::criu::images::{self as img, Entry};
use crate::error::{Error, Result};

/// One thread's credentials as its image records them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreadCreds {
    pub tid: u32,
    pub comm: String,
    /// uid, euid, suid, fsuid.
    pub uids: [u32; 4],
    #[serde(serialize_with = "names")]
    pub effective: CapSet,
    #[serde(serialize_with = "names")]
    pub permitted: CapSet,
    #[serde(serialize_with = "names")]
    pub inheritable: CapSet,
    #[serde(serialize_with = "names")]
    pub bounding: CapSet,
    #[serde(serialize_with = "names")]
    pub ambient: CapSet,
    pub no_new_privs: bool,
    /// A process's main thread (its image has the task's core): CRIU
    /// records the seccomp mode there; its other threads carry none and
    /// are restored with the process's.
    pub leader: bool,
    /// 0 disabled, 1 strict, 2 filter (the kernel's SECCOMP_MODE_*).
    pub seccomp_mode: u32,
}

fn names<S: serde::Serializer>(set: &CapSet, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(set.names())
}

/// One mount CRIU would make itself (not one bound from the new
/// container's own mounts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageMount {
    pub mountpoint: String,
    pub fstype: String,
    pub read_only: bool,
}

/// Every thread's credentials, from each `core-<tid>.img` in `images`.
pub fn read_creds(images: &Path) -> img::Result<Vec<ThreadCreds>> {
    let listing = std::fs::read_dir(images).map_err(|e| img::io(images, e))?;
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| img::io(images, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(tid) = name
            .strip_prefix("core-")
            .and_then(|n| n.strip_suffix(".img"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        for core in img::read_image(&entry.path(), img::CORE_MAGIC)? {
            if is_zombie(&core)? {
                continue;
            }
            out.push(thread_creds(tid, &core)?);
        }
    }
    out.sort_by_key(|c| c.tid);
    Ok(out)
}

/// CRIU's TASK_DEAD (TaskCoreEntry task_state=1): a zombie, dumped as
/// its exit status alone, with no thread and so no credentials; restored
/// as a zombie, it runs nothing. (A checkpoint taken as a child exits and
/// before its parent reaps it holds one: a shell's `sleep`.)
fn is_zombie(core: &Entry) -> img::Result<bool> {
    const TASK_DEAD: u64 = 2;
    Ok(match core.message(3, "tc")? {
        Some(tc) => tc.varint(1, "task_state")? == Some(TASK_DEAD),
        None => false,
    })
}

fn thread_creds(tid: u32, core: &Entry) -> img::Result<ThreadCreds> {
    let tc = core.message(3, "tc")?;
    let thread = core.message(5, "thread_core")?;
    let comm = match (&tc, &thread) {
        (Some(tc), _) if tc.string(6, "comm")?.is_some() => tc.string(6, "comm")?,
        (_, Some(t)) => t.string(13, "comm")?,
        _ => None,
    }
    .unwrap_or_default();
    let seccomp_mode = match thread.as_ref().map(|t| t.varint(11, "seccomp_mode")) {
        Some(Ok(Some(m))) => m,
        Some(Err(e)) => return Err(e),
        _ => match tc.as_ref().map(|t| t.varint(11, "old_seccomp_mode")) {
            Some(r) => r?.unwrap_or(0),
            None => 0,
        },
    };
    let creds = thread
        .as_ref()
        .map(|t| t.message(10, "creds"))
        .transpose()?
        .flatten()
        .ok_or_else(|| core.error(format!("thread {tid} has no credentials in its image")))?;
    let set = |n, name| creds.repeated_u32(n, name).map(|w| CapSet::from_words(&w));
    Ok(ThreadCreds {
        tid,
        comm,
        uids: [
            creds.u32(1, "uid")?,
            creds.u32(3, "euid")?,
            creds.u32(5, "suid")?,
            creds.u32(7, "fsuid")?,
        ],
        effective: set(11, "cap_eff")?,
        permitted: set(10, "cap_prm")?,
        inheritable: set(9, "cap_inh")?,
        bounding: set(12, "cap_bnd")?,
        ambient: set(19, "cap_amb")?,
        no_new_privs: creds.varint(18, "no_new_privs")?.unwrap_or(0) != 0,
        leader: tc.is_some(),
        seccomp_mode: u32::try_from(seccomp_mode).unwrap_or(u32::MAX),
    })
}

/// The mounts of every `mountpoints-*.img`.
pub fn read_mounts(images: &Path) -> img::Result<Vec<ImageMount>> {
    const MS_RDONLY: u64 = 1;
    let listing = std::fs::read_dir(images).map_err(|e| img::io(images, e))?;
    let mut out = Vec::new();
    for entry in listing {
        let entry = entry.map_err(|e| img::io(images, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("mountpoints-") && name.ends_with(".img")) {
            continue;
        }
        for m in img::read_image(&entry.path(), img::MNTS_MAGIC)? {
            let code = m.u32(1, "fstype")?;
            let fstype = match m.string(14, "fsname")? {
                Some(n) if !n.is_empty() => n,
                _ => img::fstype_name(code),
            };
            let flags = m.varint(5, "flags")?.unwrap_or(0) | m.varint(17, "sb_flags")?.unwrap_or(0);
            out.push(ImageMount {
                mountpoint: m.string(7, "mountpoint")?.unwrap_or_default(),
                fstype,
                read_only: flags & MS_RDONLY != 0,
            });
        }
    }
    Ok(out)
}

/// File systems CRIU may mount itself in a restored container: those a
/// container runtime makes. Anything else (devtmpfs, debugfs, securityfs,
/// a disk's file system...) would reach past the container.
const CONTAINER_FS: [&str; 9] = [
    "proc", "sysfs", "tmpfs", "devpts", "mqueue", "cgroup", "cgroup2", "overlay", "shm",
];

/// What the new container grants, from its spec.
struct Grant {
    bounding: CapSet,
    inheritable: CapSet,
    seccomp: bool,
    no_new_privs: bool,
    /// Only a container whose user is root may hold root's uid.
    non_root_user: bool,
    /// The spec mounts /sys read-only (as every unprivileged container).
    sys_read_only: bool,
}

impl Grant {
    fn of(spec: &Spec) -> Grant {
        let process = spec.process().as_ref();
        let caps = process.and_then(|p| p.capabilities().as_ref());
        let set = |s: Option<&std::collections::HashSet<oci_spec::runtime::Capability>>| {
            let names: Vec<String> = s.into_iter().flatten().map(|c| c.to_string()).collect();
            CapSet::from_names(names.iter().map(String::as_str)).0
        };
        // No capabilities section: the runtime leaves the process root's.
        let all = CapSet::from_names(["ALL"]).0;
        let linux = spec.linux().as_ref();
        let user_ns = linux
            .and_then(|l| l.namespaces().as_ref())
            .into_iter()
            .flatten()
            .any(|n| n.typ() == LinuxNamespaceType::User);
        let sys_read_only = spec.mounts().as_ref().into_iter().flatten().any(|m| {
            m.destination() == Path::new("/sys")
                && m.options()
                    .as_ref()
                    .is_some_and(|o| o.iter().any(|o| o == "ro"))
        });
        Grant {
            bounding: caps.map_or(all, |c| set(c.bounding().as_ref())),
            inheritable: caps.map_or(all, |c| set(c.inheritable().as_ref())),
            seccomp: linux.and_then(|l| l.seccomp().as_ref()).is_some(),
            no_new_privs: process.and_then(|p| p.no_new_privileges()).unwrap_or(false),
            non_root_user: !user_ns && process.is_some_and(|p| p.user().uid() != 0),
            sys_read_only,
        }
    }

    /// What `t` holds beyond this grant, one line per kind.
    fn excess(&self, t: &ThreadCreds) -> Vec<String> {
        let mut out = Vec::new();
        for (what, set, allowed) in [
            ("effective", t.effective, self.bounding),
            ("permitted", t.permitted, self.bounding),
            ("bounding", t.bounding, self.bounding),
            ("ambient", t.ambient, self.bounding),
            (
                "inheritable",
                t.inheritable,
                CapSet(self.bounding.0 | self.inheritable.0),
            ),
        ] {
            let extra = set.minus(allowed);
            if !extra.is_empty() {
                out.push(format!(
                    "{what} capabilities {extra} beyond this container's bounding set"
                ));
            }
        }
        if self.seccomp && t.leader && t.seccomp_mode == 0 {
            out.push("no seccomp filter, where this container has one".into());
        }
        if self.no_new_privs && !t.no_new_privs {
            out.push("no_new_privs off, where this container sets it".into());
        }
        if self.non_root_user && t.uids.contains(&0) {
            out.push(format!(
                "uid 0 (uid/euid/suid/fsuid {:?}) in a container whose user is not root",
                t.uids
            ));
        }
        out
    }
}

/// Refuses images that would give the restored processes more than the
/// container's `spec` grants: capabilities beyond its bounding set, no
/// seccomp filter where it has one, no_new_privs off where it sets it, root
/// in a non-root container, or a mount a container runtime never makes
/// (CRIU mounts what its images say). Each item names the process.
pub fn check_restore(images: &Path, spec: &Spec, external_mounts: &[String]) -> Result<()> {
    let unreadable = |e: img::Error| {
        Error::InvalidArgument(format!(
            "checkpoint {}: cannot read the processes' credentials: {e}",
            images.display()
        ))
    };
    let grant = Grant::of(spec);
    let mut refused = Vec::new();
    for t in read_creds(images).map_err(unreadable)? {
        for why in grant.excess(&t) {
            refused.push(format!("thread {} ({}): {why}", t.tid, t.comm));
        }
    }
    for m in read_mounts(images).map_err(unreadable)? {
        if external_mounts.contains(&m.mountpoint) {
            continue; // bound from this container's own mounts
        }
        if !CONTAINER_FS.contains(&m.fstype.as_str()) {
            refused.push(format!(
                "mount {} of type {}, which a container is never given",
                m.mountpoint, m.fstype
            ));
        } else if m.fstype == "sysfs" && grant.sys_read_only && !m.read_only {
            refused.push(format!(
                "sysfs mounted read-write at {}, where this container has it read-only",
                m.mountpoint
            ));
        }
    }
    if refused.is_empty() {
        return Ok(());
    }
    const SHOWN: usize = 8;
    let more = refused.len().saturating_sub(SHOWN);
    refused.truncate(SHOWN);
    if more > 0 {
        refused.push(format!("and {more} more"));
    }
    Err(Error::PermissionDenied(format!(
        "refusing to restore checkpoint {}: its processes would get more than this container \
         grants:\n  {}\nRestore it into a container configured as the checkpointed one was \
         (its capabilities, seccomp profile, user and no-new-privileges), or checkpoint it \
         again from such a container",
        images.display(),
        refused.join("\n  ")
    )))
}

#[cfg(test)]
#[path = "creds_tests.rs"]
mod tests;
