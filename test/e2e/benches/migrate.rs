//! Live migration: `lazarus migrate` from one private containerd + dockerd
//! ("host A") to a second ("host B") whose daemons, shims and `lazarus
//! serve` run in a network namespace of their own behind a veth pair (the
//! stream crosses it, encrypted), against the best a Docker user can do
//! without Lazarus: `docker checkpoint create` on A, the same container
//! created on B beforehand, the checkpoint directory copied into it (a local
//! copy: free and unencrypted, which favours the baseline), `docker start
//! --checkpoint` on B; with runc. And against its floors: raw CRIU
//! moving the same program across the same veth (migrate_raw.rs).
//!
//! Paths (`--paths`), each on a fresh container: `postcopy` (the minimal
//! state in a zstd archive; the memory follows from A's CRIU page server,
//! on A's loopback, through Lazarus's page tunnel), `stopcopy` (A's dump
//! pushes the memory through the tunnel to B's page server on B's
//! loopback, into B's memory filesystem), `docker-runc` (the baseline),
//! `criu-lazy`, `criu-stopcopy` and their `-tls` twins (raw CRIU, see
//! migrate_raw.rs; not for Redis, which runs only in its image).
//! Columns: downtime = from the checkpoint's start until the container runs
//! on B (Lazarus: its report, split into the source's checkpoint and
//! archive, the transfer, and the receiver's restore, of which the
//! runtime's: the engine's start, CRIU's restore and the shim's work
//! around it; baseline: until `docker start --checkpoint` returned);
//! ready = until the workload works on B; total = until `lazarus
//! migrate` returned (post-copy: until the last page arrived); stream = the
//! bytes that crossed; x link = total against the memory size over the
//! link's raw TCP bandwidth, measured first (1 GiB in 1 MiB writes); x raw
//! criu = a Lazarus mode against raw CRIU's same mode without TLS (a `-tls`
//! row: against its plain twin, the price of CRIU's TLS).
//!
//! Workloads (`--workloads`): `random` (memhog), `zero` (memhog's
//! mostly-zero heap), `mixed` (the warm image's Python), `redis`.
//!
//! `cargo bench -p lazarus-e2e --bench migrate -- [--runs 1] [--sizes 256]
//! [--workloads random,zero,mixed] [--paths postcopy,stopcopy,criu-lazy,
//! criu-lazy-tls,criu-stopcopy,criu-stopcopy-tls,docker-runc]
//! [--full: sizes 256,1024]`

#[allow(dead_code)]
mod common;
#[allow(dead_code)] // the suite's harness: a benchmark uses part of it
#[path = "../support/mod.rs"]
mod support;

mod migrate_raw;

use common::report::{Chart, Conditions, Report, Series, Table};
use common::workload::{
    after_start, checkpoints_dir, docker, du_bytes, mib, start, start_checkpoint, unique,
    wait_works, Kind,
};
use common::{cell, ratio, since, Opts, Samples, LAZARUS, RUNC};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};
use support::apps::{with_docker_and, with_docker_and_with, App};
use support::cmd::run_timeout;
use support::harness::Daemons;
use support::lazarus::{keygen, lazarus_cmd, Serve, B_HOST};

const PATHS: &str =
    "postcopy,stopcopy,criu-lazy,criu-lazy-tls,criu-stopcopy,criu-stopcopy-tls,docker-runc";

/// The raw CRIU path a Lazarus mode (or a raw `-tls` path) is held to.
fn floor(path: &str) -> Option<&'static str> {
    match path {
        "postcopy" | "criu-lazy-tls" => Some("criu-lazy"),
        "stopcopy" | "criu-stopcopy-tls" => Some("criu-stopcopy"),
        _ => None,
    }
}

struct Hosts {
    a: Daemons,
    b: Daemons,
    key: String,
    serve: Serve,
}

fn main() {
    let opts = Opts::parse(1);
    let sizes: Vec<u64> = opts
        .list("sizes", "256", "256,1024")
        .iter()
        .map(|s| s.parse().expect("--sizes"))
        .collect();
    let workloads: Vec<Kind> = opts
        .list("workloads", "random,zero,mixed", "random,zero,mixed")
        .iter()
        .map(|w| Kind::parse(w))
        .collect();
    let paths = opts.list("paths", PATHS, PATHS);
    let hosts = hosts();
    let raw = paths
        .iter()
        .any(|p| p.starts_with("criu-"))
        .then(|| migrate_raw::Raw::new(&hosts.b));
    let link = link_mibps(&hosts.b);
    eprintln!("[bench] link A -> B: {link:.0} MiB/s of raw TCP");
    let conditions = Conditions::now(
        opts.runs,
        format!("B behind a veth pair; link {link:.0} MiB/s"),
    );
    let mut s = Samples::default();
    for _ in 0..opts.runs {
        for &size in &sizes {
            for &w in &workloads {
                for path in &paths {
                    if path.starts_with("criu-") && w == Kind::Redis {
                        continue; // Redis runs only in its image
                    }
                    let key = format!("{}/{size}/{path}", w.name());
                    let ok = s.measure(&key, |s| match path.as_str() {
                        "postcopy" | "stopcopy" => with_lazarus(&hosts, w, path, size, &key, s),
                        "docker-runc" => with_runc(&hosts, w, size, &key, s),
                        p if migrate_raw::PATHS.contains(&p) => {
                            let raw = raw.as_ref().unwrap();
                            raw.measure(w, p, size, &key, s)
                        }
                        _ => panic!("unknown path {path:?} ({PATHS})"),
                    });
                    if !ok {
                        common::workload::remove_all(&hosts.a);
                        common::workload::remove_all(&hosts.b);
                    }
                }
            }
        }
    }
    report(&s, &sizes, &workloads, &paths, link, conditions).finish(&opts.out);
}

/// Host A here, host B behind the veth with its agent; one key for both.
/// The CLI's scratch space is the set's own; stop-copy receives into the
/// default memory filesystem, as on a real host.
fn hosts() -> Hosts {
    let a = with_docker_and("bench-migrate-a", &[App::Redis, App::Warm]);
    let b = with_docker_and_with("bench-migrate-b", &B_HOST, &[App::Redis, App::Warm]);
    for d in [&a, &b] {
        fs::write(
            d.path("cli.toml"),
            format!("work_root = {:?}\n", d.path("lazarus-work")),
        )
        .unwrap();
    }
    let key = keygen(&a, "migration.key");
    let serve = Serve::start(&b, &key);
    Hosts { a, b, key, serve }
}

/// The link's raw bandwidth (MiB/s): 1 GiB of plain TCP from here to B's
/// namespace, in 1 MiB writes and reads, until B has read the last byte.
fn link_mibps(b: &Daemons) -> f64 {
    let ns = b.netns().expect("host B has a network of its own");
    let addr = format!("{}:7471", ns.inside);
    let ns_file = File::open(ns.path()).unwrap();
    let (bound, listening) = std::sync::mpsc::channel();
    let listen_at = addr.clone();
    let receiver = thread::spawn(move || {
        // This thread only: the listener lives in B's namespace.
        nix::sched::setns(ns_file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let listener = TcpListener::bind(&listen_at).unwrap();
        bound.send(()).unwrap();
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 1 << 20];
        while c.read(&mut buf).unwrap() > 0 {}
        c.write_all(b"k").unwrap();
    });
    listening.recv_timeout(Duration::from_secs(10)).unwrap();
    let mut c = TcpStream::connect(&addr).unwrap();
    let block = vec![0u8; 1 << 20];
    let t = Instant::now();
    for _ in 0..1024 {
        c.write_all(&block).unwrap();
    }
    c.shutdown(std::net::Shutdown::Write).unwrap();
    c.read_exact(&mut [0u8; 1]).unwrap();
    let mibps = 1024.0 / since(t);
    receiver.join().unwrap();
    mibps
}

fn with_lazarus(h: &Hosts, w: Kind, mode: &str, size: u64, key: &str, s: &mut Samples) {
    let name = unique(w.name());
    start(&h.a, w, LAZARUS, &name, size);
    let t = Instant::now();
    let args = [
        "migrate",
        &name,
        "--to",
        &h.serve.addr,
        "--key",
        &h.key,
        "--mode",
        mode,
        "--compress",
        "zstd",
        "--rm",
        "--json",
    ];
    let out = run_timeout(lazarus_cmd(&h.a).args(args), None, Duration::from_secs(900)).ok();
    s.add(&format!("{key}/total"), since(t));
    wait_works(&h.b, w, &name, 0, 120);
    s.add(&format!("{key}/ready"), since(t));
    let report: serde_json::Value =
        serde_json::from_str(&out.stdout).expect("lazarus migrate --json");
    let n = |k: &str| report[k].as_f64();
    s.add(
        &format!("{key}/down"),
        n("downtime_seconds").expect("downtime_seconds"),
    );
    for (metric, field) in [
        ("memory", "memory_seconds"),
        ("archive", "archive_seconds"),
        ("transfer", "transfer_seconds"),
        ("restore", "restore_seconds"),
    ] {
        if let Some(v) = n(field) {
            s.add(&format!("{key}/{metric}"), v);
        }
    }
    if let Some(v) = report["restored"]["start_seconds"].as_f64() {
        s.add(&format!("{key}/runtime"), v);
    }
    let bytes = n("archive_bytes").unwrap_or(0.0) + n("memory_bytes").unwrap_or(0.0);
    s.add(&format!("{key}/bytes"), bytes / 1048576.0);
    docker(&h.b, &["rm", "-f", &name]);
}

fn with_runc(h: &Hosts, w: Kind, size: u64, key: &str, s: &mut Samples) {
    let (a, b) = (&h.a, &h.b);
    let name = unique(w.name());
    start(a, w, RUNC, &name, size);
    // Prepared on B before the freeze, as Lazarus prepares: the same container.
    let mut create = vec!["create", "--runtime", RUNC, "--name", &name];
    let rest = w.docker_args(size);
    create.extend(rest.iter().map(String::as_str));
    docker(b, &create);
    let t = Instant::now();
    docker(a, &["checkpoint", "create", &name, "cp"]);
    let into = checkpoints_dir(b, &name);
    fs::create_dir_all(&into).unwrap();
    let from = checkpoints_dir(a, &name).join("cp");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(&into)
        .status()
        .unwrap();
    assert!(copied.success(), "copying the checkpoint to B");
    s.add(&format!("{key}/bytes"), mib(du_bytes(&into.join("cp"))));
    docker(a, &["rm", "-f", &name]); // frees host A's memory, as --rm does
    start_checkpoint(b, "cp", &name);
    let down = since(t);
    s.add(&format!("{key}/down"), down);
    s.add(&format!("{key}/total"), down);
    after_start(b, RUNC, &name);
    wait_works(b, w, &name, 0, 120);
    s.add(&format!("{key}/ready"), since(t));
    docker(b, &["rm", "-f", &name]);
}

fn report(
    s: &Samples,
    sizes: &[u64],
    workloads: &[Kind],
    paths: &[String],
    link: f64,
    conditions: Conditions,
) -> Report {
    let mut table = Table::new(
        &format!(
            "link A -> B: {link:.0} MiB/s of raw TCP; total x link = total / (memory size / that)"
        ),
        &[
            "workload",
            "path",
            "downtime (s), median (min-max)",
            "of which archive + transfer + restore (runtime's) (s)",
            "memory (s)",
            "total (s), median (min-max)",
            "ready (s)",
            "stream (MiB)",
            "downtime x runc",
            "total x runc",
            "ready x runc",
            "total x link",
            "downtime x raw criu",
            "total x raw criu",
        ],
    );
    let lazarus_paths = || {
        paths
            .iter()
            .filter(|p| *p == "postcopy" || *p == "stopcopy")
    };
    let mut down: Vec<Series> = lazarus_paths()
        .map(|p| Series {
            label: format!("{p}: downtime x runc"),
            values: Vec::new(),
        })
        .collect();
    let mut down_raw: Vec<Series> = lazarus_paths()
        .map(|p| Series {
            label: format!("{p}: downtime x {}", floor(p).unwrap()),
            values: Vec::new(),
        })
        .collect();
    let mut groups = Vec::new();
    for &size in sizes {
        for &w in workloads {
            groups.push(w.label(size));
            let m = |path: &str, k: &str| s.median(&format!("{}/{size}/{path}/{k}", w.name()));
            // The median and, over several runs, the spread (min-max).
            let with_spread = |path: &str, k: &str| {
                let median = cell(m(path, k));
                match s.count(&format!("{}/{size}/{path}/{k}", w.name())) > 1 {
                    true => format!(
                        "{median} ({})",
                        s.spread(&format!("{}/{size}/{path}/{k}", w.name()))
                    ),
                    false => median,
                }
            };
            for path in paths {
                if path.starts_with("criu-") && w == Kind::Redis {
                    continue;
                }
                let lazarus = path == "postcopy" || path == "stopcopy";
                // Raw CRIU's rows have no ready time (nothing but the
                // program's ticks to wait for) and, lazy, no stream size
                // (the pages cross between CRIU's own ends, uncounted).
                let raw_blank = |c: String| {
                    if path.starts_with("criu-") && c == "fail" {
                        String::new()
                    } else {
                        c
                    }
                };
                let x_raw = |k: &str| floor(path).and_then(|f| ratio(m(path, k), m(f, k)));
                let split = if lazarus {
                    format!(
                        "{} + {} + {} ({})",
                        cell(m(path, "archive")),
                        cell(m(path, "transfer")),
                        cell(m(path, "restore")),
                        cell(m(path, "runtime"))
                    )
                } else {
                    String::new()
                };
                let memory = if path == "postcopy" {
                    cell(m(path, "memory"))
                } else {
                    String::new()
                };
                let by_link =
                    (w != Kind::Redis).then(|| ratio(m(path, "total"), Some(size as f64 / link)));
                table.row(vec![
                    w.label(size),
                    path.clone(),
                    with_spread(path, "down"),
                    split,
                    memory,
                    with_spread(path, "total"),
                    raw_blank(cell(m(path, "ready"))),
                    raw_blank(cell(m(path, "bytes"))),
                    cell(ratio(m(path, "down"), m("docker-runc", "down"))),
                    cell(ratio(m(path, "total"), m("docker-runc", "total"))),
                    raw_blank(cell(ratio(m(path, "ready"), m("docker-runc", "ready")))),
                    by_link.map_or(String::new(), cell),
                    floor(path).map_or(String::new(), |_| cell(x_raw("down"))),
                    floor(path).map_or(String::new(), |_| cell(x_raw("total"))),
                ]);
                if let Some(series) = down_raw
                    .iter_mut()
                    .find(|x| lazarus && x.label.starts_with(path.as_str()))
                {
                    series.values.push(x_raw("down"));
                }
                if let Some(series) = down
                    .iter_mut()
                    .find(|x| lazarus && x.label.starts_with(path.as_str()))
                {
                    series
                        .values
                        .push(ratio(m(path, "down"), m("docker-runc", "down")));
                }
            }
        }
    }
    let chart = Chart {
        name: "downtime".into(),
        title: "Migration downtime, Lazarus against Docker + runc with a local copy (runc = 1)"
            .into(),
        y_label: "x runc (downtime)".into(),
        groups: groups.clone(),
        series: down,
    };
    let against_raw = Chart {
        name: "downtime-raw-criu".into(),
        title: "Migration downtime, Lazarus against raw CRIU's same mode across the same veth (raw CRIU = 1)"
            .into(),
        y_label: "x raw CRIU (downtime)".into(),
        groups,
        series: down_raw,
    };
    Report {
        bench: "migrate".into(),
        conditions,
        tables: vec![table],
        charts: vec![chart, against_raw],
        failures: s.failures(),
    }
}
