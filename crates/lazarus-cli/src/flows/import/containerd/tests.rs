//! A containerd restore's refusal and rollback, on a fake containerd.

use super::*;
use crate::flows::step_log::StepLog;

/// Every step is logged; the steps named in `fail` fail.
#[derive(Default)]
struct Fake {
    exists: bool,
    steps: StepLog,
    /// The snapshot's mounts are a bind mount, not an overlay.
    not_overlay: bool,
}

impl Fake {
    fn step(&self, step: &str) -> Result<()> {
        self.steps.step(step)
    }

    fn log(&self) -> String {
        self.steps.log()
    }
}

impl Steps for Fake {
    async fn exists(&self, _: &str) -> Result<bool> {
        self.step("exists")?;
        Ok(self.exists)
    }
    async fn prepare(&self, _: &str) -> Result<Vec<Mount>> {
        self.step("prepare")?;
        Ok(vec![Mount {
            r#type: if self.not_overlay { "bind" } else { "overlay" }.into(),
            options: vec!["upperdir=/s/9/fs".into()],
            ..Default::default()
        }])
    }
    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()> {
        assert_eq!(overlay, ["upperdir=/s/9/fs"]);
        self.step("apply")
    }
    async fn create_container(&self, _: &str) -> Result<()> {
        self.step("container")
    }
    async fn create_task(&self, _: &str, rootfs: Vec<Mount>) -> Result<()> {
        assert_eq!(rootfs.len(), 1, "the prepared snapshot's mounts");
        self.step("task")
    }
    async fn start(&self, _: &str) -> Result<()> {
        self.step("start")
    }
    async fn remove_task(&self, _: &str) -> Result<()> {
        self.step("remove task")
    }
    async fn remove_container(&self, _: &str) -> Result<()> {
        self.step("remove container")
    }
    async fn remove_snapshot(&self, _: &str) -> Result<()> {
        self.step("remove snapshot")
    }
}

fn run(f: &Fake) -> Result<()> {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(restore(f, "web", "default"))
}

#[test]
fn a_restore_makes_snapshot_changes_container_task_then_starts() {
    let f = Fake::default();
    run(&f).unwrap();
    assert_eq!(f.log(), "exists, prepare, apply, container, task, start");
}

#[test]
fn a_name_taken_is_refused_before_anything_is_made() {
    let f = Fake {
        exists: true,
        ..Default::default()
    };
    let e = run(&f).unwrap_err().to_string();
    assert_eq!(f.log(), "exists");
    assert!(
        e.contains("a container web already exists in namespace default"),
        "{e}"
    );
}

#[test]
fn a_failed_start_removes_task_container_and_snapshot_last_made_first() {
    let f = Fake {
        steps: StepLog::failing(&["start"]),
        ..Default::default()
    };
    let e = run(&f).unwrap_err();
    assert_eq!(
        f.log(),
        "exists, prepare, apply, container, task, start, remove task, remove container, \
         remove snapshot"
    );
    assert!(
        !matches!(e, Error::Cleanup { .. }),
        "the cleanup worked: {e}"
    );
}

#[test]
fn each_failure_removes_exactly_what_was_made_before_it() {
    for (fail, undone) in [
        ("prepare", ""),
        ("apply", "remove snapshot"),
        ("container", "remove snapshot"),
        ("task", "remove container, remove snapshot"),
    ] {
        let f = Fake {
            steps: StepLog::failing(&[fail]),
            ..Default::default()
        };
        run(&f).unwrap_err();
        let log = f.log();
        let after = log.split_once(fail).unwrap().1;
        assert_eq!(after.trim_start_matches(", "), undone, "{fail}: {log}");
    }
}

#[test]
fn a_snapshot_that_is_not_an_overlay_is_removed_again() {
    let f = Fake {
        not_overlay: true,
        ..Default::default()
    };
    let e = run(&f).unwrap_err().to_string();
    assert!(e.contains("is not an overlay"), "{e}");
    assert_eq!(f.log(), "exists, prepare, remove snapshot");
}

#[test]
fn a_failed_cleanup_is_reported_beside_the_error() {
    let f = Fake {
        steps: StepLog::failing(&["start", "remove container"]),
        ..Default::default()
    };
    let e = run(&f).unwrap_err();
    // The rest is still removed.
    assert!(f
        .log()
        .ends_with("remove task, remove container, remove snapshot"));
    assert!(matches!(e, Error::Cleanup { .. }), "{e}");
    let text = e.to_string();
    assert!(text.starts_with("start failed"), "{text}");
    assert!(
        text.contains("cleaning up failed too: remove container failed"),
        "{text}"
    );
}
