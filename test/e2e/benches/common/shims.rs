//! The shims serving a daemon set, and what they hold: for the memory
//! benchmarks (startup, pod).

use crate::support::config::shim_binary_name;
use crate::support::harness::Daemons;
use std::fs;

/// Live shims of `runtime` serving `d`'s containerd.
pub fn pids(d: &Daemons, runtime: &str) -> Vec<i32> {
    let binary = shim_binary_name(runtime);
    d.shim_pids()
        .into_iter()
        .filter(|pid| {
            let cmdline = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&binary)
        })
        .collect()
}

/// The sum over `pids` of `field` (kB or a count) in `/proc/PID/<file>`:
/// `status` (VmRSS, Threads) or `smaps_rollup` (Rss, Pss, which splits
/// shared pages between the processes mapping them).
pub fn sum(pids: &[i32], file: &str, field: &str) -> f64 {
    pids.iter()
        .map(|pid| {
            let text = fs::read_to_string(format!("/proc/{pid}/{file}")).unwrap_or_default();
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{field}:")))
                .and_then(|rest| rest.split_whitespace().next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .sum()
}
