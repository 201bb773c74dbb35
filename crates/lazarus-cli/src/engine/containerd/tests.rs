//! The containerd client's own logic, without a containerd: the errors it
//! says, the dump it trusts, the option messages it encodes.

use std::path::PathBuf;

use super::*;

/// What the shim answers when CRIU wants --tcp-established (its first
/// line for Docker's users), as containerd passes it on.
const TCP_REFUSAL: &str = "checkpoint of container web failed: CRIU needs \
    --tcp-established: create the container with the annotation \
    io.lazarus.checkpoint.tcp-established=true (docker run --annotation \
    io.lazarus.checkpoint.tcp-established=true), or checkpoint with the runtime option \
    open_tcp (lazarus checkpoint --tcp-established)\n\
    CRIU reported failure (errno 0): (00.1) Error (criu/sk-inet.c:191): inet: Connected \
    TCP socket, consider using --tcp-established option.\n\
    (00.1) Error (criu/cr-dump.c:1): Dumping FAILED.\n\
    (full CRIU log: /run/lazarus/logs/moby/web/dump.log)";

#[test]
fn a_dump_that_wants_an_option_names_the_clis_flag_first() {
    let e = checkpoint_error("web", tonic::Status::internal(TCP_REFUSAL));
    assert_eq!(e.exit_code(), crate::error::exit::CRIU);
    let text = e.to_string();
    let first = text.lines().next().unwrap();
    assert_eq!(
        first,
        "checkpoint of web failed: it has established TCP connections: give \
         --tcp-established to checkpoint them"
    );
    // The annotation line is Docker's; CRIU's lines follow.
    assert!(!text.contains("open_tcp"), "{text}");
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("Connected TCP socket"),
        "{text}"
    );
    assert!(text.contains("dump.log"), "{text}");
    // Any other CRIU failure keeps the shim's first line, after what failed.
    let e = checkpoint_error(
        "web",
        tonic::Status::internal("checkpoint of container web failed: CRIU ended\nlog"),
    );
    assert!(e
        .to_string()
        .starts_with("checkpoint web: checkpoint of container web failed"));
    assert_eq!(e.exit_code(), crate::error::exit::CRIU);
    // Not CRIU's: containerd's, as before.
    let e = checkpoint_error("web", tonic::Status::not_found("no task"));
    assert!(matches!(e, Error::Containerd { .. }), "{e}");
    assert_eq!(e.exit_code(), crate::error::exit::NOT_FOUND);
}

/// A socket this user may not open said as such (as non-root, on
/// root's containerd socket: EACCES), not as a "transport error".
#[tokio::test]
async fn a_socket_that_refuses_says_why() {
    let denied = std::io::Error::from_raw_os_error(nix::libc::EACCES);
    let why = why_not_connected(&denied);
    assert!(
        why.contains("permission denied") && why.contains("must run as root"),
        "{why}"
    );
    // A socket file nobody listens on (a daemon that died).
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("c.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let err = Containerd::connect(sock.to_str().unwrap(), "default")
        .await
        .err()
        .expect("nothing listens");
    let text = err.to_string();
    assert!(text.contains("nothing listens"), "{text}");
    assert!(!text.contains("transport error"), "{text}");
    assert_eq!(err.exit_code(), crate::error::exit::UNREACHABLE);
}

#[test]
fn only_a_dump_the_shim_finished_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().to_str().unwrap();
    assert!(!dump_complete(""));
    assert!(!dump_complete(images));
    std::fs::write(dir.path().join("pages-1.img"), b"").unwrap();
    assert!(
        !dump_complete(images),
        "CRIU's files alone are not a checkpoint"
    );
    std::fs::write(dir.path().join("lazarus.json"), b"{}").unwrap();
    assert!(dump_complete(images));
}

/// Once `request` put any namespace into gRPC metadata with an
/// `expect`: a non-ASCII or control character panicked the CLI (and
/// `serve`, for a namespace offered by a peer). Now it is refused
/// before anything is dialled, saying why.
#[tokio::test]
async fn a_namespace_containerd_cannot_take_is_a_clear_error() {
    for ns in ["é", "ns\nx", "tab\tx", "a b", "-x", "", "a/b", "\u{7f}"] {
        let err = Containerd::connect("/nonexistent/containerd.sock", ns)
            .await
            .err()
            .unwrap_or_else(|| panic!("{ns:?} was accepted"));
        let text = err.to_string();
        assert!(
            matches!(&err, Error::Core(e) if e.kind() == lazarus_core::error::ErrorKind::InvalidArgument),
            "{ns:?}: {text}"
        );
        assert!(text.contains("invalid containerd namespace"), "{text}");
    }
    // A good name gets as far as the (missing) socket.
    let err = Containerd::connect("/nonexistent/containerd.sock", "k8s.io")
        .await
        .err()
        .unwrap();
    assert!(matches!(err, Error::ContainerdUnreachable { .. }), "{err}");
    assert!(namespace_header("default").is_ok());
}

#[test]
fn the_upper_directory_comes_from_the_overlay_options() {
    let m = Mount {
        r#type: "overlay".into(),
        source: "overlay".into(),
        options: vec![
            "index=off".into(),
            "workdir=/s/5/work".into(),
            "upperdir=/s/5/fs".into(),
            "lowerdir=/s/1/fs".into(),
        ],
        ..Default::default()
    };
    assert_eq!(upper_of(&[m]), Some(PathBuf::from("/s/5/fs")));
    let bind = Mount {
        r#type: "bind".into(),
        source: "/s/1/fs".into(),
        options: vec!["rbind".into(), "ro".into()],
        ..Default::default()
    };
    assert_eq!(upper_of(&[bind]), None);
}

/// The bytes containerd's Go decoder reads as runc's CheckpointOptions.
#[test]
fn checkpoint_options_use_runcs_field_numbers() {
    let o = CheckpointOptions {
        exit: true,
        image_path: "/i".into(),
        ..Default::default()
    };
    // field 1 varint 1; field 8 length-delimited "/i"
    assert_eq!(o.encode_to_vec(), vec![0x08, 0x01, 0x42, 0x02, b'/', b'i']);
    let r = RuncOptions {
        criu_image_path: "/i".into(),
        criu_work_path: String::new(),
    };
    assert_eq!(r.encode_to_vec(), vec![0x52, 0x02, b'/', b'i']);
}
