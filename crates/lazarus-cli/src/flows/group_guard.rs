//! The guard of a frozen checkpoint (see [`crate::guard`]): it thaws and
//! unlocks the members if the `lazarus` that froze them dies first.
//!
//! `checkpoint --group`, and a checkpoint of one container that stops it,
//! freeze and lock every member before the dumps, and only they undo
//! that. Killed in between, it would leave the whole
//! group frozen and cut off for good. So before it touches any member it
//! starts `lazarus group-guard` naming every member. Not dismissed, the
//! guard releases every member's network lock and resumes it, retrying
//! while a shim is still finishing a dump that was called off, for at most
//! [`RESCUE_FOR`].

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock;

use crate::engine::containerd::{Containerd, Status};
use crate::error::{Error, Result};
use crate::guard::{self, Guard};
const RESCUE_FOR: Duration = Duration::from_secs(120);

/// `lazarus group-guard`'s arguments (internal; started by `checkpoint
/// --group` only).
#[derive(clap::Args)]
pub struct GuardArgs {
    /// NAMESPACE/ID or NAMESPACE/ID=NETNS: a member, and its locked
    /// network namespace
    #[arg(long = "member", required = true)]
    pub members: Vec<String>,
}

/// One member as the guard knows it.
#[derive(Debug, PartialEq)]
struct Member {
    namespace: String,
    id: String,
    netns: Option<PathBuf>,
}

fn parse(member: &str) -> Result<Member> {
    let (who, netns) = match member.split_once('=') {
        Some((who, netns)) => (who, Some(PathBuf::from(netns))),
        None => (member, None),
    };
    let (namespace, id) = who
        .split_once('/')
        .ok_or_else(|| Error::Refused(format!("--member {member:?}: want NAMESPACE/ID[=NETNS]")))?;
    Ok(Member {
        namespace: namespace.into(),
        id: id.into(),
        netns,
    })
}

/// Starts the guard of `what`, a frozen checkpoint of `members`
/// (NAMESPACE/ID[=NETNS] each).
pub fn start(containerd: &str, members: &[String], what: &str) -> Result<Guard> {
    let mut args = vec![
        "--address".to_string(),
        containerd.to_string(),
        "group-guard".to_string(),
    ];
    for m in members {
        args.extend(["--member".to_string(), m.clone()]);
    }
    Guard::start(&args, what)
}

/// `lazarus group-guard`: waits for `done` on stdin; without it, rescues.
pub async fn run(args: &GuardArgs, containerd: &str) -> Result<()> {
    let members = args
        .members
        .iter()
        .map(|m| parse(m))
        .collect::<Result<Vec<_>>>()?;
    if guard::dismissed() {
        return Ok(());
    }
    eprintln!(
        "lazarus group-guard: the checkpoint ended without finishing; thawing and unlocking {} \
         container(s)",
        members.len()
    );
    rescue(&members, containerd).await;
    Ok(())
}

async fn rescue(members: &[Member], containerd: &str) {
    for m in members {
        if let Some(netns) = &m.netns {
            if let Err(e) = netlock::unlock(netns, &DirectWait) {
                eprintln!("lazarus group-guard: {}: network lock: {e}", m.id);
            }
        }
    }
    let deadline = Instant::now() + RESCUE_FOR;
    for m in members {
        let ctr = match Containerd::connect(containerd, &m.namespace).await {
            Ok(c) => c,
            Err(e) => {
                eprintln!("lazarus group-guard: {}: {e}", m.id);
                continue;
            }
        };
        // A shim still finishing a dump whose client went away refuses a
        // resume until the dump has been called off.
        loop {
            let status = ctr.task_status(&m.id).await;
            if let Ok(Some(Status::Running | Status::Stopped) | None) = status {
                break;
            }
            if matches!(status, Ok(Some(Status::Paused))) && ctr.resume(&m.id).await.is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                eprintln!(
                    "lazarus group-guard: {} is still not resumed; giving up",
                    m.id
                );
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_parse_with_and_without_a_namespace_lock() {
        assert_eq!(
            parse("moby/abc=/proc/7/ns/net").unwrap(),
            Member {
                namespace: "moby".into(),
                id: "abc".into(),
                netns: Some("/proc/7/ns/net".into())
            }
        );
        assert_eq!(parse("k8s.io/x").unwrap().netns, None);
        assert!(parse("no-namespace").is_err());
    }
}
