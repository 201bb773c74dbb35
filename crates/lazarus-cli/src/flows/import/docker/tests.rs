//! A Docker restore's refusals and rollback, on a fake Docker.

use std::cell::RefCell;

use serde_json::json;

use super::*;
use crate::flows::step_log::StepLog;

/// Every step is logged; the steps in `fail` fail (`create` as Docker
/// answers a name already taken, 409).
#[derive(Default)]
struct Fake {
    steps: StepLog,
    body: RefCell<Value>,
    /// What this Docker's `GET /info` says (no registered runtimes by
    /// default).
    info: Value,
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
    async fn runtimes(&self) -> Result<Runtimes> {
        Ok(Runtimes::from_docker_info(&self.info))
    }
    async fn image(&self, cfg: &ArchiveConfig) -> Result<String> {
        self.step("image")?;
        Ok(cfg.image_name.clone())
    }
    async fn create(&self, name: &str, body: &Value) -> Result<String> {
        self.steps.record(&format!("create {name}"));
        *self.body.borrow_mut() = body.clone();
        match self.steps.fail.contains(&"create") {
            true => Err(Error::Docker {
                context: "create".into(),
                status: 409,
                message: "Conflict".into(),
            }),
            false => Ok("f00d".into()),
        }
    }
    async fn overlay(&self, id: &str, _: &str) -> Result<Vec<String>> {
        assert_eq!(id, "f00d");
        self.step("overlay")?;
        Ok(vec!["upperdir=/d/1/diff".into()])
    }
    fn apply_rootfs_diff(&self, overlay: &[String]) -> Result<()> {
        assert_eq!(overlay, ["upperdir=/d/1/diff"]);
        self.step("apply")
    }
    async fn start(&self, _: &str) -> Result<()> {
        self.step("start")
    }
    async fn start_from_checkpoint(&self, _: &str, images: &Path) -> Result<()> {
        assert!(images.is_dir());
        self.step("start from checkpoint")
    }
    async fn remove(&self, id: &str) -> Result<()> {
        self.step(&format!("remove {id}"))
    }
}

fn config() -> ArchiveConfig {
    let now = chrono::Utc::now();
    ArchiveConfig {
        id: "0123".into(),
        name: "web".into(),
        image_name: "busybox:latest".into(),
        image_digest: String::new(),
        runtime: LAZARUS_RUNTIME.into(),
        created: now,
        checkpointed: now,
        engine: "docker".into(),
        namespace: DOCKER_NAMESPACE.into(),
    }
}

/// Restores as `web2`, the recorded container having run `runtime`.
fn run(f: &Fake, runtime: &str, asked: Option<&str>) -> (Result<String>, tempfile::TempDir) {
    let (r, dir) = run_path(f, runtime, asked);
    (r.map(|(id, _)| id), dir)
}

/// [`run`], with the path the restore took.
fn run_path(
    f: &Fake,
    runtime: &str,
    asked: Option<&str>,
) -> (Result<(String, &'static str)>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join(archive::CHECKPOINT_DIR)).unwrap();
    let recorded = json!({"Cmd": ["sh"], "HostConfig": {"Runtime": runtime}});
    let r = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(restore(f, asked, &config(), &recorded, dir.path(), "web2"));
    (r, dir)
}

#[test]
fn a_lazarus_container_is_created_changed_and_started_from_the_images_handed_to_it() {
    let f = Fake::default();
    let (id, dir) = run(&f, LAZARUS_RUNTIME, None);
    assert_eq!(id.unwrap(), "f00d");
    assert_eq!(f.log(), "image, create web2, overlay, apply, start");
    let body = f.body.borrow();
    assert_eq!(body["Image"], "busybox:latest");
    let images = dir.path().join(archive::CHECKPOINT_DIR);
    assert_eq!(
        body["HostConfig"]["Annotations"][handoff::IMAGES_ANNOTATION],
        images.to_string_lossy().as_ref()
    );
}

/// This Docker's runtimes, as its `GET /info` and daemon.json say them
/// together: Lazarus registered as `lazarus` (as scripts/install.sh does)
/// and as an alias by its shim's path.
fn registered() -> Value {
    json!({"Runtimes": {
        "runc": {"path": "runc"},
        "io.containerd.runc.v2": {"runtimeType": "io.containerd.runc.v2"},
        "lazarus": {"runtimeType": LAZARUS_RUNTIME},
        "laz": {"runtimeType": "/opt/bin/containerd-shim-lazarus-v2"}
    }})
}

#[test]
fn every_name_of_lazarus_takes_the_hand_off() {
    for (recorded, asked) in [
        ("lazarus", None),
        ("laz", None),
        (LAZARUS_RUNTIME, None),
        ("runc", Some("lazarus")),
        ("runc", Some("laz")),
    ] {
        let f = Fake {
            info: registered(),
            ..Default::default()
        };
        let (r, _dir) = run_path(&f, recorded, asked);
        let (_, path) = r.unwrap();
        assert_eq!(path, PATH_HAND_OFF, "{recorded} {asked:?}");
        assert_eq!(f.log(), "image, create web2, overlay, apply, start");
        let body = f.body.borrow();
        assert!(
            body["HostConfig"]["Annotations"][handoff::IMAGES_ANNOTATION].is_string(),
            "{body}"
        );
        // The name is kept as given: Docker shows what the user ran.
        assert_eq!(body["HostConfig"]["Runtime"], asked.unwrap_or(recorded));
    }
}

#[test]
fn a_recorded_name_this_docker_does_not_know_becomes_lazarus_by_its_type() {
    // The source registered "lazarus"; this Docker has no runtimes entry.
    let f = Fake::default();
    let (r, _dir) = run_path(&f, "lazarus", None);
    assert_eq!(r.unwrap().1, PATH_HAND_OFF);
    assert_eq!(f.body.borrow()["HostConfig"]["Runtime"], LAZARUS_RUNTIME);
}

#[test]
fn another_runtime_restores_through_dockers_own_checkpoint() {
    let f = Fake {
        info: registered(),
        ..Default::default()
    };
    let (r, _dir) = run_path(&f, "lazarus", Some("io.containerd.runc.v2"));
    assert_eq!(r.unwrap().1, PATH_DOCKER_CHECKPOINT);
    assert!(
        f.log().ends_with("apply, start from checkpoint"),
        "{}",
        f.log()
    );
    let f = Fake {
        info: registered(),
        ..Default::default()
    };
    run(&f, "runc", None).0.unwrap();
    assert_eq!(
        f.log(),
        "image, create web2, overlay, apply, start from checkpoint"
    );
    assert!(f.body.borrow()["HostConfig"]["Annotations"].is_null());
    // --runtime wins over the recorded one.
    let f = Fake::default();
    run(&f, "runc", Some(LAZARUS_RUNTIME)).0.unwrap();
    assert!(f.log().ends_with("apply, start"), "{}", f.log());
}

#[test]
fn a_missing_image_is_refused_before_anything_is_created() {
    let f = Fake {
        steps: StepLog::failing(&["image"]),
        ..Default::default()
    };
    run(&f, LAZARUS_RUNTIME, None).0.unwrap_err();
    assert_eq!(f.log(), "image");
}

#[test]
fn a_name_taken_is_refused_saying_what_to_do() {
    let f = Fake {
        steps: StepLog::failing(&["create"]),
        ..Default::default()
    };
    let e = run(&f, LAZARUS_RUNTIME, None).0.unwrap_err().to_string();
    assert_eq!(f.log(), "image, create web2");
    assert!(e.contains("a container named web2 already exists"), "{e}");
    assert!(e.contains("--name"), "{e}");
}

#[test]
fn every_failure_after_the_create_removes_the_container() {
    for fail in ["overlay", "apply", "start"] {
        let f = Fake {
            steps: StepLog::failing(&[fail]),
            ..Default::default()
        };
        let e = run(&f, LAZARUS_RUNTIME, None).0.unwrap_err();
        assert!(
            f.log().ends_with(&format!("{fail}, remove f00d")),
            "{}",
            f.log()
        );
        assert!(!matches!(e, Error::Cleanup { .. }), "{e}");
    }
    let f = Fake {
        steps: StepLog::failing(&["start", "remove f00d"]),
        ..Default::default()
    };
    let e = run(&f, LAZARUS_RUNTIME, None).0.unwrap_err();
    assert!(
        e.to_string()
            .contains("cleaning up failed too: remove f00d failed"),
        "{e}"
    );
}
