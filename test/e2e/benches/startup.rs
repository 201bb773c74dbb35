//! `docker run` to first output, and the shims' memory: Lazarus against
//! runc's shim, side by side on one private containerd + dockerd.
//!
//! - the median wall time from starting `docker run --rm ... echo ready` to
//!   reading its first line, and of it the time Lazarus's shim spent in
//!   Create and in Start (from its log lines "created ID (pid N) in X ms",
//!   "started ID in X ms"; runc's shim logs no such thing);
//! - the shims' total RSS with 1 and with `--many` running containers.
//!
//! `cargo bench -p lazarus-e2e --bench startup -- [--runs 15] [--many 20]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Chart, Conditions, Report, Series, Table};
use common::workload::docker;
use common::{cell, ratio, shims, Opts, Samples, LAZARUS, RUNC};
use std::fs;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};
use support::config::IMAGE_DOCKER;
use support::harness::Daemons;

fn main() {
    let opts = Opts::parse(15);
    let many = opts.number("many", 20, 20);
    let d = Daemons::with_docker("bench-startup");
    let conditions = Conditions::now(opts.runs, format!("{many} containers for the memory row"));
    let mut s = Samples::default();
    for rt in [RUNC, LAZARUS] {
        s.measure(rt, |s| measure(&d, rt, opts.runs, many, s));
    }
    report(&s, many, conditions).finish(&opts.out);
}

fn measure(d: &Daemons, rt: &str, runs: usize, many: u64, s: &mut Samples) {
    docker(d, &["run", "--rm", "--runtime", rt, IMAGE_DOCKER, "true"]); // warm caches
    let from = fs::read_to_string(d.path("containerd.log"))
        .unwrap_or_default()
        .len();
    for _ in 0..runs {
        s.add(&format!("{rt}/latency"), first_output_ms(d, rt));
    }
    let log = fs::read_to_string(d.path("containerd.log")).unwrap_or_default();
    for (verb, key) in [("created ", "create"), ("started ", "start")] {
        for ms in shim_millis(&log[from..], verb) {
            s.add(&format!("{rt}/{key}"), ms);
        }
    }
    s.add(&format!("{rt}/rss1"), rss_with(d, rt, 1));
    s.add(&format!("{rt}/rssN"), rss_with(d, rt, many));
}

/// Milliseconds from starting `docker run` to reading its first line.
fn first_output_ms(d: &Daemons, rt: &str) -> f64 {
    let args = [
        "run",
        "--rm",
        "--runtime",
        rt,
        IMAGE_DOCKER,
        "echo",
        "ready",
    ];
    let t = Instant::now();
    let mut child = d.docker_cmd(&args).stdout(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    assert_eq!(line.trim(), "ready", "docker run with {rt}");
    assert!(child.wait().unwrap().success(), "docker run with {rt}");
    ms
}

/// The "X" of every "VERB ... in X ms" in the shim's log lines.
fn shim_millis(log: &str, verb: &str) -> Vec<f64> {
    log.lines()
        .filter_map(|l| {
            let rest = &l[l.find(verb)?..];
            let after = &rest[rest.find(" in ")? + 4..];
            after.split(" ms").next()?.parse().ok()
        })
        .collect()
}

/// The shims' total RSS (KiB) with `count` containers of `rt` running.
fn rss_with(d: &Daemons, rt: &str, count: u64) -> f64 {
    let ids: Vec<String> = (0..count)
        .map(|_| {
            docker(
                d,
                &["run", "-d", "--runtime", rt, IMAGE_DOCKER, "sleep", "600"],
            )
        })
        .collect();
    thread::sleep(Duration::from_secs(2)); // the shims settle
    let rss = shims::sum(&shims::pids(d, rt), "status", "VmRSS");
    let mut rm = vec!["rm", "-f"];
    rm.extend(ids.iter().map(String::as_str));
    docker(d, &rm);
    rss
}

fn report(s: &Samples, many: u64, conditions: Conditions) -> Report {
    let rows = [
        ("docker run to first output (ms)", "latency"),
        ("  of which the shim's Create (ms)", "create"),
        ("  of which the shim's Start (ms)", "start"),
        ("shim RSS, 1 container (KiB)", "rss1"),
        ("shim RSS total, N containers (KiB)", "rssN"),
    ];
    let mut table = Table::new(
        &format!("N = {many}; medians"),
        &["metric", "runc", "lazarus", "x runc"],
    );
    let mut values = Vec::new();
    for (label, key) in rows {
        let (a, b) = (
            s.median(&format!("{RUNC}/{key}")),
            s.median(&format!("{LAZARUS}/{key}")),
        );
        let na = |v: Option<f64>| match key {
            "create" | "start" => v.map_or("-".into(), |v| format!("{v:.1}")),
            "latency" => cell(v),
            _ => v.map_or("fail".into(), |v| format!("{v:.0}")),
        };
        table.row(vec![
            label.into(),
            na(a),
            na(b),
            ratio(b, a).map_or("n/a".into(), |r| format!("{r:.2}")),
        ]);
        if !matches!(key, "create" | "start") {
            values.push(ratio(b, a));
        }
    }
    let chart = Chart {
        name: "ratios".into(),
        title: "Lazarus against runc's shim (runc = 1)".into(),
        y_label: "x runc".into(),
        groups: vec![
            "docker run".into(),
            "shim RSS, 1".into(),
            format!("shim RSS, {many}"),
        ],
        series: vec![Series {
            label: "Lazarus / runc".into(),
            values,
        }],
    };
    Report {
        bench: "startup".into(),
        conditions,
        tables: vec![table],
        charts: vec![chart],
        failures: s.failures(),
    }
}
