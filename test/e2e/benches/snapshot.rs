//! Snapshots (`lazarus snapshot`): how long the container is frozen against
//! raw `criu dump --leave-running` of the same program on the host (into
//! /dev/shm, as the snapshot's dump goes when it fits), what
//! the second and later snapshots add to the store after 0%, 5% and 50% of
//! the pages changed, and how long a revert takes against `restore
//! --import` of an uncompressed archive of the same container.
//!
//! Workloads (`--workloads`): random and mixed (`--mib` MiB, Python in the
//! warm image: random bytes, or a quarter random, a quarter zeros, half
//! text). On SIGUSR1 the program changes one byte in every 20th page (5%),
//! on SIGUSR2 in every other page (50%).
//!
//! `cargo bench -p lazarus-e2e --bench snapshot -- [--runs 1] [--mib 256]
//! [--workloads random,mixed] [--full: 1024 MiB]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Conditions, Report, Table};
use common::workload::{docker, logs, mib, remove_all, ticks, unique, within};
use common::{cell, ratio, since, timed, Opts, Samples, LAZARUS};
use serde_json::Value;
use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::apps::{with_docker_and, App};
use support::cmd::run_timeout;
use support::harness::Daemons;
use support::lazarus::lazarus_cmd;

/// The workload: `python3.11 -c CHURN MIB random|mixed`.
const CHURN: &str = r#"import os, sys, time, signal
mib, kind, chunk = int(sys.argv[1]), sys.argv[2], 1 << 20
text = b"".join(b"%08d user=lazarus-%05d state=active balance=%d\n" % (i, i % 5000, i * 7919 % 1000003) for i in range(40000))
heap = bytearray(mib * chunk)
for c in range(mib):
    o, q = c * chunk, chunk // 4
    if kind == "random":
        heap[o:o + chunk] = os.urandom(chunk)
        continue
    heap[o:o + q] = os.urandom(q)
    heap[o + q:o + 2 * q] = bytes(q)
    t = c * 4099 % (len(text) - 2 * q)
    heap[o + 2 * q:o + chunk] = text[t:t + 2 * q]
pages = len(heap) // 4096
def churn(step, pct):
    for p in range(0, pages, step):
        heap[p * 4096] = (heap[p * 4096] + 1) & 255
    print("churned", pct, flush=True)
signal.signal(signal.SIGUSR1, lambda s, f: churn(20, 5))
signal.signal(signal.SIGUSR2, lambda s, f: churn(2, 50))
print("ready", mib, flush=True)
n = 0
while True:
    print("tick", n, flush=True)
    n += 1
    time.sleep(1)"#;

const KINDS: &str = "random,mixed";

fn main() {
    let opts = Opts::parse(1);
    let size = opts.number("mib", 256, 1024);
    let kinds = opts.list("workloads", KINDS, KINDS);
    let d = with_docker_and("bench-snapshot", &[App::Warm]);
    let conditions = Conditions::now(
        opts.runs,
        format!("{size} MiB; the store on the set's disk; raw CRIU on the host, into /dev/shm"),
    );
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for kind in &kinds {
            if !s.measure(kind, |s| lazarus(&d, kind, size, s)) {
                remove_all(&d);
            }
            s.measure(&format!("{kind}/raw"), |s| raw(&d, kind, size, s));
        }
    }
    report(&s, &kinds, size, conditions).finish(&opts.out);
}

fn cli(d: &Daemons, args: &[&str]) -> Value {
    let out = run_timeout(lazarus_cmd(d).args(args), None, Duration::from_secs(900)).ok();
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("lazarus {args:?}: {e}: {out}"))
}

fn wait_log(d: &Daemons, name: &str, line: &str) {
    assert!(
        within(600, || logs(d, name).lines().any(|l| l.starts_with(line))),
        "{name}: no {line:?} within 600 s"
    );
}

fn lazarus(d: &Daemons, kind: &str, size: u64, s: &mut Samples) {
    let name = unique(kind);
    let size_s = size.to_string();
    docker(
        d,
        &[
            "run",
            "-d",
            "--runtime",
            LAZARUS,
            "--name",
            &name,
            "--entrypoint",
            "python3.11",
            "lazarus-test/warm:latest",
            "-u",
            "-c",
            CHURN,
            &size_s,
            kind,
        ],
    );
    wait_log(d, &name, "ready");
    let (wall, first) = timed(|| cli(d, &["snapshot", &name, "--json"]));
    s.add(&format!("{kind}/first/wall"), wall);
    s.add(
        &format!("{kind}/first/frozen"),
        first["frozen_seconds"].as_f64().unwrap(),
    );
    // Two parts of the wall, from the report: the checkpoint through the
    // runtime, and the store's ingest and commit (the rest is the archive
    // the export writes between them, and the CLI's start).
    for (key, field) in [
        ("checkpoint", "checkpoint_seconds"),
        ("store", "store_seconds"),
    ] {
        s.add(
            &format!("{kind}/first/{key}"),
            first[field].as_f64().unwrap(),
        );
    }
    s.add(
        &format!("{kind}/first/added"),
        mib(first["bytes_added"].as_u64().unwrap()),
    );
    let later = |s: &mut Samples, pct: &str| {
        let v = cli(d, &["snapshot", &name, "--json"]);
        s.add(
            &format!("{kind}/{pct}/added"),
            mib(v["bytes_added"].as_u64().unwrap()),
        );
        s.add(
            &format!("{kind}/{pct}/frozen"),
            v["frozen_seconds"].as_f64().unwrap(),
        );
    };
    later(s, "0");
    docker(d, &["kill", "-s", "USR1", &name]);
    wait_log(d, &name, "churned 5");
    later(s, "5");
    docker(d, &["kill", "-s", "USR2", &name]);
    wait_log(d, &name, "churned 50");
    later(s, "50");

    // The same container as a plain archive, for the import to compare.
    let file = d.path(&format!("{name}.tar"));
    let file_s = file.to_str().unwrap();
    cli(
        d,
        &[
            "checkpoint",
            &name,
            "--leave-running",
            "--export",
            file_s,
            "--compress",
            "none",
            "--json",
        ],
    );
    let id = first["id"].as_str().unwrap();
    let t = Instant::now();
    run_timeout(
        lazarus_cmd(d).args(["restore", &name, "--snapshot", id, "--yes"]),
        None,
        Duration::from_secs(900),
    )
    .ok();
    s.add(&format!("{kind}/revert/cmd"), since(t));
    assert!(
        within(120, || ticks(d, &name) > 0),
        "{name}: no tick after the revert"
    );
    s.add(&format!("{kind}/revert/ready"), since(t));
    docker(d, &["rm", "-f", &name]);
    let t = Instant::now();
    run_timeout(
        lazarus_cmd(d).args(["restore", "--import", file_s]),
        None,
        Duration::from_secs(900),
    )
    .ok();
    s.add(&format!("{kind}/import/cmd"), since(t));
    assert!(
        within(120, || ticks(d, &name) > 0),
        "{name}: no tick after the import"
    );
    s.add(&format!("{kind}/import/ready"), since(t));
    docker(d, &["rm", "-f", &name]);
    let _ = fs::remove_file(&file);
    cli(
        d,
        &[
            "snapshots",
            "prune",
            "--keep",
            "0",
            "--tagged-too",
            "--json",
        ],
    );
}

/// Raw `criu dump --leave-running` of the same program on the host: CRIU's
/// own frozen time (its stats-dump, read by `lazarus inspect`).
fn raw(d: &Daemons, kind: &str, size: u64, s: &mut Samples) {
    let dir = d.path(&format!("raw-{kind}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let log = dir.join("out");
    let mut child: Child = Command::new("setsid")
        .args([
            "/usr/bin/python3.11",
            "-u",
            "-c",
            CHURN,
            &size.to_string(),
            kind,
        ])
        .stdin(Stdio::null())
        .stdout(fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = within(600, || {
        fs::read_to_string(&log)
            .unwrap_or_default()
            .starts_with("ready")
    });
    // Into memory, as `lazarus snapshot` dumps when the container fits
    // (onto a disk, CRIU's freeze is the writeback's: 0.35-1.4 s for
    // 1 GiB here, against 0.41-0.45 s into tmpfs).
    let img = std::path::Path::new("/dev/shm").join(format!("lazarus-bench-raw-{kind}"));
    let _ = fs::remove_dir_all(&img);
    fs::create_dir_all(&img).unwrap();
    let pid = child.id().to_string();
    let out = Command::new("criu")
        .args([
            "dump",
            "--leave-running",
            "-t",
            &pid,
            "-o",
            "dump.log",
            "-D",
        ])
        .arg(&img)
        .output()
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        ready && out.status.success(),
        "raw criu dump failed (log in {})",
        img.display()
    );
    let v = cli(d, &["inspect", "--json", img.to_str().unwrap()]);
    let frozen = v["criu"]["stats"]["frozen_time_us"]
        .as_u64()
        .expect("frozen_time_us");
    s.add(&format!("{kind}/raw/frozen"), frozen as f64 / 1e6);
    let _ = fs::remove_dir_all(&dir);
    let _ = fs::remove_dir_all(&img);
}

fn report(s: &Samples, kinds: &[String], size: u64, conditions: Conditions) -> Report {
    let mut freeze = Table::new(
        "Freeze: lazarus snapshot against raw criu dump --leave-running (CRIU's own frozen time, s)",
        &[
            "workload",
            "snapshot",
            "raw criu",
            "x raw",
            "snapshot wall",
            "of which checkpoint",
            "of which store",
        ],
    );
    let mut store = Table::new(
        "What a snapshot adds to the store (MiB; % of the first)",
        &[
            "workload",
            "first",
            "after 0% changed",
            "after 5%",
            "after 50%",
        ],
    );
    let mut revert = Table::new(
        "Revert in place against restore --import of an uncompressed archive (s, until it ticks)",
        &["workload", "revert", "import", "x import"],
    );
    for k in kinds {
        let m = |key: &str| s.median(&format!("{k}/{key}"));
        let label = format!("{k} {size} MiB");
        freeze.row(vec![
            label.clone(),
            cell(m("first/frozen")),
            cell(m("raw/frozen")),
            cell(ratio(m("first/frozen"), m("raw/frozen"))),
            cell(m("first/wall")),
            cell(m("first/checkpoint")),
            cell(m("first/store")),
        ]);
        let pct = |key: &str| match (m(key), m("first/added")) {
            (Some(v), Some(f)) if f > 0.0 => format!("{} ({:.1}%)", cell(Some(v)), v / f * 100.0),
            _ => cell(m(key)),
        };
        store.row(vec![
            label.clone(),
            cell(m("first/added")),
            pct("0/added"),
            pct("5/added"),
            pct("50/added"),
        ]);
        revert.row(vec![
            label,
            cell(m("revert/ready")),
            cell(m("import/ready")),
            cell(ratio(m("revert/ready"), m("import/ready"))),
        ]);
    }
    Report {
        bench: "snapshot".into(),
        conditions,
        tables: vec![freeze, store, revert],
        charts: Vec::new(),
        failures: s.failures(),
    }
}
