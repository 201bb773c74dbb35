//! The sender's hold on its dump, on a fake engine and a real image
//! directory (the runtime's markers written by the test): a call-off
//! says whether the source runs on, a release waits for its task to end,
//! a post-copy memory that stopped arriving says the source was thawed.

use std::path::Path;

use lazarus_core::checkpoint::postcopy::{PageMode, PageServer};

use super::*;
use crate::engine::fake::FakeEngine;

fn dump(dir: &Path) -> MigrationDump {
    let d = MigrationDump {
        dir: dir.to_path_buf(),
        server: PageServer::local(1, PageMode::Push),
    };
    std::fs::create_dir(d.images()).unwrap();
    d
}

/// The client asked for a dump (its request written).
fn requested(d: &MigrationDump) {
    std::fs::write(control::request_path(&d.images()), "{}").unwrap();
}

fn web() -> Target {
    Target {
        id: "id-web".into(),
        name: "web".into(),
        namespace: "default".into(),
        docker: None,
    }
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
        .block_on(f)
}

fn failed() -> Error {
    Error::Refused("the receiver failed".into())
}

#[test]
fn nothing_is_called_off_before_a_dump_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    let engine = FakeEngine::new("containerd");
    let e = block_on(call_off(failed(), &engine, &web(), &d));
    assert_eq!(e.to_string(), "the receiver failed");
    assert!(!control::cancelled(&d.images()));
    assert_eq!(engine.calls(), "");
}

#[test]
fn a_called_off_dump_whose_source_runs_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "called off");
    let engine = FakeEngine::new("containerd");
    let e = block_on(call_off(failed(), &engine, &web(), &d)).to_string();
    assert!(control::cancelled(&d.images()));
    assert_eq!(engine.calls(), "task_status id-web");
    assert!(e.contains("migration failed: the receiver failed"), "{e}");
    assert!(
        e.contains("web runs on here (its dump was called off)"),
        "{e}"
    );
}

#[test]
fn a_called_off_dump_whose_source_is_not_running_says_that_too() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "called off");
    let engine = FakeEngine::new("containerd").statuses(&[Some(Status::Stopped)]);
    let e = block_on(call_off(failed(), &engine, &web(), &d)).to_string();
    assert!(
        e.contains("web is not running after its dump was called off"),
        "{e}"
    );
}

#[test]
fn a_source_whose_status_cannot_be_read_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "called off");
    let engine = FakeEngine::new("containerd").failing(&["task_status"]);
    let e = block_on(call_off(failed(), &engine, &web(), &d)).to_string();
    assert!(e.contains("web: task_status failed"), "{e}");
}

#[test]
fn a_release_waits_until_the_sources_task_has_ended() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "released");
    let engine = FakeEngine::new("containerd").statuses(&[
        Some(Status::Running),
        Some(Status::Running),
        Some(Status::Stopped),
    ]);
    block_on(let_go(&engine, &web(), &d)).unwrap();
    assert!(control::released(&d.images()));
    assert_eq!(
        engine.calls(),
        "task_status id-web, task_status id-web, task_status id-web"
    );
}

#[test]
fn memory_that_stopped_arriving_leaves_the_source_running_here() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "the page stream failed");
    let engine = FakeEngine::new("containerd");
    let e = block_on(memory_followed(&engine, &web(), &d, "web", "b", true))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("web resumed on b but its memory stopped arriving"),
        "{e}"
    );
    assert!(e.contains("web runs on here"), "{e}");
}

#[test]
fn memory_that_followed_ends_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let d = dump(dir.path());
    requested(&d);
    control::say_ended(&d.images(), "every page was sent");
    let engine = FakeEngine::new("containerd").statuses(&[Some(Status::Running), None]);
    let (_, bytes) = block_on(memory_followed(&engine, &web(), &d, "web", "b", true)).unwrap();
    // No pagemap in the images: nothing counted.
    assert_eq!(bytes, 0);
}
