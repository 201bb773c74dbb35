//! A simulated reboot of a daemon set (issue 26): `lazarus checkpoint
//! --all` before, the daemons killed and their run-time state wiped as a
//! reboot empties /run (and the shims' Lazarus state root with it), the
//! daemons started afresh on their persistent roots, `lazarus restore
//! --all` after: a counter counts on, Redis keeps its keys, a container
//! with `--restart always` was not started afresh by dockerd and gets its
//! policy back, a runc container is left alone and said so. A `restore
//! --all` killed midway, run again, finishes the set without duplicates.
//!
//! Under runc every container is runc's: the CLI must leave them all
//! alone, say so, and checkpoint nothing.

use crate::archive::export_import::{assert_counts_on, docker_names};
use crate::checkpoint::apps::{load_keys, redis_cli, run_redis, sample, seed, KEYS};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::apps::{with_docker_and_with, App, REDIS_IMAGE, WARM_IMAGE};
use crate::support::cmd::{poll, run_timeout, ticks, wait_until, Out, Proc, COUNTER};
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::{inspect, Daemons, Setup};
use crate::support::lazarus::{lazarus_cmd, store_root};
use serde_json::Value;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const RUNC: &str = "io.containerd.runc.v2";
const LAZARUS: &str = "io.containerd.lazarus.v2";

/// The shims' Lazarus state root, the set's own (a reboot empties it; the
/// set removes it when torn down).
fn state_root(d: &mut Daemons) -> PathBuf {
    let root = PathBuf::from(format!("/run/lazarus-{}", d.id));
    d.remove_on_drop(root.clone());
    root
}

fn cli(d: &Daemons, args: &[&str]) -> Out {
    run_timeout(lazarus_cmd(d).args(args), None, Duration::from_secs(300))
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn last_tick(d: &Daemons, name: &str) -> u64 {
    *ticks(&d.docker(&["logs", name]).ok().stdout)
        .last()
        .unwrap_or(&0)
}

/// The warm service's answer (it counts its requests).
fn warm_get(d: &Daemons, name: &str) -> Value {
    let out = d
        .docker(&["exec", name, "wget", "-qO-", "http://127.0.0.1:8080/"])
        .ok();
    serde_json::from_str(out.text()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Starts the warm service (seconds of initialisation) as `name`; how long
/// until it said it was ready.
fn start_warm(d: &Daemons, name: &str) -> f64 {
    let started = Instant::now();
    d.docker(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--name",
        name,
        WARM_IMAGE,
    ])
    .ok();
    wait_until("the warm service's ready", Duration::from_secs(120), || {
        let out = d.docker(&["logs", name]).ok();
        out.stdout.contains("ready").then_some(())
    });
    started.elapsed().as_secs_f64()
}

fn record(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("lazarus-all.json")).unwrap_or_default())
        .unwrap_or(Value::Null)
}

#[test]
fn reboot_all_brings_back_counter_redis_and_restart_policy_leaving_runc_alone() {
    let setup = Setup {
        lazarus_config: Some("root = \"/run/lazarus-{SET_ID}\"\n".into()),
        ..Default::default()
    };
    let mut d = with_docker_and_with("reboot_all", &setup, &[App::Redis, App::Warm]);
    let state_root = state_root(&mut d);
    let counter = d.name("counter");
    let always = d.name("always");
    let redis = d.name("redis");
    let plain = d.name("plain");
    let warm = d.name("warm");
    run_sh_detached(&d, &counter, COUNTER);
    d.docker(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--restart",
        "always",
        "--name",
        &always,
        IMAGE_DOCKER,
        "sh",
        "-c",
        COUNTER,
    ])
    .ok();
    run_redis(&d, &redis, &[]);
    let s = seed();
    load_keys(&d, &redis, s);
    let before = sample(&d, &redis, s).ok().stdout;
    let warm_cold = start_warm(&d, &warm);
    let warmed = warm_get(&d, &warm);
    d.docker(&[
        "run",
        "-d",
        "--runtime",
        "runc",
        "--name",
        &plain,
        IMAGE_DOCKER,
        "sh",
        "-c",
        COUNTER,
    ])
    .ok();
    let plain_id = inspect(&d, &plain, "{{.Id}}");
    wait_ticks_past(&d, &counter, 3);
    wait_ticks_past(&d, &always, 3);
    wait_ticks_past(&d, &plain, 3);
    // The first cycle into the snapshot store (no directory named), the
    // second into archives in a directory.
    let dir = store_root(&d).join("all");
    let archives = d.path("reboot");
    let archives_s = archives.to_str().unwrap().to_string();

    if d.runtime() != LAZARUS {
        let out = cli(&d, &["checkpoint", "--all", "--json"]).ok();
        let v = json(&out);
        assert_eq!(v["checkpointed"], 0, "{v:#}");
        let left = v["left_alone"].as_array().unwrap();
        assert_eq!(left.len(), 5, "every container is runc's: {v:#}");
        for l in left {
            assert_eq!(l["reason"], format!("left alone (runtime {RUNC})"), "{v:#}");
        }
        let text = cli(&d, &["checkpoint", "--all", "--export-dir", &archives_s]).ok();
        assert!(
            text.stdout
                .contains("left alone (runtime io.containerd.runc.v2)"),
            "{text}"
        );
        // Untouched: still running, still counting.
        for name in [&counter, &always, &plain] {
            let t = last_tick(&d, name);
            wait_ticks_past(&d, name, t + 2);
        }
        assert_eq!(
            redis_cli(&d, &redis, &["DBSIZE"]).ok().text(),
            KEYS.to_string()
        );
        // Nothing recorded: restore --all has nothing to do.
        let out = cli(&d, &["restore", "--all", "--json"]).ok();
        assert_eq!(json(&out)["restored"], 0, "{out}");
        return;
    }

    // Checkpoint the host.
    let started = Instant::now();
    let out = cli(&d, &["checkpoint", "--all", "--json"]).ok();
    let checkpoint_all = started.elapsed().as_secs_f64();
    let v = json(&out);
    assert_eq!(
        (v["checkpointed"].as_u64(), v["failed"].as_u64()),
        (Some(4), Some(0)),
        "{v:#}"
    );
    let left = v["left_alone"].as_array().unwrap();
    assert_eq!(left.len(), 1, "{v:#}");
    assert_eq!(left[0]["name"], plain.as_str());
    assert_eq!(left[0]["reason"], format!("left alone (runtime {RUNC})"));
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    // Each container a snapshot of the store, tagged (pinned) for the
    // reboot; no archive left beside the record.
    let stored = json(&cli(&d, &["snapshots", "--json"]).ok());
    let stored = stored["snapshots"].as_array().unwrap();
    assert_eq!(stored.len(), 4, "{stored:#?}");
    for c in v["containers"].as_array().unwrap() {
        assert!(c["archive"].is_null(), "{c:#}");
        let id = c["snapshot"].as_str().unwrap();
        let listed = stored.iter().find(|s| s["id"] == id).expect("listed");
        assert!(
            listed["tag"].as_str().unwrap().starts_with("reboot-"),
            "{listed:#}"
        );
        eprintln!(
            "reboot: checkpointed {}: frozen {}s, checkpoint {:.2}s, archive {} bytes",
            c["name"],
            c["frozen_seconds"],
            c["checkpoint_seconds"].as_f64().unwrap(),
            c["archive_bytes"]
        );
    }
    assert_eq!(mode(&dir.join("lazarus-all.json")), 0o600);
    let files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["lazarus-all.json"], "only the record");
    for pack in fs::read_dir(store_root(&d).join("packs")).unwrap() {
        assert_eq!(mode(&pack.unwrap().path()), 0o600);
    }
    let rec = record(&dir);
    let names: Vec<&str> = rec["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            counter.as_str(),
            always.as_str(),
            redis.as_str(),
            warm.as_str()
        ],
        "oldest first"
    );
    let always_entry = &rec["entries"][1];
    assert_eq!(always_entry["restart_policy"]["name"], "always", "{rec:#}");
    let last = last_tick(&d, &counter);
    let last_always = last_tick(&d, &always);
    // The policy is cleared, so Docker does not start it afresh.
    assert_eq!(
        inspect(&d, &always, "{{.HostConfig.RestartPolicy.Name}}"),
        "no"
    );

    // Reboot.
    d.reboot(&[&state_root]);
    // dockerd came back and did not start the `always` container afresh.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(inspect(&d, &always, "{{.State.Running}}"), "false");
    assert_eq!(
        last_tick(&d, &always),
        last_always,
        "started afresh by dockerd"
    );
    assert_eq!(
        inspect(&d, &plain, "{{.State.Running}}"),
        "false",
        "a reboot ends it"
    );

    // What would happen.
    let out = cli(&d, &["restore", "--all", "--dry-run", "--json"]).ok();
    let v = json(&out);
    let outcomes: Vec<&str> = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap())
        .collect();
    assert!(
        outcomes.iter().all(|o| o.starts_with("would restore")),
        "{v:#}"
    );
    assert_eq!(outcomes.len(), 4);

    // A restore --all killed once the first container is back.
    let mut first = Proc::spawn(lazarus_cmd(&d).args(["restore", "--all"]));
    let killed_midway = poll(Duration::from_secs(120), || {
        let back = record(&dir)["entries"]
            .as_array()
            .map(|a| a.iter().filter(|e| e["state"] == "restored").count())
            .unwrap_or(4);
        match (first.running(), back) {
            (false, _) => Some(false),
            (true, n) if n >= 1 => {
                unsafe { libc::kill(-first.pid(), libc::SIGKILL) };
                Some(true)
            }
            _ => None,
        }
    })
    .expect("restore --all neither restored one container nor ended");
    let out = first.wait(Duration::from_secs(30));
    eprintln!("reboot: first restore --all killed midway: {killed_midway} ({out})");

    // Again: it finishes the set.
    let started = Instant::now();
    let out = cli(&d, &["restore", "--all", "--json"]).ok();
    let restore_all = started.elapsed().as_secs_f64();
    let v = json(&out);
    assert_eq!(v["failed"], 0, "{v:#}");
    assert_eq!(v["complete"], true, "{v:#}");
    for c in v["containers"].as_array().unwrap() {
        eprintln!(
            "reboot: {} {}: restore {}s",
            c["outcome"], c["name"], c["restore_seconds"]
        );
    }
    if killed_midway {
        assert!(
            v["already_running"].as_u64().unwrap() >= 1,
            "what the killed run restored is skipped: {v:#}"
        );
    }
    // Back, as they were.
    assert_counts_on(&d, &counter, last);
    assert_counts_on(&d, &always, last_always);
    assert_eq!(
        inspect(&d, &always, "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );
    let size = poll(Duration::from_secs(30), || {
        let out = redis_cli(&d, &redis, &["DBSIZE"]);
        (out.code == Some(0)).then(|| out.stdout.trim().to_string())
    })
    .expect("restored redis answers");
    assert_eq!(size, KEYS.to_string());
    assert_eq!(sample(&d, &redis, s).ok().stdout, before, "values differ");
    let a = warm_get(&d, &warm);
    assert_eq!(
        a["nonce"], warmed["nonce"],
        "the warm service was started afresh: {a}"
    );
    assert_eq!(
        a["requests"],
        warmed["requests"].as_u64().unwrap() + 1,
        "{a}"
    );
    // No duplicates, nothing set aside left, runc's container untouched.
    let mut names = docker_names(&d);
    names.sort();
    let mut want = vec![
        counter.clone(),
        always.clone(),
        redis.clone(),
        plain.clone(),
        warm.clone(),
    ];
    want.sort();
    assert_eq!(names, want);
    assert_eq!(inspect(&d, &plain, "{{.Id}}"), plain_id);
    assert_eq!(inspect(&d, &plain, "{{.State.Running}}"), "false");
    // The record is retired; a third run says so.
    assert!(dir.join("lazarus-all.restored.json").is_file());
    let again = cli(&d, &["restore", "--all"]).err();
    assert!(again.stderr.contains("restored already"), "{again}");
    // The set's snapshots left the store with it, and the archives the
    // restores read from them are gone.
    let stored = json(&cli(&d, &["snapshots", "--json"]).ok());
    assert_eq!(stored["snapshots"], serde_json::json!([]), "{stored:#}");
    let files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files, ["lazarus-all.restored.json"]);

    // A second reboot, uninterrupted, for the downtime of each container:
    // its checkpoint plus its restore (the reboot itself not counted).
    let out = cli(
        &d,
        &["checkpoint", "--all", "--export-dir", &archives_s, "--json"],
    )
    .ok();
    let v = json(&out);
    assert_eq!(v["checkpointed"], 4, "a second cycle, into archives: {v:#}");
    for c in v["containers"].as_array().unwrap() {
        let archive = PathBuf::from(c["archive"].as_str().unwrap());
        assert_eq!(mode(&archive), 0o600, "{}", archive.display());
    }
    assert_eq!(mode(&archives), 0o700);
    let took: std::collections::HashMap<String, f64> = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["checkpoint_seconds"].as_f64().unwrap(),
            )
        })
        .collect();
    d.reboot(&[&state_root]);
    let out = cli(
        &d,
        &["restore", "--all", "--import-dir", &archives_s, "--json"],
    )
    .ok();
    let v = json(&out);
    assert_eq!(
        (v["restored"].as_u64(), v["complete"].as_bool()),
        (Some(4), Some(true)),
        "{v:#}"
    );
    for c in v["containers"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let (cp, rs) = (took[name], c["restore_seconds"].as_f64().unwrap());
        eprintln!(
            "reboot: downtime of {name}: checkpoint {cp:.2}s + restore {rs:.2}s = {:.2}s",
            cp + rs
        );
    }
    let a = warm_get(&d, &warm);
    assert_eq!(a["nonce"], warmed["nonce"], "{a}");
    eprintln!("reboot: cold start of the warm service until ready: {warm_cold:.2}s");

    // A cold start of the same Redis, for comparison: start, answer, and
    // rebuild its keys (what the checkpoint saved).
    let cold = d.name("cold");
    let started = Instant::now();
    d.docker(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--name",
        &cold,
        REDIS_IMAGE,
    ])
    .ok();
    wait_until("cold redis to answer", Duration::from_secs(30), || {
        (redis_cli(&d, &cold, &["PING"]).text() == "PONG").then_some(())
    });
    let cold_up = started.elapsed().as_secs_f64();
    load_keys(&d, &cold, s);
    let cold_loaded = started.elapsed().as_secs_f64();
    eprintln!(
        "reboot: checkpoint --all {checkpoint_all:.2}s, restore --all (finishing) \
         {restore_all:.2}s; cold redis: up {cold_up:.2}s, with its {KEYS} keys {cold_loaded:.2}s"
    );
}

/// `config/init.d/lazarus-all ACTION` against the set: the CLI built here,
/// DIR the set's, no /etc/default file, the daemons found as `lazarus_cmd`
/// finds them.
fn init_script(d: &Daemons, action: &str, dir: &Path) -> Out {
    let base = lazarus_cmd(d);
    let script = crate::support::config::repo_root().join("config/init.d/lazarus-all");
    let mut cmd = std::process::Command::new("sh");
    cmd.arg(script).arg(action);
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            cmd.env(k, v);
        }
    }
    cmd.env("LAZARUS", crate::support::config::lazarus_cli())
        .env("DIR", dir)
        .env("LAZARUS_ALL_DEFAULTS", "/nonexistent");
    run_timeout(&mut cmd, None, Duration::from_secs(300))
}

/// Through the LSB init script (stop at shutdown, start at boot): a Compose
/// project at fixed addresses on a bridge network comes back as one group
/// with its addresses, a `ctr run` container of the set's own containerd
/// namespace comes back too; a container whose image was removed during
/// the reboot is refused by name while the others come back, and once the
/// image is back the set finishes. A shutdown while that container still
/// waits moves its set aside whole (`DIR/unrestored-*`) and checkpoints the
/// running ones afresh; both sets come back.
#[test]
fn reboot_all_through_the_init_script_keeps_a_compose_project_and_finishes_after_a_refusal() {
    let setup = Setup {
        lazarus_config: Some("root = \"/run/lazarus-{SET_ID}\"\n".into()),
        ..Default::default()
    };
    let mut d = Daemons::with_docker_with("reboot_group", &setup);
    let state_root = state_root(&mut d);
    let (net, prefix) = d.bridge_network();
    let project = format!("com.docker.compose.project={}", d.id);
    let (web, db) = (d.name("web"), d.name("db"));
    for (name, ip) in [(&db, format!("{prefix}.2")), (&web, format!("{prefix}.3"))] {
        d.docker(&[
            "run",
            "-d",
            "--runtime",
            d.runtime(),
            "--name",
            name,
            "--label",
            &project,
            "--network",
            &net,
            "--ip",
            &ip,
            IMAGE_DOCKER,
            "sh",
            "-c",
            COUNTER,
        ])
        .ok();
    }
    let job = d.name("job");
    let tar = d.cfg.image_oci_tar.to_str().unwrap().to_string();
    d.ctr(&["image", "import", &tar]).ok();
    let count = crate::archive::export_import::start_ctr_counter(&d, &job);
    // Far enough that a fresh start would be told apart.
    wait_until(
        "the ctr counter to pass 30",
        Duration::from_secs(30),
        || (count(&d, "c9") > 30).then_some(()),
    );
    wait_ticks_past(&d, &web, 3);
    wait_ticks_past(&d, &db, 3);
    let dir = d.path("reboot");

    if d.runtime() != LAZARUS {
        let out = init_script(&d, "stop", &dir).ok();
        assert!(
            out.stdout
                .contains("0 checkpointed, 0 failed, 3 left alone"),
            "{out}"
        );
        assert!(
            out.stdout
                .contains("left alone (runtime io.containerd.runc.v2)"),
            "{out}"
        );
        let t = last_tick(&d, &web);
        wait_ticks_past(&d, &web, t + 2);
        let c = count(&d, "c1");
        wait_until("the ctr counter to go on", Duration::from_secs(10), || {
            (count(&d, "c2") > c).then_some(())
        });
        return;
    }

    // The count just before the checkpoint (a stopped task has none).
    let last_job = count(&d, "c1");
    let out = init_script(&d, "stop", &dir).ok();
    assert!(
        out.stdout
            .contains("3 checkpointed, 0 failed, 0 left alone"),
        "{out}"
    );
    assert!(
        out.stdout.contains(&format!("(Compose project {})", d.id)),
        "{out}"
    );
    let rec = record(&dir);
    let entries = rec["entries"].as_array().unwrap();
    let by_name = |n: &str| entries.iter().find(|e| e["name"] == n).unwrap().clone();
    assert_eq!(by_name(&db)["group"], d.id.as_str(), "{rec:#}");
    assert_eq!(by_name(&web)["group"], d.id.as_str(), "{rec:#}");
    assert_eq!(
        by_name(&db)["archive"],
        by_name(&web)["archive"],
        "one group archive"
    );
    assert_eq!(
        by_name(&web)["networks"][0]["fixed_ipv4"],
        format!("{prefix}.3"),
        "{rec:#}"
    );
    assert_eq!(by_name(&job)["engine"], "containerd");
    assert_eq!(by_name(&job)["namespace"], d.id.as_str());
    let (last_web, last_db) = (last_tick(&d, &web), last_tick(&d, &db));
    assert_eq!(
        init_script(&d, "status", &dir).ok().text(),
        format!("a checkpoint waits in {}/lazarus-all.json", dir.display())
    );

    d.reboot(&[&state_root]);
    // The image of the containerd container is gone after the reboot.
    // Only its name: another name keeps its content, to put the name back
    // later without a registry.
    let keep = "docker.io/lazarus-test/keep:latest";
    d.ctr(&["image", "tag", crate::support::config::IMAGE_CTR, keep])
        .ok();
    d.ctr(&["image", "rm", crate::support::config::IMAGE_CTR])
        .ok();
    let out = init_script(&d, "start", &dir).err();
    assert!(
        out.stdout
            .contains(&format!("failed containerd {}/{job}", d.id)),
        "the container is named: {out}"
    );
    assert!(out.stderr.contains("1 of 3 containers failed"), "{out}");
    assert_counts_on(&d, &web, last_web);
    assert_counts_on(&d, &db, last_db);
    assert_eq!(
        inspect(
            &d,
            &web,
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}")
        ),
        format!("{prefix}.3")
    );
    assert!(dir.join("lazarus-all.json").is_file(), "kept until all run");

    // The machine shuts down again before the job is back: the waiting set
    // is moved aside whole, the running ones are checkpointed afresh.
    let out = init_script(&d, "stop", &dir).ok();
    assert!(out.stdout.contains("2 checkpointed, 0 failed"), "{out}");
    // Their last ticks, now that the checkpoint stopped them.
    let (last_web, last_db) = (last_tick(&d, &web), last_tick(&d, &db));
    let aside = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("unrestored-")
        })
        .unwrap_or_else(|| panic!("no unrestored-* in {}: {out}", dir.display()));
    assert!(out.stdout.contains(&aside.display().to_string()), "{out}");
    assert!(aside.join("lazarus-all.json").is_file());
    d.reboot(&[&state_root]);
    let out = init_script(&d, "start", &dir).ok();
    assert!(out.stdout.contains("record retired"), "{out}");
    assert_counts_on(&d, &web, last_web);
    assert_counts_on(&d, &db, last_db);

    // The image back, the set moved aside finishes: the job comes back, the
    // project's members run already.
    d.ctr(&["image", "tag", keep, crate::support::config::IMAGE_CTR])
        .ok();
    let out = init_script(&d, "start", &aside).ok();
    assert!(
        out.stdout
            .contains(&format!("restored containerd {}/{job}", d.id)),
        "{out}"
    );
    assert!(
        out.stdout
            .contains(&format!("already running docker moby/{web}")),
        "{out}"
    );
    assert!(out.stdout.contains("record retired"), "{out}");
    let now = count(&d, "c2");
    assert!(
        now >= last_job && now <= last_job + 40,
        "the ctr counter counts on from {last_job}, not afresh: {now}"
    );
    let out = init_script(&d, "start", &dir).ok();
    assert!(out.stdout.contains("nothing to restore"), "{out}");
}

/// A container whose checkpoint fails (a TCP connection from outside, no
/// `--tcp-established`) is named with CRIU's reason and runs on, its
/// `--restart always` policy put back; the other is checkpointed, the
/// command exits non-zero, and `restore --all` (no reboot needed) brings
/// the checkpointed one back in place of its stopped container.
#[test]
fn reboot_all_names_a_failed_checkpoint_and_takes_the_others() {
    let d = Daemons::with_docker("reboot_fail");
    let (good, bad) = (d.name("good"), d.name("bad"));
    run_sh_detached(&d, &good, COUNTER);
    // A zombie in its tree: a child that exited, its parent (now sleep) never
    // reaping it.
    let zombie = d.name("zombie");
    run_sh_detached(&d, &zombie, "sh -c 'exit 0' & exec sleep 1000");
    // `bad` listens at a fixed address; the test holds a connection to it
    // from outside its network namespace.
    let (net, prefix) = d.bridge_network();
    let ip = format!("{prefix}.2");
    let script = format!("nc -l -p 7000 > /dev/null & {COUNTER}");
    d.docker(&[
        "run",
        "-d",
        "--runtime",
        d.runtime(),
        "--restart",
        "always",
        "--name",
        &bad,
        "--network",
        &net,
        "--ip",
        &ip,
        IMAGE_DOCKER,
        "sh",
        "-c",
        &script,
    ])
    .ok();
    let _held = wait_until("bad to accept", Duration::from_secs(20), || {
        std::net::TcpStream::connect((ip.as_str(), 7000)).ok()
    });
    wait_ticks_past(&d, &good, 3);
    wait_ticks_past(&d, &bad, 3);
    let dir = d.path("reboot");
    let dir_s = dir.to_str().unwrap().to_string();
    if d.runtime() != LAZARUS {
        let v = json(
            &cli(
                &d,
                &["checkpoint", "--all", "--export-dir", &dir_s, "--json"],
            )
            .ok(),
        );
        assert_eq!(
            (v["checkpointed"].as_u64(), v["failed"].as_u64()),
            (Some(0), Some(0)),
            "{v:#}"
        );
        assert_eq!(v["left_alone"].as_array().unwrap().len(), 3, "{v:#}");
        return;
    }
    let out = cli(
        &d,
        &["checkpoint", "--all", "--export-dir", &dir_s, "--json"],
    )
    .err();
    assert!(out.stderr.contains("1 of 3 containers failed"), "{out}");
    let v = json(&out);
    assert_eq!(
        (v["checkpointed"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(1)),
        "{v:#}"
    );
    let failed = v["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["outcome"] == "failed")
        .unwrap()
        .clone();
    assert_eq!(failed["name"], bad.as_str(), "{v:#}");
    assert!(!failed["error"].as_str().unwrap().is_empty(), "{v:#}");
    eprintln!(
        "reboot: the failed checkpoint's reason: {}",
        failed["error"]
    );
    // It runs on, its policy back.
    let t = last_tick(&d, &bad);
    wait_ticks_past(&d, &bad, t + 2);
    assert_eq!(
        inspect(&d, &bad, "{{.HostConfig.RestartPolicy.Name}}"),
        "always"
    );
    let rec = record(&dir);
    assert_eq!(rec["entries"].as_array().unwrap().len(), 2, "{rec:#}");
    assert_eq!(rec["entries"][0]["name"], good.as_str());
    let last = last_tick(&d, &good);
    let v = json(&cli(&d, &["restore", "--all", "--import-dir", &dir_s, "--json"]).ok());
    assert_eq!(
        (v["restored"].as_u64(), v["complete"].as_bool()),
        (Some(2), Some(true)),
        "{v:#}"
    );
    assert_counts_on(&d, &good, last);
    assert_eq!(inspect(&d, &zombie, "{{.State.Running}}"), "true");
    let mut names = docker_names(&d);
    names.sort();
    let mut want = vec![good.clone(), bad.clone(), zombie.clone()];
    want.sort();
    assert_eq!(
        names, want,
        "the stopped one replaced, nothing set aside left"
    );
}
