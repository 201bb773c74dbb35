//! Named volumes travel with the archive, as with Podman: Redis keeping
//! its data on a volume moves to host B with the volume's contents, the
//! volume made afresh there; a host path bind is named as not carried;
//! a volume already on B is never overwritten (refused, or used as it is
//! with --ignore-volumes).

use crate::archive::export_import::assert_cli_left_nothing;
use crate::checkpoint::apps::{load_keys, redis_cli, run_redis, sample, seed, KEYS};
use crate::support::apps::{with_docker_and, App};
use crate::support::cmd::poll;
use crate::support::harness::Daemons;
use crate::support::lazarus::lazarus;
use serde_json::Value;
use std::fs;
use std::time::Duration;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn cat(d: &Daemons, name: &str, path: &str) -> String {
    d.docker(&["exec", name, "cat", path]).ok().stdout
}

#[test]
fn archive_carries_named_volumes() {
    let a = with_docker_and("archive_volumes_a", &[App::Redis]);
    let name = a.name("redis");
    let volume = a.name("data");
    let host_dir = a.path("host-dir");
    fs::create_dir_all(&host_dir).unwrap();
    let bind = format!("{}:/host", host_dir.display());
    // Redis saves into its working directory: the volume.
    let data = format!("{volume}:/data");
    run_redis(&a, &name, &["-w", "/data", "-v", &data, "-v", &bind]);
    let s = seed();
    load_keys(&a, &name, s);
    redis_cli(&a, &name, &["SAVE"]).ok();
    a.docker(&[
        "exec",
        &name,
        "sh",
        "-c",
        "echo before-the-move > /data/marker",
    ])
    .ok();
    let file = a.path("redis.tar.zst");
    let file_s = file.to_str().unwrap();
    let export = ["checkpoint", &name, "--export", file_s, "--json"];
    if !a.is_lazarus() {
        let out = lazarus(&a, &export).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        return;
    }
    let before = sample(&a, &name, s).ok().stdout;
    let report = json(&lazarus(&a, &export).ok().stdout);
    assert_eq!(report["volumes"][0]["name"], volume.as_str(), "{report}");
    assert_eq!(report["volumes"][0]["destination"], "/data");
    assert!(report["volumes"][0]["bytes"].as_u64().unwrap() > 1000);
    let not_carried = report["not_carried"].to_string();
    assert!(
        not_carried.contains(&format!("host path {} at /host", host_dir.display())),
        "{report}"
    );

    let shown = lazarus(&a, &["inspect", file_s]).ok().stdout;
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("Volumes") && l.contains(&volume)),
        "{shown}"
    );

    // Host B: the volume is made from the archive's copy.
    let b = with_docker_and("archive_volumes_b", &[App::Redis]);
    let import = [
        "restore",
        "--import",
        file_s,
        "--allow-host-mounts",
        "--json",
    ];
    let restored = json(&lazarus(&b, &import).ok().stdout);
    assert_eq!(restored["volumes"][0], volume.as_str(), "{restored}");
    let size = poll(Duration::from_secs(30), || {
        let out = redis_cli(&b, &name, &["DBSIZE"]);
        (out.code == Some(0)).then(|| out.stdout.trim().to_string())
    })
    .expect("restored redis does not answer");
    assert_eq!(size, KEYS.to_string());
    assert_eq!(sample(&b, &name, s).ok().stdout, before, "values differ");
    assert_eq!(cat(&b, &name, "/data/marker"), "before-the-move\n");
    // Redis writes on into the new volume, which is B's own.
    b.docker(&["exec", &name, "sh", "-c", "rm /data/dump.rdb"])
        .ok();
    redis_cli(&b, &name, &["SAVE"]).ok();
    let mountpoint = b
        .docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &volume])
        .ok()
        .text()
        .to_string();
    assert!(
        fs::metadata(format!("{mountpoint}/dump.rdb")).is_ok(),
        "SAVE did not write into B's volume {mountpoint}"
    );
    assert_cli_left_nothing(&b);

    // Again on B: its volume is never overwritten.
    b.docker(&["rm", "-f", &name]).ok();
    let refused = lazarus(&b, &import).err();
    assert!(
        refused
            .stderr
            .contains(&format!("volume {volume} already exists")),
        "{refused}"
    );
    assert!(
        !b.docker(&["ps", "-a", "--format", "{{.Names}}"])
            .stdout
            .lines()
            .any(|n| n == name),
        "a refused import left its container"
    );
    assert_cli_left_nothing(&b);
    let mut ignore = import.to_vec();
    ignore.push("--ignore-volumes");
    let restored = json(&lazarus(&b, &ignore).ok().stdout);
    assert!(restored.get("volumes").is_none(), "{restored}");
    assert!(redis_cli(&b, &name, &["PING"]).ok().stdout.contains("PONG"));
    assert_eq!(cat(&b, &name, "/data/marker"), "before-the-move\n");
    assert_cli_left_nothing(&b);
}
