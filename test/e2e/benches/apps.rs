//! Real applications, Lazarus against runc in one run on one private
//! containerd + dockerd, with the images of scripts/build-app-images.sh on
//! Docker's none network; clients run inside the containers (`docker exec`)
//! against 127.0.0.1.
//!
//! - Redis, 100,000 keys (real SETs through `redis-cli --pipe`): `docker
//!   checkpoint create` (the container stops); `docker start --checkpoint`
//!   until it returns, and until Redis answers PING with every key; the
//!   checkpoint directory's size.
//! - the warm service (lazarus-test/warm, seconds of initialisation):
//!   `docker run` until its first HTTP answer (cold), against `docker start
//!   --checkpoint` of a new container (the checkpoint copied into it) until
//!   its first answer, which must carry the checkpointed service's nonce.
//!
//! runc restores the loopback interface down on the none network, so for
//! runc "until it answers" includes `docker exec --privileged C ip link set
//! lo up` right after the start (what a runc user has to do).
//!
//! `cargo bench -p lazarus-e2e --bench apps -- [--runs 3]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Chart, Conditions, Report, Series, Table};
use common::workload::{
    after_start, checkpoints_dir, docker, du_bytes, mib, redis_keys, redis_ping, remove_all, start,
    start_checkpoint, unique, within, Kind, KEYS,
};
use common::{cell, ratio, since, timed, Opts, Samples, LAZARUS, RUNC};
use std::process::Command;
use std::time::Instant;
use support::apps::{with_docker_and, App, WARM_IMAGE};
use support::harness::Daemons;

fn main() {
    let opts = Opts::parse(3);
    let d = with_docker_and("bench-apps", &[App::Redis, App::Warm]);
    let conditions = Conditions::now(opts.runs, String::new());
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for rt in [RUNC, LAZARUS] {
            remove_all(&d);
            s.measure(&format!("{rt}/redis"), |s| redis(&d, rt, s));
            s.measure(&format!("{rt}/warm"), |s| warm(&d, rt, s));
        }
    }
    report(&s, conditions).finish(&opts.out);
}

fn redis(d: &Daemons, rt: &str, s: &mut Samples) {
    let name = unique("redis");
    start(d, Kind::Redis, rt, &name, 0);
    let (cp, _) = timed(|| docker(d, &["checkpoint", "create", &name, "cp"]));
    s.add(&format!("{rt}/redis/cp"), cp);
    s.add(
        &format!("{rt}/redis/mb"),
        mib(du_bytes(&checkpoints_dir(d, &name).join("cp"))),
    );
    let t = start_checkpoint(d, "cp", &name);
    s.add(&format!("{rt}/redis/start"), since(t));
    after_start(d, rt, &name);
    assert!(
        within(60, || redis_ping(d, &name)),
        "{rt}: the restored Redis never answered PING"
    );
    s.add(&format!("{rt}/redis/rst"), since(t));
    assert_eq!(redis_keys(d, &name), Some(KEYS), "keys lost");
    docker(d, &["rm", "-f", &name]);
}

/// The warm service's nonce, once it answers HTTP.
fn warm_nonce(d: &Daemons, name: &str) -> Option<String> {
    let out = d.docker(&["exec", name, "wget", "-qO-", "http://127.0.0.1:8080/"]);
    let body = out.stdout;
    let at = body.find("\"nonce\": \"")? + 10;
    Some(body[at..].split('"').next()?.to_string())
}

fn warm(d: &Daemons, rt: &str, s: &mut Samples) {
    let orig = unique("warm");
    let t = Instant::now();
    docker(
        d,
        &["run", "-d", "--runtime", rt, "--name", &orig, WARM_IMAGE],
    );
    assert!(
        within(120, || warm_nonce(d, &orig).is_some()),
        "{rt}: the warm service never answered"
    );
    s.add(&format!("{rt}/warm/cold"), since(t));
    let nonce = warm_nonce(d, &orig);
    docker(d, &["checkpoint", "create", &orig, "warm"]);
    let new = format!("{orig}-r");
    docker(d, &["create", "--runtime", rt, "--name", &new, WARM_IMAGE]);
    let into = checkpoints_dir(d, &new);
    std::fs::create_dir_all(&into).unwrap();
    let from = checkpoints_dir(d, &orig).join("warm");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(&into)
        .status()
        .unwrap();
    assert!(copied.success(), "copying the checkpoint");
    let t = start_checkpoint(d, "warm", &new);
    after_start(d, rt, &new);
    assert!(
        within(60, || warm_nonce(d, &new).is_some()),
        "{rt}: the restored service never answered"
    );
    s.add(&format!("{rt}/warm/rst"), since(t));
    assert_eq!(
        warm_nonce(d, &new),
        nonce,
        "the restored service has another nonce"
    );
    docker(d, &["rm", "-f", &orig, &new]);
}

fn report(s: &Samples, conditions: Conditions) -> Report {
    let rows = [
        ("redis 100k keys: checkpoint (s)", "redis/cp"),
        (
            "redis: docker start --checkpoint returns (s)",
            "redis/start",
        ),
        ("redis: restore until PING answers (s) *", "redis/rst"),
        ("redis: checkpoint image (MiB)", "redis/mb"),
        ("warm: cold start until first answer (s)", "warm/cold"),
        ("warm: restore until first answer (s) *", "warm/rst"),
    ];
    let mut table = Table::new(
        "* runc: includes `docker exec --privileged C ip link set lo up` (runc restores lo down)",
        &["metric", "runc", "lazarus", "x runc"],
    );
    let mut values = Vec::new();
    for (label, key) in rows {
        let a = s.median(&format!("{RUNC}/{key}"));
        let b = s.median(&format!("{LAZARUS}/{key}"));
        table.row(vec![label.into(), cell(a), cell(b), cell(ratio(b, a))]);
        values.push(ratio(b, a));
    }
    let warm_ratio = |rt: &str| {
        ratio(
            s.median(&format!("{rt}/warm/rst")),
            s.median(&format!("{rt}/warm/cold")),
        )
    };
    table.row(vec![
        "warm: restore / cold".into(),
        cell(warm_ratio(RUNC)),
        cell(warm_ratio(LAZARUS)),
        String::new(),
    ]);
    let chart = Chart {
        name: "ratios".into(),
        title: "Applications, Lazarus against runc (runc = 1)".into(),
        y_label: "x runc".into(),
        groups: [
            "redis cp",
            "redis start",
            "redis PING",
            "redis image",
            "warm cold",
            "warm restore",
        ]
        .map(String::from)
        .to_vec(),
        series: vec![Series {
            label: "Lazarus / runc".into(),
            values,
        }],
    };
    Report {
        bench: "apps".into(),
        conditions,
        tables: vec![table],
        charts: vec![chart],
        failures: s.failures(),
    }
}
