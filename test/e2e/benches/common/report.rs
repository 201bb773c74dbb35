//! A benchmark's results: the conditions of the run, its tables (printed as
//! Markdown) and its charts (ratios, drawn as SVG), written together as
//! `<out>/<name>.json`.

use crate::common::chart;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::Path;
use std::process::Command;

/// Where and how a run was measured: what the numbers depend on.
#[derive(Serialize, Deserialize, Clone)]
pub struct Conditions {
    /// UTC, to the minute.
    pub date: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// The 1-minute load average at the start and at the end: other work on
    /// the machine, which the ratios (measured side by side) mostly cancel.
    pub load_start: f64,
    pub load_end: f64,
    pub containerd: String,
    pub docker: String,
    pub criu: String,
    pub runs: usize,
    /// The options the benchmark ran with.
    pub options: String,
}

impl Conditions {
    pub fn now(runs: usize, options: String) -> Conditions {
        let cfg = crate::support::config::config();
        Conditions {
            date: output("date", &["-u", "+%Y-%m-%d %H:%M UTC"]),
            cpu: cpu_model(),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: meminfo_kib("MemTotal") / 1048576.0,
            kernel: output("uname", &["-r"]),
            load_start: load(),
            load_end: 0.0,
            containerd: version_word(&output(cfg.containerd.to_str().unwrap(), &["--version"]), 2),
            docker: version_word(&output(cfg.docker.to_str().unwrap(), &["--version"]), 2),
            criu: version_word(&output("criu", &["--version"]), 1),
            runs,
            options,
        }
    }
}

#[derive(Serialize, Deserialize)]
pub struct Table {
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, columns: &[&str]) -> Table {
        Table {
            title: title.into(),
            columns: columns.iter().map(|c| c.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn markdown(&self) -> String {
        let mut s = format!("{}\n\n| {} |\n|", self.title, self.columns.join(" | "));
        s.push_str(&"---|".repeat(self.columns.len()));
        for row in &self.rows {
            s.push_str(&format!("\n| {} |", row.join(" | ")));
        }
        s
    }
}

/// Bars of ratios: one group per row label, one bar per series; 1.0 is the
/// reference (runc, or raw CRIU) the series is measured against.
#[derive(Serialize, Deserialize)]
pub struct Chart {
    /// File stem of the SVG: `<bench>-<name>.svg`.
    pub name: String,
    pub title: String,
    pub y_label: String,
    pub groups: Vec<String>,
    pub series: Vec<Series>,
}

#[derive(Serialize, Deserialize)]
pub struct Series {
    pub label: String,
    /// One per group; None where it was not measured or failed.
    pub values: Vec<Option<f64>>,
}

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub bench: String,
    pub conditions: Conditions,
    pub tables: Vec<Table>,
    pub charts: Vec<Chart>,
    /// Measurements that failed, with why.
    pub failures: Vec<String>,
}

impl Report {
    /// Prints the tables, writes `<out>/<bench>.json` and the charts' SVGs.
    /// Exits 1 after writing if a measurement failed.
    pub fn finish(mut self, out: &Path) {
        self.conditions.load_end = load();
        let c = &self.conditions;
        println!(
            "\n{}: {} run(s), medians; {}; {} x {} ({:.0} GiB), kernel {}; load {:.1} -> {:.1}; \
             containerd {}, Docker {}, CRIU {}; {}\n",
            self.bench,
            c.runs,
            c.date,
            c.cpus,
            c.cpu,
            c.memory_gib,
            c.kernel,
            c.load_start,
            c.load_end,
            c.containerd,
            c.docker,
            c.criu,
            c.options
        );
        for table in &self.tables {
            println!("{}\n", table.markdown());
        }
        fs::create_dir_all(out).expect("create the results directory");
        let json = out.join(format!("{}.json", self.bench));
        fs::write(&json, serde_json::to_string_pretty(&self).unwrap() + "\n").unwrap();
        println!("results: {}", json.display());
        for path in chart::render_all(&self, out) {
            println!("chart: {}", path.display());
        }
        if !self.failures.is_empty() {
            eprintln!("[bench] {} measurement(s) failed:", self.failures.len());
            for f in &self.failures {
                eprintln!("  {f}");
            }
            std::process::exit(1);
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// The `n`th word (from 0) of a `--version` line, without a leading `v`.
fn version_word(line: &str, n: usize) -> String {
    let word = line.split_whitespace().nth(n).unwrap_or("?");
    word.trim_start_matches('v')
        .trim_end_matches(',')
        .to_string()
}

fn cpu_model() -> String {
    let info = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into())
}

fn meminfo_kib(field: &str) -> f64 {
    let info = fs::read_to_string("/proc/meminfo").unwrap_or_default();
    info.lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

fn load() -> f64 {
    let text = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    text.split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or(0.0)
}
