//! The CLI's exit status says what kind of failure it was (docs/
//! troubleshooting.md, "Exit status"), and its first line says what went
//! wrong and what to do, on real daemons:
//!
//! - 3 not found: a container nobody knows, an archive that is not there;
//! - 4 refused: a stopped container ("is not running", not a guess about
//!   sockets), an archive asking for a hook;
//! - 5 conflict: an import under a name that is taken;
//! - 6 unreachable: sockets where no daemon is (and one nobody listens on);
//! - 7 CRIU failed: a container with an established TCP connection, whose
//!   first line names `--tcp-established` (not the runtime option);
//! - a migration to a listener that is not `lazarus serve` says so instead
//!   of blaming the key;
//! - with only DOCKER_HOST set, the containerd dockerd uses is found.
//!
//! Under runc what needs an export is its refusal by runtime (exit 4).

use crate::docker::lifecycle::{run_sh_detached, wait_ticks_past};
use crate::security::archives::{edit_json, recraft};
use crate::support::cmd::{run, wait_until, Out, COUNTER};
use crate::support::harness::{inspect, Daemons};
use crate::support::lazarus::{keygen, lazarus, lazarus_cmd};
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

const LAZARUS: &str = "io.containerd.lazarus.v2";

/// `out` failed with `code`, its first stderr line holding each of `wants`.
fn assert_exit(out: &Out, code: i32, wants: &[&str]) {
    assert_eq!(out.code, Some(code), "exit status: {out}");
    let first = out.stderr.lines().next().unwrap_or_default();
    for want in wants {
        assert!(
            first.contains(want),
            "{want:?} not in the first line {first:?}: {out}"
        );
    }
}

#[test]
fn cli_exit_status_says_the_kind_of_failure() {
    let d = Daemons::with_docker("cli_exit_codes");
    let lazarus_rt = d.runtime() == LAZARUS;
    let tmp = d.path("out");
    std::fs::create_dir_all(&tmp).unwrap();
    let file = |n: &str| tmp.join(n).to_str().unwrap().to_string();

    // 3: nobody knows the container; the archive is not there.
    let out = lazarus(&d, &["checkpoint", "nosuch", "--export", &file("x.tar")]);
    assert_exit(&out, 3, &["no container nosuch"]);
    let out = lazarus(&d, &["restore", "--import", &file("missing.tar")]);
    assert_exit(&out, 3, &["missing.tar"]);

    // 6: no daemon at the sockets given; a socket nobody listens on.
    let out = lazarus(
        &d,
        &[
            "checkpoint",
            "-H",
            "unix:///nonexistent/d.sock",
            "-a",
            "/nonexistent/c.sock",
            "web",
            "--export",
            &file("x.tar"),
        ],
    );
    assert_exit(&out, 6, &["cannot reach containerd at /nonexistent/c.sock"]);

    // 4: a stopped container is "not running", with what to do.
    let stopped = d.name("stopped");
    run_sh_detached(&d, &stopped, "exit 0");
    wait_until("the container to exit", Duration::from_secs(20), || {
        (inspect(&d, &stopped, "{{.State.Status}}") == "exited").then_some(())
    });
    let out = lazarus(&d, &["checkpoint", &stopped, "--export", &file("s.tar")]);
    assert_exit(
        &out,
        4,
        &[&format!("{stopped} is not running"), "docker start"],
    );

    // With only DOCKER_HOST set, the containerd dockerd uses (the set's
    // private one, named in its daemon.json) is found.
    let name = d.name("counter");
    run_sh_detached(&d, &name, COUNTER);
    let last = wait_ticks_past(&d, &name, 2);
    let archive = file("counter.tar");
    let export = [
        "checkpoint",
        name.as_str(),
        "--export",
        &archive,
        "--compress",
        "none",
    ];
    let out = run(lazarus_cmd(&d)
        .env_remove("CONTAINERD_ADDRESS")
        .args(export));
    if !lazarus_rt {
        // Found through dockerd's containerd: refused by its runtime.
        assert_exit(&out, 4, &["not Lazarus"]);
        return;
    }
    let out = out.ok();
    assert!(out.stdout.contains("counter.tar"), "{out}");

    // 5: the name is taken (the exported container is still there).
    let out = lazarus(&d, &["restore", "--import", &archive]);
    assert_exit(&out, 5, &["already exists", "--name"]);

    // 6: a containerd socket nobody listens on (a daemon that died).
    let dead = tmp.join("dead.sock");
    drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
    let out = lazarus(
        &d,
        &[
            "restore",
            "-a",
            dead.to_str().unwrap(),
            "--namespace",
            &d.id,
            "--import",
            &archive,
            "--trust-archive",
        ],
    );
    assert_exit(&out, 6, &["nothing listens"]);

    // 4: an archive asking for a hook, restored through containerd.
    let hooked = tmp.join("hooked.tar");
    recraft(std::path::Path::new(&archive), &hooked, |dir| {
        edit_json(dir, "spec.dump", |v| {
            v["hooks"] = json!({"prestart": [{"path": "/bin/true"}]});
        })
    });
    let out = lazarus(
        &d,
        &[
            "restore",
            "--import",
            hooked.to_str().unwrap(),
            "--namespace",
            &d.id,
            // A Docker container's spec has Docker's own host mounts and
            // sysctls: granted, so that the hook is what is refused.
            "--allow-host-mounts",
            "--allow-security-options",
            "--allow-sysctls",
        ],
    );
    assert_exit(&out, 4, &["asks for more than this import was granted"]);
    assert!(out.stderr.contains("prestart hook: /bin/true"), "{out}");
    assert!(out.stderr.contains("--allow-hooks"), "{out}");

    // The archive is fine otherwise: restored under another name.
    let back = d.name("back");
    lazarus(&d, &["restore", "--import", &archive, "--name", &back]).ok();
    wait_ticks_past(&d, &back, last + 1);

    // 7: CRIU refuses an established TCP connection; the first line says
    // which flag takes it, CRIU's lines follow.
    let tcp = d.name("tcp");
    let script = format!(
        "(sleep 1000 | nc -l -p 7000 >/dev/null) & sleep 0.5; (sleep 1000 | nc 127.0.0.1 7000) & {COUNTER}"
    );
    run_sh_detached(&d, &tcp, &script);
    wait_ticks_past(&d, &tcp, 3);
    let out = lazarus(&d, &["checkpoint", &tcp, "--export", &file("tcp.tar")]);
    assert_exit(
        &out,
        7,
        &["established TCP connections", "give --tcp-established"],
    );
    assert!(!out.stderr.contains("open_tcp"), "{out}");
    assert!(out.stderr.lines().count() > 2, "CRIU's lines follow: {out}");
    wait_ticks_past(&d, &tcp, 5);

    // A migration to something that is not `lazarus serve` (an HTTP
    // server) says the peer did not speak Lazarus's protocol.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().unwrap();
        let mut buf = [0u8; 64];
        let _ = c.read(&mut buf);
        let _ = c.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
    });
    let key = keygen(&d, "k");
    let out = lazarus(
        &d,
        &[
            "migrate",
            &back,
            "--to",
            &format!("127.0.0.1:{port}"),
            "--key",
            &key,
        ],
    );
    http.join().unwrap();
    assert_exit(
        &out,
        1,
        &["did not speak Lazarus's migration protocol", "HTTP/1.1"],
    );
    assert!(!out.stderr.contains("same key"), "{out}");
    wait_ticks_past(&d, &back, last + 4);
    for n in [&name, &back, &tcp, &stopped] {
        d.docker(&["rm", "-f", n]).ok();
    }
}
