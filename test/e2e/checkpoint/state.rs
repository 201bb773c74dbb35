//! Checkpoint/restore of the kernel state real applications hold:
//! established TCP connections (inside the container, and from another
//! network namespace), external unix sockets, file locks, a process tree
//! with threads, pipes and timers, a 1 GiB heap, an open file on a volume,
//! and the network namespace itself. Docker flows, against the runtime under
//! test (runc as the reference).
//!
//! Docker sends CRIU options to no runtime but runc, and to runc only
//! `exit`; each runtime has its own per-container way in, which is what a
//! user types: Lazarus reads `io.lazarus.checkpoint.<option>=true`, runc a
//! CRIU configuration file named by `org.criu.config`.

use crate::checkpoint::flows::{docker_start_checkpoint, docker_try_start_checkpoint, wait_status};
use crate::docker::lifecycle::docker_run_args;
use crate::support::cmd::{poll, wait_until};
use crate::support::harness::inspect;
use crate::support::harness::Daemons;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// `--annotation` flags that turn the CRIU `options` (CRIU's long option
/// names: tcp-established, ext-unix-sk, file-locks) on for the runtime
/// under test.
fn criu_option_flags(d: &Daemons, options: &[&str]) -> Vec<String> {
    if d.is_lazarus() {
        options
            .iter()
            .flat_map(|o| {
                [
                    "--annotation".to_string(),
                    format!("io.lazarus.checkpoint.{o}=true"),
                ]
            })
            .collect()
    } else {
        let conf = d.path("criu-runc.conf");
        std::fs::write(&conf, options.join("\n") + "\n").unwrap();
        vec![
            "--annotation".into(),
            format!("org.criu.config={}", conf.display()),
        ]
    }
}

/// Runs `cmd` detached as `name` with `flags` (owned strings allowed).
fn run_detached(d: &Daemons, name: &str, flags: &[String], cmd: &[&str]) {
    let mut all: Vec<&str> = vec!["-d", "--name", name];
    all.extend(flags.iter().map(String::as_str));
    d.docker(&docker_run_args(d, &all, cmd)).ok();
}

/// The lines of `name`'s log that start with `word`, split into fields.
fn lines_of(d: &Daemons, name: &str, word: &str) -> Vec<Vec<String>> {
    let logs = d.docker(&["logs", name]).ok().stdout;
    logs.lines()
        .filter(|l| l.split_whitespace().next() == Some(word))
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Waits until `name` has printed `count` lines starting with `word`.
fn wait_lines(d: &Daemons, name: &str, word: &str, count: usize) -> Vec<Vec<String>> {
    let mut seen = 0;
    poll(Duration::from_secs(60), || {
        let lines = lines_of(d, name, word);
        seen = lines.len();
        (seen >= count).then_some(lines)
    })
    .unwrap_or_else(|| {
        let logs = d.docker(&["logs", name]).ok().all();
        panic!("{name}: {seen} of {count} `{word}` lines; logs:\n{logs}")
    })
}

/// The second field of each line (the workload's counter) must run 0, 1,
/// 2, ... without a gap or a restart, and no line may report a failure.
fn assert_unbroken(d: &Daemons, name: &str, lines: &[Vec<String>]) {
    let logs = d.docker(&["logs", name]).ok().all();
    assert!(
        !logs.contains("FAILED"),
        "{name} reported a failure:\n{logs}"
    );
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l[1], i.to_string(), "{name}'s counter broke:\n{logs}");
    }
}

/// Checkpoints `name` (which stops it), then restores it; returns how many
/// `word` lines it had printed before.
fn checkpoint_and_restore(d: &Daemons, name: &str, word: &str) -> usize {
    let before = checkpoint(d, name, word);
    docker_start_checkpoint(d, name, "cp", &[]);
    before
}

/// Checkpoints `name` as `cp` (which stops it); returns how many `word`
/// lines it had printed.
fn checkpoint(d: &Daemons, name: &str, word: &str) -> usize {
    let out = d.docker(&["checkpoint", "create", name, "cp"]);
    assert_eq!(out.code, Some(0), "checkpoint of {name}: {out}");
    wait_status(d, name, "exited");
    lines_of(d, name, word).len()
}

/// A server and a client in one container, connected over 127.0.0.1: with
/// tcp-established the very same connection (same client port, same
/// serving process) carries on after the restore. runc restores into an
/// empty network namespace (no 127.0.0.1), and its restore fails.
#[test]
fn docker_tcp_connection_inside_the_container() {
    let d = Daemons::with_docker("state_tcp_inside");
    let name = d.name("tcp");
    let flags = criu_option_flags(&d, &["tcp-established"]);
    let script = "crstate tcp-echo 7000 & crstate tcp-client 127.0.0.1 7000";
    run_detached(&d, &name, &flags, &["sh", "-c", script]);
    wait_lines(&d, &name, "tcp", 3);
    let before = checkpoint(&d, &name, "tcp");
    let out = docker_try_start_checkpoint(&d, &name, "cp", &[]);
    if !d.is_lazarus() {
        assert!(
            out.code != Some(0) && out.all().contains("criu failed"),
            "runc was seen to fail this restore: {out}"
        );
        return;
    }
    assert_eq!(out.code, Some(0), "restore: {out}");
    let lines = wait_lines(&d, &name, "tcp", before + 3);
    assert_unbroken(&d, &name, &lines);
    let first = &lines[0];
    assert!(
        lines.iter().all(|l| l[3] == first[3] && l[5] == first[5]),
        "the connection changed (client port / server pid): {lines:?}"
    );
}

/// A client in another network namespace (the test's own, on the host)
/// connected to the container's address on a Docker bridge network keeps
/// its connection; the container comes back with its address.
#[test]
fn docker_tcp_connection_from_another_network_namespace() {
    let d = Daemons::with_docker("state_tcp_bridge");
    let (net, prefix) = d.bridge_network();
    let ip = format!("{prefix}.10");
    let name = d.name("srv");
    let mut flags = criu_option_flags(&d, &["tcp-established"]);
    flags.extend(["--network".into(), net, "--ip".into(), ip.clone()]);
    run_detached(&d, &name, &flags, &["crstate", "tcp-echo", "7000"]);
    wait_lines(&d, &name, "listening", 1);
    let stream = wait_until("a connection", Duration::from_secs(20), || {
        TcpStream::connect((ip.as_str(), 7000)).ok()
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut ask = |n: u32| {
        (&stream).write_all(format!("{n}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        reader
            .read_line(&mut reply)
            .unwrap_or_else(|e| panic!("request {n}: no reply on the held connection: {e}"));
        reply
    };
    let server = ask(1).split_whitespace().next().unwrap().to_string();
    let addresses = d.docker(&["exec", &name, "ip", "-4", "-o", "addr"]).ok();

    checkpoint_and_restore(&d, &name, "listening");
    wait_status(&d, &name, "running");
    let after = d.docker(&["exec", &name, "ip", "-4", "-o", "addr"]).ok();
    let reply = ask(2);
    assert_eq!(
        reply.trim(),
        format!("{server} 2"),
        "the held connection answers from the same serving process"
    );
    for want in ["127.0.0.1/8", &format!("{ip}/24")] {
        assert!(
            after.stdout.contains(want),
            "restored container lacks {want}:\n{after}\nbefore:\n{addresses}"
        );
    }
}

/// Addresses as `ip -4 -o addr` prints them: "lo 127.0.0.1/8" and so on.
fn addresses(d: &Daemons, name: &str) -> Vec<String> {
    let out = d.docker(&["exec", name, "ip", "-4", "-o", "addr"]).ok();
    out.stdout
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            format!("{} {}", f[1], f[3])
        })
        .collect()
}

/// On Docker's `none` network the restored container's loopback is up with
/// its address, and a server restored on 127.0.0.1 answers new clients.
/// With runc the restored namespace is empty: `lo` is down, and 127.0.0.1
/// is unreachable.
#[test]
fn docker_none_network_comes_back_as_it_was() {
    let d = Daemons::with_docker("state_net_none");
    let name = d.name("net");
    run_detached(&d, &name, &[], &["crstate", "tcp-echo", "7000"]);
    wait_lines(&d, &name, "listening", 1);
    let before = addresses(&d, &name);
    assert_eq!(before, ["lo 127.0.0.1/8"]);
    checkpoint_and_restore(&d, &name, "listening");
    wait_status(&d, &name, "running");
    let probe = "echo 5 | nc -w 2 127.0.0.1 7000";
    let answer = d.docker(&["exec", &name, "sh", "-c", probe]);
    if d.is_lazarus() {
        assert_eq!(addresses(&d, &name), before);
        assert!(
            answer.stdout.trim().ends_with(" 5"),
            "the restored server does not answer on 127.0.0.1: {answer}"
        );
    } else {
        assert_eq!(addresses(&d, &name), Vec::<String>::new(), "runc: lo down");
        assert!(!answer.stdout.contains(" 5"), "runc: {answer}");
    }
}

/// A datagram socket connected to a listener outside the container (the
/// test's, through a bind-mounted directory, like /dev/log): with
/// ext-unix-sk the datagrams keep arriving after the restore. CRIU finds a
/// socket's peer through sock_diag, which sees only its own network
/// namespace: the container shares the host's (`--network host`).
#[test]
fn docker_external_unix_socket() {
    let d = Daemons::with_docker("state_unix_ext");
    let dir = d.path("ext");
    std::fs::create_dir_all(&dir).unwrap();
    let listener = UnixDatagram::bind(dir.join("log.sock")).unwrap();
    listener
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let name = d.name("unix");
    let mut flags = criu_option_flags(&d, &["ext-unix-sk"]);
    // The same path inside and out, as with /dev/log: the socket's peer is
    // named by the path it was bound at.
    flags.extend(["--network".into(), "host".into()]);
    flags.extend(["-v".into(), format!("{0}:{0}", dir.display())]);
    let path = dir.join("log.sock");
    let path = path.to_str().unwrap();
    run_detached(&d, &name, &flags, &["crstate", "unix-dgram", path]);
    let receive = || {
        let mut buf = [0u8; 64];
        // A read with a timeout is not restarted after a signal (signal(7)):
        // EINTR is a retry, not a missing datagram.
        let n = loop {
            match listener.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("a datagram from the container"),
            }
        };
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    for i in 0..3 {
        assert_eq!(receive(), format!("dgram {i}"));
    }
    let before = checkpoint_and_restore(&d, &name, "dgram");
    // What was sent between our reads and the dump is still queued.
    let mut got: Vec<String> = (3..before).map(|_| receive()).collect();
    got.extend((0..3).map(|_| receive()));
    let want: Vec<String> = (3..before + 3).map(|i| format!("dgram {i}")).collect();
    assert_eq!(got, want, "datagrams after the restore");
}

/// flock and fcntl locks held by the container's process are held again
/// after the restore (file-locks): another process still finds them busy.
#[test]
fn docker_file_locks() {
    let d = Daemons::with_docker("state_locks");
    let name = d.name("locks");
    let flags = criu_option_flags(&d, &["file-locks"]);
    run_detached(&d, &name, &flags, &["crstate", "locks", "/tmp"]);
    wait_lines(&d, &name, "locks", 2);
    let probe = ["exec", &name, "crstate", "probe-locks", "/tmp"];
    assert_eq!(d.docker(&probe).ok().text(), "flock busy fcntl busy");
    let before = checkpoint_and_restore(&d, &name, "locks");
    let lines = wait_lines(&d, &name, "locks", before + 2);
    assert_unbroken(&d, &name, &lines);
    assert_eq!(d.docker(&probe).ok().text(), "flock busy fcntl busy");
}

/// 12 processes in a ring of pipes, each with a forwarding thread and an
/// interval timer (the root a timerfd): the ring goes on turning with the
/// same processes, and the timers keep firing (crstate checks both).
#[test]
fn docker_process_tree_with_threads_pipes_and_timers() {
    let d = Daemons::with_docker("state_tree");
    let name = d.name("tree");
    run_detached(&d, &name, &[], &["crstate", "tree", "12"]);
    let lines = wait_lines(&d, &name, "tree", 3);
    let procs = lines[2][7].clone();
    assert_eq!(procs, "12", "{lines:?}");
    let threads = tree_threads(&d, &name);
    assert_eq!(
        threads,
        ["1 Threads: 1", "11 Threads: 2"],
        "the tree's threads"
    );
    let before = checkpoint_and_restore(&d, &name, "tree");
    let lines = wait_lines(&d, &name, "tree", before + 3);
    let rounds: Vec<Vec<String>> = lines
        .iter()
        .map(|l| vec![l[0].clone(), l[3].clone()])
        .collect();
    assert_unbroken(&d, &name, &rounds);
    assert!(
        lines[before..].iter().all(|l| l[7] == procs),
        "the restored tree has other processes than {procs}: {lines:?}"
    );
    assert_eq!(tree_threads(&d, &name), threads, "the tree's threads");
}

/// "COUNT Threads: N" for the crstate processes in `name`.
fn tree_threads(d: &Daemons, name: &str) -> Vec<String> {
    let script = "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = crstate ] && grep Threads $p/status; done | sort | uniq -c";
    let out = d.docker(&["exec", name, "sh", "-c", script]).ok();
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// memhog's `tick N sum S` lines as (N, S).
pub fn memhog_ticks(logs: &str) -> Vec<(u64, String)> {
    logs.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["tick", n, "sum", s] => Some((n.parse().ok()?, s.to_string())),
                _ => None,
            }
        })
        .collect()
}

/// 1 GiB of touched heap comes back byte for byte: memhog's checksum of
/// its whole heap is the same after the restore, and its ticks go on.
#[test]
fn docker_one_gib_heap() {
    let d = Daemons::with_docker("state_heap_1g");
    let name = d.name("mem");
    run_detached(&d, &name, &[], &["memhog", "1024"]);
    let logs = |d: &Daemons| d.docker(&["logs", &name]).ok().stdout;
    wait_until("memhog's first tick", Duration::from_secs(120), || {
        (!memhog_ticks(&logs(&d)).is_empty()).then_some(())
    });
    let out = d.docker(&["checkpoint", "create", &name, "cp"]);
    assert_eq!(out.code, Some(0), "checkpoint: {out}");
    wait_status(&d, &name, "exited");
    let before = memhog_ticks(&logs(&d));
    let sum = before.last().unwrap().1.clone();
    let size = crate::checkpoint::flows::dir_size(
        &d.path("docker")
            .join("containers")
            .join(inspect(&d, &name, "{{.Id}}"))
            .join("checkpoints/cp"),
    );
    assert!(size > 1 << 30, "a 1 GiB heap's image holds {size} bytes");
    docker_start_checkpoint(&d, &name, "cp", &[]);
    let after = wait_until("ticks after the restore", Duration::from_secs(120), || {
        let all = memhog_ticks(&logs(&d));
        (all.len() >= before.len() + 2).then_some(all)
    });
    for (i, (n, s)) in after.iter().enumerate() {
        assert_eq!(*n, i as u64, "ticks are not one unbroken run: {after:?}");
        assert_eq!(s, &sum, "the heap changed across the restore (tick {n})");
    }
}

/// A shell appending to a file on a bind-mounted volume through a file
/// descriptor it opened once: after the restore it writes through the same
/// descriptor to the same host file, and the numbers run on unbroken.
#[test]
fn docker_open_file_on_a_bind_mounted_volume() {
    let d = Daemons::with_docker("state_volume");
    let dir = d.path("volume");
    std::fs::create_dir_all(&dir).unwrap();
    let name = d.name("vol");
    let flags = ["-v".to_string(), format!("{}:/data", dir.display())];
    let script = "exec 3>>/data/log; i=0; while true; do echo line $i >&3; echo line $i; \
                  i=$((i+1)); sleep 0.2; done";
    run_detached(&d, &name, &flags, &["sh", "-c", script]);
    wait_lines(&d, &name, "line", 3);
    let before = checkpoint_and_restore(&d, &name, "line");
    wait_lines(&d, &name, "line", before + 3);
    let fd = d.docker(&["exec", &name, "readlink", "/proc/1/fd/3"]).ok();
    assert_eq!(fd.text(), "/data/log", "fd 3 after the restore");
    let file = std::fs::read_to_string(dir.join("log")).unwrap();
    let numbers: Vec<&str> = file.lines().collect();
    assert!(numbers.len() >= before + 3, "{file}");
    for (i, l) in numbers.iter().enumerate() {
        assert_eq!(*l, format!("line {i}"), "the host file:\n{file}");
    }
}
