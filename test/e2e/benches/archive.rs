//! Portable checkpoints: `lazarus checkpoint --export` on one private
//! containerd + dockerd ("host A") and `lazarus restore --import` of the
//! file on a second ("host B"), against Docker's own `docker checkpoint
//! create` + `docker start --checkpoint` (on host A: Docker cannot move a
//! container) of the same workloads, with Lazarus and with runc.
//!
//! Workloads (`--workloads`): redis (100,000 keys), random and mixed
//! (`--mib` MiB; see common/workload.rs). Paths (`--paths`), each on a
//! fresh container: `lazarus-zstd` (`--compress zstd`), `lazarus-none`,
//! `docker` (runtime Lazarus), `docker-runc`.
//! Columns: checkpoint = the command's wall time (Lazarus: split into the
//! dump and the archive's writing, from its --json); size = the archive, or
//! Docker's checkpoint directory; restore = the command's wall time; ready
//! = from the restore's start until the workload works again; x docker =
//! against the docker row (same runtime) of the same workload.
//!
//! `cargo bench -p lazarus-e2e --bench archive -- [--runs 1] [--mib 256]
//! [--workloads redis,random,mixed] [--paths ...] [--full: 1024 MiB]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

use common::report::{Chart, Conditions, Report, Series, Table};
use common::workload::{
    after_start, checkpoints_dir, docker, du_bytes, mib, start, start_checkpoint, ticks, unique,
    wait_works, Kind,
};
use common::{cell, ratio, since, timed, Opts, Samples, LAZARUS, RUNC};
use std::time::{Duration, Instant};
use support::apps::{with_docker_and, App};
use support::cmd::run_timeout;
use support::harness::Daemons;
use support::lazarus::lazarus_cmd;

const PATHS: &str = "lazarus-zstd,lazarus-none,docker,docker-runc";

fn main() {
    let opts = Opts::parse(1);
    let size = opts.number("mib", 256, 1024);
    let workloads: Vec<Kind> = opts
        .list("workloads", "redis,random,mixed", "redis,random,mixed")
        .iter()
        .map(|w| Kind::parse(w))
        .collect();
    let paths = opts.list("paths", PATHS, PATHS);
    let a = with_docker_and("bench-archive-a", &[App::Redis, App::Warm]);
    let b = with_docker_and("bench-archive-b", &[App::Redis, App::Warm]);
    let conditions = Conditions::now(
        opts.runs,
        format!("{size} MiB; restores by lazarus on host B, by Docker on host A"),
    );
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for &w in &workloads {
            for path in &paths {
                let key = format!("{}/{path}", w.name());
                let ok = s.measure(&key, |s| match path.as_str() {
                    "lazarus-zstd" => lazarus(&a, &b, w, "zstd", size, &key, s),
                    "lazarus-none" => lazarus(&a, &b, w, "none", size, &key, s),
                    "docker" => with_docker(&a, w, LAZARUS, size, &key, s),
                    "docker-runc" => with_docker(&a, w, RUNC, size, &key, s),
                    _ => panic!("unknown path {path:?} ({PATHS})"),
                });
                if !ok {
                    common::workload::remove_all(&a);
                    common::workload::remove_all(&b);
                }
            }
        }
    }
    report(&s, &workloads, &paths, size, conditions).finish(&opts.out);
}

fn lazarus(
    a: &Daemons,
    b: &Daemons,
    w: Kind,
    compress: &str,
    size: u64,
    key: &str,
    s: &mut Samples,
) {
    let name = unique(w.name());
    let suffix = if compress == "zstd" {
        ".tar.zst"
    } else {
        ".tar"
    };
    let file = a.path(&format!("{name}{suffix}"));
    let file = file.to_str().unwrap();
    start(a, w, LAZARUS, &name, size);
    let args = [
        "checkpoint",
        &name,
        "--export",
        file,
        "--compress",
        compress,
        "--json",
    ];
    let (cp, out) =
        timed(|| run_timeout(lazarus_cmd(a).args(args), None, Duration::from_secs(900)).ok());
    let report: serde_json::Value = serde_json::from_str(&out.stdout).expect("lazarus --json");
    let seconds = |k: &str| {
        report[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} in {report}"))
    };
    s.add(&format!("{key}/cp"), cp);
    s.add(
        &format!("{key}/size"),
        mib(std::fs::metadata(file).unwrap().len()),
    );
    s.add(&format!("{key}/dump"), seconds("checkpoint_seconds"));
    s.add(
        &format!("{key}/write"),
        seconds("export_seconds") - seconds("checkpoint_seconds"),
    );
    docker(a, &["rm", "-f", &name]); // frees host A's memory before the restore
    let t = Instant::now();
    let args = ["restore", "--import", file, "--name", &name];
    run_timeout(lazarus_cmd(b).args(args), None, Duration::from_secs(900)).ok();
    s.add(&format!("{key}/rst"), since(t));
    wait_works(b, w, &name, 0, 120);
    s.add(&format!("{key}/ready"), since(t));
    docker(b, &["rm", "-f", &name]);
    let _ = std::fs::remove_file(file);
}

fn with_docker(a: &Daemons, w: Kind, rt: &str, size: u64, key: &str, s: &mut Samples) {
    let name = unique(w.name());
    start(a, w, rt, &name, size);
    let (cp, _) = timed(|| docker(a, &["checkpoint", "create", &name, "cp"]));
    s.add(&format!("{key}/cp"), cp);
    s.add(
        &format!("{key}/size"),
        mib(du_bytes(&checkpoints_dir(a, &name).join("cp"))),
    );
    let before = ticks(a, &name);
    let t = start_checkpoint(a, "cp", &name);
    s.add(&format!("{key}/rst"), since(t));
    after_start(a, rt, &name);
    wait_works(a, w, &name, before, 120);
    s.add(&format!("{key}/ready"), since(t));
    docker(a, &["rm", "-f", &name]);
}

fn report(
    s: &Samples,
    workloads: &[Kind],
    paths: &[String],
    size: u64,
    conditions: Conditions,
) -> Report {
    let mut table = Table::new(
        "Lazarus restores on host B, Docker on host A; seconds and MiB",
        &[
            "workload",
            "path",
            "checkpoint (s)",
            "of which dump + archive (s)",
            "size (MiB)",
            "restore (s)",
            "ready (s)",
            "checkpoint x docker",
            "size x docker",
            "ready x docker",
        ],
    );
    let mut series: Vec<Series> = paths
        .iter()
        .filter(|p| p.starts_with("lazarus"))
        .map(|p| Series {
            label: format!("{p}: ready x docker"),
            values: Vec::new(),
        })
        .collect();
    for &w in workloads {
        let m = |path: &str, k: &str| s.median(&format!("{}/{path}/{k}", w.name()));
        for path in paths {
            let split = if path.starts_with("lazarus") {
                format!("{} + {}", cell(m(path, "dump")), cell(m(path, "write")))
            } else {
                String::new()
            };
            table.row(vec![
                w.label(size),
                path.clone(),
                cell(m(path, "cp")),
                split,
                cell(m(path, "size")),
                cell(m(path, "rst")),
                cell(m(path, "ready")),
                cell(ratio(m(path, "cp"), m("docker", "cp"))),
                cell(ratio(m(path, "size"), m("docker", "size"))),
                cell(ratio(m(path, "ready"), m("docker", "ready"))),
            ]);
            if let Some(series) = series
                .iter_mut()
                .find(|x| x.label.starts_with(path.as_str()))
            {
                series
                    .values
                    .push(ratio(m(path, "ready"), m("docker", "ready")));
            }
        }
    }
    let chart = Chart {
        name: "ready".into(),
        title: "Export on A, import on B, until it works, against Docker on one host (docker = 1)"
            .into(),
        y_label: "x docker checkpoint + start (ready)".into(),
        groups: workloads.iter().map(|w| w.label(size)).collect(),
        series,
    };
    Report {
        bench: "archive".into(),
        conditions,
        tables: vec![table],
        charts: vec![chart],
        failures: s.failures(),
    }
}
