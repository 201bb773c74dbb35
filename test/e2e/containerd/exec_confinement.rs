//! A process started by exec is confined like the container's init: the
//! same seccomp filter, no_new_privs and capabilities (runc applies the
//! container's filter to every exec), also in a container restored from a
//! checkpoint. Under Docker's and containerd's default profiles `unshare -U`
//! is refused without CAP_SYS_ADMIN, in an exec'd process too.

use std::collections::BTreeMap;

use crate::checkpoint::flows::{counter_checkpointed, docker_start_checkpoint};
use crate::docker::lifecycle::{docker_run_args, wait_ticks_past};
use crate::support::cmd::{Out, COUNTER};
use crate::support::harness::Daemons;

/// The lines of /proc/PID/status that say how a process is confined.
const FIELDS: [&str; 8] = [
    "Seccomp",
    "Seccomp_filters",
    "NoNewPrivs",
    "CapInh",
    "CapPrm",
    "CapEff",
    "CapBnd",
    "CapAmb",
];

/// [`FIELDS`] of one /proc/PID/status text.
fn confinement(status: &str) -> BTreeMap<&'static str, String> {
    FIELDS
        .iter()
        .map(|&field| {
            let value = status
                .lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
                .unwrap_or_else(|| panic!("no {field} in /proc/PID/status:\n{status}"));
            (field, value.trim().to_string())
        })
        .collect()
}

/// `exec(args)` runs `args` as a new process in the container (pid 1 is the
/// container's init): the exec'd process must be confined exactly like the
/// init, and the init must be under a filter (else nothing is checked).
/// Returns the init's confinement.
fn assert_exec_confined_like_init(
    what: &str,
    exec: impl Fn(&[&str]) -> Out,
) -> BTreeMap<&'static str, String> {
    let init = confinement(&exec(&["cat", "/proc/1/status"]).ok().stdout);
    assert_eq!(
        init["Seccomp"], "2",
        "{what}: the init has no seccomp filter"
    );
    let own = confinement(&exec(&["cat", "/proc/self/status"]).ok().stdout);
    assert_eq!(
        own, init,
        "{what}: an exec'd process is confined unlike the init"
    );
    let out = exec(&["unshare", "-U", "true"]);
    assert_ne!(
        out.code,
        Some(0),
        "{what}: unshare -U ran in an exec: {out}"
    );
    assert!(
        out.all().contains("Operation not permitted"),
        "{what}: unshare -U failed for another reason: {out}"
    );
    init
}

fn docker_exec<'a>(
    d: &'a Daemons,
    flags: &'a [&'a str],
    name: &'a str,
) -> impl Fn(&[&str]) -> Out + 'a {
    move |args| {
        let mut v = vec!["exec"];
        v.extend_from_slice(flags);
        v.push(name);
        v.extend_from_slice(args);
        d.docker(&v)
    }
}

/// Docker's default profile, without and with no_new_privs (the filter is
/// loaded before the capabilities are dropped, or after), and an exec as
/// another user (whose capabilities go at execve, the bounding set stays).
#[test]
fn docker_exec_is_confined_like_the_init() {
    let d = Daemons::with_docker("docker_exec_confined");
    for (what, flags) in [
        ("default", &[][..]),
        ("nnp", &["--security-opt", "no-new-privileges"][..]),
    ] {
        let name = d.name(what);
        let mut run = vec!["-d", "--name", &name];
        run.extend_from_slice(flags);
        d.docker(&docker_run_args(&d, &run, &["sleep", "600"])).ok();
        let init = assert_exec_confined_like_init(what, docker_exec(&d, &[], &name));
        let user = docker_exec(&d, &["-u", "1000"], &name)(&["cat", "/proc/self/status"]).ok();
        let user = confinement(&user.stdout);
        for field in ["Seccomp", "Seccomp_filters", "NoNewPrivs", "CapBnd"] {
            assert_eq!(
                user[field], init[field],
                "{what}: {field} of an exec as uid 1000"
            );
        }
        assert_eq!(
            user["CapEff"], "0000000000000000",
            "{what}: uid 1000 kept capabilities"
        );
        d.docker(&["rm", "-f", &name]).ok();
    }
}

/// containerd's default profile (`ctr run --seccomp`); ctr's spec sets
/// no_new_privs.
#[test]
fn ctr_task_exec_is_confined_like_the_init() {
    let d = Daemons::containerd_only("ctr_exec_confined");
    let id = d.name("c");
    let image = crate::support::config::IMAGE_CTR;
    d.ctr(&[
        "run",
        "-d",
        "--seccomp",
        "--runtime",
        d.runtime(),
        image,
        &id,
        "sleep",
        "600",
    ])
    .ok();
    let n = std::cell::Cell::new(0);
    assert_exec_confined_like_init("ctr", |args| {
        n.set(n.get() + 1);
        crate::containerd::ctr::exec(&d, &id, &format!("x{}", n.get()), args)
    });
    crate::containerd::ctr::remove_task(&d, &id);
}

/// After `docker start --checkpoint` the init is the restored process (CRIU
/// restores its filter); an exec gets the container's filter all the same.
#[test]
fn docker_exec_into_a_restored_container_is_confined_like_the_init() {
    let d = Daemons::with_docker("docker_exec_restored_confined");
    let name = d.name("c");
    let last = counter_checkpointed(&d, &name, COUNTER, 2, "cp");
    docker_start_checkpoint(&d, &name, "cp", &[]);
    wait_ticks_past(&d, &name, last + 1);
    assert_exec_confined_like_init("restored", docker_exec(&d, &[], &name));
    d.docker(&["rm", "-f", &name]).ok();
}
