//! The shims' memory for N containers as one pod and as N separate
//! containers, Lazarus against runc's shim, in one run on one private
//! containerd. A pod is what containerd's CRI makes of it: every
//! container's spec carries `io.kubernetes.cri.sandbox-id`, and both shims
//! then serve the whole pod from one process; `ctr run --annotation` sets
//! it here, so no kubelet or CNI is needed.
//!
//! Per layout and runtime: the shim processes, their RSS and PSS (kB,
//! summed, from /proc/PID/smaps_rollup: PSS splits shared pages between the
//! processes mapping them, e.g. runc shims sharing one Go binary), threads.
//!
//! `cargo bench -p lazarus-e2e --bench pod -- [--n 10]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Chart, Conditions, Report, Series, Table};
use common::{cell, ratio, shims, Opts, Samples, LAZARUS, RUNC};
use std::thread;
use std::time::Duration;
use support::cmd::poll;
use support::config::IMAGE_CTR;
use support::harness::Daemons;

const LAYOUTS: [&str; 2] = ["pod", "separate"];

fn main() {
    let opts = Opts::parse(1);
    let n = opts.number("n", 10, 10);
    let d = Daemons::containerd_only("bench-pod");
    let conditions = Conditions::now(opts.runs, format!("{n} containers"));
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for layout in LAYOUTS {
            for rt in [LAZARUS, RUNC] {
                s.measure(&format!("{rt}/{layout}"), |s| measure(&d, rt, layout, n, s));
            }
        }
    }
    report(&s, n, conditions).finish(&opts.out);
}

fn measure(d: &Daemons, rt: &str, layout: &str, n: u64, s: &mut Samples) {
    let names: Vec<String> = (0..n).map(|i| format!("{layout}-{i}")).collect();
    let sandbox = format!("io.kubernetes.cri.sandbox-id=pod-{rt}");
    for name in &names {
        let mut args = vec!["run", "-d", "--runtime", rt];
        if layout == "pod" {
            args.extend(["--annotation", &sandbox]);
        }
        args.extend([IMAGE_CTR, name.as_str(), "sleep", "1000"]);
        d.ctr(&args).ok();
    }
    thread::sleep(Duration::from_secs(2)); // lazily started threads, first metrics
    let pids = shims::pids(d, rt);
    let key = |m: &str| format!("{rt}/{layout}/{m}");
    s.add(&key("shims"), pids.len() as f64);
    s.add(&key("rss"), shims::sum(&pids, "smaps_rollup", "Rss"));
    s.add(&key("pss"), shims::sum(&pids, "smaps_rollup", "Pss"));
    s.add(&key("threads"), shims::sum(&pids, "status", "Threads"));
    for name in &names {
        let _ = d.ctr(&["task", "kill", "-s", "KILL", name]);
    }
    for name in &names {
        poll(Duration::from_secs(30), || {
            (d.ctr(&["task", "delete", name]).code == Some(0)).then_some(())
        });
        let _ = d.ctr(&["containers", "delete", name]);
    }
    let gone = poll(Duration::from_secs(30), || {
        shims::pids(d, rt).is_empty().then_some(())
    });
    assert!(gone.is_some(), "shims of {rt} still running");
}

fn report(s: &Samples, n: u64, conditions: Conditions) -> Report {
    let mut table = Table::new(
        &format!("{n} containers"),
        &[
            "layout",
            "runtime",
            "shims",
            "RSS (kB)",
            "PSS (kB)",
            "threads",
            "RSS x runc",
            "PSS x runc",
        ],
    );
    let mut rss = Vec::new();
    let mut pss = Vec::new();
    for layout in LAYOUTS {
        for rt in [LAZARUS, RUNC] {
            let m = |rt: &str, k: &str| s.median(&format!("{rt}/{layout}/{k}"));
            let r = |k: &str| ratio(m(rt, k), m(RUNC, k));
            let whole = |v: Option<f64>| v.map_or("fail".into(), |v| format!("{v:.0}"));
            table.row(vec![
                layout.into(),
                rt.into(),
                whole(m(rt, "shims")),
                whole(m(rt, "rss")),
                whole(m(rt, "pss")),
                whole(m(rt, "threads")),
                cell(r("rss")),
                cell(r("pss")),
            ]);
            if rt == LAZARUS {
                rss.push(r("rss"));
                pss.push(r("pss"));
            }
        }
    }
    let chart = Chart {
        name: "memory".into(),
        title: format!("Shim memory for {n} containers, Lazarus against runc (runc = 1)"),
        y_label: "x runc".into(),
        groups: LAYOUTS.iter().map(|l| l.to_string()).collect(),
        series: vec![
            Series {
                label: "RSS".into(),
                values: rss,
            },
            Series {
                label: "PSS".into(),
                values: pss,
            },
        ],
    };
    Report {
        bench: "pod".into(),
        conditions,
        tables: vec![table],
        charts: vec![chart],
        failures: s.failures(),
    }
}
