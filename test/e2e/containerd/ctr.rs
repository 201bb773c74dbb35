//! `ctr run`, `ctr task` against the runtime under test.

use crate::support::cmd::{poll, wait_until, Out, Proc, CMD_TIMEOUT};
use crate::support::config::IMAGE_CTR;
use crate::support::harness::Daemons;
use std::time::{Duration, Instant};

/// `ctr run --runtime RT FLAGS IMAGE ID ARGS` as a command line.
pub fn ctr_run_args<'a>(
    d: &'a Daemons,
    flags: &[&'a str],
    id: &'a str,
    args: &[&'a str],
) -> Vec<&'a str> {
    let mut v = vec!["run", "--runtime", d.runtime()];
    v.extend_from_slice(flags);
    v.push(IMAGE_CTR);
    v.push(id);
    v.extend_from_slice(args);
    v
}

/// Starts a detached task running `args`.
pub fn run_detached(d: &Daemons, id: &str, args: &[&str]) {
    d.ctr(&ctr_run_args(d, &["-d"], id, args)).ok();
}

/// The STATUS column of `ctr task ls` for `id`, if listed.
pub fn task_status(d: &Daemons, id: &str) -> Option<String> {
    let out = d.ctr(&["task", "ls"]).ok();
    out.stdout.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        (cols.first() == Some(&id)).then(|| cols.last().unwrap().to_string())
    })
}

pub fn wait_status(d: &Daemons, id: &str, status: &str) {
    let what = format!("task {id} to be {status}");
    wait_until(&what, Duration::from_secs(20), || {
        (task_status(d, id).as_deref() == Some(status)).then_some(())
    });
}

/// Kills (SIGKILL) a task, waits for it to stop, deletes it and its container.
pub fn remove_task(d: &Daemons, id: &str) {
    d.ctr(&["task", "kill", "-s", "KILL", id]).ok();
    wait_status(d, id, "STOPPED");
    d.ctr(&["task", "delete", id]).ok();
    d.ctr(&["container", "rm", id]).ok();
    assert_eq!(task_status(d, id), None, "task {id} still listed");
}

/// Asserts that no shim process serves this containerd any more.
pub fn assert_no_shims(d: &Daemons) {
    let left = poll(Duration::from_secs(10), || {
        let pids = d.shim_pids();
        pids.is_empty().then_some(())
    });
    assert!(
        left.is_some(),
        "shim processes left behind: {:?}",
        d.shim_pids()
    );
}

fn assert_no_container(d: &Daemons, id: &str) {
    let out = d.ctr(&["container", "ls", "-q"]).ok();
    assert!(
        !out.stdout.lines().any(|l| l == id),
        "container {id} left behind: {out}"
    );
}

/// `ctr exec --exec-id EXEC ID ARGS`.
pub fn exec(d: &Daemons, id: &str, exec_id: &str, args: &[&str]) -> Out {
    let mut v = vec!["task", "exec", "--exec-id", exec_id, id];
    v.extend_from_slice(args);
    d.ctr(&v)
}

/// ctr sets up "close the task's stdin at EOF" only once the task (or exec
/// process) exists; an EOF read before that is lost and `cat` never ends.
/// So input is written once `ready` says the process runs.
fn run_with_late_stdin(d: &Daemons, args: &[&str], input: &[u8], ready: impl FnOnce()) -> Out {
    let mut p = Proc::spawn_piped(&mut d.ctr_cmd(args));
    ready();
    p.feed(input);
    p.wait(CMD_TIMEOUT)
}

#[test]
fn ctr_run_echo() {
    let d = Daemons::containerd_only("ctr_run_echo");
    let id = d.name("echo");
    let out = d
        .ctr(&ctr_run_args(&d, &["--rm"], &id, &["echo", "hello"]))
        .ok();
    assert_eq!(out.stdout, "hello\n", "{out}");
    assert_no_container(&d, &id);
    assert_no_shims(&d);
}

#[test]
fn ctr_run_stdin() {
    let d = Daemons::containerd_only("ctr_run_stdin");
    let id = d.name("stdin");
    let args = ctr_run_args(&d, &["--rm"], &id, &["cat"]);
    let out = run_with_late_stdin(&d, &args, b"data\nmore data\n", || {
        wait_status(&d, &id, "RUNNING")
    })
    .ok();
    assert_eq!(out.stdout, "data\nmore data\n", "{out}");
    assert_no_container(&d, &id);
}

#[test]
fn ctr_run_tty() {
    let d = Daemons::containerd_only("ctr_run_tty");
    let id = d.name("tty");
    let argv = Daemons::argv(&d.ctr_cmd(&ctr_run_args(&d, &["--rm", "-t"], &id, &["sh"])));
    crate::support::tty::interactive_sh(&d, "ctr", argv);
    assert_no_container(&d, &id);
}

#[test]
fn ctr_run_exit_code() {
    let d = Daemons::containerd_only("ctr_run_exit_code");
    let id = d.name("exit");
    let out = d.ctr(&ctr_run_args(&d, &["--rm"], &id, &["sh", "-c", "exit 3"]));
    assert_eq!(out.code, Some(3), "{out}");
    assert_no_container(&d, &id);
}

#[test]
fn ctr_task_ls_states() {
    let d = Daemons::containerd_only("ctr_task_ls_states");
    let id = d.name("states");
    run_detached(&d, &id, &["sleep", "600"]);
    assert_eq!(task_status(&d, &id).as_deref(), Some("RUNNING"));
    d.ctr(&["task", "pause", &id]).ok();
    assert_eq!(task_status(&d, &id).as_deref(), Some("PAUSED"));
    d.ctr(&["task", "resume", &id]).ok();
    assert_eq!(task_status(&d, &id).as_deref(), Some("RUNNING"));
    d.ctr(&["task", "kill", "-s", "KILL", &id]).ok();
    wait_status(&d, &id, "STOPPED");
    d.ctr(&["task", "delete", &id]).ok();
    assert_eq!(task_status(&d, &id), None);
    d.ctr(&["container", "rm", &id]).ok();
    assert_no_shims(&d);
}

#[test]
fn ctr_task_exec() {
    let d = Daemons::containerd_only("ctr_task_exec");
    let id = d.name("exec");
    run_detached(&d, &id, &["sleep", "600"]);
    let out = exec(&d, &id, "x1", &["sh", "-c", "echo in-exec; exit 4"]);
    assert_eq!(
        (out.code, out.stdout.as_str()),
        (Some(4), "in-exec\n"),
        "{out}"
    );
    let args = ["task", "exec", "--exec-id", "x2", &id, "cat"];
    let out = run_with_late_stdin(&d, &args, b"via-exec-stdin\n", || {
        let what = format!("exec x2 to appear in `ctr task ps {id}`");
        wait_until(&what, Duration::from_secs(20), || {
            let ps = d.ctr(&["task", "ps", &id]).ok();
            (ps.stdout.lines().count() >= 3).then_some(())
        })
    })
    .ok();
    assert_eq!(out.stdout, "via-exec-stdin\n", "{out}");
    assert_private_state(&d, &id);
    remove_task(&d, &id);
}

/// The runtime's state is root's alone: runc writes its state.json 0600;
/// Lazarus's directory is 0700 and both of libcontainer's files 0600.
fn assert_private_state(d: &Daemons, id: &str) {
    use std::os::unix::fs::PermissionsExt;
    let c = crate::support::leaks::Container {
        ns: d.id.clone(),
        id: id.to_string(),
        rootfs: None,
    };
    let dir = c.state_dir(d);
    let mode = |p: &std::path::Path| {
        let meta = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        meta.permissions().mode() & 0o777
    };
    let mut files = vec!["state.json"];
    if d.is_lazarus() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        files.push("youki_config.json");
    }
    for file in files {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file} in {}", dir.display());
    }
}

/// Whether a CRIU started (directly or through runc) by one of this daemon
/// set's shims is running. Other tests' CRIUs on the host do not count.
fn criu_running(d: &Daemons) -> bool {
    !crate::support::leaks::criu_pids(d).is_empty()
}

/// The lock test: a CRIU dump of 1 GiB of touched memory takes up
/// to seconds; meanwhile `ctr task ls` (a State call to the shim) must answer
/// at once. Lazarus runs the dump under the container's Checkpointing
/// state, not a lock. runc's shim holds the process's lock across the dump
/// and State waits for it: for runc that is what is asserted.
#[test]
fn ctr_task_ls_answers_during_a_checkpoint() {
    let d = Daemons::containerd_only("ctr_ls_during_checkpoint");
    let id = d.name("mem");
    run_detached(&d, &id, &["memhog", "1024"]);
    wait_until("memhog to touch 1 GiB", Duration::from_secs(120), || {
        let out = exec(&d, &id, "rss", &["grep", "VmRSS", "/proc/1/status"]);
        let kib: u64 = out.stdout.split_whitespace().nth(1)?.parse().ok()?;
        (kib >= 1 << 20).then_some(())
    });
    let mut checkpoint = Proc::spawn(&mut d.ctr_cmd(&["task", "checkpoint", &id]));
    wait_until("CRIU to start dumping", Duration::from_secs(30), || {
        criu_running(&d).then_some(())
    });
    // (time of `ctr task ls`, status it showed, CRIU running both before and
    // after it: a listing that overlapped the dump). Listed back to back for
    // as long as the checkpoint command runs: an unloaded host dumps 1 GiB
    // in well under a second, and a gap between CRIU's processes must not
    // end the listing early.
    let mut polls = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while polls.len() < 8 && Instant::now() < deadline && checkpoint.running() {
        let before = criu_running(&d);
        let t = Instant::now();
        let status = task_status(&d, &id);
        let took = t.elapsed();
        polls.push((took, status, before && criu_running(&d)));
    }
    let out = checkpoint
        .wait_or_kill(Duration::from_secs(180))
        .unwrap_or_else(|out| panic!("checkpoint did not finish: {out}"));
    eprintln!("{} during the dump: {polls:?}", d.runtime());
    assert_eq!(out.code, Some(0), "{out}");
    if d.is_lazarus() {
        let during: Vec<_> = polls.iter().filter(|p| p.2).collect();
        assert!(
            !during.is_empty(),
            "no listing overlapped the dump: {polls:?}"
        );
        for (took, _, _) in &polls {
            assert!(
                *took < Duration::from_secs(1),
                "ctr task ls took {took:?}: {polls:?}"
            );
        }
        // ctr (containerd's client) pauses the task around the dump.
        for (_, status, _) in &during {
            assert_eq!(status.as_deref(), Some("PAUSED"), "{polls:?}");
        }
    } else {
        // runc's State waits for the dump: a listing started while CRIU
        // runs returns once CRIU is gone (containerd 1.7), or shows UNKNOWN
        // when containerd gives up on the shim after 2 s (2.1). It never
        // shows the task's status during the dump.
        let answered = polls
            .iter()
            .any(|(_, status, dumping)| *dumping && status.as_deref() != Some("UNKNOWN"));
        assert!(!answered, "runc's shim answered during the dump: {polls:?}");
    }
    assert_eq!(task_status(&d, &id).as_deref(), Some("RUNNING"));
    remove_task(&d, &id);
}
