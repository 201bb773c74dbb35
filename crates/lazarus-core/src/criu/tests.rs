//! The driver against stand-ins for CRIU: one that never answers, one that
//! dies at once, one whose log runs away. Each must end promptly with the
//! failure named, and leave no CRIU process behind.

use super::*;
use std::os::unix::fs::PermissionsExt;

fn stand_in(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("criu");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn criu(binary: PathBuf, timeout: Duration, log_max_bytes: u64) -> SwrkCriu {
    SwrkCriu {
        binary,
        limits: Limits {
            timeout,
            log_max_bytes,
        },
        waiter: Box::new(DirectWait),
    }
}

fn failure(err: Error) -> CriuFailure {
    match err {
        Error::Criu(e) => e.failure,
        other => panic!("expected a CRIU error, got {other}"),
    }
}

#[test]
fn a_criu_that_never_answers_is_killed_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let body = format!("echo $$ > {}\nexec sleep 1000", pidfile.display());
    let criu = criu(
        stand_in(dir.path(), &body),
        Duration::from_millis(700),
        1 << 30,
    );
    let started = Instant::now();
    let err = criu.version().unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(err.kind(), crate::error::ErrorKind::DeadlineExceeded);
    assert!(err.to_string().contains("did not answer within"), "{err}");
    assert!(matches!(failure(err), CriuFailure::TimedOut(_)));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the stand-in CRIU (pid {pid}) is still there"
    );
}

/// Also with the largest timeout a config can ask for: a deadline past
/// what `Instant` can hold panicked before MAX_TIMEOUT capped it.
#[test]
fn a_criu_that_exits_returns_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let binary = stand_in(dir.path(), "exit 3");
    for timeout in [
        Duration::from_secs(60),
        Duration::from_secs(i64::MAX as u64),
    ] {
        let criu = criu(binary.clone(), timeout, 1 << 30);
        let started = Instant::now();
        let err = criu.version().unwrap_err();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
        match failure(err) {
            CriuFailure::Crashed(m) => assert!(m.contains("exit status 3"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_runaway_log_stops_criu() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("dump.log");
    let body = format!(
        "while true; do echo spinning on a missing page; done > {}",
        log.display()
    );
    let criu = criu(
        stand_in(dir.path(), &body),
        Duration::from_secs(60),
        1 << 20,
    );
    let mut request = rpc::Criu_req::new();
    request.set_type(rpc::Criu_req_type::DUMP);
    let call = Call {
        op: CriuOp::Dump,
        request,
        inherited: &[],
        log: Some(&log),
        cancel: None,
    };
    let err = criu.call(call, &mut |_, _| Ok(())).err().unwrap();
    let f = failure(err);
    assert!(matches!(f, CriuFailure::LogTooLarge(_)), "{f:?}");
}

#[test]
fn a_missing_binary_is_a_precondition_naming_it() {
    let criu = criu(
        PathBuf::from("/nonexistent/criu"),
        Duration::from_secs(5),
        1 << 20,
    );
    let err = criu.version().unwrap_err();
    assert_eq!(err.kind(), crate::error::ErrorKind::FailedPrecondition);
    assert!(err.to_string().contains("/nonexistent/criu"), "{err}");
}

#[test]
fn a_cancelled_call_stops_criu_promptly() {
    let dir = tempfile::tempdir().unwrap();
    let criu = criu(
        stand_in(dir.path(), "exec sleep 1000"),
        Duration::from_secs(60),
        1 << 30,
    );
    let asked = Instant::now();
    let gone = || asked.elapsed() > Duration::from_millis(300);
    let mut request = rpc::Criu_req::new();
    request.set_type(rpc::Criu_req_type::DUMP);
    let call = Call {
        op: CriuOp::Dump,
        request,
        inherited: &[],
        log: None,
        cancel: Some(&gone),
    };
    let err = criu.call(call, &mut |_, _| Ok(())).err().unwrap();
    assert!(
        asked.elapsed() < Duration::from_secs(5),
        "took {:?}",
        asked.elapsed()
    );
    assert_eq!(failure(err), CriuFailure::Cancelled);
}
