//! Docker's own checkpoint and restore of Redis (`docker checkpoint
//! create`, then `docker start --checkpoint` until Redis answers PING with
//! every key), side by side: runc, Lazarus with the pages in the checkpoint
//! (`docker_checkpoints = "archive"`, the default) and Lazarus with the
//! pages in the snapshot store (`"store"`: a reference in the checkpoint).
//! Two daemon sets on one host, one per Lazarus setting (runc runs on the
//! first); the store on the set's disk.
//!
//! Redis is filled with `--keys` keys (real SETs through `redis-cli
//! --pipe`; 1,000,000 by default, `--full`: 9,000,000, about 1 GiB).
//!
//! `cargo bench -p lazarus-e2e --bench docker_store -- [--runs 1]
//! [--keys N] [--full] [--paths runc,lazarus-archive,lazarus-store]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Conditions, Report, Table};
use common::workload::{
    after_start, checkpoints_dir, docker, du_bytes, mib, redis_ping, remove_all, unique, within,
};
use common::{cell, ratio, since, timed, Opts, Samples, LAZARUS, RUNC};
use std::time::{Duration, Instant};
use support::apps::{with_docker_and, with_docker_and_with, App};
use support::cmd::run_timeout;
use support::harness::{Daemons, Setup};

const PATHS: [&str; 3] = ["runc", "lazarus-archive", "lazarus-store"];

fn main() {
    let opts = Opts::parse(1);
    let keys = opts.number("keys", 1_000_000, 9_000_000);
    let plain = with_docker_and("bench-docker-plain", &[App::Redis]);
    let store = with_docker_and_with(
        "bench-docker-store",
        &Setup {
            lazarus_config: Some(
                "docker_checkpoints = \"store\"\nstore_root = \"{SET_DIR}/lazarus-store\"\n".into(),
            ),
            ..Default::default()
        },
        &[App::Redis],
    );
    let conditions = Conditions::now(
        opts.runs,
        format!("Redis with {keys} keys; checkpoints and the store on the sets' disk"),
    );
    let mut s = Samples::default();
    let all = PATHS.join(",");
    let paths = opts.list("paths", &all, &all);
    for _ in 0..opts.runs {
        for path in paths.iter().map(String::as_str) {
            let (d, rt) = match path {
                "runc" => (&plain, RUNC),
                "lazarus-archive" => (&plain, LAZARUS),
                _ => (&store, LAZARUS),
            };
            if !s.measure(path, |s| redis(d, rt, path, keys, s)) {
                remove_all(d);
            }
        }
    }
    let report = report(&s, keys, &paths, conditions);
    // Before `finish`, which exits: the sets tear their daemons down.
    drop((plain, store));
    report.finish(&opts.out);
}

fn redis_count(d: &Daemons, name: &str) -> Option<u64> {
    let out = d.docker(&["exec", name, "redis-cli", "-h", "127.0.0.1", "DBSIZE"]);
    out.stdout.trim().parse().ok()
}

/// `keys` SETs through `redis-cli --pipe`, values random enough that the
/// memory does not compress to nothing.
fn fill(d: &Daemons, name: &str, keys: u64) {
    let script = format!(
        "awk -v n={keys} 'BEGIN {{ srand(); for (i = 0; i < n; i++) {{ \
         k = \"key:\" i; v = \"val:\" i \":\" int(rand() * 1000000000) \":\" int(rand() * 1000000000) \":\" int(rand() * 1000000000) \":\" int(rand() * 1000000000) \":\" int(rand() * 1000000000); \
         printf \"*3\\r\\n$3\\r\\nSET\\r\\n$%d\\r\\n%s\\r\\n$%d\\r\\n%s\\r\\n\", length(k), k, length(v), v }} }}' \
         | redis-cli -h 127.0.0.1 --pipe"
    );
    // Millions of keys take minutes, past the client's usual deadline.
    let out = run_timeout(
        &mut d.docker_cmd(&["exec", name, "sh", "-c", &script]),
        None,
        Duration::from_secs(1800),
    )
    .ok();
    assert!(
        out.stdout.contains(&format!("errors: 0, replies: {keys}")),
        "loading keys failed: {out}"
    );
}

/// `docker start --checkpoint` with a deadline a GiB restore through
/// Docker fits (runc: tens of seconds), retried on Docker's own "already
/// exists" race (untimed); when the attempt that worked began.
fn start(d: &Daemons, cp: &str, name: &str) -> Instant {
    for _ in 0..10 {
        let t = Instant::now();
        let out = run_timeout(
            &mut d.docker_cmd(&["start", "--checkpoint", cp, name]),
            None,
            Duration::from_secs(600),
        );
        if out.code == Some(0) {
            return t;
        }
        assert!(
            out.all().contains("already exists"),
            "restore of {name}: {out}"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("restore of {name}: still \"already exists\" after 10 attempts");
}

fn used_memory(d: &Daemons, name: &str) -> f64 {
    let out = d.docker(&[
        "exec",
        name,
        "redis-cli",
        "-h",
        "127.0.0.1",
        "INFO",
        "memory",
    ]);
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(mib)
        .unwrap_or(0.0)
}

fn redis(d: &Daemons, rt: &str, path: &str, keys: u64, s: &mut Samples) {
    let name = unique("redis");
    docker(
        d,
        &[
            "run",
            "-d",
            "--runtime",
            rt,
            "--name",
            &name,
            "lazarus-test/redis:latest",
        ],
    );
    assert!(within(30, || redis_ping(d, &name)), "redis never answered");
    fill(d, &name, keys);
    s.add(&format!("{path}/used"), used_memory(d, &name));
    common::sync();
    let (cp, _) = timed(|| {
        run_timeout(
            &mut d.docker_cmd(&["checkpoint", "create", &name, "cp"]),
            None,
            Duration::from_secs(600),
        )
        .ok()
    });
    s.add(&format!("{path}/cp"), cp);
    s.add(
        &format!("{path}/mb"),
        mib(du_bytes(&checkpoints_dir(d, &name).join("cp"))),
    );
    // Docker's own upload race (test/README.md) is waited out, not timed.
    std::thread::sleep(Duration::from_secs(3));
    common::sync();
    let t = start(d, "cp", &name);
    s.add(&format!("{path}/start"), since(t));
    after_start(d, rt, &name);
    assert!(
        within(120, || redis_ping(d, &name)),
        "{path}: the restored Redis never answered PING"
    );
    let rst = since(t);
    s.add(&format!("{path}/rst"), rst);
    assert_eq!(redis_count(d, &name), Some(keys), "keys lost");
    s.add(&format!("{path}/total"), cp + rst);
    docker(d, &["rm", "-f", &name]);
}

fn report(s: &Samples, keys: u64, paths: &[String], conditions: Conditions) -> Report {
    let rows = [
        ("Redis memory (MiB)", "used"),
        ("docker checkpoint create (s)", "cp"),
        ("checkpoint directory (MiB)", "mb"),
        ("docker start --checkpoint returns (s)", "start"),
        ("restore until PING answers (s) *", "rst"),
        ("checkpoint + restore (s)", "total"),
    ];
    let mut table = Table::new(
        &format!(
            "Redis {keys} keys through Docker; * runc: includes `docker exec --privileged C ip \
             link set lo up` (runc restores lo down)"
        ),
        &[
            "metric",
            "runc",
            "lazarus archive",
            "lazarus store",
            "archive x runc",
            "store x runc",
        ],
    );
    for (label, key) in rows {
        let v = |p: &str| s.median(&format!("{p}/{key}"));
        let (r, a, st) = (v(PATHS[0]), v(PATHS[1]), v(PATHS[2]));
        // A path left out (--paths) is not a failure.
        let shown = |p: &str, c: String| match paths.iter().any(|x| x == p) {
            true => c,
            false => "-".into(),
        };
        table.row(vec![
            label.into(),
            shown(PATHS[0], cell(r)),
            shown(PATHS[1], cell(a)),
            shown(PATHS[2], cell(st)),
            shown(PATHS[0], shown(PATHS[1], cell(ratio(a, r)))),
            shown(PATHS[0], shown(PATHS[2], cell(ratio(st, r)))),
        ]);
    }
    Report {
        bench: "docker_store".into(),
        conditions,
        tables: vec![table],
        charts: Vec::new(),
        failures: s.failures(),
    }
}
