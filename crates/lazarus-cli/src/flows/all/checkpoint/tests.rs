//! `checkpoint --all`'s units on a fake: a restart policy cleared first and
//! put back when the checkpoint fails, a Compose project as one group
//! checkpoint, and what each unit records.

use super::*;
use crate::flows::all::record::RestartPolicy;
use crate::flows::step_log::StepLog;
use crate::report::DumpStats;

struct Fake(StepLog);

fn report(f: &Found) -> ExportReport {
    ExportReport {
        archive: PathBuf::from("x"),
        container: f.name.clone(),
        id: f.id.clone(),
        engine: f.engine.clone(),
        namespace: f.namespace.clone(),
        stopped: true,
        encrypted: false,
        archive_bytes: 1,
        content_bytes: 1,
        pages_bytes: 1,
        rootfs_diff_bytes: 0,
        deleted_files: 0,
        checkpoint_seconds: 0.5,
        export_seconds: 0.6,
        stats: DumpStats {
            frozen_time_us: Some(250_000),
            ..Default::default()
        },
        volumes: Vec::new(),
        not_carried: Vec::new(),
    }
}

impl Steps for Fake {
    async fn set_restart_policy(&self, f: &Found, name: &str, _: u64) -> Result<()> {
        self.0.step(&format!("policy {} {name}", f.name))
    }
    async fn export_one(&self, f: &Found, _: &Path) -> Result<ExportReport> {
        self.0.step(&format!("export {}", f.name))?;
        Ok(report(f))
    }
    async fn export_group(&self, m: &[Found], a: &Path) -> Result<GroupExportReport> {
        self.0.step("export group")?;
        Ok(GroupExportReport {
            archive: a.to_path_buf(),
            members: m.iter().map(report).collect(),
            stopped: true,
            freeze_seconds: 0.1,
            frozen_seconds: 0.2,
        })
    }
}

fn found(name: &str, policy: Option<&str>) -> Found {
    Found {
        engine: "docker".into(),
        namespace: "moby".into(),
        name: name.into(),
        id: format!("{name}-id"),
        runtime: crate::engine::containerd::LAZARUS_RUNTIME.into(),
        labels: Default::default(),
        image: "busybox".into(),
        created: None,
        networks: vec![],
        volumes: vec![],
        restart_policy: policy.map(|p| RestartPolicy {
            name: p.into(),
            maximum_retry_count: 0,
        }),
    }
}

fn run_take(fake: &Fake, unit: &Unit) -> (Vec<AllCheckpointed>, Vec<Entry>) {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(take(fake, unit, 3, Path::new("/d/docker-moby-web.tar.zst")))
}

#[test]
fn a_restart_policy_is_cleared_before_the_checkpoint_and_recorded() {
    let fake = Fake(StepLog::default());
    let (lines, entries) = run_take(&fake, &Unit::One(Box::new(found("web", Some("always")))));
    assert_eq!(fake.0.log(), "policy web no, export web");
    assert_eq!(lines[0].outcome, "checkpointed");
    assert_eq!(lines[0].frozen_seconds, Some(0.25));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].order, 3);
    assert_eq!(entries[0].archive, "docker-moby-web.tar.zst");
    assert_eq!(entries[0].restart_policy.as_ref().unwrap().name, "always");
}

#[test]
fn a_failed_checkpoint_puts_the_policy_back_and_records_nothing() {
    let fake = Fake(StepLog::failing(&["export web"]));
    let (lines, entries) = run_take(
        &fake,
        &Unit::One(Box::new(found("web", Some("unless-stopped")))),
    );
    assert_eq!(
        fake.0.log(),
        "policy web no, export web, policy web unless-stopped"
    );
    assert!(entries.is_empty());
    assert_eq!(lines[0].outcome, "failed");
    assert!(lines[0]
        .error
        .as_ref()
        .unwrap()
        .contains("export web failed"));
}

#[test]
fn a_compose_project_is_one_group_checkpoint_recorded_in_member_order() {
    let fake = Fake(StepLog::default());
    let unit = Unit::Compose {
        project: "shop".into(),
        members: vec![found("db", None), found("web", Some("always"))],
    };
    let (lines, entries) = run_take(&fake, &unit);
    assert_eq!(fake.0.log(), "policy web no, export group");
    let got: Vec<_> = entries
        .iter()
        .map(|e| (e.order, e.name.as_str(), e.group.as_deref()))
        .collect();
    assert_eq!(got, [(3, "db", Some("shop")), (4, "web", Some("shop"))]);
    assert!(lines.iter().all(|l| l.group.as_deref() == Some("shop")));
}

#[test]
fn a_policy_that_cannot_be_cleared_fails_the_unit_before_any_checkpoint() {
    let fake = Fake(StepLog::failing(&["policy web no"]));
    let unit = Unit::Compose {
        project: "shop".into(),
        members: vec![found("db", Some("always")), found("web", Some("always"))],
    };
    let (lines, entries) = run_take(&fake, &unit);
    assert_eq!(
        fake.0.log(),
        "policy db no, policy web no, policy db always"
    );
    assert!(entries.is_empty());
    assert!(lines.iter().all(|l| l.outcome == "failed"));
}
