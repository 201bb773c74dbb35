//! Lazarus has several names: `docker run --runtime lazarus` (the name
//! daemon.json registers, as scripts/install.sh does) and `--runtime
//! io.containerd.lazarus.v2` (the runtime type, which Docker takes as it
//! is) run the same shim, and the CLI treats them the same: both export,
//! and both imports hand the extracted images to the new container
//! directly (`restore_path` "hand-off" in the report) instead of going
//! through a Docker checkpoint that Docker copies twice.
//!
//! The workload is memhog (a heap of LAZARUS_TEST_NAMES_MIB MiB, 64 by
//! default, with its checksum): the restored one ticks on with the same
//! sum. Each import's time is printed (`--nocapture`).
//!
//! Under runc, both of its names (`runc`, `io.containerd.runc.v2`) are
//! refused by name.

use crate::archive::export_import::assert_cli_left_nothing;
use crate::docker::lifecycle::wait_logs;
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::lazarus;
use serde_json::Value;

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// memhog's `tick N sum S` lines: (N, S).
fn ticks_and_sums(logs: &str) -> Vec<(u64, String)> {
    logs.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next(), w.next()) {
                (Some("tick"), Some(n), Some("sum"), Some(s)) => {
                    Some((n.parse().ok()?, s.to_string()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn archive_every_name_of_lazarus_imports_by_hand_off() {
    let d = Daemons::with_docker("archive_runtime_names");
    let mib = std::env::var("LAZARUS_TEST_NAMES_MIB").unwrap_or_else(|_| "64".into());
    let names = match d.runtime() == LAZARUS {
        true => ["lazarus", LAZARUS],
        false => ["runc", "io.containerd.runc.v2"],
    };
    for (i, rt) in names.into_iter().enumerate() {
        let name = d.name(&format!("hog{i}"));
        d.docker(&[
            "run",
            "-d",
            "--runtime",
            rt,
            "--name",
            &name,
            IMAGE_DOCKER,
            "memhog",
            &mib,
        ])
        .ok();
        let logs = wait_logs(&d, &name, "a tick", |l| ticks_and_sums(l).len() >= 2);
        let file = d.path(&format!("hog{i}.tar"));
        let file_s = file.to_str().unwrap();
        let export = [
            "checkpoint",
            &name,
            "--export",
            file_s,
            "--compress",
            "none",
        ];
        if d.runtime() != LAZARUS {
            let out = lazarus(&d, &export).err();
            assert!(
                out.stderr.contains("not Lazarus") && out.stderr.contains(rt),
                "--runtime {rt}: must be refused by name: {out}"
            );
            assert!(!file.exists(), "an archive was written for {rt}");
            continue;
        }
        // The dump's own statistics (CRIU's stats-dump), not zeros: as
        // JSON for the first, as --print-stats text for the second.
        if i == 0 {
            let out = lazarus(&d, &[&export[..], &["--json"]].concat()).ok();
            let v: Value =
                serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
            assert_eq!(v["engine"], "docker", "{v:#}");
            let stats = &v["stats"];
            for key in ["frozen_time_us", "memdump_time_us", "pages_written"] {
                assert!(stats[key].as_u64().unwrap_or(0) > 0, "{key}: {v:#}");
            }
            // memhog's heap alone is this many pages.
            let heap_pages = mib.parse::<u64>().unwrap() << 8;
            assert!(
                stats["pages_written"].as_u64().unwrap() >= heap_pages,
                "{v:#}"
            );
        } else {
            let out = lazarus(&d, &[&export[..], &["--print-stats"]].concat()).ok();
            // "Frozen:     12.3 ms (freezing ...)", "Pages:      N scanned, M written"
            let value = |k: &str| {
                let l = out.stdout.lines().find(|l| l.starts_with(&format!("{k}:")));
                let l = l.unwrap_or_else(|| panic!("no {k} line: {out}"));
                l.split_once(':').unwrap().1.trim().to_string()
            };
            assert!(!value("Frozen").starts_with("0.0 ms"), "{out}");
            assert!(!value("Pages").ends_with(" 0 written"), "{out}");
        }
        let (last, sum) = ticks_and_sums(&d.docker(&["logs", &name]).ok().stdout)
            .pop()
            .unwrap_or_else(|| panic!("no tick: {logs}"));

        let new = d.name(&format!("hog{i}-back"));
        let args = ["restore", "--import", file_s, "--name", &new, "--json"];
        let out = lazarus(&d, &args).ok();
        let r: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(
            r["restore_path"], "hand-off",
            "run with --runtime {rt}: the import must hand the images over: {r:#}"
        );
        eprintln!(
            "--runtime {rt}: import of {mib} MiB: {:.2} s (extract {:.2} s)",
            r["restore_seconds"].as_f64().unwrap(),
            r["extract_seconds"].as_f64().unwrap()
        );
        // The name stays the one it was run with.
        assert_eq!(inspect(&d, &new, "{{.HostConfig.Runtime}}"), rt);
        let back = wait_logs(&d, &new, "a tick after the restore", |l| {
            !ticks_and_sums(l).is_empty()
        });
        let (n, s) = ticks_and_sums(&back)[0].clone();
        assert!(
            n > last && n <= last + 3,
            "{rt}: ticks on from {last}: {back}"
        );
        assert_eq!(s, sum, "{rt}: the heap came back changed");
        let listed = d.docker(&["checkpoint", "ls", &new]).ok().stdout;
        assert_eq!(
            listed.lines().count(),
            1,
            "a Docker checkpoint was made: {listed}"
        );
        assert_cli_left_nothing(&d);
        d.docker(&["rm", "-f", &new, &name]).ok();
    }
}
