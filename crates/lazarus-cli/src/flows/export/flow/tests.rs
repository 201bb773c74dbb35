//! The export's refusals, order and undo, on a fake container.

use std::path::PathBuf;

use clap::Parser;
use serde_json::json;

use super::*;
use crate::flows::step_log::StepLog;

/// A container named "web": a Docker one when `restart` is given (its
/// restart policy); every step is logged; the steps in `fail` fail.
struct Fake {
    target: Target,
    status: Option<Status>,
    steps: StepLog,
    /// The checkpoint writes CRIU's stats-dump into the images.
    stats_dump: bool,
    /// The container's memory use, as its cgroup says.
    memory: Option<u64>,
    /// Where the checkpoint was asked to write its images.
    images_at: std::cell::RefCell<Option<PathBuf>>,
    /// The incremental request the checkpoint found in its images, taken
    /// out as the shim takes it.
    incremental: std::cell::RefCell<Option<Incremental>>,
}

fn fake(docker_restart: Option<&str>) -> Fake {
    Fake {
        target: Target {
            id: "0123".into(),
            name: "web".into(),
            namespace: "default".into(),
            docker: docker_restart.map(|p| json!({"HostConfig": {"RestartPolicy": {"Name": p}}})),
        },
        status: Some(Status::Running),
        steps: StepLog::default(),
        stats_dump: false,
        memory: None,
        images_at: Default::default(),
        incremental: Default::default(),
    }
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
    fn target(&self) -> &Target {
        &self.target
    }
    async fn task_status(&self) -> Result<Option<Status>> {
        self.step("status")?;
        Ok(self.status)
    }
    async fn memory_in_use(&self) -> Option<u64> {
        self.step("memory").ok()?;
        self.memory
    }
    async fn copy_docker_checkpoint(&self, name: &str, images: &Path) -> Result<()> {
        self.step(&format!("copy {name}"))?;
        fs::create_dir(images).unwrap();
        if name == "lazarus-made" {
            fs::write(images.join(image::METADATA_FILE), b"{}").unwrap();
        }
        Ok(())
    }
    async fn checkpoint(&self, options: &CheckpointOptions, images: &Path) -> Result<()> {
        assert!(images.is_dir(), "the images' directory is made first");
        *self.images_at.borrow_mut() = Some(images.to_path_buf());
        *self.incremental.borrow_mut() = Incremental::take(images).unwrap();
        assert_eq!(options.image_path, images.to_string_lossy());
        if self.stats_dump {
            // What CRIU 4.2 wrote for lazarus-core's listen-fork test data.
            let crius = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../lazarus-core/testdata/listen-fork/stats-dump"
            );
            fs::copy(crius, images.join("stats-dump")).unwrap();
        }
        self.step(&format!("checkpoint exit={}", options.exit))
    }
    async fn archive(&self, args: &ExportArgs, _: &Path, _: DateTime<Utc>) -> Result<Archived> {
        self.step("archive")?;
        fs::write(&args.export, b"archive").unwrap();
        Ok(Archived {
            manifest: archive::Manifest::new(Vec::new()),
            diff: Some((2, 100)),
            volumes: Vec::new(),
            not_carried: Vec::new(),
            streamed_bytes: None,
        })
    }
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ExportArgs,
}

/// Runs the export with these arguments (after `CONTAINER --export FILE`)
/// in a private work root; returns the result and the work root.
fn run(f: &Fake, flags: &[&str]) -> (Result<ExportReport>, tempfile::TempDir) {
    run_with(f, flags, |_| {})
}

/// As [`run`], with what only another flow sets (`#[arg(skip)]`) set by
/// `set`.
fn run_with(
    f: &Fake,
    flags: &[&str],
    set: impl FnOnce(&mut ExportArgs),
) -> (Result<ExportReport>, tempfile::TempDir) {
    // On a tmpfs, so that a dump may go into memory (`memory_root`).
    let root = tempfile::tempdir_in("/dev/shm").unwrap();
    let dest = root.path().join("web.tar");
    let mut argv = vec!["t", "web", "--export", dest.to_str().unwrap()];
    argv.extend(flags);
    let mut args = Cli::try_parse_from(argv).unwrap().args;
    set(&mut args);
    let config = Config {
        work_root: root.path().join("lib"),
        memory_root: root.path().join(MEMORY),
        ..Default::default()
    };
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(export(f, &args, &config));
    (result, root)
}

/// The memory root under a run's root.
const MEMORY: &str = "memory";

/// What is left in the work root's scratch directories.
fn left_in(root: &Path) -> Vec<PathBuf> {
    match fs::read_dir(root.join("lib/work")) {
        Ok(d) => d.map(|e| e.unwrap().path()).collect(),
        Err(_) => Vec::new(),
    }
}

#[test]
fn a_checkpoint_that_stops_the_container_then_the_archive() {
    let f = fake(None);
    let (r, root) = run(&f, &[]);
    let r = r.unwrap();
    assert_eq!(f.log(), "status, checkpoint exit=true, archive");
    assert!(r.stopped);
    assert_eq!(
        (r.container.as_str(), r.engine.as_str()),
        ("web", "containerd")
    );
    assert_eq!(
        (r.archive_bytes, r.rootfs_diff_bytes, r.deleted_files),
        (7, 100, 2)
    );
    assert_eq!(r.stats, DumpStats::default(), "no stats-dump: none made up");
    assert!(left_in(root.path()).is_empty(), "the scratch is removed");
}

#[test]
fn leave_running_asks_for_a_checkpoint_that_does_not_stop_it() {
    let f = fake(None);
    let r = run(&f, &["--leave-running"]).0.unwrap();
    assert_eq!(f.log(), "status, checkpoint exit=false, archive");
    assert!(!r.stopped);
}

/// A snapshot's dump (the container left running) goes into memory when
/// its memory use is known and fits; otherwise, or for a dump that stops
/// the container (whose images must outlive a reboot), where the caller
/// said. Either way the scratch is gone afterwards.
#[test]
fn a_snapshots_dump_goes_into_memory_only_when_it_leaves_the_container_running() {
    let in_memory = |images: &Path| {
        images
            .parent()
            .and_then(Path::parent)
            .is_some_and(|p| p.ends_with(MEMORY))
    };
    let f = Fake {
        memory: Some(1 << 20),
        ..fake(None)
    };
    let (r, root) = run_with(&f, &["--leave-running"], |a| a.dump_in_memory = true);
    r.unwrap();
    assert!(f
        .images_at
        .borrow()
        .as_ref()
        .unwrap()
        .starts_with(root.path().join(MEMORY)));
    assert_eq!(f.log(), "memory, status, checkpoint exit=false, archive");
    let images = f.images_at.borrow().clone().unwrap();
    assert!(in_memory(&images), "{images:?}");
    assert!(!images.exists(), "the memory scratch is removed");
    assert!(left_in(root.path()).is_empty());

    // Its memory use unknown: on disk, where the config says.
    let f = fake(None);
    run_with(&f, &["--leave-running"], |a| a.dump_in_memory = true)
        .0
        .unwrap();
    let images = f.images_at.borrow().clone().unwrap();
    assert!(!in_memory(&images), "{images:?}");

    // A dump that stops the container never goes into memory, nor one
    // not asked to.
    for (flags, asked) in [(&[][..], true), (&["--leave-running"][..], false)] {
        let f = Fake {
            memory: Some(1 << 20),
            ..fake(None)
        };
        run_with(&f, flags, |a| a.dump_in_memory = asked).0.unwrap();
        assert!(!f.log().contains("memory"), "{}", f.log());
        let images = f.images_at.borrow().clone().unwrap();
        assert!(!in_memory(&images), "{images:?}");
    }
}

/// Hands out `parent` as every container's, and remembers who asked.
struct Tracker {
    parent: Option<PathBuf>,
    asked: std::sync::Mutex<Vec<String>>,
}

impl crate::flows::export::DirtyTracking for Tracker {
    fn parent(&self, id: &str) -> lazarus_core::Result<Option<PathBuf>> {
        self.asked.lock().unwrap().push(id.to_string());
        Ok(self.parent.clone())
    }
}

/// Where the kernel tracks dirty memory, a snapshot's dump is asked to
/// track it, incremental to the parent its tracker claims for the
/// container (by id); without a tracker no dump is.
#[test]
fn a_tracked_dump_asks_for_memory_tracking_and_the_containers_parent() {
    let parent = tempfile::tempdir().unwrap();
    for given in [Some(parent.path().to_path_buf()), None] {
        let tracker = std::sync::Arc::new(Tracker {
            parent: given.clone(),
            asked: Default::default(),
        });
        let f = fake(None);
        let t = tracker.clone();
        run_with(&f, &["--leave-running"], |a| a.incremental = Some(t))
            .0
            .unwrap();
        assert_eq!(*tracker.asked.lock().unwrap(), ["0123"]);
        assert_eq!(
            f.incremental.borrow().clone(),
            Some(Incremental { parent: given })
        );
    }
    let f = fake(None);
    run(&f, &["--leave-running"]).0.unwrap();
    assert_eq!(*f.incremental.borrow(), None);
}

#[test]
fn a_container_not_running_is_refused_before_any_checkpoint() {
    for (status, word) in [(None, "not started"), (Some(Status::Stopped), "stopped")] {
        let mut f = fake(Some("no"));
        f.status = status;
        let e = run(&f, &[]).0.unwrap_err().to_string();
        assert_eq!(f.log(), "status");
        assert!(
            e.contains(&format!("web is {word}: only a running container")),
            "{e}"
        );
        assert!(e.contains("--from-docker-checkpoint"), "a Docker hint: {e}");
    }
}

#[test]
fn a_docker_restart_policy_is_refused_unless_the_container_keeps_running() {
    let f = fake(Some("always"));
    let e = run(&f, &[]).0.unwrap_err().to_string();
    assert_eq!(f.log(), "status");
    assert!(e.contains("restart policy \"always\""), "{e}");
    let f = fake(Some("always"));
    run(&f, &["--leave-running"]).0.unwrap();
    let f = fake(Some("no"));
    run(&f, &[]).0.unwrap();
}

#[test]
fn a_failed_checkpoint_writes_nothing_and_undoes_nothing() {
    let mut f = fake(Some("no"));
    f.steps.fail = vec!["checkpoint exit=true"];
    let (r, root) = run(&f, &[]);
    let e = r.unwrap_err().to_string();
    assert_eq!(e, "checkpoint exit=true failed");
    assert_eq!(f.log(), "status, checkpoint exit=true");
    assert!(!root.path().join("web.tar").exists());
    assert!(left_in(root.path()).is_empty(), "the scratch is removed");
}

#[test]
fn a_stopped_containers_images_are_kept_when_the_archive_fails() {
    let mut f = fake(Some("no"));
    f.steps.fail = vec!["archive"];
    let (r, root) = run(&f, &[]);
    let e = r.unwrap_err().to_string();
    assert_eq!(f.log(), "status, checkpoint exit=true, archive");
    let kept = left_in(root.path());
    assert_eq!(kept.len(), 1);
    assert!(
        e.contains("web was stopped by the checkpoint; its images are kept in"),
        "{e}"
    );
    assert!(e.contains(&kept[0].display().to_string()), "{e}");
    assert!(kept[0].join(archive::CHECKPOINT_DIR).is_dir());
}

#[test]
fn an_archive_failing_after_leave_running_needs_no_undo() {
    let mut f = fake(Some("no"));
    f.steps.fail = vec!["archive"];
    let (r, root) = run(&f, &["--leave-running"]);
    assert_eq!(r.unwrap_err().to_string(), "archive failed");
    assert_eq!(f.log(), "status, checkpoint exit=false, archive");
    assert!(left_in(root.path()).is_empty());
}

#[test]
fn only_a_lazarus_checkpoint_docker_took_is_exported() {
    let f = fake(Some("always"));
    let r = run(&f, &["--from-docker-checkpoint", "lazarus-made"])
        .0
        .unwrap();
    // Not stopped, so its restart policy does not matter; no checkpoint.
    assert_eq!(f.log(), "copy lazarus-made, archive");
    assert!(!r.stopped);
    let f = fake(Some("no"));
    let e = run(&f, &["--from-docker-checkpoint", "runc-made"])
        .0
        .unwrap_err();
    assert!(e.to_string().contains("was not taken by Lazarus"), "{e}");
    let f = fake(None);
    let e = run(&f, &["--from-docker-checkpoint", "x"]).0.unwrap_err();
    assert!(e.to_string().contains("is not a Docker container"), "{e}");
    assert_eq!(f.log(), "");
}

/// The report's statistics are the dump's own (they once read zeros: the
/// scratch directory was gone by the time they were read).
#[test]
fn the_report_carries_the_dumps_own_statistics() {
    let mut f = fake(None);
    f.stats_dump = true;
    let (r, root) = run(&f, &[]);
    let s = r.unwrap().stats;
    assert!(s.frozen_time_us.is_some_and(|t| t > 0), "{s:?}");
    assert!(s.pages_written.is_some_and(|p| p > 0), "{s:?}");
    assert!(left_in(root.path()).is_empty(), "the scratch is removed");
}
