//! The reboot's stateful case (issue 26): a Compose-style pair, Redis
//! keeping its data on a named volume and a client holding one TCP
//! connection to it, through `checkpoint --all` (no flag: a Compose
//! project's connections are taken as a group's), a simulated reboot and
//! `restore --all`. Redis's keys and the volume's files are back, and the
//! client's counter goes on over the same connection. The record names the
//! kernel it was taken on; one changed meanwhile (the record edited, as a
//! kernel update would leave it) is said, and the restore goes on since
//! CRIU's check passes.
//!
//! Under runc both are runc's: left alone, the connection untouched.

use crate::checkpoint::apps::{load_keys, redis_cli, sample, seed};
use crate::group::checkpoint::{
    assert_connection_went_on, assert_replies_unbroken, start_app_and_redis_with, wait_replies,
};
use crate::support::apps::{with_docker_and_with, App};
use crate::support::cmd::{poll, run_timeout, Out};
use crate::support::harness::{inspect, Daemons, Setup};
use crate::support::lazarus::lazarus_cmd;
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

fn cli(d: &Daemons, args: &[&str]) -> Out {
    run_timeout(lazarus_cmd(d).args(args), None, Duration::from_secs(300))
}

fn json(out: &Out) -> Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn reboot_all_keeps_a_compose_pairs_connection_and_redis_volume() {
    let setup = Setup {
        lazarus_config: Some("root = \"/run/lazarus-{SET_ID}\"\n".into()),
        ..Default::default()
    };
    let mut d = with_docker_and_with("reboot_pair", &setup, &[App::Redis]);
    let state_root = PathBuf::from(format!("/run/lazarus-{}", d.id));
    d.remove_on_drop(state_root.clone());
    let (redis, app) = (d.name("redis"), d.name("app"));
    let volume = d.name("data");
    let data = format!("{volume}:/data");
    start_app_and_redis_with(&d, &redis, &app, &["-w", "/data", "-v", &data]);
    let s = seed();
    load_keys(&d, &redis, s);
    let keys = sample(&d, &redis, s).ok().stdout;
    d.docker(&[
        "exec",
        &redis,
        "sh",
        "-c",
        "echo before-the-reboot > /data/marker",
    ])
    .ok();
    wait_replies(&d, &app, 20);
    let dir = d.path("reboot");
    let dir_s = dir.to_str().unwrap().to_string();
    let checkpoint = ["checkpoint", "--all", "--export-dir", &dir_s, "--json"];

    if !d.is_lazarus() {
        let v = json(&cli(&d, &checkpoint).ok());
        assert_eq!(v["checkpointed"], 0, "{v:#}");
        assert_eq!(v["left_alone"].as_array().unwrap().len(), 2, "{v:#}");
        // Untouched: the connection goes on.
        let before = assert_replies_unbroken(&d, &app);
        wait_replies(&d, &app, before + 10);
        assert_replies_unbroken(&d, &app);
        return;
    }

    let before = assert_replies_unbroken(&d, &app);
    let v = json(&cli(&d, &checkpoint).ok());
    assert_eq!(
        (v["checkpointed"].as_u64(), v["failed"].as_u64()),
        (Some(2), Some(0)),
        "{v:#}"
    );
    let rec: Value =
        serde_json::from_slice(&std::fs::read(dir.join("lazarus-all.json")).unwrap()).unwrap();
    let entries = rec["entries"].as_array().unwrap();
    assert!(
        entries.iter().all(|e| e["group"] == d.id.as_str()),
        "{rec:#}"
    );
    let redis_entry = entries
        .iter()
        .find(|e| e["name"] == redis.as_str())
        .unwrap();
    assert_eq!(
        redis_entry["volumes"][0]["source"],
        volume.as_str(),
        "{rec:#}"
    );
    // The kernel and CRIU the images were taken on, for restore --all.
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert_eq!(rec["platform"]["kernel"], kernel.trim(), "{rec:#}");
    assert!(rec["platform"]["criu"].is_string(), "{rec:#}");
    // The volume stays on the host; the archive does not copy it.
    let shown = cli(
        &d,
        &[
            "inspect",
            dir.join(redis_entry["archive"].as_str().unwrap())
                .to_str()
                .unwrap(),
        ],
    )
    .ok();
    assert!(
        !shown
            .stdout
            .lines()
            .any(|l| l.starts_with("Volumes") && l.contains(&volume)),
        "{shown}"
    );

    d.reboot(&[&state_root]);
    // As a kernel update leaves it: the record names another release than
    // the one now running (CRIU's check passes here, so the restore goes
    // on and says so).
    let mut rec = rec;
    rec["platform"]["kernel"] = "6.1.0-before-the-update".into();
    std::fs::write(
        dir.join("lazarus-all.json"),
        serde_json::to_vec_pretty(&rec).unwrap(),
    )
    .unwrap();

    let out = cli(&d, &["restore", "--all", "--import-dir", &dir_s, "--json"]).ok();
    let v = json(&out);
    assert_eq!(
        (v["restored"].as_u64(), v["complete"].as_bool()),
        (Some(2), Some(true)),
        "{v:#}"
    );
    let notes = v["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "the kernel changed since the checkpoint: 6.1.0-before-the-update then, {} now",
            kernel.trim()
        )) && notes.contains("CRIU's check passes"),
        "{v:#}"
    );
    for name in [&redis, &app] {
        assert_eq!(inspect(&d, name, "{{.State.Running}}"), "true", "{name}");
    }
    let got = poll(Duration::from_secs(30), || {
        let out = sample(&d, &redis, s);
        (out.code == Some(0)).then_some(out.stdout)
    })
    .expect("restored redis answers");
    assert_eq!(got, keys, "Redis's keys differ");
    let marker = d.docker(&["exec", &redis, "cat", "/data/marker"]).ok();
    assert_eq!(marker.stdout, "before-the-reboot\n");
    assert!(
        redis_cli(&d, &redis, &["CONFIG", "GET", "dir"])
            .ok()
            .stdout
            .contains("/data"),
        "redis works in its volume"
    );
    // The same connection: the replies go on past those seen before the
    // checkpoint, one per send, in order, never closed.
    assert_connection_went_on(&d, &redis, &app, before);
}
