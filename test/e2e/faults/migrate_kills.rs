//! `lazarus migrate` itself killed (SIGKILL, or SIGINT as Ctrl-C sends it
//! to the terminal's process group) at several moments, on the 256 MiB
//! memhog of `cli_kills`: early, while A's CRIU dumps, while the archive
//! arrives on B (stop-copy), and (post-copy) once the container runs on B
//! while its memory still follows.
//!
//! Afterwards, once both hosts settled, the container runs exactly once:
//! on A (thawed, one unbroken run, its heap's checksum intact) and not on
//! B, or on B (its heap whole) and not on A; and nothing of the migration
//! is left on either host (no scratch directory, no container on B after
//! its agent's settle time).

use crate::archive::export_import::cli_leftovers;
use crate::faults::cli_kills::paused_in_containerd;
use crate::faults::kills::{memhog, start_memhog};
use crate::migrate::moves::assert_refused_by_runtime;
use crate::support::cmd::{default_signals, poll, wait_until};
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::{keygen, lazarus_cmd, Serve, B_HOST};
use std::os::unix::process::CommandExt;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

const HEAP_MIB: u64 = 256;
/// Longer than the receiver's wait for an unconfirmed copy (30 s) and the
/// guards' clean-up.
const SETTLE: Duration = Duration::from_secs(120);

/// `lazarus migrate NAME ...` in a process group of its own (as a
/// terminal's job is), so that a signal reaches the whole command.
fn spawn_migrate(a: &Daemons, name: &str, to: &str, key: &str, extra: &[&str]) -> Child {
    let mut cmd = lazarus_cmd(a);
    cmd.args(["migrate", name, "--to", to, "--key", key])
        .args(extra)
        .stdout(Stdio::null())
        // Into the test's own output, for a failure's story.
        .stderr(Stdio::inherit())
        .process_group(0);
    default_signals(&mut cmd);
    cmd.spawn().unwrap()
}

#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after the command started.
    After(Duration),
    /// A's CRIU dumping the container.
    Dump,
    /// The receiver's scratch holds what arrived.
    Transfer,
    /// Post-copy: the container runs on B, its memory still following.
    RunsOnB,
}

fn running(d: &Daemons, name: &str) -> bool {
    d.docker(&["inspect", "-f", "{{.State.Running}}", name])
        .stdout
        .trim()
        == "true"
}

/// Docker's word on `name`: status, exit code, paused; or that it is gone.
fn state(d: &Daemons, name: &str) -> String {
    let out = d.docker(&[
        "inspect",
        "-f",
        "{{.State.Status}} exit {{.State.ExitCode}} paused {{.State.Paused}}",
        name,
    ]);
    match out.code {
        Some(0) => out.stdout.trim().to_string(),
        _ => "no such container".into(),
    }
}

/// Waits for `moment` while migrate runs; false if it ended first.
fn reach(a: &Daemons, b: &Daemons, p: &mut Child, moment: Moment, name: &str) -> bool {
    if let Moment::After(t) = moment {
        std::thread::sleep(t);
        return p.try_wait().unwrap().is_none();
    }
    poll(Duration::from_secs(120), || {
        if p.try_wait().unwrap().is_some() {
            return Some(false);
        }
        let now = match moment {
            Moment::After(_) => unreachable!(),
            Moment::Dump => !a.processes_named("criu").is_empty(),
            Moment::Transfer => !cli_leftovers(b).is_empty(),
            Moment::RunsOnB => running(b, name),
        };
        now.then_some(true)
    })
    .unwrap_or(false)
}

/// Where memhog runs once no CRIU works for either host: "A" (thawed) or
/// "B", and only there; None while not settled.
fn settled(a: &Daemons, b: &Daemons, name: &str) -> Option<&'static str> {
    if !a.processes_named("criu").is_empty() || !b.processes_named("criu").is_empty() {
        return None;
    }
    let on_a = running(a, name) && !paused_in_containerd(a, &inspect(a, name, "{{.Id}}"));
    match (on_a, running(b, name)) {
        (true, false) => Some("A"),
        (false, true) => Some("B"),
        _ => None,
    }
}

/// memhog on `d` ticks on with its heap's checksum `sum` throughout.
fn assert_heap_goes_on(d: &Daemons, name: &str, sum: &str) {
    let now = memhog(d, name).len();
    let all = wait_until("memhog to tick on", SETTLE, || {
        let all = memhog(d, name);
        (all.len() >= now + 2).then_some(all)
    });
    assert!(
        all.iter().all(|(_, s)| s == sum),
        "memhog's heap changed: {all:?}"
    );
    for w in all.windows(2) {
        assert_eq!(
            w[1].0,
            w[0].0 + 1,
            "memhog's ticks are not one run: {all:?}"
        );
    }
}

/// The cases, each on a fresh memhog: the failures (and how many moments
/// were reached). With `leftovers`, also that nothing of the migration is
/// left on either host once settled.
fn kill_cases(
    a: &Daemons,
    b: &Daemons,
    key: &str,
    serve: &Serve,
    cases: &[(Moment, libc::c_int, &[&str])],
    leftovers: bool,
) -> (Vec<String>, usize) {
    let mut failures = Vec::new();
    let mut reached = 0;
    for (i, &(moment, sig, mode)) in cases.iter().enumerate() {
        let started = Instant::now();
        let name = a.name(&format!("hog{i}"));
        start_memhog(a, &name, HEAP_MIB);
        let sum = memhog(a, &name)[0].1.clone();
        let mut p = spawn_migrate(a, &name, &serve.addr, key, mode);
        let hit = reach(a, b, &mut p, moment, &name);
        if hit {
            reached += 1;
            // As a terminal does: the command's process group.
            unsafe { libc::kill(-(p.id() as i32), sig) };
        }
        let status = wait_until("migrate to end", SETTLE, || p.try_wait().unwrap());
        let place = poll(SETTLE, || settled(a, b, &name));
        let at = started.elapsed().as_secs_f64();
        eprintln!(
            "{moment:?} signal {sig}: reached {hit}, exit {status}, runs on {place:?} ({at:.1}s)"
        );
        match place {
            None => failures.push(format!(
                "{moment:?}/{sig}: not running exactly once after {SETTLE:?} (A: {}, B: {})",
                state(a, &name),
                state(b, &name)
            )),
            Some("A") => assert_heap_goes_on(a, &name, &sum),
            Some(_) => assert_heap_goes_on(b, &name, &sum),
        }
        // B removes a copy it ran (post-copy) once it sees the sender gone.
        let b_clean = || (b.docker(&["inspect", &name]).code != Some(0)).then_some(());
        if place == Some("A") && poll(SETTLE, b_clean).is_none() {
            failures.push(format!("{moment:?}/{sig}: B kept a container {name}"));
        }
        if leftovers {
            let clean = poll(SETTLE, || {
                (cli_leftovers(a).is_empty() && cli_leftovers(b).is_empty()).then_some(())
            });
            if clean.is_none() {
                failures.push(format!(
                    "{moment:?}/{sig}: left after {SETTLE:?}: A {:?}, B {:?}",
                    cli_leftovers(a),
                    cli_leftovers(b)
                ));
            }
        }
        // Out of the way of the next case (its memory and its name).
        for d in [a, b] {
            let _ = d.docker(&["rm", "-f", &name]);
        }
    }
    (failures, reached)
}

const STOPCOPY: &[&str] = &["--mode", "stopcopy"];

/// Stop-copy migrate killed early, while A's CRIU dumps and while the
/// archive arrives on B: each time memhog runs on exactly once, on A,
/// thawed, its heap's checksum intact, and B keeps no container.
#[test]
fn a_killed_migrate_leaves_the_container_running_once() {
    let a = Daemons::with_docker("cli_killed_migrate_a");
    let b = Daemons::with_docker_with("cli_killed_migrate_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    if !a.is_lazarus() {
        let name = a.name("hog");
        start_memhog(&a, &name, HEAP_MIB);
        return assert_refused_by_runtime(&a, &name, &key, &[]);
    }
    let serve = Serve::start(&b, &key);
    let cases = [
        (
            Moment::After(Duration::from_millis(300)),
            libc::SIGKILL,
            STOPCOPY,
        ),
        (Moment::Dump, libc::SIGINT, STOPCOPY),
        (Moment::Transfer, libc::SIGKILL, STOPCOPY),
    ];
    let (failures, reached) = kill_cases(&a, &b, &key, &serve, &cases, false);
    assert!(failures.is_empty(), "{failures:#?}");
    assert!(
        reached >= 2,
        "only {reached} of the moments were reached before migrate ended"
    );
}

/// Killed migrations leave nothing behind, with no command run after
/// them: post-copy, migrate SIGKILLed once memhog runs on B (its memory
/// still following through the page tunnel this process held): memhog
/// runs on at A, thawed, its heap intact, and B removes its dead copy
/// (`serve`'s follower, once the copy's shim stopped it); stop-copy,
/// SIGKILL early and SIGINT mid-dump. Each time A's `migrate-*` scratch
/// goes within 120 s: the command's guard removes it once the runtime has
/// called the dump off (its lease lapsed).
#[test]
fn a_killed_migrate_loses_nothing_and_leaves_nothing() {
    let a = Daemons::with_docker("cli_killed_migrate_left_a");
    let b = Daemons::with_docker_with("cli_killed_migrate_left_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    if !a.is_lazarus() {
        let name = a.name("hog");
        start_memhog(&a, &name, HEAP_MIB);
        return assert_refused_by_runtime(&a, &name, &key, &[]);
    }
    let serve = Serve::start(&b, &key);
    let cases = [
        (Moment::RunsOnB, libc::SIGKILL, &[][..]),
        (
            Moment::After(Duration::from_millis(300)),
            libc::SIGKILL,
            STOPCOPY,
        ),
        (Moment::Dump, libc::SIGINT, STOPCOPY),
    ];
    let (failures, _) = kill_cases(&a, &b, &key, &serve, &cases, true);
    assert!(failures.is_empty(), "{failures:#?}");
}
