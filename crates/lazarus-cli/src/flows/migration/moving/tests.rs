//! The move's order and call-offs, on a fake move: the source is called
//! back (its dump called off) on every failure before the receiver
//! confirms, and never after.

use std::path::PathBuf;

use super::*;
use crate::flows::export::Compress;
use crate::flows::migration::Mode;
use crate::flows::step_log::StepLog;
use crate::report::DumpStats;

/// Every step is logged; those named fail.
struct Fake(StepLog);

fn fake(fail: &[&'static str]) -> Fake {
    Fake(StepLog::failing(fail))
}

fn args(rm: bool) -> MigrateArgs {
    MigrateArgs {
        container: "web".into(),
        to: "b:7470".into(),
        key: None,
        name: None,
        namespace: None,
        to_namespace: None,
        rm,
        tcp_established: false,
        ignore_volumes: false,
        mode: Mode::Auto,
        compress: Compress::Zstd,
        json: true,
    }
}

fn exported() -> ExportReport {
    ExportReport {
        archive: PathBuf::from("/scratch/archive.tar"),
        container: "web".into(),
        id: "web".into(),
        engine: "containerd".into(),
        namespace: "default".into(),
        stopped: true,
        encrypted: false,
        archive_bytes: 7,
        content_bytes: 7,
        pages_bytes: 0,
        rootfs_diff_bytes: 0,
        deleted_files: 0,
        checkpoint_seconds: 0.5,
        export_seconds: 0.5,
        stats: DumpStats::default(),
        volumes: Vec::new(),
        not_carried: Vec::new(),
    }
}

fn restored() -> ImportReport {
    ImportReport {
        start_seconds: None,
        name: "web".into(),
        id: "web".into(),
        engine: "containerd".into(),
        namespace: "default".into(),
        from: PathBuf::from("/receive/archive.tar"),
        extract_seconds: 0.0,
        restore_seconds: 0.25,
        pages_bytes: Some(4096),
        volumes: Vec::new(),
        restore_path: String::new(),
        running: None,
    }
}

impl Steps for Fake {
    async fn dump(&mut self) -> Result<ExportReport> {
        self.0.step("dump").map(|_| exported())
    }
    fn pages_go(&mut self) {
        self.0.record("pages_go");
    }
    fn hand_over(&mut self) -> Result<Option<ImportReport>> {
        self.0.step("hand_over").map(|_| Some(restored()))
    }
    async fn release(&mut self) -> Result<()> {
        self.0.step("release")
    }
    fn confirm(&mut self) -> std::result::Result<(), ChannelError> {
        self.0.record("confirm");
        match self.0.fail.contains(&"confirm") {
            true => Err(ChannelError::Tampered),
            false => Ok(()),
        }
    }
    async fn memory_followed(&mut self) -> Result<(f64, u64)> {
        self.0.step("memory_followed").map(|_| (1.5, 1 << 20))
    }
    async fn call_off(&mut self, error: Error) -> Error {
        self.0.record("call_off");
        Error::Refused(format!("migration failed: {error}\n  web runs on here"))
    }
    fn page_stream(&mut self) -> PageStreamReport {
        self.0.record("page_stream");
        PageStreamReport {
            sent_bytes: 0,
            received_bytes: 0,
            seconds: 0.0,
            mib_per_second: None,
        }
    }
    async fn remove_source(&mut self) {
        self.0.record("remove_source");
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

fn moved(f: &mut Fake, args: &MigrateArgs, postcopy: bool) -> Result<MigrationReport> {
    block_on(run(f, args, "web", postcopy))
}

#[test]
fn stop_and_copy_releases_the_source_before_it_confirms() {
    let mut f = fake(&[]);
    let report = moved(&mut f, &args(false), false).unwrap();
    assert_eq!(f.0.log(), "dump, hand_over, release, confirm, page_stream");
    assert_eq!(report.mode, "stopcopy");
    assert_eq!(report.source, "stopped");
    // The receiver's memory count, the archive's size, no memory wait.
    assert_eq!(report.memory_bytes, Some(4096));
    assert_eq!(report.archive_bytes, 7);
    assert_eq!(report.memory_seconds, None);
    assert_eq!(report.restore_seconds, Some(0.25));
}

#[test]
fn post_copy_opens_the_tunnel_after_the_dump_and_waits_for_the_memory() {
    let mut f = fake(&[]);
    let report = moved(&mut f, &args(false), true).unwrap();
    assert_eq!(
        f.0.log(),
        "dump, pages_go, hand_over, confirm, memory_followed, page_stream"
    );
    assert_eq!(report.mode, "postcopy");
    assert_eq!(report.memory_bytes, Some(1 << 20));
    assert_eq!(report.memory_seconds, Some(1.5));
}

#[test]
fn rm_removes_the_source_last() {
    for postcopy in [false, true] {
        let mut f = fake(&[]);
        let report = moved(&mut f, &args(true), postcopy).unwrap();
        assert!(
            f.0.log().ends_with("page_stream, remove_source"),
            "{}",
            f.0.log()
        );
        assert_eq!(report.source, "removed");
    }
}

#[test]
fn a_failed_dump_calls_it_off_and_goes_no_further() {
    for postcopy in [false, true] {
        let mut f = fake(&["dump"]);
        let e = moved(&mut f, &args(true), postcopy).unwrap_err();
        assert_eq!(f.0.log(), "dump, call_off");
        assert!(e.to_string().contains("runs on here"), "{e}");
    }
}

#[test]
fn a_failed_hand_over_calls_the_dump_off() {
    let mut f = fake(&["hand_over"]);
    moved(&mut f, &args(true), false).unwrap_err();
    assert_eq!(f.0.log(), "dump, hand_over, call_off");
    let mut f = fake(&["hand_over"]);
    moved(&mut f, &args(true), true).unwrap_err();
    assert_eq!(f.0.log(), "dump, pages_go, hand_over, call_off");
}

#[test]
fn a_failed_release_calls_the_dump_off_and_never_confirms() {
    let mut f = fake(&["release"]);
    let e = moved(&mut f, &args(true), false).unwrap_err();
    assert_eq!(f.0.log(), "dump, hand_over, release, call_off");
    assert!(e.to_string().contains("runs on here"), "{e}");
}

#[test]
fn a_lost_confirmation_after_the_release_says_where_the_container_went() {
    let mut f = fake(&["confirm"]);
    let e = moved(&mut f, &args(true), false).unwrap_err();
    // Too late to call off: the source was let go.
    assert_eq!(f.0.log(), "dump, hand_over, release, confirm");
    let e = e.to_string();
    assert!(e.contains("web ran on b:7470 and was let go here"), "{e}");
    assert!(e.contains("removes its unconfirmed copy"), "{e}");
}

#[test]
fn a_lost_post_copy_confirmation_leaves_the_frozen_source_to_its_stream() {
    let mut f = fake(&["confirm"]);
    let e = moved(&mut f, &args(true), true).unwrap_err();
    assert_eq!(f.0.log(), "dump, pages_go, hand_over, confirm");
    assert!(e.to_string().contains("tampered"), "{e}");
}

#[test]
fn memory_that_stops_following_keeps_the_source() {
    let mut f = fake(&["memory_followed"]);
    moved(&mut f, &args(true), true).unwrap_err();
    assert_eq!(
        f.0.log(),
        "dump, pages_go, hand_over, confirm, memory_followed"
    );
}

#[test]
fn the_name_there_is_the_one_asked_for() {
    let mut f = fake(&["confirm"]);
    let a = MigrateArgs {
        name: Some("web2".into()),
        ..args(false)
    };
    let e = moved(&mut f, &a, false).unwrap_err();
    assert!(e.to_string().contains("web2 ran on"), "{e}");
}
