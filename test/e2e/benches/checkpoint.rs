//! Checkpoint and restore: Lazarus against runc in one run, on one private
//! containerd + dockerd, with raw `criu dump` / `criu restore` of the same
//! program as the floor. Workloads (`--kinds`), each touching SIZE MiB
//! (`--sizes`) and ticking once a second; every restore must tick on:
//! `random` (memhog: random bytes) and `mixed` (a quarter random, a quarter
//! zeros, half text records, in the warm image's Python).
//!
//! Paths (`--paths`):
//! - `docker`: `docker checkpoint create` (the container stops), then
//!   `docker start --checkpoint`;
//! - `ctr`: `ctr container checkpoint --rw --task` into containerd's content
//!   store, the task killed, `ctr container restore --live --rw` as a new
//!   container (the workload writes its ticks into the rw layer);
//! - `direct` (Lazarus only): `lazarus checkpoint --export F --compress none
//!   --json` of a ctr container, the dump written straight into an image
//!   path, then `lazarus restore --import F --json`; timed from the CLI's
//!   report (the dump; the restore after extraction), so the archive's own
//!   writing and reading are not in the cells. Compared with raw CRIU;
//! - `raw`: `criu dump` / `criu restore -d` of the same program on the host.
//!
//! The direct and raw paths keep their images in `--images-at` (default
//! /dev/shm, memory), so the shared disk's writeback does not decide the
//! comparison. CPU: user + system time of everything the benchmark starts
//! (daemons, shims, CRIU, clients), counted in a cpuacct cgroup of its own
//! (cgroup v1) that they inherit; containers have cgroups of their own.
//!
//! `cargo bench -p lazarus-e2e --bench checkpoint -- [--runs 3]
//! [--sizes 0,256] [--kinds random,mixed] [--paths docker,ctr,direct,raw]
//! [--full: sizes 0,256,1024]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

mod checkpoint_paths;

use checkpoint_paths::{Bench, Cpu};
use common::report::{Chart, Conditions, Report, Series, Table};
use common::workload::Kind;
use common::{cell, ratio, Opts, Samples, LAZARUS, RUNC};
use support::apps::{with_docker_and, App};

fn main() {
    let opts = Opts::parse(3);
    let sizes: Vec<u64> = opts
        .list("sizes", "0,256", "0,256,1024")
        .iter()
        .map(|s| s.parse().expect("--sizes"))
        .collect();
    let kinds: Vec<Kind> = opts
        .list("kinds", "random,mixed", "random,mixed")
        .iter()
        .map(|k| Kind::parse(k))
        .collect();
    let paths = opts.list("paths", "docker,ctr,direct,raw", "docker,ctr,direct,raw");
    let images_at = opts.list("images-at", "/dev/shm", "/dev/shm").remove(0);
    let cpu = Cpu::enter(); // before the daemons start: they inherit it
    let d = with_docker_and("bench-checkpoint", &[App::Warm]);
    let conditions = Conditions::now(
        opts.runs,
        format!("sizes {sizes:?} MiB, paths {paths:?}, images of direct/raw in {images_at}"),
    );
    let bench = Bench::new(&d, cpu, &images_at);
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for &size in &sizes {
            for &kind in &kinds {
                for path in &paths {
                    bench.measure(path, kind, size, &mut s);
                }
            }
        }
    }
    drop(bench);
    report(&s, &sizes, &kinds, conditions).finish(&opts.out);
}

fn report(s: &Samples, sizes: &[u64], kinds: &[Kind], conditions: Conditions) -> Report {
    let mut main = Table::new(
        "Docker's and ctr's paths: medians (min-max), seconds",
        &[
            "workload",
            "operation",
            "runc (s)",
            "lazarus (s)",
            "x runc",
            "raw criu (s)",
            "x raw",
            "runc CPU (s)",
            "lazarus CPU (s)",
            "CPU x runc",
            "image MiB runc / lazarus / raw",
        ],
    );
    let mut direct = Table::new(
        "The direct path (image path, Lazarus only) against raw CRIU",
        &[
            "workload",
            "operation",
            "lazarus (s)",
            "raw criu (s)",
            "x raw",
            "lazarus CPU (s), whole command",
        ],
    );
    let mut vs_runc: Vec<Series> = [
        "docker checkpoint",
        "docker restore",
        "ctr checkpoint",
        "ctr restore",
    ]
    .iter()
    .map(|l| Series {
        label: l.to_string(),
        values: Vec::new(),
    })
    .collect();
    let mut vs_raw: Vec<Series> = [
        "docker checkpoint",
        "docker restore",
        "direct dump",
        "direct restore",
    ]
    .iter()
    .map(|l| Series {
        label: format!("Lazarus {l}"),
        values: Vec::new(),
    })
    .collect();
    let mut groups = Vec::new();
    for &size in sizes {
        for &kind in kinds {
            let w = kind.label(size);
            groups.push(w.clone());
            let key =
                |path: &str, rt: &str, m: &str| format!("{}/{size}/{path}/{rt}/{m}", kind.name());
            let med = |path: &str, rt: &str, m: &str| s.median(&key(path, rt, m));
            for path in ["docker", "ctr"] {
                for op in ["cp", "rst"] {
                    let (a, b) = (
                        med(path, RUNC, &format!("{op}/wall")),
                        med(path, LAZARUS, &format!("{op}/wall")),
                    );
                    let raw = med("raw", "-", &format!("{op}/wall"));
                    let (ac, bc) = (
                        med(path, RUNC, &format!("{op}/cpu")),
                        med(path, LAZARUS, &format!("{op}/cpu")),
                    );
                    let sizes = if op == "cp" && path == "docker" {
                        let mb = |p: &str, rt: &str| {
                            med(p, rt, "size").map_or("-".into(), |v| format!("{v:.0}"))
                        };
                        format!(
                            "{} / {} / {}",
                            mb(path, RUNC),
                            mb(path, LAZARUS),
                            mb("raw", "-")
                        )
                    } else {
                        String::new()
                    };
                    let spread = |rt: &str| s.spread(&key(path, rt, &format!("{op}/wall")));
                    let label = format!(
                        "{path} {}",
                        if op == "cp" { "checkpoint" } else { "restore" }
                    );
                    main.row(vec![
                        w.clone(),
                        label,
                        format!("{} ({})", cell(a), spread(RUNC)),
                        format!("{} ({})", cell(b), spread(LAZARUS)),
                        cell(ratio(b, a)),
                        cell(raw),
                        cell(ratio(b, raw)),
                        cell(ac),
                        cell(bc),
                        cell(ratio(bc, ac)),
                        sizes,
                    ]);
                    let i = if path == "docker" { 0 } else { 2 } + usize::from(op == "rst");
                    vs_runc[i].values.push(ratio(b, a));
                    if path == "docker" {
                        vs_raw[i].values.push(ratio(b, raw));
                    }
                }
            }
            for (i, op) in ["cp", "rst"].into_iter().enumerate() {
                let lz = med("direct", LAZARUS, &format!("{op}/wall"));
                let raw = med("raw", "-", &format!("{op}/wall"));
                direct.row(vec![
                    w.clone(),
                    if op == "cp" {
                        "direct dump"
                    } else {
                        "direct restore"
                    }
                    .into(),
                    format!(
                        "{} ({})",
                        cell(lz),
                        s.spread(&key("direct", LAZARUS, &format!("{op}/wall")))
                    ),
                    cell(raw),
                    cell(ratio(lz, raw)),
                    cell(med("direct", LAZARUS, &format!("{op}/cpu"))),
                ]);
                vs_raw[2 + i].values.push(ratio(lz, raw));
            }
        }
    }
    let charts = vec![
        Chart {
            name: "vs-runc".into(),
            title: "Checkpoint and restore, Lazarus against runc (runc = 1)".into(),
            y_label: "x runc (wall time)".into(),
            groups: groups.clone(),
            series: vs_runc,
        },
        Chart {
            name: "vs-raw-criu".into(),
            title: "Lazarus against raw CRIU on the same program (raw CRIU = 1)".into(),
            y_label: "x raw CRIU (wall time)".into(),
            groups,
            series: vs_raw,
        },
    ];
    Report {
        bench: "checkpoint".into(),
        conditions,
        tables: vec![main, direct],
        charts,
        failures: s.failures(),
    }
}
