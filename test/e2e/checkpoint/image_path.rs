//! Checkpoint into an image path and restore a new container from it, the
//! way containerd's Go client does with `WithCheckpointImagePath` and
//! `WithRestoreImagePath`: no content store in between, the path travels in
//! the task options. containerd 1.7's client sends a runtime not named runc
//! the legacy `containerd.linux.runc.*` option types; 2.x (and 1.7 for runc)
//! sends runc's `containerd.runc.v1.*`.

use crate::containerd::api::{count, pause_between_writes, Api, COUNTER};
use crate::support::cmd::wait_until;
use crate::support::config::IMAGE_CTR;
use crate::support::harness::Daemons;
use containerd_client::services::v1::{CheckpointTaskRequest, CreateTaskRequest, StartRequest};
use containerd_client::tonic::Code;
use containerd_client::types::v1::Status;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::oci::{CheckpointOptions, Options};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(30);
/// The legacy CreateOptions numbers criu_image_path 13 (runc.v1's Options: 10).
const LEGACY_CRIU_IMAGE_PATH: u32 = 13;

/// Whether the Go client of this containerd would send the legacy types.
fn legacy(d: &Daemons) -> bool {
    d.cfg.containerd_version == "1.7" && !d.runtime().starts_with("io.containerd.runc")
}

fn any(type_url: &str, value: Vec<u8>) -> prost_types::Any {
    prost_types::Any {
        type_url: type_url.into(),
        value,
    }
}

/// CheckpointOptions{exit, image_path, work_path}. The legacy message
/// numbers the two paths the other way round (8 work_path, 9 image_path;
/// runc.v1: 8 image_path, 9 work_path), so written with runc.v1's type its
/// fields are swapped, as the Go client's bytes are.
pub fn checkpoint_options(
    d: &Daemons,
    image_path: &Path,
    work_path: Option<&Path>,
    exit: bool,
) -> prost_types::Any {
    let image: String = image_path.to_str().unwrap().into();
    let work: String = work_path
        .map(|w| w.to_str().unwrap().into())
        .unwrap_or_default();
    let (field_8, field_9) = match legacy(d) {
        true => (work, image),
        false => (image, work),
    };
    let o = CheckpointOptions {
        exit,
        image_path: field_8,
        work_path: field_9,
        ..Default::default()
    };
    let url = match legacy(d) {
        true => "containerd.linux.runc.CheckpointOptions",
        false => "containerd.runc.v1.CheckpointOptions",
    };
    any(url, o.write_to_bytes().unwrap())
}

/// The create options that make a task restore from `image_path`.
pub fn restore_options(d: &Daemons, image_path: &Path) -> prost_types::Any {
    let path = image_path.to_str().unwrap();
    if legacy(d) {
        let mut o = Empty::new();
        o.special_fields
            .mut_unknown_fields()
            .add_length_delimited(LEGACY_CRIU_IMAGE_PATH, path.as_bytes().to_vec());
        return any(
            "containerd.linux.runc.CreateOptions",
            o.write_to_bytes().unwrap(),
        );
    }
    let o = Options {
        criu_image_path: path.into(),
        ..Default::default()
    };
    any("containerd.runc.v1.Options", o.write_to_bytes().unwrap())
}

/// Checkpoints the running task `id` into `dir` through the API; `exit`
/// stops it.
pub fn try_checkpoint_into(
    api: &Api,
    d: &Daemons,
    id: &str,
    dir: &Path,
    work: Option<&Path>,
    exit: bool,
) -> Result<(), containerd_client::tonic::Status> {
    let checkpoint = CheckpointTaskRequest {
        container_id: id.into(),
        options: Some(checkpoint_options(d, dir, work, exit)),
        ..Default::default()
    };
    api.try_call(
        "Tasks.Checkpoint",
        api.tasks().checkpoint(api.req(checkpoint)),
    )
    .map(|_| ())
}

/// Creates container `id` with `ctr container create` and its task from the
/// checkpoint in `dir`; returns Tasks.Create's answer (Err: the status).
pub fn create_restored(
    api: &Api,
    d: &Daemons,
    id: &str,
    image: &str,
    dir: &Path,
) -> Result<(), containerd_client::tonic::Status> {
    let create = ["container", "create", "--runtime", d.runtime(), image, id];
    d.ctr(&[&create[..], &["sh", "-c", COUNTER]].concat()).ok();
    let create = CreateTaskRequest {
        container_id: id.into(),
        rootfs: api.rootfs(id),
        options: Some(restore_options(d, dir)),
        ..Default::default()
    };
    api.try_call("Tasks.Create", api.tasks().create(api.req(create)))
        .map(|_| ())
}

/// The task options of a checkpoint through ctr, where they reach the shim:
/// ctr 1.7 sends a runtime not named io.containerd.runc* none at all (its
/// `withCheckpointOpts` is "only suitable for runc runtime now").
fn ctr_passes_image_path(d: &Daemons) -> bool {
    d.cfg.containerd_version != "1.7" || d.runtime().starts_with("io.containerd.runc")
}

/// Starts the counter as `a`; returns a count read once it passed 20.
fn start_counter(d: &Daemons, a: &str, n: &mut u32) -> u64 {
    let run = ["run", "-d", "--runtime", d.runtime(), IMAGE_CTR, a];
    d.ctr(&[&run[..], &["sh", "-c", COUNTER]].concat()).ok();
    wait_until("the counter to pass 20", WAIT, || {
        count(d, a, n).filter(|&c| c > 20)
    })
}

#[test]
fn api_checkpoint_into_an_image_path_restores_a_new_container() {
    let d = Daemons::containerd_only("api_image_path");
    let a = d.name("a");
    let dir = d.path("cp-image");
    let mut n = 0;
    let before = start_counter(&d, &a, &mut n);
    let api = Api::connect(&d);
    let work = work_dir(&dir);
    pause_between_writes(&api, &a);
    if let Err(status) = try_checkpoint_into(&api, &d, &a, &dir, Some(&work), true) {
        panic!("Tasks.Checkpoint into {} failed: {status:?}", dir.display());
    }
    // Only the image path travels to the restore: CRIU's work directory
    // (its log and statistics) is not needed.
    std::fs::remove_dir_all(work_dir(&dir)).unwrap();
    assert_inspectable(&d, &dir);
    // CRIU's raw pages, written straight there (as runc writes them).
    let pages = page_images(&dir);
    assert!(
        !pages.is_empty() && pages.iter().all(|(name, _)| name.ends_with(".img")),
        "not raw page images in {}: {pages:?}",
        dir.display()
    );
    restore_continues(&api, &d, &a, &dir, before, &mut n);
}

/// containerd's own client suite (TestCheckpointRestoreWithImagePath): a
/// checkpoint that leaves the task running, into a directory that does not
/// exist yet; then Kill, Delete, and a new container restored from the
/// path. The task's deletion must not take the checkpoint's record with it.
#[test]
fn api_image_path_checkpoint_outlives_the_deleted_task() {
    let d = Daemons::containerd_only("api_image_path_kept");
    let a = d.name("a");
    let dir = d.path("cr");
    let mut n = 0;
    let before = start_counter(&d, &a, &mut n);
    let api = Api::connect(&d);
    pause_between_writes(&api, &a);
    if let Err(status) = try_checkpoint_into(&api, &d, &a, &dir, None, false) {
        panic!("Tasks.Checkpoint into {} failed: {status:?}", dir.display());
    }
    assert_eq!(
        api.status(&a),
        Status::Paused,
        "the checkpoint left it as it was"
    );
    // The Go client's Checkpoint pauses the task and resumes it after.
    let resume = containerd_client::services::v1::ResumeTaskRequest {
        container_id: a.clone(),
    };
    api.call("Tasks.Resume", api.tasks().resume(api.req(resume)));
    let kill = containerd_client::services::v1::KillRequest {
        container_id: a.clone(),
        signal: libc::SIGKILL as u32,
        ..Default::default()
    };
    api.call("Tasks.Kill", api.tasks().kill(api.req(kill)));
    restore_continues(&api, &d, &a, &dir, before, &mut n);
}

/// Compresses the page images in `dir` and lists them in lazarus.json, as
/// the shim does for the checkpoints containerd copies: an image path may
/// well be such a checkpoint (a Docker checkpoint directory).
fn compress_pages_in(dir: &Path) {
    use lazarus_core::checkpoint::{image::Metadata, pages};
    let mut metadata = Metadata::load(dir).unwrap();
    metadata.compressed_pages = pages::compress_dir(dir).unwrap();
    metadata.save(dir).unwrap();
    let listed = page_images(dir);
    assert!(
        listed.iter().any(|(name, _)| name.ends_with(".img.zst")),
        "the counter's pages did not compress: {listed:?}"
    );
}

#[test]
fn ctr_checkpoint_into_an_image_path_restores_a_new_container() {
    let d = Daemons::containerd_only("ctr_image_path");
    let a = d.name("a");
    let dir = d.path("cp-image");
    // A directory the user made for it, as in the report.
    std::fs::create_dir(&dir).unwrap();
    let mut n = 0;
    let before = start_counter(&d, &a, &mut n);
    let api = Api::connect(&d);
    let path = dir.to_str().unwrap();
    pause_between_writes(&api, &a);
    let out = d.ctr(&["task", "checkpoint", "--exit", "--image-path", path, &a]);
    assert_eq!(out.code, Some(0), "{out}");
    if ctr_passes_image_path(&d) {
        if !d.runtime().starts_with("io.containerd.runc") {
            compress_pages_in(&dir);
        }
        restore_continues(&api, &d, &a, &dir, before, &mut n);
        return;
    }
    // ctr 1.7 and a runtime not named runc: the path (and --exit) never
    // reached the shim. The checkpoint went to the content store, the
    // task stays as it was (paused), and a restore from the empty
    // directory says why.
    assert_eq!(api.status(&a), Status::Paused);
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(
        left.is_empty(),
        "ctr 1.7 sent the image path after all: {left:?}"
    );
    api.kill_and_delete(&a);
    let b = d.name("b");
    let status = create_restored(&api, &d, &b, IMAGE_CTR, &dir)
        .expect_err("a restore from an empty directory must be refused");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    let message = status.message();
    assert!(
        message.contains("directory is empty") && message.contains("ctr 1.7"),
        "the error should say why the directory is empty: {message}"
    );
    let tasks = d.ctr(&["task", "ls", "-q"]).ok();
    assert!(
        !tasks.stdout.contains(&b),
        "a refused restore left a task: {tasks}"
    );
}

/// `lazarus inspect --json` reads the image path: Lazarus's record (with
/// the image identity a restore is checked against) for a Lazarus
/// checkpoint, none for runc's.
fn assert_inspectable(d: &Daemons, dir: &Path) {
    let cli = crate::support::config::lazarus_cli();
    let out = crate::support::cmd::run(
        std::process::Command::new(cli)
            .arg("inspect")
            .arg("--json")
            .arg(dir),
    )
    .ok();
    let v: serde_json::Value =
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    if d.runtime().starts_with("io.containerd.runc") {
        assert!(v["lazarus"].is_null(), "{v:#}");
        return;
    }
    let bin = &v["lazarus"]["image"]["dirs"]["bin"];
    assert!(
        bin["entries"].as_u64() > Some(10),
        "no image identity recorded: {v:#}"
    );
}

/// Where a test puts CRIU's work files, apart from the images.
fn work_dir(image_path: &Path) -> std::path::PathBuf {
    image_path.with_extension("work")
}

/// After the stopping checkpoint of `a` into `dir`: deletes `a`'s task,
/// restores a new container from `dir` and checks that the counter goes
/// on from at least `before`.
fn restore_continues(api: &Api, d: &Daemons, a: &str, dir: &Path, before: u64, n: &mut u32) {
    api.wait_status(a, Status::Stopped);
    assert!(
        dir.join("pstree.img").is_file(),
        "no CRIU images in {}",
        dir.display()
    );
    api.delete(a);
    // Raw pages are read where they lie, compressed ones decompressed
    // elsewhere: the user's directory stays as it was.
    let pages = page_images(dir);
    let b = d.name("b");
    if let Err(status) = create_restored(api, d, &b, IMAGE_CTR, dir) {
        panic!("Tasks.Create from {} failed: {status:?}", dir.display());
    }
    let start = StartRequest {
        container_id: b.clone(),
        ..Default::default()
    };
    let pid = match api.try_call("Tasks.Start", api.tasks().start(api.req(start))) {
        Ok(started) => started.pid,
        Err(status) => {
            let log = crate::support::cmd::criu_log_named_in(status.message());
            panic!("Tasks.Start failed: {status:?}\n{log}")
        }
    };
    assert_ne!(pid, 0, "Tasks.Start returned pid 0");
    // b's rootfs is a new snapshot: its /tmp/count is written by the
    // restored counter only, which goes on from the checkpoint, not from 0.
    let resumed = wait_until("the restored counter to write", WAIT, || count(d, &b, n));
    eprintln!("counter: {before} before the checkpoint, {resumed} restored");
    assert!(
        resumed >= before,
        "restored counter at {resumed}, at least {before} before the checkpoint: not a continuation"
    );
    wait_until("the restored counter to advance", WAIT, || {
        count(d, &b, n).filter(|&c| c > resumed)
    });
    assert_eq!(api.status(&b), Status::Running);
    assert_eq!(
        page_images(dir),
        pages,
        "the restore changed the page images in {}",
        dir.display()
    );
    api.kill_and_delete(&b);
}

/// The page images (`pages-*`) in `dir`, with their sizes, sorted.
fn page_images(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| {
            (
                e.file_name().to_string_lossy().into_owned(),
                e.metadata().unwrap().len(),
            )
        })
        .filter(|(name, _)| name.starts_with("pages-"))
        .collect();
    out.sort();
    out
}
