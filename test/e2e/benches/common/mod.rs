//! What the benchmarks share: their options, the samples and their medians,
//! the conditions of a run, the printed table and the JSON and SVG results.
//! The daemons, hosts and clients are the e2e suite's own (`support/`).

pub mod chart;
pub mod report;
pub mod shims;
pub mod workload;

use std::collections::BTreeMap;
use std::env;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

pub const RUNC: &str = "io.containerd.runc.v2";
pub const LAZARUS: &str = "io.containerd.lazarus.v2";

/// A benchmark's command line: `--runs N`, `--full` (the full sizes, which
/// take longer than a quarter of an hour), `--out DIR` (where the JSON and
/// SVG go; default docs/benchmarks) and `--KEY VALUE` options of its own.
/// `cargo bench` adds `--bench`, which is ignored.
pub struct Opts {
    pub runs: usize,
    pub full: bool,
    pub out: PathBuf,
    extra: BTreeMap<String, String>,
}

impl Opts {
    pub fn parse(default_runs: usize) -> Opts {
        let mut opts = Opts {
            runs: default_runs,
            full: false,
            out: crate::support::config::repo_root().join("docs/benchmarks"),
            extra: BTreeMap::new(),
        };
        let mut args = env::args().skip(1);
        while let Some(arg) = args.next() {
            let Some(key) = arg.strip_prefix("--") else {
                panic!("unexpected argument {arg:?} (options are --KEY VALUE)");
            };
            match key {
                "bench" => {}
                "full" => opts.full = true,
                _ => {
                    let value = args
                        .next()
                        .unwrap_or_else(|| panic!("--{key} needs a value"));
                    opts.extra.insert(key.to_string(), value);
                }
            }
        }
        if let Some(runs) = opts.extra.remove("runs") {
            opts.runs = runs.parse().expect("--runs N");
        }
        if let Some(out) = opts.extra.remove("out") {
            opts.out = PathBuf::from(out);
        }
        opts
    }

    /// `--KEY a,b,c`, else `default` (or `full` with `--full`).
    pub fn list(&self, key: &str, default: &str, full: &str) -> Vec<String> {
        let given = self.extra.get(key).map(String::as_str);
        let text = given.unwrap_or(if self.full { full } else { default });
        text.split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    pub fn number(&self, key: &str, default: u64, full: u64) -> u64 {
        match self.extra.get(key) {
            Some(v) => v
                .parse()
                .unwrap_or_else(|_| panic!("--{key} takes a number")),
            None if self.full => full,
            None => default,
        }
    }
}

/// Samples by key (`"workload/path/metric"`), and the keys whose
/// measurement failed: their cells say "fail".
#[derive(Default)]
pub struct Samples {
    values: BTreeMap<String, Vec<f64>>,
    failed: BTreeMap<String, String>,
}

impl Samples {
    pub fn add(&mut self, key: &str, value: f64) {
        self.values.entry(key.to_string()).or_default().push(value);
    }

    /// The median of `key`'s samples; None if it failed or has none.
    pub fn median(&self, key: &str) -> Option<f64> {
        if self.failed.keys().any(|f| key.starts_with(f.as_str())) {
            return None;
        }
        median(self.values.get(key)?)
    }

    /// How many samples `key` has.
    pub fn count(&self, key: &str) -> usize {
        self.values.get(key).map_or(0, Vec::len)
    }

    /// "min-max" of `key`'s samples.
    pub fn spread(&self, key: &str) -> String {
        match self.values.get(key) {
            Some(v) if !v.is_empty() => {
                let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
                let hi = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                format!("{lo:.2}-{hi:.2}")
            }
            _ => "-".into(),
        }
    }

    /// "what: why" of every failed measurement, for the report.
    pub fn failures(&self) -> Vec<String> {
        self.failed
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect()
    }

    /// Runs one measurement; a panic in it (a failed step, a workload that
    /// never came back) marks every key under `prefix` failed, is logged,
    /// and the benchmark goes on with the next measurement.
    pub fn measure(&mut self, prefix: &str, f: impl FnOnce(&mut Samples)) -> bool {
        eprintln!("[bench] {prefix}");
        match catch_unwind(AssertUnwindSafe(|| f(self))) {
            Ok(()) => true,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                eprintln!("[bench] FAIL {prefix}: {why}");
                self.failed.insert(prefix.to_string(), why);
                false
            }
        }
    }
}

pub fn median(values: &[f64]) -> Option<f64> {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// `a / b` when both are measured and non-zero.
pub fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if a != 0.0 && b != 0.0 => Some(a / b),
        _ => None,
    }
}

/// Seconds `f` took, and what it returned.
pub fn timed<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let t = Instant::now();
    let out = f();
    (t.elapsed().as_secs_f64(), out)
}

/// Writes dirty pages back before a timed step, so that the step before's
/// gigabytes of images are not written back during it.
pub fn sync() {
    let _ = Command::new("sync").status();
}

/// Seconds since `t`.
pub fn since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64()
}

/// A number with two decimals, or "fail"/"n/a" for a missing one.
pub fn cell(v: Option<f64>) -> String {
    v.map_or_else(|| "fail".into(), |v| format!("{v:.2}"))
}
