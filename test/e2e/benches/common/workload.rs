//! The workloads the benchmarks checkpoint, restore and move, run through
//! a daemon set's Docker, and the Docker steps they share.

use crate::common::RUNC;
use crate::support::cmd::{poll, wait_until};
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::Daemons;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Keys Redis holds when it is checkpointed.
pub const KEYS: u64 = 100_000;

/// Typical application memory, in the warm image's Python: per MiB a
/// quarter random bytes, a quarter zeros and half repeated text records;
/// prints `ready MIB`, then ticks once a second.
pub const MIXED_FILL: &str = r#"import os, sys, time
mib, chunk = int(sys.argv[1]), 1 << 20
text = b"".join(b"%08d user=lazarus-%05d state=active balance=%d\n" % (i, i % 5000, i * 7919 % 1000003) for i in range(40000))
heap = bytearray(mib * chunk)
for c in range(mib):
    o, q = c * chunk, chunk // 4
    heap[o:o + q] = os.urandom(q)
    heap[o + q:o + 2 * q] = bytes(q)
    t = c * 4099 % (len(text) - 2 * q)
    heap[o + 2 * q:o + chunk] = text[t:t + 2 * q]
print("ready", mib, flush=True)
n = 0
while True:
    print("tick", n, flush=True)
    n += 1
    time.sleep(1)"#;

/// What runs in the container being measured.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    /// `memhog MIB` (test/images/memhog.c): random bytes nothing compresses.
    Random,
    /// `memhog MIB zero`: every page present, one word of it set.
    Zero,
    /// [`MIXED_FILL`]: mostly compressible, like ordinary heaps.
    Mixed,
    /// Redis holding [`KEYS`] keys set through `redis-cli --pipe`.
    Redis,
}

impl Kind {
    pub fn parse(name: &str) -> Kind {
        match name {
            "random" => Kind::Random,
            "zero" => Kind::Zero,
            "mixed" => Kind::Mixed,
            "redis" => Kind::Redis,
            _ => panic!("unknown workload {name:?} (random, zero, mixed, redis)"),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Random => "random",
            Kind::Zero => "zero",
            Kind::Mixed => "mixed",
            Kind::Redis => "redis",
        }
    }

    /// The row label: its size.
    pub fn label(self, mib: u64) -> String {
        match self {
            Kind::Redis => format!("redis {}k keys", KEYS / 1000),
            _ => format!("{} {mib} MiB", self.name()),
        }
    }

    /// `docker run`/`create` arguments after the flags: image and command.
    pub fn docker_args(self, mib: u64) -> Vec<String> {
        let mib = mib.to_string();
        let v: Vec<&str> = match self {
            Kind::Random => vec![IMAGE_DOCKER, "memhog", &mib],
            Kind::Zero => vec![IMAGE_DOCKER, "memhog", &mib, "zero"],
            Kind::Mixed => vec![
                "--entrypoint",
                "python3.11",
                "lazarus-test/warm:latest",
                "-c",
                MIXED_FILL,
                &mib,
            ],
            Kind::Redis => vec!["lazarus-test/redis:latest"],
        };
        v.into_iter().map(String::from).collect()
    }
}

impl Kind {
    /// memhog's arguments for the workloads it runs (`MIB [zero]`).
    pub fn memhog_args(self, mib: u64) -> Option<String> {
        match self {
            Kind::Random => Some(mib.to_string()),
            Kind::Zero => Some(format!("{mib} zero")),
            _ => None,
        }
    }

    /// The same program as a plain process on the host (the raw CRIU
    /// paths), `memhog` being a host build of test/images/memhog.c; its
    /// output goes where the caller points stdout. Redis has none.
    pub fn host_argv(self, memhog: &Path, mib: u64) -> Vec<String> {
        match self.memhog_args(mib) {
            Some(args) => std::iter::once(memhog.display().to_string())
                .chain(args.split(' ').map(String::from))
                .collect(),
            None if self == Kind::Mixed => ["/usr/bin/python3.11", "-u", "-c", MIXED_FILL]
                .into_iter()
                .map(String::from)
                .chain([mib.to_string()])
                .collect(),
            None => panic!("{} has no raw CRIU path", self.name()),
        }
    }
}

/// `docker ARGS` on `d`, which must succeed; its stdout, trimmed.
pub fn docker(d: &Daemons, args: &[&str]) -> String {
    d.docker(args).ok().stdout.trim().to_string()
}

/// Runs `kind` as container `name` with `runtime` on `d` and waits until it
/// is ready (Redis: answers and holds every key).
pub fn start(d: &Daemons, kind: Kind, runtime: &str, name: &str, mib: u64) {
    let mut args = vec!["run", "-d", "--runtime", runtime, "--name", name];
    let rest = kind.docker_args(mib);
    args.extend(rest.iter().map(String::as_str));
    docker(d, &args);
    match kind {
        Kind::Redis => {
            wait_until("redis to answer", Duration::from_secs(30), || {
                redis_ping(d, name).then_some(())
            });
            redis_fill(d, name);
        }
        _ => wait_until(&format!("{name} ready"), Duration::from_secs(300), || {
            logs(d, name)
                .lines()
                .any(|l| l.starts_with("ready"))
                .then_some(())
        }),
    }
}

/// Whether the restored `kind` in `name` works: Redis answers with every
/// key; the others tick past `before`.
pub fn works(d: &Daemons, kind: Kind, name: &str, before: usize) -> bool {
    match kind {
        Kind::Redis => redis_ping(d, name) && redis_keys(d, name) == Some(KEYS),
        _ => ticks(d, name) > before,
    }
}

/// Waits (at most `secs`) until [`works`].
pub fn wait_works(d: &Daemons, kind: Kind, name: &str, before: usize, secs: u64) {
    let what = format!("the restored {name} to work");
    wait_until(&what, Duration::from_secs(secs), || {
        works(d, kind, name, before).then_some(())
    });
}

pub fn logs(d: &Daemons, name: &str) -> String {
    d.docker(&["logs", name]).all()
}

pub fn ticks(d: &Daemons, name: &str) -> usize {
    logs(d, name)
        .lines()
        .filter(|l| l.starts_with("tick"))
        .count()
}

pub fn redis_ping(d: &Daemons, name: &str) -> bool {
    let out = d.docker(&["exec", name, "redis-cli", "-h", "127.0.0.1", "PING"]);
    out.code == Some(0) && out.stdout.trim() == "PONG"
}

pub fn redis_keys(d: &Daemons, name: &str) -> Option<u64> {
    let out = d.docker(&["exec", name, "redis-cli", "-h", "127.0.0.1", "DBSIZE"]);
    out.stdout.trim().parse().ok()
}

/// [`KEYS`] real SETs of random values through `redis-cli --pipe`, checked.
pub fn redis_fill(d: &Daemons, name: &str) {
    let script = format!(
        "awk -v n={KEYS} 'BEGIN {{ srand(); for (i = 0; i < n; i++) {{ \
         k = \"key:\" i; v = \"val:\" i \":\" int(rand() * 1000000000); \
         printf \"*3\\r\\n$3\\r\\nSET\\r\\n$%d\\r\\n%s\\r\\n$%d\\r\\n%s\\r\\n\", length(k), k, length(v), v }} }}' \
         | redis-cli -h 127.0.0.1 --pipe"
    );
    let out = d.docker(&["exec", name, "sh", "-c", &script]).ok();
    assert!(
        out.stdout.contains(&format!("errors: 0, replies: {KEYS}")),
        "loading keys failed: {out}"
    );
    assert_eq!(redis_keys(d, name), Some(KEYS), "keys after loading");
}

/// `docker start --checkpoint CP NAME`, retried on Docker's own "already
/// exists" race (test/README.md); returns when the attempt that worked
/// began, so the race's waits are not measured.
pub fn start_checkpoint(d: &Daemons, cp: &str, name: &str) -> Instant {
    for _ in 0..10 {
        let t = Instant::now();
        let out = d.docker(&["start", "--checkpoint", cp, name]);
        if out.code == Some(0) {
            return t;
        }
        assert!(
            out.all().contains("already exists"),
            "restore of {name}: {out}"
        );
        thread::sleep(Duration::from_secs(1));
    }
    panic!("restore of {name}: still \"already exists\" after 10 attempts");
}

/// runc restores the loopback interface down on Docker's none network
/// (asserted by the e2e suite's application cases), so nothing answers on
/// 127.0.0.1 until a runc user brings it up; Lazarus needs nothing.
pub fn after_start(d: &Daemons, runtime: &str, name: &str) {
    if runtime == RUNC {
        docker(
            d,
            &[
                "exec",
                "--privileged",
                name,
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ],
        );
    }
}

/// Docker's checkpoint directory of container `name` on `d`.
pub fn checkpoints_dir(d: &Daemons, name: &str) -> PathBuf {
    let id = docker(d, &["inspect", "-f", "{{.Id}}", name]);
    d.path("docker")
        .join("containers")
        .join(id)
        .join("checkpoints")
}

/// Bytes in the files under `path`.
pub fn du_bytes(path: &Path) -> u64 {
    let Ok(meta) = fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    fs::read_dir(path)
        .map(|entries| entries.flatten().map(|e| du_bytes(&e.path())).sum())
        .unwrap_or(0)
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / 1048576.0
}

/// Removes every container on `d`: after a failed measurement, so that a
/// stray 1 GiB workload does not skew the next one.
pub fn remove_all(d: &Daemons) {
    let ids = d.docker(&["ps", "-aq"]).stdout;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids);
        let _ = d.docker(&args);
    }
}

/// A container name no other measurement of this run has used: names are
/// not reused, so nothing a failed measurement left can collide.
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "{prefix}-{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Waits until `probe` holds, at most `secs`; whether it did.
pub fn within(secs: u64, mut probe: impl FnMut() -> bool) -> bool {
    poll(Duration::from_secs(secs), || probe().then_some(())).is_some()
}
