//! A lazy dump's page server options, and a failed dump's error made from
//! its log.

use super::*;
use crate::checkpoint::request;

#[test]
fn a_lazy_dump_listens_on_loopback_without_tls() {
    let work = tempfile::tempdir().unwrap();
    let mut opts = rpc::Criu_opts::new();
    let server = PageServer::local(27000, PageMode::Lazy);
    page_server_options(&mut opts, &server, work.path()).unwrap();
    assert!(opts.lazy_pages() && !opts.tls());
    let conf = std::fs::read_to_string(opts.config_file()).unwrap();
    assert_eq!(conf, "address 127.0.0.1\n");
    let mut push = rpc::Criu_opts::new();
    page_server_options(
        &mut push,
        &PageServer::local(27001, PageMode::Push),
        work.path(),
    )
    .unwrap();
    assert!(!push.lazy_pages() && !push.has_config_file());
    assert_eq!((push.ps.address(), push.ps.port()), ("127.0.0.1", 27001));
}

#[test]
fn the_real_cause_leads_and_the_log_is_kept_private() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join(image::DUMP_LOG);
    let rlimit = "(00.01) Error (criu/util.c:1534): rlimit: Can't setup RLIMIT_NOFILE for self";
    let cause = "(00.20) Error (criu/sk-inet.c:1): inet: Connected TCP socket, consider using \
                 --tcp-established option.";
    std::fs::write(
        &log,
        format!(
            "{rlimit}\n{}{cause}\n(00.30) end\n",
            "(00.10) working\n".repeat(20)
        ),
    )
    .unwrap();
    let mut err = CriuError::new(
        CriuOp::Dump,
        CriuFailure::Refused {
            errno: 0,
            message: rlimit.into(),
        },
    );
    let keep = dir.path().join("kept/c1/dump.log");
    explain(&mut err, &log, Some(&keep), &OPTION_ADVICE);
    let text = err.to_string();
    let first = text.lines().find(|l| l.contains("Error (")).unwrap();
    assert!(first.contains("Connected TCP socket"), "{text}");
    assert!(!text.contains("RLIMIT_NOFILE"), "{text}");
    assert_eq!(
        text.matches("Connected TCP socket").count(),
        2,
        "cause once, tail once: {text}"
    );
    assert!(text.contains(request::TCP_ESTABLISHED_ANNOTATION), "{text}");
    assert!(text.contains(&keep.display().to_string()), "{text}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&keep).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&keep).unwrap().contains(cause));
}
