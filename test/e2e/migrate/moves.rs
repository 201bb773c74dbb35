//! `lazarus migrate` between two "hosts" (private daemon sets, each with
//! its own containerd, dockerd, roots and sockets), host B running
//! `lazarus serve` on a loopback port, both holding one key file.
//!
//! What must hold: the container arrives running, counting on from where it
//! stopped, with its files; a refusal costs the source nothing; a failure
//! after the source was stopped brings it back running, unbroken; nothing
//! is left on the receiving host. Under runc there is nothing to migrate:
//! the CLI refuses by runtime and the container runs on.

use crate::archive::export_import::{
    assert_cli_left_nothing, assert_counts_on, cli_leftovers, docker_names, start_ctr_counter,
};
use crate::checkpoint::apps::{
    assert_held_connection_survived, load_keys, redis_cli, sample, seed,
    start_redis_with_held_client, KEYS,
};
use crate::containerd::ctr::{exec, task_status, wait_status};
use crate::docker::lifecycle::{run_sh_detached, wait_logs, wait_ticks_past};
use crate::faults::criu_deadline::SilentCriu;
use crate::support::apps::{with_docker_and, with_docker_and_with, App};
use crate::support::cmd::{poll, ticks, wait_until, Out, COUNTER};
use crate::support::harness::inspect;
use crate::support::harness::{Daemons, Setup};
use crate::support::lazarus::{keygen, lazarus, lazarus_cmd, write_cli_config, Serve, B_HOST};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Stdio};
use std::time::Duration;

pub fn last_tick(d: &Daemons, name: &str) -> u64 {
    *ticks(&d.docker(&["logs", name]).ok().stdout)
        .last()
        .expect("ticks")
}

/// `lazarus migrate NAME --to TO --key KEY EXTRA...` on host `a`.
pub fn migrate(a: &Daemons, name: &str, to: &str, key: &str, extra: &[&str]) -> Out {
    let mut args = vec!["migrate", name, "--to", to, "--key", key];
    args.extend_from_slice(extra);
    lazarus(a, &args)
}

/// Under runc: refused by runtime before any connection (the address is
/// never dialled).
pub fn assert_refused_by_runtime(a: &Daemons, name: &str, key: &str, extra: &[&str]) {
    let out = migrate(a, name, "127.0.0.1:1", key, extra).err();
    assert!(out.stderr.contains("not Lazarus"), "{out}");
}

/// Under runc: refused by runtime, and the counter runs on.
fn assert_runc_refused(a: &Daemons, name: &str, key: &str) {
    assert_refused_by_runtime(a, name, key, &[]);
    wait_ticks_past(a, name, last_tick(a, name) + 2);
}

/// Every tick of `name` on `d` so far is one unbroken run 0, 1, 2, ...
fn assert_unbroken(d: &Daemons, name: &str) {
    let all = ticks(&d.docker(&["logs", name]).ok().stdout);
    for (i, t) in all.iter().enumerate() {
        assert_eq!(
            *t, i as u64,
            "{name}: ticks are not one unbroken run: {all:?}"
        );
    }
}

/// A Docker counter that changed its files moves from A to B, B's agent
/// listening in a network namespace of its own behind a veth pair: running
/// there under its name, Lazarus's runtime, counting on from where it
/// stopped, with its files; stopped on A; the agent logged it; no scratch
/// left on either host. Then a second one with --rm and --name.
#[test]
fn migrate_moves_a_docker_counter_and_its_files() {
    let a = Daemons::with_docker("migrate_docker_a");
    let b = Daemons::with_docker_with("migrate_docker_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let name = a.name("counter");
    run_sh_detached(
        &a,
        &name,
        &format!("echo made > /made.txt; rm /bin/vi; {COUNTER}"),
    );
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        return assert_runc_refused(&a, &name, &key);
    }
    let serve = Serve::start(&b, &key);
    assert!(
        serve.addr.starts_with(&b.netns().unwrap().inside),
        "{}",
        serve.addr
    );
    // One agent per host (work root).
    let second = lazarus(&b, &["serve", "--listen", "127.0.0.1:0", "--key", &key]).err();
    assert!(
        second.stderr.contains("another `lazarus serve`"),
        "{second}"
    );

    let out = migrate(&a, &name, &serve.addr, &key, &["--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    // Both hosts can: post-copy by default, the memory followed.
    assert_eq!(v["mode"], "postcopy", "{v:#}");
    assert!(v["memory_seconds"].as_f64().is_some(), "{v:#}");
    assert_eq!(v["restored"]["name"], name.as_str(), "{v:#}");
    assert_eq!(v["restored"]["engine"], "docker", "{v:#}");
    assert_eq!(v["source"], "stopped", "{v:#}");
    let downtime = v["downtime_seconds"].as_f64().unwrap();
    let restore = v["restore_seconds"].as_f64().unwrap();
    assert!(downtime > restore && restore > 0.0, "{v:#}");
    eprintln!("migrate: downtime {downtime:.3}s, restore on B {restore:.3}s");

    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "false");
    assert_counts_on(&b, &name, last_tick(&a, &name));
    let files = b
        .docker(&[
            "exec",
            &name,
            "sh",
            "-c",
            "cat /made.txt; test ! -e /bin/vi && echo vi-gone",
        ])
        .ok();
    assert_eq!(files.stdout, "made\nvi-gone\n", "{files}");
    assert_eq!(
        inspect(&b, &name, "{{.HostConfig.Runtime}}"),
        "io.containerd.lazarus.v2"
    );
    assert!(
        serve.log().contains(&format!("{name} runs here")),
        "{}",
        serve.log()
    );
    // B is a host of its own: the shim that restored the container (and
    // ran CRIU there) lives in B's network namespace.
    let b_net = b.netns().unwrap();
    let shims = b.shim_pids();
    assert!(!shims.is_empty(), "no shim on B");
    for p in shims {
        assert!(b_net.holds(p), "B's shim {p} is not in B's network");
    }

    // Again under another name, the source removed.
    let second = a.name("second");
    let there = b.name("second-there");
    run_sh_detached(&a, &second, COUNTER);
    wait_ticks_past(&a, &second, 2);
    let out = migrate(
        &a,
        &second,
        &serve.addr,
        &key,
        &["--rm", "--name", &there, "--mode", "stopcopy"],
    )
    .ok();
    assert!(out.stdout.contains("downtime"), "{out}");
    assert!(
        !docker_names(&a).contains(&second),
        "--rm left {second} on A"
    );
    wait_logs(&b, &there, "ticks on B", |l| ticks(l).len() >= 2);

    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
    for n in docker_names(&b) {
        b.docker(&["rm", "-f", &n]).ok();
    }
}

/// A containerd container (ctr, no Docker) moves into host B's namespace
/// through containerd's API, with --rm.
#[test]
fn migrate_moves_a_containerd_container() {
    let a = Daemons::containerd_only("migrate_ctr_a");
    let b = Daemons::containerd_only_with("migrate_ctr_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let id = a.name("c");
    let count = start_ctr_counter(&a, &id);
    let extra = ["--namespace", &a.id, "--to-namespace", &b.id, "--rm"];
    if !a.is_lazarus() {
        assert_refused_by_runtime(&a, &id, &key, &extra);
        assert_eq!(task_status(&a, &id).as_deref(), Some("RUNNING"));
        return;
    }
    let serve = Serve::start(&b, &key);
    let before = count(&a, "c1");
    migrate(&a, &id, &serve.addr, &key, &extra).ok();
    wait_status(&b, &id, "RUNNING");
    wait_until("the count to go on on B", Duration::from_secs(20), || {
        (count(&b, "b0") > before + 2).then_some(())
    });
    let made = exec(&b, &id, "b1", &["cat", "/made.txt"]).ok();
    assert_eq!(made.stdout, "made\n");
    let left = a.ctr(&["containers", "ls", "-q"]).ok();
    assert!(!left.stdout.contains(&id), "--rm left {id} on A: {left}");
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
}

/// Every failure leaves the source running: a peer with another key
/// (refused and logged by the agent, before anything stops); a name taken
/// on B (refused before anything stops); B's restore failing after the
/// source was stopped (B's CRIU is a stand-in that exits at once): the
/// source is restored in place and counts on unbroken, and B keeps nothing.
#[test]
fn migrate_failures_leave_the_source_running() {
    let stand_in_dir = tempfile::tempdir().unwrap();
    let failing = stand_in_dir.path().join("failing-criu");
    let no_page_server = stand_in_dir.path().join("no-page-server");
    // It passes the agent's `criu check` (so post-copy is offered), runs
    // the real page server (stop-copy's receiving half, unless told not
    // to) and fails everything else: B's restores.
    fs::write(
        &failing,
        format!(
            "#!/bin/sh\n[ \"$1\" = check ] && exit 0\n\
             [ \"$1\" = page-server ] && [ ! -e {no_page_server:?} ] && exec criu \"$@\"\n\
             exit 1\n"
        ),
    )
    .unwrap();
    fs::set_permissions(&failing, fs::Permissions::from_mode(0o755)).unwrap();
    let a = Daemons::with_docker("migrate_fail_a");
    let b = Daemons::with_docker_with(
        "migrate_fail_b",
        &Setup {
            lazarus_config: Some(format!("criu_path = {failing:?}\n")),
            ..B_HOST
        },
    );
    // B's agent runs the stand-in too (its page server).
    write_cli_config(&b, &format!("criu_path = {failing:?}\n"));
    let key = keygen(&a, "migration.key");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        return assert_runc_refused(&a, &name, &key);
    }
    let serve = Serve::start(&b, &key);

    // Another key: refused on both sides; nothing stopped.
    let other = keygen(&a, "other.key");
    let out = migrate(&a, &name, &serve.addr, &other, &[]).err();
    assert!(out.stderr.contains("same key file"), "{out}");
    wait_until(
        "the agent's log of the refusal",
        Duration::from_secs(10),
        || serve.log().contains("unauthenticated").then_some(()),
    );
    // A name taken on B: refused before the freeze.
    let taken = b.name("taken");
    run_sh_detached(&b, &taken, "sleep 1000");
    let out = migrate(&a, &name, &serve.addr, &key, &["--name", &taken]).err();
    assert!(
        out.stderr.contains("already exists") && out.stderr.contains("not touched"),
        "{out}"
    );
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
    // B cannot run a page server for stop-copy's memory: refused before
    // the freeze.
    fs::write(&no_page_server, "").unwrap();
    let out = migrate(&a, &name, &serve.addr, &key, &["--mode", "stopcopy"]).err();
    assert!(
        out.stderr.contains("could not prepare") && out.stderr.contains("not touched"),
        "{out}"
    );
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
    fs::remove_file(&no_page_server).unwrap();

    // B's restore fails after A's container was frozen (stop-copy: after
    // its whole memory went to B): the dump is called off and A's
    // container thaws where it was.
    for mode in ["postcopy", "stopcopy"] {
        let out = migrate(&a, &name, &serve.addr, &key, &["--mode", mode]).err();
        assert!(
            out.stderr.contains("could not restore")
                && out.stderr.contains("runs on")
                && out.stderr.contains("called off"),
            "{mode}: {out}"
        );
        eprintln!(
            "migrate --mode {mode} failed as it should: {}",
            out.stderr.trim()
        );
        assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
        wait_ticks_past(&a, &name, last_tick(&a, &name) + 2);
        assert_unbroken(&a, &name);
    }
    assert_eq!(docker_names(&b), vec![taken.clone()], "B kept a container");
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
    b.docker(&["rm", "-f", &taken]).ok();
}

/// The receiving agent killed while it restores (B's CRIU is a stand-in
/// that never answers; the agent is killed as soon as it runs): the sender
/// loses the connection before any word that the container runs there, so
/// its source runs on, unbroken; the agent's guard removes what it had half
/// made on B.
#[test]
fn migrate_agent_killed_mid_restore_brings_the_source_back() {
    if let Some(stderr) = lose_a_peer_mid_restore("migrate_kill", Lost::AgentKilled) {
        assert!(stderr.contains("closed the connection"), "{stderr}");
    }
}

/// The link cut while B restores (B's CRIU is a stand-in that never
/// answers; B's agent is behind the veth, which goes down): TCP keepalives
/// find the dead link, so migrate gives up within a minute rather than
/// waiting out its 600 s peer timeout, and A's container runs on, unbroken.
#[test]
fn migrate_link_cut_mid_restore_leaves_the_source_running() {
    lose_a_peer_mid_restore("migrate_cut_link", Lost::LinkCut);
}

/// `lazarus migrate` itself killed while B restores (post-copy: A's
/// container frozen, its dump serving): nobody renews the dump's lease, so
/// A's shim calls the dump off within its 30 s and the container thaws and
/// counts on, unbroken (not frozen for CRIU's whole deadline).
#[test]
fn migrate_sender_killed_mid_restore_thaws_the_source() {
    lose_a_peer_mid_restore("migrate_kill_sender", Lost::SenderKilled);
}

/// How a peer is lost while the receiver restores.
enum Lost {
    AgentKilled,
    LinkCut,
    SenderKilled,
}

/// Migrates a counter to a B whose CRIU never answers and, once B's restore
/// reaches it, loses a peer as `lost` says. Asserts that migrate gives up
/// within its timeout saying the container runs on (unless it was the one
/// killed), and that the container does run on here, unbroken; returns
/// migrate's error (None when it was killed, or under runc, where it is
/// refused).
fn lose_a_peer_mid_restore(prefix: &str, lost: Lost) -> Option<String> {
    let stand_in_dir = tempfile::tempdir().unwrap();
    let silent = SilentCriu::write(stand_in_dir.path());
    let a = Daemons::with_docker(&format!("{prefix}_a"));
    let b = Daemons::with_docker_with(
        &format!("{prefix}_b"),
        &Setup {
            // The agent-killed case waits for B's restore to end.
            lazarus_config: Some(silent.config(match lost {
                Lost::AgentKilled => 20,
                _ => 120,
            })),
            ..B_HOST
        },
    );
    let key = keygen(&a, "migration.key");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 3);
    if !a.is_lazarus() {
        assert_runc_refused(&a, &name, &key);
        return None;
    }
    let mut serve = Serve::start(&b, &key);
    let mut migrate = spawn_migrate(&a, &name, &serve.addr, &key, &[]);
    wait_until("B's restore to reach CRIU", Duration::from_secs(60), || {
        (!silent.pids().is_empty()).then_some(())
    });
    let lost_at = std::time::Instant::now();
    let before = last_tick(&a, &name);
    match lost {
        Lost::AgentKilled => serve.kill(),
        Lost::LinkCut => b.netns().unwrap().cut(),
        Lost::SenderKilled => {
            migrate.kill().unwrap();
            migrate.wait().unwrap();
        }
    }
    let stderr = match lost {
        Lost::SenderKilled => None,
        _ => {
            let stderr = wait_failed(&mut migrate, Duration::from_secs(60));
            eprintln!(
                "{prefix}: migrate gave up after {:?}: {}",
                lost_at.elapsed(),
                stderr.trim()
            );
            assert!(stderr.contains("runs on"), "{stderr}");
            Some(stderr)
        }
    };
    // Within the dump's lease (30 s), and then some.
    wait_until("the source to count on", Duration::from_secs(90), || {
        (last_tick(&a, &name) >= before + 2).then_some(())
    });
    eprintln!(
        "{prefix}: the source counts on {:?} after",
        lost_at.elapsed()
    );
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
    assert_unbroken(&a, &name);
    if stderr.is_some() {
        // (A killed migrate leaves its scratch directory behind.)
        assert_cli_left_nothing(&a);
    }
    if let Lost::AgentKilled = lost {
        // The dead agent's guard removes what it had begun on B (the copy
        // and the received archive), once B's engine lets it (here when
        // the stand-in's 20 s deadline ends the restore).
        wait_until(
            "the dead agent's guard to clean B",
            Duration::from_secs(120),
            || (!docker_names(&b).contains(&name) && cli_leftovers(&b).is_empty()).then_some(()),
        );
        eprintln!("{prefix}: B clean {:?} after", lost_at.elapsed());
        assert_cli_left_nothing(&b);
    }
    stderr
}

/// `lazarus migrate NAME --to TO --key KEY EXTRA...` on host `a`, running.
pub fn spawn_migrate(a: &Daemons, name: &str, to: &str, key: &str, extra: &[&str]) -> Child {
    lazarus_cmd(a)
        .args(["migrate", name, "--to", to, "--key", key])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits at most `timeout` for a spawned migrate to fail; its stderr.
pub fn wait_failed(migrate: &mut Child, timeout: Duration) -> String {
    let status = wait_until("migrate to give up", timeout, || {
        migrate.try_wait().unwrap()
    });
    let mut stderr = String::new();
    std::io::Read::read_to_string(migrate.stderr.as_mut().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "migrate succeeded: {stderr}");
    stderr
}

/// Redis with 100,000 keys and a client in the container holding one TCP
/// connection to it (over the container's loopback) moves with
/// `--tcp-established`: on B every key is there with its value, and the
/// same client process goes on on the same connection.
#[test]
fn migrate_moves_redis_with_its_keys_and_a_held_connection() {
    let a = with_docker_and("migrate_redis_a", &[App::Redis]);
    let key = keygen(&a, "migration.key");
    let name = a.name("redis");
    let held = start_redis_with_held_client(&a, &name, &[]);
    let s = seed();
    load_keys(&a, &name, s);
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &[]);
    }
    let before = sample(&a, &name, s).ok().stdout;
    let b = with_docker_and_with("migrate_redis_b", &B_HOST, &[App::Redis]);
    let serve = Serve::start(&b, &key);
    let out = migrate(&a, &name, &serve.addr, &key, &["--tcp-established"]).ok();
    eprintln!("{}", out.stdout.trim());
    let size = poll(Duration::from_secs(30), || {
        let out = redis_cli(&b, &name, &["DBSIZE"]);
        (out.code == Some(0)).then(|| out.stdout.trim().to_string())
    })
    .unwrap_or_else(|| panic!("the migrated redis does not answer"));
    // The keys loaded, and the one the held client set.
    assert_eq!(size, (KEYS + 1).to_string());
    assert_eq!(sample(&b, &name, s).ok().stdout, before, "values differ");
    assert_held_connection_survived(&b, &name, &held);
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
}
