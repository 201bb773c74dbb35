//! `restore --import` of a group archive (`checkpoint --group`): every
//! member restored in the order they were checkpointed, each as an
//! ordinary import, with its network locked until all are back; if one
//! fails, the members restored before it are removed again: the group
//! comes back whole or not at all (and if this process dies midway, the
//! restore's guard removes every member it had made).
//!
//! The member steps are behind [`Members`], so that the all-or-none rule
//! is unit-tested on a fake group.

use std::path::PathBuf;
use std::time::Instant;

use lazarus_core::archive::group;
use lazarus_core::config::Config;
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock::{self, NetlockRequest};

use super::{remove_restored, restore, ImportArgs};
use crate::engine::containerd::Containerd;
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::restore_guard::RestoreGuard;
use crate::report::{GroupImportReport, ImportReport};

/// How long a group restore's network lock may be held before the shims
/// release it themselves (a group whose restore takes longer loses only
/// the lock's protection).
const NETLOCK_EXPIRY_SECONDS: i64 = 300;

/// What a group restore does to each member.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
pub trait Members {
    /// Restores one member's archive, its network locked.
    async fn restore(&self, file: PathBuf) -> Result<ImportReport>;
    /// Removes a member restored before another failed.
    async fn remove(&self, restored: &ImportReport) -> Result<()>;
    /// Releases a restored member's network lock.
    async fn unlock(&self, restored: &ImportReport) -> Result<()>;
}

pub async fn restore_group(
    args: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
    guard: &RestoreGuard,
) -> Result<GroupImportReport> {
    if args.name.is_some() {
        return Err(Error::Refused(format!(
            "{} is a group archive: its members keep their names (--name names one container)",
            args.file.display()
        )));
    }
    let started = Instant::now();
    let scratch = config.scratch_dir("group-import")?;
    guard.scratch(scratch.path())?;
    // Every member is verified against the group's index before any is
    // restored.
    let (index, files) = group::extract_group(&args.file, &scratch.path().join("members"))?;
    // Every member's network stays locked from before its restore until
    // all are back, so no member meets another half restored (see
    // host::netlock); the shims release it themselves if this process dies.
    let live = Live {
        args,
        endpoints,
        config,
        guard,
        netlock: NetlockRequest {
            expires_at: chrono::Utc::now().timestamp() + NETLOCK_EXPIRY_SECONDS,
        },
    };
    let named = index.members.iter().map(|m| m.name.clone()).zip(files);
    let (members, unlock_seconds) = restore_all(&live, named).await?;
    Ok(GroupImportReport {
        group: args.file.clone(),
        unlock_seconds,
        frozen_at: index.frozen_at,
        members,
        restore_seconds: started.elapsed().as_secs_f64(),
    })
}

/// Restores every `(name, archive)` in order, or none; then unlocks them
/// all. Returns the members' reports and how long the unlocking took.
pub async fn restore_all(
    steps: &impl Members,
    members: impl IntoIterator<Item = (String, PathBuf)>,
) -> Result<(Vec<ImportReport>, f64)> {
    let mut restored: Vec<ImportReport> = Vec::new();
    for (name, file) in members {
        match steps.restore(file).await {
            Ok(r) => restored.push(r),
            Err(error) => {
                let mut failed = Vec::new();
                for r in &restored {
                    if let Err(e) = steps.remove(r).await {
                        failed.push(format!("{}: {e}", r.name));
                    }
                }
                let outcome = match failed.is_empty() {
                    true => "the members restored before it were removed again".to_string(),
                    false => format!(
                        "removing the members restored before it failed: {}",
                        failed.join("; ")
                    ),
                };
                return Err(Error::Group {
                    member: name,
                    error: Box::new(error),
                    outcome,
                });
            }
        }
    }
    let locked = Instant::now();
    let mut unlock_failed = Vec::new();
    for r in &restored {
        if let Err(e) = steps.unlock(r).await {
            unlock_failed.push(format!("{}: {e}", r.name));
        }
    }
    if !unlock_failed.is_empty() {
        // Every member runs; the lock ends by itself.
        eprintln!(
            "lazarus: warning: the network lock of {} (it expires by itself within {} s)",
            unlock_failed.join("; "),
            NETLOCK_EXPIRY_SECONDS
        );
    }
    Ok((restored, locked.elapsed().as_secs_f64()))
}

/// The real members: ordinary imports through the engines, and the
/// network lock released through each one's init (as root).
struct Live<'a> {
    args: &'a ImportArgs,
    endpoints: &'a Endpoints,
    config: &'a Config,
    /// The command's: told every member, so that a killed group restore
    /// leaves none of them.
    guard: &'a RestoreGuard,
    netlock: NetlockRequest,
}

impl Members for Live<'_> {
    async fn restore(&self, file: PathBuf) -> Result<ImportReport> {
        let one = ImportArgs {
            file,
            name: None,
            namespace: self.args.namespace.clone(),
            runtime: self.args.runtime.clone(),
            json: true,
            grants: self.args.grants.clone(),
            identity: None,
            ignore_volumes: self.args.ignore_volumes,
            netlock: Some(self.netlock),
            scratch_in: None,
            pages: None,
            pump_plan: None,
            snapshot: None,
        };
        restore(&one, self.endpoints, self.config, Some(self.guard)).await
    }

    async fn remove(&self, r: &ImportReport) -> Result<()> {
        remove_restored(r, self.endpoints).await
    }

    async fn unlock(&self, r: &ImportReport) -> Result<()> {
        let ctr = Containerd::connect(&self.endpoints.containerd, &r.namespace).await?;
        let pid = ctr.task_pid(&r.id).await?;
        let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
        netlock::unlock(&netns, &DirectWait)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    /// Restores succeed except for the archive named `fail_at`; removals
    /// fail for the members in `stuck`. Every step is logged.
    #[derive(Default)]
    struct Fake {
        fail_at: Option<&'static str>,
        stuck: Vec<&'static str>,
        log: RefCell<Vec<String>>,
    }

    fn report(name: &str) -> ImportReport {
        ImportReport {
            start_seconds: None,
            name: name.into(),
            id: name.into(),
            engine: "containerd".into(),
            namespace: "default".into(),
            from: PathBuf::from(format!("{name}.tar")),
            extract_seconds: 0.0,
            restore_seconds: 0.0,
            pages_bytes: None,
            volumes: Vec::new(),
            restore_path: String::new(),
            running: None,
        }
    }

    impl Members for Fake {
        async fn restore(&self, file: PathBuf) -> Result<ImportReport> {
            let name = file.file_stem().unwrap().to_str().unwrap().to_string();
            self.log.borrow_mut().push(format!("restore {name}"));
            match self.fail_at == Some(name.as_str()) {
                true => Err(Error::Refused("image missing".into())),
                false => Ok(report(&name)),
            }
        }
        async fn remove(&self, r: &ImportReport) -> Result<()> {
            self.log.borrow_mut().push(format!("remove {}", r.name));
            match self.stuck.contains(&r.name.as_str()) {
                true => Err(Error::Refused("busy".into())),
                false => Ok(()),
            }
        }
        async fn unlock(&self, r: &ImportReport) -> Result<()> {
            self.log.borrow_mut().push(format!("unlock {}", r.name));
            Ok(())
        }
    }

    fn run(f: &Fake, names: &[&str]) -> Result<(Vec<ImportReport>, f64)> {
        let members = names
            .iter()
            .map(|n| (n.to_string(), PathBuf::from(format!("/m/{n}.tar"))));
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(restore_all(f, members))
    }

    fn log(f: &Fake) -> String {
        f.log.borrow().join(", ")
    }

    #[test]
    fn every_member_is_restored_in_order_then_all_are_unlocked() {
        let f = Fake::default();
        let (members, _) = run(&f, &["db", "app"]).unwrap();
        assert_eq!(log(&f), "restore db, restore app, unlock db, unlock app");
        assert_eq!(members, vec![report("db"), report("app")]);
    }

    #[test]
    fn a_failed_member_removes_those_restored_before_it_and_unlocks_none() {
        let f = Fake {
            fail_at: Some("app"),
            ..Default::default()
        };
        let e = run(&f, &["db", "cache", "app", "web"]).unwrap_err();
        assert_eq!(
            log(&f),
            "restore db, restore cache, restore app, remove db, remove cache"
        );
        assert!(
            matches!(&e, Error::Group { member, .. } if member == "app"),
            "{e}"
        );
        assert!(e.to_string().contains("removed again"), "{e}");
    }

    #[test]
    fn a_removal_that_fails_is_said_beside_the_first_error() {
        let f = Fake {
            fail_at: Some("app"),
            stuck: vec!["db"],
            ..Default::default()
        };
        let e = run(&f, &["db", "app"]).unwrap_err().to_string();
        assert!(e.contains("image missing"), "{e}");
        assert!(
            e.contains("removing the members restored before it failed: db: busy"),
            "{e}"
        );
    }
}
