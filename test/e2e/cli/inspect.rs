//! The `lazarus` CLI on what the runtime under test really produced: a
//! Docker checkpoint of the counter (`lazarus inspect`, text and JSON), what
//! is not a checkpoint, and `lazarus version`.

use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::faults::criu_deadline::SilentCriu;
use crate::support::cleanup::alive;
use crate::support::cmd::{run, Out, COUNTER};
use crate::support::config::{lazarus_cli, lazarus_shim};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

const LAZARUS: &str = "io.containerd.lazarus.v2";

fn lazarus(args: &[&str]) -> Out {
    run(Command::new(lazarus_cli()).args(args))
}

fn lazarus_with_config(config: &Path, args: &[&str]) -> Out {
    run(Command::new(lazarus_cli())
        .env("LAZARUS_CONFIG", config)
        .args(args))
}

fn inspect_dir(dir: &Path, json: bool) -> Out {
    let dir = dir.to_str().unwrap();
    lazarus(&if json {
        vec!["inspect", "--json", dir]
    } else {
        vec!["inspect", dir]
    })
}

/// The version `criu --version` prints ("Version: 4.2.1"): the CRIU the
/// shims and the CLI find on PATH.
fn host_criu_version() -> String {
    let out = run(Command::new("criu").arg("--version")).ok();
    out.stdout
        .lines()
        .find_map(|l| l.strip_prefix("Version: "))
        .unwrap_or_else(|| panic!("no version in criu --version: {out}"))
        .trim()
        .to_string()
}

/// A Docker checkpoint of the counter, read where Docker keeps it: the
/// private dockerd's data root, `containers/<id>/checkpoints/<name>`.
#[test]
fn cli_inspect_a_docker_checkpoint() {
    let d = Daemons::with_docker("cli_inspect_docker");
    let name = d.name("counter");
    run_sh_detached(&d, &name, COUNTER);
    wait_ticks_past(&d, &name, 3);
    d.docker(&["checkpoint", "create", &name, "cp"]).ok();
    let id = inspect(&d, &name, "{{.Id}}");
    let dir = d.path("docker/containers").join(&id).join("checkpoints/cp");
    assert!(dir.is_dir(), "no checkpoint directory at {}", dir.display());
    let criu = host_criu_version();
    let lazarus_took_it = d.runtime() == LAZARUS;

    let text = inspect_dir(&dir, false).ok().stdout;
    let json = inspect_dir(&dir, true).ok();
    let v: Value = serde_json::from_str(&json.stdout)
        .unwrap_or_else(|e| panic!("inspect --json printed no JSON ({e}): {json}"));

    // CRIU's images, whoever took them: the counter's shell at the root of
    // the process tree (busybox's sh; a `sleep 0.2` child may be caught
    // too), memory pages, files.
    let procs = v["criu"]["processes"].as_array().expect("processes");
    let root = procs
        .iter()
        .find(|p| p["ppid"] == 0)
        .unwrap_or_else(|| panic!("no root process: {v:#}"));
    assert_eq!(root["comm"], "sh", "{v:#}");
    for p in procs {
        let comm = p["comm"].as_str().unwrap_or_default();
        assert!(["sh", "sleep"].contains(&comm), "unexpected {p}: {v:#}");
        assert!(p["threads"].as_u64() >= Some(1), "{p}");
    }
    for size in ["total_bytes", "pages_bytes", "files"] {
        assert!(v["criu"][size].as_u64() > Some(0), "{size}: {v:#}");
    }
    assert!(
        text.contains("  sh\n"),
        "no sh in the process tree:\n{text}"
    );
    let size = text.lines().find(|l| l.starts_with("Size:")).unwrap_or("");
    assert!(
        size.contains(" KiB in ") || size.contains(" MiB in "),
        "{text}"
    );

    if lazarus_took_it {
        let m = &v["lazarus"];
        assert_eq!(m["container_id"], id.as_str(), "{v:#}");
        assert_eq!(m["criu_version"], criu.as_str(), "{v:#}");
        // (The checkpoint's path holds the id too: look at its own line.)
        let named = format!("\nContainer:         {id}\n");
        assert!(text.contains(&named), "container id not named:\n{text}");
        assert!(text.contains(&format!("with CRIU {criu}")), "{text}");
        assert!(
            text.contains(&format!("CRIU version:      {criu}")),
            "{text}"
        );
        // CRIU's statistics: how long the dump kept the counter frozen.
        // (runc has CRIU write them, and its log, to a work directory that
        // does not become part of the checkpoint.)
        assert!(text.contains("\nDump:              frozen for "), "{text}");
    } else {
        // runc writes no lazarus.json.
        assert!(v["lazarus"].is_null(), "{v:#}");
        assert!(text.contains("not taken by Lazarus"), "{text}");
    }
    d.docker(&["rm", "-f", &name]).ok();
}

/// A file and an empty directory are refused, each with a message naming
/// the path and what is wrong, and exit status 1 (3, not found, for a
/// path that does not exist).
#[test]
fn cli_inspect_refuses_what_is_not_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("file");
    std::fs::write(&file, "not a checkpoint").unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let missing = tmp.path().join("missing");
    for (path, says, code) in [
        (&file, "not a Lazarus checkpoint archive", 1),
        (&missing, "does not exist", 3),
        (&empty, "inventory.img", 1),
    ] {
        for json in [false, true] {
            let out = inspect_dir(path, json).err();
            assert_eq!(out.code, Some(code), "{out}");
            let err = out.stderr.trim();
            assert!(
                err.contains(path.to_str().unwrap()) && err.contains(says),
                "the error should name {} and say {says:?}: {out}",
                path.display()
            );
            assert!(out.stdout.is_empty(), "nothing on stdout: {out}");
        }
    }
}

/// `lazarus version` names the CRIU the config points at: by default the
/// one on PATH; a CRIU that never answers is given up on at the config's
/// deadline and reported, with exit status 7 (CRIU failed).
#[test]
fn cli_version_names_criu() {
    let tmp = tempfile::tempdir().unwrap();
    let defaults = tmp.path().join("defaults.toml");
    std::fs::write(&defaults, "").unwrap();
    let criu = host_criu_version();
    let out = lazarus_with_config(&defaults, &["version"]).ok();
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("criu") && l.ends_with(&criu)),
        "no `criu {criu}` line: {out}"
    );
    let json = lazarus_with_config(&defaults, &["version", "--json"]).ok();
    let v: Value = serde_json::from_str(&json.stdout).expect("JSON");
    assert_eq!(v["criu"], criu.as_str(), "{json}");

    // The shim on PATH, asked with -v; none there: "not found", and no
    // failure for that.
    let shim = lazarus_shim();
    let shim_dir = shim.parent().unwrap();
    let version = |path: &str| {
        run(Command::new(lazarus_cli())
            .env("LAZARUS_CONFIG", &defaults)
            .env("PATH", path)
            .args(["version", "--json"]))
    };
    let system_path = std::env::var("PATH").unwrap_or_default();
    let with_shim = format!("{}:{system_path}", shim_dir.display());
    let out = version(&with_shim).ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("JSON");
    assert_eq!(v["shim"], v["lazarus"], "the workspace's shim: {out}");
    assert_eq!(v["shim_path"], shim.to_str().unwrap(), "{out}");
    let empty = tmp.path().join("empty-bin");
    std::fs::create_dir(&empty).unwrap();
    // criu_path names CRIU by its full path, so only the shim is missing.
    let criu_bin = run(Command::new("sh").args(["-c", "command -v criu"])).ok();
    let pinned = tmp.path().join("pinned.toml");
    std::fs::write(
        &pinned,
        format!("criu_path = {:?}\n", criu_bin.stdout.trim()),
    )
    .unwrap();
    let out = run(Command::new(lazarus_cli())
        .env("LAZARUS_CONFIG", &pinned)
        .env("PATH", &empty)
        .arg("version"))
    .ok();
    assert!(out.stdout.contains("shim    not found"), "{out}");

    let silent = SilentCriu::write(tmp.path());
    let config = tmp.path().join("silent.toml");
    std::fs::write(&config, silent.config(1)).unwrap();
    let started = Instant::now();
    let out = lazarus_with_config(&config, &["version"]).err();
    let took = started.elapsed();
    assert_eq!(out.code, Some(7), "{out}");
    assert!(out.stdout.contains("criu    unavailable"), "{out}");
    assert!(out.stderr.contains("did not answer within 1s"), "{out}");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let pids = silent.pids();
    assert!(
        !pids.is_empty() && !pids.iter().any(|&p| alive(p)),
        "{pids:?}"
    );
}
