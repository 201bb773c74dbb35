//! Consistent group checkpoints: `lazarus checkpoint --group A B ...`
//! freezes every member before it dumps any, and stops them all or thaws
//! them all; `restore --import` of the group brings them all back. The
//! case that needs it: an app holding a TCP connection to Redis on the
//! same Docker network, writing every 100 ms, that must not notice.

use crate::archive::export_import::assert_cli_left_nothing;
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::faults::cli_kills::paused_in_containerd;
use crate::faults::kills::{memhog, start_memhog};
use crate::support::apps::{with_docker_and, App, REDIS_IMAGE};
use crate::support::cmd::{poll, wait_until, COUNTER};
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use crate::support::lazarus::{lazarus, lazarus_cmd};
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock;
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

/// Docker Compose's project label: the test's containers carry it as if
/// Compose had made them (project = the daemon set's id).
const COMPOSE_PROJECT: &str = "com.docker.compose.project";

/// Redis at `<prefix>.2` and, at `<prefix>.3`, a client holding one TCP
/// connection to it that sends `INCR n` every 100 ms (counting each send
/// in /sent) and appends every reply to /replies; if the connection ever
/// closes it writes `closed` there.
fn start_app_and_redis(d: &Daemons, redis: &str, app: &str) {
    start_app_and_redis_with(d, redis, app, &[]);
}

/// As `start_app_and_redis`, with `redis_flags` for Redis's `docker run`
/// (a volume, say).
pub(crate) fn start_app_and_redis_with(d: &Daemons, redis: &str, app: &str, redis_flags: &[&str]) {
    let (net, prefix) = d.bridge_network();
    let project = format!("{COMPOSE_PROJECT}={}", d.id);
    let ip = |n: u8| format!("{prefix}.{n}");
    // `docker run -d` on the network at a fixed address, in the project.
    let run = |name: &str, address: &str, image_and_cmd: &[&str]| {
        let mut args = vec!["run", "-d", "--runtime", d.runtime(), "--name", name];
        args.extend(["--label", &project, "--network", &net, "--ip", address]);
        args.extend(image_and_cmd);
        d.docker(&args).ok();
    };
    let mut redis_args = redis_flags.to_vec();
    redis_args.push(REDIS_IMAGE);
    run(redis, &ip(2), &redis_args);
    wait_until("redis to answer", Duration::from_secs(30), || {
        let out = d.docker(&["exec", redis, "redis-cli", "PING"]);
        (out.text() == "PONG").then_some(())
    });
    let client = format!(
        ": > /replies; : > /sent; \
         (while true; do echo 'INCR n'; echo x >> /sent; sleep 0.1; done) | nc {redis_ip} 6379 >> /replies; \
         echo closed >> /replies; sleep 1000",
        redis_ip = ip(2)
    );
    run(app, &ip(3), &[IMAGE_DOCKER, "sh", "-c", &client]);
}

/// The client's replies so far (`:1`, `:2`, ...), and its sends.
pub(crate) fn replies(d: &Daemons, app: &str) -> (Vec<String>, usize) {
    let out = d.docker(&[
        "exec",
        app,
        "sh",
        "-c",
        "tr -d '\\r' < /replies; echo ==; wc -l < /sent",
    ]);
    let text = out.stdout;
    let (r, s) = text.split_once("==\n").unwrap_or((&text, "0"));
    let lines = r.lines().map(str::to_string).collect();
    (lines, s.trim().parse().unwrap_or(0))
}

/// Every reply is the next integer and nothing closed the connection;
/// returns how many.
pub(crate) fn assert_replies_unbroken(d: &Daemons, app: &str) -> usize {
    let (lines, _) = replies(d, app);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(
            l,
            &format!(":{}", i + 1),
            "reply {} of the held connection is wrong (a lost or repeated write, or the \
             connection closed): {:?}",
            i + 1,
            &lines[i.saturating_sub(3)..(i + 3).min(lines.len())]
        );
    }
    lines.len()
}

pub(crate) fn wait_replies(d: &Daemons, app: &str, at_least: usize) {
    let got = poll(Duration::from_secs(60), || {
        (replies(d, app).0.len() >= at_least).then_some(())
    });
    if got.is_none() {
        let (lines, sent) = replies(d, app);
        let tail = &lines[lines.len().saturating_sub(5)..];
        let sockets = d.docker(&["exec", app, "cat", "/proc/net/tcp"]);
        panic!(
            "{app} has {} replies, not {at_least}, after 60 s ({sent} sent; last: {tail:?}); \
             its TCP sockets:\n{}",
            lines.len(),
            sockets.stdout
        );
    }
}

/// Whether the container's network namespace still holds Lazarus's group
/// lock (lazarus-core's host::netlock rules).
fn locked(d: &Daemons, name: &str) -> bool {
    let pid = inspect(d, name, "{{.State.Pid}}");
    let netns = PathBuf::from(format!("/proc/{pid}/ns/net"));
    netlock::is_locked(&netns, &DirectWait).unwrap_or(false)
}

/// Every reply is the next integer and 30 more arrive after `before`;
/// every send gets its reply (the client's sends and replies meet within
/// 10 s: a lost write would leave them apart for good); Redis's `n` lies
/// between the replies seen before and after reading it (at most two in
/// flight). Read in that order, so a loaded host cannot fail it.
pub(crate) fn assert_connection_went_on(d: &Daemons, redis: &str, app: &str, before: usize) {
    wait_replies(d, app, before + 30);
    let seen = assert_replies_unbroken(d, app);
    let value = d
        .docker(&["exec", redis, "redis-cli", "GET", "n"])
        .ok()
        .text()
        .parse::<usize>()
        .unwrap();
    let after = assert_replies_unbroken(d, app);
    assert!(
        seen <= value && value <= after + 2,
        "redis has n={value}, the client saw {seen} replies before and {after} after"
    );
    let met = poll(Duration::from_secs(10), || {
        let (lines, sent) = replies(d, app);
        (sent >= lines.len() && sent <= lines.len() + 2).then_some(())
    });
    let (lines, sent) = replies(d, app);
    assert!(
        met.is_some(),
        "{sent} sends for {} replies: writes went unanswered",
        lines.len()
    );
}

fn running(d: &Daemons, name: &str) -> bool {
    inspect(d, name, "{{.State.Running}} {{.State.Paused}}") == "true false"
}

#[test]
fn group_checkpoint_keeps_an_apps_connection_to_redis() {
    let d = with_docker_and("group_tcp", &[App::Redis]);
    let (redis, app) = (d.name("redis"), d.name("app"));
    start_app_and_redis(&d, &redis, &app);
    wait_replies(&d, &app, 20);
    let archive = d.path("shop.tar");
    let archive_s = archive.to_str().unwrap();
    // As Compose made them: the project's containers, oldest first.
    let args = [
        "checkpoint",
        "--compose",
        &d.id,
        "--tcp-established",
        "--export",
        archive_s,
        "--json",
    ];
    if !d.is_lazarus() {
        let out = lazarus(&d, &args).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        assert!(!archive.exists());
        assert!(running(&d, &redis) && running(&d, &app));
        let before = replies(&d, &app).0.len();
        wait_replies(&d, &app, before + 5);
        return;
    }
    let before = assert_replies_unbroken(&d, &app);
    let out = lazarus(&d, &args).ok();
    let report: Value = serde_json::from_str(&out.stdout).expect("--json");
    assert_eq!(
        report["members"].as_array().map(Vec::len),
        Some(2),
        "{report}"
    );
    assert_eq!(report["stopped"], true);
    let mode = fs::metadata(&archive).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    for name in [&redis, &app] {
        assert_eq!(inspect(&d, name, "{{.State.Running}}"), "false", "{name}");
    }
    eprintln!(
        "group frozen {:.3} s (freeze {:.3} s); {before} replies shortly before it",
        report["frozen_seconds"].as_f64().unwrap_or(-1.0),
        report["freeze_seconds"].as_f64().unwrap_or(-1.0)
    );
    let shown = lazarus(&d, &["inspect", archive_s]).ok();
    for name in [&redis, &app] {
        assert!(shown.stdout.contains(name.as_str()), "{shown}");
    }
    d.docker(&["rm", &redis, &app]).ok();

    let out = lazarus(&d, &["restore", "--import", archive_s]).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [redis.as_str(), app.as_str()]
    );
    assert!(running(&d, &redis) && running(&d, &app));
    // The same connection goes on: the replies continue where they were,
    // one per send, none lost, none twice, never closed.
    assert_connection_went_on(&d, &redis, &app, before);
    assert!(
        !locked(&d, &redis) && !locked(&d, &app),
        "a network lock was left"
    );

    // Again with the client first, the harder order: restored first, it
    // writes at once, into a network where Redis is not back yet. The
    // group's network lock holds both until both are back.
    let before = assert_replies_unbroken(&d, &app);
    // A failed second round must not pass on the first round's file.
    fs::remove_file(&archive).unwrap();
    let args = [
        "checkpoint",
        "--group",
        &app,
        &redis,
        "--tcp-established",
        "--export",
        archive_s,
    ];
    lazarus(&d, &args).ok();
    d.docker(&["rm", &redis, &app]).ok();
    let out = lazarus(&d, &["restore", "--import", archive_s]).ok();
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        [app.as_str(), redis.as_str()]
    );
    assert_connection_went_on(&d, &redis, &app, before);
    assert!(
        !locked(&d, &redis) && !locked(&d, &app),
        "a network lock was left"
    );
    assert_cli_left_nothing(&d);
}

#[test]
fn a_failed_group_member_leaves_every_member_running() {
    let d = with_docker_and("group_fail", &[App::Redis]);
    let (counter, redis, app) = (d.name("counter"), d.name("redis"), d.name("app"));
    run_sh_detached(&d, &counter, COUNTER);
    start_app_and_redis(&d, &redis, &app);
    wait_replies(&d, &app, 10);
    let archive = d.path("shop.tar");
    // No --tcp-established: Redis's dump fails on its connection, after
    // the counter's succeeded and while the whole group is frozen.
    let out = lazarus(
        &d,
        &[
            "checkpoint",
            "--group",
            &counter,
            &redis,
            &app,
            "--export",
            archive.to_str().unwrap(),
        ],
    )
    .err();
    let want = match d.is_lazarus() {
        true => "every member was thawed and runs on",
        false => "not Lazarus",
    };
    assert!(out.stderr.contains(want), "{out}");
    if d.is_lazarus() {
        assert!(
            out.stderr.contains(&format!("group checkpoint: {redis}")),
            "{out}"
        );
    }
    assert!(!archive.exists(), "an archive was written");
    for name in [&counter, &redis, &app] {
        assert!(running(&d, name), "{name} is not running unpaused");
        assert!(!locked(&d, name), "{name}'s network is still locked");
    }
    let tick = wait_ticks_past(&d, &counter, 0);
    wait_ticks_past(&d, &counter, tick);
    let before = assert_replies_unbroken(&d, &app);
    let moved = poll(Duration::from_secs(10), || {
        (replies(&d, &app).0.len() > before + 5).then_some(())
    });
    assert!(
        moved.is_some(),
        "the app's connection stopped after the failed group checkpoint"
    );
    assert_replies_unbroken(&d, &app);
    assert_cli_left_nothing(&d);
}

/// `lazarus` killed while it holds the group frozen (the second member's
/// 1 GiB dump under way): its guard, a process of its own, unlocks and
/// thaws both members, and both run on.
#[test]
fn a_killed_group_checkpoint_leaves_every_member_running() {
    let d = with_docker_and("group_killed", &[App::Redis]);
    let (counter, hog) = (d.name("counter"), d.name("hog"));
    run_sh_detached(&d, &counter, COUNTER);
    start_memhog(&d, &hog, 1024);
    let archive = d.path("killed.tar");
    let log = d.path("killed-cli.log");
    let mut cli = lazarus_cmd(&d)
        .args(["checkpoint", "--group", &counter, &hog, "--export"])
        .arg(&archive)
        .stdout(Stdio::null())
        .stderr(fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    if !d.is_lazarus() {
        let status = cli.wait().unwrap();
        assert!(!status.success());
        assert!(fs::read_to_string(&log).unwrap().contains("not Lazarus"));
    } else {
        // Both frozen, the hog's dump running: kill the client.
        let frozen = poll(Duration::from_secs(60), || {
            let paused = |n: &str| paused_in_containerd(&d, &container_id(&d, n));
            (paused(&counter) && paused(&hog) && !d.processes_named("criu").is_empty())
                .then_some(())
        });
        assert!(
            frozen.is_some(),
            "the group never froze with a dump under way"
        );
        cli.kill().unwrap();
        cli.wait().unwrap();
        let killed = std::time::Instant::now();
        for name in [&counter, &hog] {
            let thawed = poll(Duration::from_secs(120), || {
                (running(&d, name) && !locked(&d, name)).then_some(())
            });
            assert!(
                thawed.is_some(),
                "{name} stayed frozen or locked after its client died"
            );
        }
        eprintln!(
            "both members thawed and unlocked {:?} after the kill",
            killed.elapsed()
        );
        let said = fs::read_to_string(&log).unwrap();
        assert!(
            said.contains("group-guard"),
            "the guard did not say it acted: {said}"
        );
        assert!(!archive.exists());
    }
    let tick = wait_ticks_past(&d, &counter, 0);
    wait_ticks_past(&d, &counter, tick);
    let hog_ticks = memhog(&d, &hog).len();
    wait_until("the hog to tick on", Duration::from_secs(60), || {
        (memhog(&d, &hog).len() > hog_ticks).then_some(())
    });
}

fn container_id(d: &Daemons, name: &str) -> String {
    inspect(d, name, "{{.Id}}")
}
