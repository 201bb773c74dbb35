//! The group checkpoint's order and rollbacks, on a fake group.

use std::cell::RefCell;

use super::*;
use crate::report::DumpStats;

/// Members named a, b, c...; every step is logged as "step name", and the
/// step named in `fail` fails for that member.
struct Fake {
    names: Vec<&'static str>,
    fail: Option<(&'static str, usize)>,
    /// Members whose network is the host's (nothing to lock).
    host_netns: Vec<usize>,
    log: RefCell<Vec<String>>,
    killed: RefCell<Vec<usize>>,
}

fn fake(n: usize) -> Fake {
    Fake {
        names: ["a", "b", "c", "d"][..n].to_vec(),
        fail: None,
        host_netns: Vec::new(),
        log: RefCell::default(),
        killed: RefCell::default(),
    }
}

impl Fake {
    fn step(&self, step: &'static str, i: usize) -> Result<()> {
        self.log
            .borrow_mut()
            .push(format!("{step} {}", self.names[i]));
        match self.fail {
            Some((s, at)) if s == step && at == i => Err(Error::Refused(format!("{step} failed"))),
            _ => Ok(()),
        }
    }

    fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }
}

fn report(name: &str) -> ExportReport {
    ExportReport {
        archive: PathBuf::from(format!("/scratch/{name}.tar")),
        container: name.into(),
        id: name.into(),
        engine: "containerd".into(),
        namespace: "default".into(),
        stopped: false,
        encrypted: false,
        archive_bytes: 1,
        content_bytes: 1,
        pages_bytes: 0,
        rootfs_diff_bytes: 0,
        deleted_files: 0,
        checkpoint_seconds: 0.0,
        export_seconds: 0.0,
        stats: DumpStats::default(),
        volumes: Vec::new(),
        not_carried: Vec::new(),
    }
}

impl Steps for Fake {
    fn count(&self) -> usize {
        self.names.len()
    }
    fn name(&self, i: usize) -> &str {
        self.names[i]
    }
    fn lock(&self, i: usize) -> Result<bool> {
        self.step("lock", i)?;
        Ok(!self.host_netns.contains(&i))
    }
    fn unlock(&self, i: usize) -> Result<()> {
        self.step("unlock", i)
    }
    async fn pause(&self, i: usize) -> Result<()> {
        self.step("pause", i)
    }
    async fn resume(&self, i: usize) -> Result<()> {
        self.step("resume", i)
    }
    async fn kill(&self, i: usize) -> Result<()> {
        self.step("kill", i)?;
        self.killed.borrow_mut().push(i);
        Ok(())
    }
    async fn stopped(&self, i: usize) -> Result<bool> {
        Ok(self.killed.borrow().contains(&i))
    }
    async fn dump(&self, i: usize) -> Result<(ExportReport, PathBuf)> {
        self.step("dump", i)?;
        let r = report(self.names[i]);
        let file = r.archive.clone();
        Ok((r, file))
    }
    fn write_group(
        &self,
        files: &[PathBuf],
        _: DateTime<Utc>,
        left_running: bool,
        _: &Path,
    ) -> Result<()> {
        assert_eq!(files.len(), self.names.len(), "every member's archive");
        self.log
            .borrow_mut()
            .push(format!("write left_running={left_running}"));
        match self.fail {
            Some(("write", _)) => Err(Error::Refused("disk full".into())),
            _ => Ok(()),
        }
    }
}

fn steps(list: &str) -> Vec<String> {
    list.split(", ").map(str::to_string).collect()
}

fn run(f: &Fake, leave_running: bool) -> Result<GroupExportReport> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(freeze_and_dump(f, leave_running, Path::new("/out/g.tar")))
}

#[test]
fn all_are_locked_then_all_frozen_before_the_first_dump_and_thawed_after() {
    let f = fake(3);
    let r = run(&f, true).unwrap();
    assert_eq!(
        f.log(),
        steps(
            "lock a, lock b, lock c, pause a, pause b, pause c, dump a, dump b, dump c, \
             write left_running=true, unlock a, unlock b, unlock c, resume a, resume b, resume c"
        )
    );
    assert!(!r.stopped);
    assert_eq!(r.archive, Path::new("/out/g.tar"));
    let names: Vec<_> = r.members.iter().map(|m| m.container.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn without_leave_running_each_is_killed_while_frozen_then_thawed_then_unlocked() {
    let f = fake(2);
    let r = run(&f, false).unwrap();
    assert_eq!(
        f.log(),
        steps(
            "lock a, lock b, pause a, pause b, dump a, dump b, write left_running=false, \
             kill a, resume a, kill b, resume b, unlock a, unlock b"
        )
    );
    assert!(r.stopped);
}

#[test]
fn a_failed_dump_thaws_and_unlocks_every_member_and_writes_nothing() {
    let mut f = fake(3);
    f.fail = Some(("dump", 1));
    let e = run(&f, false).unwrap_err();
    assert_eq!(
        f.log(),
        steps(
            "lock a, lock b, lock c, pause a, pause b, pause c, dump a, dump b, \
             unlock a, unlock b, unlock c, resume a, resume b, resume c"
        )
    );
    let text = e.to_string();
    assert!(
        matches!(&e, Error::Group { member, .. } if member == "b"),
        "{text}"
    );
    assert!(
        text.contains("every member was thawed and runs on"),
        "{text}"
    );
}

#[test]
fn a_failed_freeze_thaws_only_the_members_frozen_before_it() {
    let mut f = fake(3);
    f.fail = Some(("pause", 1));
    run(&f, false).unwrap_err();
    assert_eq!(
        f.log(),
        steps("lock a, lock b, lock c, pause a, pause b, unlock a, unlock b, unlock c, resume a")
    );
}

#[test]
fn a_failed_lock_unlocks_the_members_locked_before_it_and_freezes_none() {
    let mut f = fake(3);
    f.fail = Some(("lock", 1));
    run(&f, true).unwrap_err();
    assert_eq!(f.log(), steps("lock a, lock b, unlock a"));
}

#[test]
fn a_failed_group_archive_thaws_every_member() {
    let mut f = fake(2);
    f.fail = Some(("write", 0));
    let e = run(&f, false).unwrap_err();
    assert!(
        matches!(&e, Error::Group { member, .. } if member == "writing the group archive"),
        "{e}"
    );
    let log = f.log();
    assert!(!log.iter().any(|s| s.starts_with("kill")), "{log:?}");
    assert!(
        log.ends_with(&steps("unlock a, unlock b, resume a, resume b")),
        "{log:?}"
    );
}

#[test]
fn a_member_on_the_hosts_network_is_never_unlocked() {
    let mut f = fake(2);
    f.host_netns = vec![0];
    run(&f, true).unwrap();
    let log = f.log();
    assert!(!log.contains(&"unlock a".to_string()), "{log:?}");
    assert!(log.contains(&"unlock b".to_string()), "{log:?}");
}

#[test]
fn a_thaw_that_fails_on_a_member_the_kill_already_ended_is_no_problem() {
    let mut f = fake(2);
    // The kernel ended the frozen task on SIGKILL: its thaw fails.
    f.fail = Some(("resume", 0));
    let r = run(&f, false).unwrap();
    assert!(r.stopped);
    assert!(f.log().ends_with(&steps("unlock a, unlock b")));
}
