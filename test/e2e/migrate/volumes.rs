//! Named volumes travel with `lazarus migrate` (issue 23), as they do
//! with an archive: the volume is made on B from A's contents; with
//! `--ignore-volumes` it stays behind (A's untouched, B's made empty by
//! Docker), and the migration names it as not carried.

use crate::archive::export_import::assert_cli_left_nothing;
use crate::docker::lifecycle::wait_ticks_past;
use crate::migrate::moves::{assert_refused_by_runtime, last_tick, migrate};
use crate::support::cmd::COUNTER;
use crate::support::config::IMAGE_DOCKER;
use crate::support::harness::Daemons;
use crate::support::lazarus::{keygen, Serve, B_HOST};
use serde_json::Value;

/// A counter that wrote `marker` into the volume `volume` at /data.
fn run_with_volume(a: &Daemons, name: &str, volume: &str, marker: &str) {
    let script = format!("echo {marker} > /data/marker; {COUNTER}");
    let mount = format!("{volume}:/data");
    a.docker(&[
        "run",
        "-d",
        "--runtime",
        a.runtime(),
        "--name",
        name,
        "-v",
        &mount,
        IMAGE_DOCKER,
        "sh",
        "-c",
        &script,
    ])
    .ok();
    wait_ticks_past(a, name, 2);
}

fn marker(d: &Daemons, name: &str) -> String {
    d.docker(&["exec", name, "sh", "-c", "cat /data/marker || echo none"])
        .ok()
        .stdout
}

#[test]
fn migrate_carries_a_named_volume_unless_ignored() {
    let a = Daemons::with_docker("migrate_volume_a");
    let b = Daemons::with_docker_with("migrate_volume_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let (carried, ignored) = (a.name("carried"), a.name("ignored"));
    let (vol, vol2) = (a.name("data"), a.name("data2"));
    run_with_volume(&a, &carried, &vol, "from-a");
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &carried, &key, &[]);
    }
    run_with_volume(&a, &ignored, &vol2, "stays-on-a");
    let serve = Serve::start(&b, &key);

    let out = migrate(&a, &carried, &serve.addr, &key, &["--json"]).ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(v["restored"]["volumes"][0], vol.as_str(), "{v:#}");
    assert_eq!(marker(&b, &carried), "from-a\n");
    wait_ticks_past(&b, &carried, last_tick(&a, &carried) + 1);

    let out = migrate(
        &a,
        &ignored,
        &serve.addr,
        &key,
        &["--ignore-volumes", "--json"],
    )
    .ok();
    let v: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(v["restored"].get("volumes").is_none(), "{v:#}");
    // Left behind: B's volume is Docker's own, empty; A's keeps its files.
    assert_eq!(marker(&b, &ignored), "none\n");
    let on_a = a
        .docker(&["volume", "inspect", "-f", "{{.Mountpoint}}", &vol2])
        .ok();
    let kept = std::fs::read_to_string(format!("{}/marker", on_a.text())).unwrap();
    assert_eq!(kept, "stays-on-a\n");
    assert_cli_left_nothing(&a);
}

/// `migrate --ignore-volumes` says which volume it left behind (the
/// export's `not carried` list, in the migration's report).
#[test]
fn migrate_ignore_volumes_names_what_it_left_behind() {
    let a = Daemons::with_docker("migrate_volume_said_a");
    let b = Daemons::with_docker_with("migrate_volume_said_b", &B_HOST);
    let key = keygen(&a, "migration.key");
    let (name, vol) = (a.name("ignored"), a.name("data"));
    run_with_volume(&a, &name, &vol, "stays-on-a");
    if !a.is_lazarus() {
        return assert_refused_by_runtime(&a, &name, &key, &[]);
    }
    let serve = Serve::start(&b, &key);
    let out = migrate(&a, &name, &serve.addr, &key, &["--ignore-volumes"]).ok();
    let said = format!("{}{}", out.stdout, out.stderr);
    assert!(
        said.contains(&vol) && said.contains("not carried"),
        "migrate --ignore-volumes does not say it left {vol} behind: {out}"
    );
}
