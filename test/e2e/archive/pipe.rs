//! `lazarus checkpoint C --export - | lazarus restore --import -`: the
//! archive as a stream from host A's CLI into host B's (as through `ssh
//! B`), and a stream cut short: the container then runs on at A.

use crate::archive::export_import::{assert_cli_left_nothing, assert_counts_on};
use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::support::cmd::{ticks, COUNTER};
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::{lazarus, lazarus_cmd};
use serde_json::Value;
use std::io::Read;
use std::process::Stdio;

#[test]
fn archive_streams_through_a_pipe_to_another_host() {
    let a = Daemons::with_docker("archive_pipe_a");
    let name = a.name("counter");
    run_sh_detached(&a, &name, COUNTER);
    wait_ticks_past(&a, &name, 3);
    let export = ["checkpoint", &name, "--export", "-", "--json"];
    if !a.is_lazarus() {
        let out = lazarus(&a, &export).err();
        assert!(out.stderr.contains("not Lazarus"), "{out}");
        assert!(out.stdout.is_empty(), "{out}");
        return;
    }

    // A stream cut short (the reader gone after 4 KiB of an uncompressed
    // archive, far more than a pipe holds): no archive was whole, so the
    // container runs on.
    let mut sender = lazarus_cmd(&a)
        .args(export)
        .args(["--compress", "none"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut head = vec![0u8; 4096];
    sender.stdout.take().unwrap().read_exact(&mut head).unwrap();
    // (the pipe's read end is closed here)
    let status = sender.wait().unwrap();
    let mut said = String::new();
    sender
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut said)
        .unwrap();
    assert!(!status.success(), "a cut stream is a failure: {said}");
    assert!(said.contains("runs on"), "{said}");
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "true");
    let tick = *ticks(&a.docker(&["logs", &name]).ok().stdout)
        .last()
        .unwrap();
    wait_ticks_past(&a, &name, tick + 2);
    assert_cli_left_nothing(&a);

    // The whole stream: host B restores it; A's summary went to stderr.
    let b = Daemons::with_docker("archive_pipe_b");
    let mut sender = lazarus_cmd(&a)
        .args(export)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let received = lazarus_cmd(&b)
        .args(["restore", "--import", "-", "--json"])
        .stdin(sender.stdout.take().unwrap())
        .output()
        .unwrap();
    let sent = sender.wait_with_output().unwrap();
    let sent_said = String::from_utf8_lossy(&sent.stderr);
    let received_said = String::from_utf8_lossy(&received.stdout);
    assert!(sent.status.success(), "{sent_said}");
    assert!(
        received.status.success(),
        "{received_said} {}",
        String::from_utf8_lossy(&received.stderr)
    );
    let json = match (sent_said.find('{'), sent_said.rfind('}')) {
        (Some(a), Some(b)) => &sent_said[a..=b],
        _ => panic!("no JSON report on stderr: {sent_said}"),
    };
    let report: Value = serde_json::from_str(json).unwrap();
    assert_eq!(report["archive"], "-");
    assert_eq!(report["stopped"], true);
    assert!(report["archive_bytes"].as_u64().unwrap() > 0, "{report}");
    assert_eq!(inspect(&a, &name, "{{.State.Running}}"), "false");
    let last = *ticks(&a.docker(&["logs", &name]).ok().stdout)
        .last()
        .unwrap();
    let restored: Value = serde_json::from_str(&received_said).unwrap();
    assert_eq!(restored["name"], name.as_str());
    assert_counts_on(&b, &name, last);
    assert_cli_left_nothing(&a);
    assert_cli_left_nothing(&b);
}
