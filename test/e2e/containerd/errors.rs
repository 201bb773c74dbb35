//! Bad requests: the runtime answers with the gRPC code class runc's shim
//! answers with (as `ctr` shows it), keeps serving, and leaves nothing behind.

use crate::containerd::ctr::{
    assert_no_shims, exec, remove_task, run_detached, task_status, wait_status,
};
use crate::docker::lifecycle::{docker_run_args, run_sh_detached};
use crate::support::cmd::Out;
use crate::support::harness::Daemons;
use serde_json::{json, Value};
use std::fs;
use std::path::PathBuf;

/// errdefs' suffixes, as ctr prints them, and the gRPC code they stand for.
const CLASSES: &[(&str, &str)] = &[
    ("not found", "NotFound"),
    ("already exists", "AlreadyExists"),
    ("failed precondition", "FailedPrecondition"),
    ("invalid argument", "InvalidArgument"),
    ("not implemented", "Unimplemented"),
    ("unavailable", "Unavailable"),
    ("deadline exceeded", "DeadlineExceeded"),
    ("internal", "Internal"),
    ("canceled", "Canceled"),
    ("unknown", "Unknown"),
];

/// The last `ctr: ...` error line of a failed command.
fn ctr_error(out: &Out) -> String {
    let line = out.stderr.lines().rev().find(|l| l.starts_with("ctr: "));
    line.unwrap_or_else(|| panic!("no ctr error line: {out}"))
        .to_string()
}

/// The gRPC code class of a ctr error, when ctr shows it. containerd 1.7's
/// client appends the class of the status code (`...: not found`) to every
/// message. containerd 2.x's client prints the shim's message as it is, so
/// the code cannot be read there (runc's messages happen to end in the class
/// words because Go's errdefs wrapping puts them into the text). The shim
/// maps errors to codes the same way whatever containerd calls it, so 1.7
/// checks the code for both.
fn grpc_class(d: &Daemons, out: &Out) -> Option<&'static str> {
    if d.cfg.containerd_version != "1.7" {
        return None;
    }
    let line = ctr_error(out);
    let found = CLASSES
        .iter()
        .find(|(suffix, _)| line.ends_with(&format!(": {suffix}")));
    Some(found.map_or("Unknown", |c| c.1))
}

/// Asserts `out` failed with an error line containing `words`, and (where
/// ctr shows it) with gRPC code class `class`.
fn assert_error(d: &Daemons, out: &Out, class: &str, words: &str) {
    let out = out.clone().err();
    let line = ctr_error(&out);
    eprintln!("{class}: {line}");
    if let Some(shown) = grpc_class(d, &out) {
        assert_eq!(shown, class, "{out}");
    }
    assert!(line.contains(words), "expected {words:?} in {line:?}");
}

/// The task still runs and its shim still answers an exec.
fn assert_still_serving(d: &Daemons, id: &str, exec_id: &str) {
    assert_eq!(task_status(d, id).as_deref(), Some("RUNNING"));
    let out = exec(d, id, exec_id, &["echo", "alive"]).ok();
    assert_eq!(out.stdout, "alive\n", "{out}");
}

#[test]
fn err_kill_unknown_exec_id() {
    let d = Daemons::containerd_only("err_kill_unknown_exec_id");
    let id = d.name("badexec");
    run_detached(&d, &id, &["sleep", "600"]);
    let out = d.ctr(&["task", "kill", "--exec-id", "nope", &id]);
    assert_error(&d, &out, "NotFound", "nope");
    assert_still_serving(&d, &id, "after");
    remove_task(&d, &id);
}

#[test]
fn err_kill_stopped_task() {
    let d = Daemons::containerd_only("err_kill_stopped_task");
    let id = d.name("stopped");
    run_detached(&d, &id, &["sh", "-c", "exit 0"]);
    wait_status(&d, &id, "STOPPED");
    let out = d.ctr(&["task", "kill", &id]);
    assert_error(&d, &out, "NotFound", "process already finished");
    d.ctr(&["task", "delete", &id]).ok();
    d.ctr(&["container", "rm", &id]).ok();
    assert_no_shims(&d);
}

#[test]
fn err_delete_running_task() {
    let d = Daemons::containerd_only("err_delete_running_task");
    let id = d.name("running");
    run_detached(&d, &id, &["sleep", "600"]);
    let out = d.ctr(&["task", "delete", &id]);
    assert_error(&d, &out, "FailedPrecondition", "running");
    assert_still_serving(&d, &id, "after");
    d.ctr(&["task", "delete", "--force", &id]).ok();
    assert_eq!(task_status(&d, &id), None);
    d.ctr(&["container", "rm", &id]).ok();
    assert_no_shims(&d);
}

#[test]
fn err_exec_errors() {
    let d = Daemons::containerd_only("err_exec_errors");
    let id = d.name("execerr");
    run_detached(&d, &id, &["sleep", "600"]);
    let out = exec(&d, &id, "missing", &["/nonexistent"]);
    assert_error(&d, &out, "Unknown", "no such file or directory");
    let detached = [
        "task",
        "exec",
        "--detach",
        "--exec-id",
        "dup",
        &id,
        "sleep",
        "600",
    ];
    d.ctr(&detached).ok();
    assert_error(&d, &d.ctr(&detached), "AlreadyExists", "dup");
    assert_still_serving(&d, &id, "after");
    remove_task(&d, &id);
}

/// A minimal rootfs (static busybox) for specs given with `ctr run --config`.
fn make_rootfs(d: &Daemons) -> PathBuf {
    let root = d.path("rootfs");
    for dir in ["bin", "proc", "sys", "dev", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    fs::copy("/usr/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    root
}

/// `ctr oci spec`, runnable as is (prints `spec-ok`), then patched.
fn spec_file(d: &Daemons, cid: &str, patch: impl FnOnce(&mut Value)) -> PathBuf {
    let mut spec: Value =
        serde_json::from_str(&d.ctr(&["oci", "spec"]).ok().stdout).expect("spec JSON");
    spec["root"] = json!({ "path": make_rootfs(d) });
    spec["process"]["args"] = json!(["/bin/busybox", "echo", "spec-ok"]);
    spec["process"]["terminal"] = json!(false);
    spec["process"]["env"] = json!(["PATH=/bin"]);
    spec["linux"]["cgroupsPath"] = json!(format!("/{}/{cid}", d.id));
    patch(&mut spec);
    let path = d.path(&format!("{cid}.json"));
    fs::write(&path, serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
    path
}

fn run_spec(d: &Daemons, cid: &str, patch: impl FnOnce(&mut Value)) -> Out {
    let spec = spec_file(d, cid, patch);
    let spec = spec.to_str().unwrap();
    d.ctr(&[
        "run",
        "--rm",
        "--runtime",
        d.runtime(),
        "--config",
        spec,
        cid,
    ])
}

#[test]
fn err_malformed_spec() {
    let d = Daemons::containerd_only("err_malformed_spec");
    // Control: the unpatched spec runs.
    let out = run_spec(&d, &d.name("spec-ok"), |_| {}).ok();
    assert_eq!(out.stdout, "spec-ok\n", "{out}");
    // runc reports a bad spec as Unknown; Lazarus checks the spec before
    // anything runs and says InvalidArgument, the code for a bad request.
    let kind = if d.runtime() == "io.containerd.runc.v2" {
        "Unknown"
    } else {
        "InvalidArgument"
    };
    let out = run_spec(&d, &d.name("noargs"), |s| s["process"]["args"] = json!([]));
    assert_error(&d, &out, kind, "failed to create shim task");
    assert!(
        ctr_error(&out).contains("args"),
        "the error should name process.args: {out}"
    );
    let bad_rlimit = json!([{ "type": "RLIMIT_BOGUS", "hard": 1, "soft": 1 }]);
    let out = run_spec(&d, &d.name("rlimit"), |s| {
        s["process"]["rlimits"] = bad_rlimit
    });
    assert_error(&d, &out, kind, "RLIMIT_BOGUS");
    let ls = d.ctr(&["container", "ls", "-q"]).ok();
    assert_eq!(ls.text(), "", "containers left behind: {ls}");
    assert_no_shims(&d);
}

/// A valid spec with no `process.env` at all and an absolute `args[0]`:
/// runc runs it (no PATH lookup is needed).
#[test]
fn ctr_run_spec_without_env() {
    let d = Daemons::containerd_only("ctr_run_spec_without_env");
    let out = run_spec(&d, &d.name("noenv"), |s| {
        s["process"].as_object_mut().unwrap().remove("env");
    });
    assert_eq!(out.clone().ok().stdout, "spec-ok\n", "{out}");
    assert_no_shims(&d);
}

/// What `docker run` and `docker exec` do with a command that cannot be
/// executed, and the words the runtime's error must contain (Docker turns
/// them into the exit status).
const NOT_EXECUTABLE: &[(&str, i32, &str)] = &[
    ("/nonexistent", 127, "no such file or directory"),
    ("no-such-command", 127, "executable file not found"),
    ("/etc", 126, "permission denied"),
];

#[test]
fn err_docker_not_executable() {
    let d = Daemons::with_docker("err_docker_not_executable");
    let name = d.name("exec");
    run_sh_detached(&d, &name, "sleep 600");
    for &(cmd, run_code, words) in NOT_EXECUTABLE {
        let out = d.docker(&docker_run_args(&d, &["--rm"], &[cmd]));
        assert_eq!(out.code, Some(run_code), "{out}");
        assert!(out.all().contains(words), "expected {words:?}: {out}");
        // docker exec reports every failure to start as 126.
        let out = d.docker(&["exec", &name, cmd]);
        assert_eq!(out.code, Some(126), "{out}");
        assert!(out.all().contains(words), "expected {words:?}: {out}");
    }
    assert_eq!(
        crate::support::harness::inspect(&d, &name, "{{.State.Status}}"),
        "running"
    );
    d.docker(&["rm", "-f", &name]).ok();
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.text(), "", "containers left behind: {ps}");
}

/// A bad `io.lazarus.checkpoint.*` annotation is refused when the container
/// is created, naming the annotation, not at its first checkpoint days
/// later. runc does not know these annotations and runs the container.
#[test]
fn err_docker_bad_lazarus_annotation_refused_at_run() {
    let d = Daemons::with_docker("err_docker_bad_lazarus_annotation_refused_at_run");
    let lazarus = d.is_lazarus();
    let cases = [
        (
            "io.lazarus.checkpoint.exit=maybe",
            "io.lazarus.checkpoint.exit",
        ),
        (
            "io.lazarus.checkpoint.tcp-establised=true",
            "unknown annotation io.lazarus.checkpoint.tcp-establised",
        ),
    ];
    for (i, (annotation, words)) in cases.iter().enumerate() {
        let name = d.name(&format!("ann{i}"));
        let flags = ["-d", "--name", &name, "--annotation", annotation];
        let out = d.docker(&docker_run_args(&d, &flags, &["sleep", "600"]));
        if lazarus {
            assert_ne!(out.code, Some(0), "{annotation} was accepted: {out}");
            assert!(out.all().contains(words), "expected {words:?}: {out}");
            assert_ne!(
                crate::support::harness::inspect(&d, &name, "{{.State.Status}}"),
                "running"
            );
        } else {
            out.ok();
        }
        d.docker(&["rm", "-f", &name]).ok();
    }
    let ps = d.docker(&["ps", "-aq"]).ok();
    assert_eq!(ps.text(), "", "containers left behind: {ps}");
    // A good annotation still runs.
    let name = d.name("good");
    let flags = [
        "-d",
        "--name",
        &name,
        "--annotation",
        "io.lazarus.checkpoint.exit=false",
    ];
    d.docker(&docker_run_args(&d, &flags, &["sleep", "600"]))
        .ok();
    assert_eq!(
        crate::support::harness::inspect(&d, &name, "{{.State.Status}}"),
        "running"
    );
    d.docker(&["rm", "-f", &name]).ok();
}
