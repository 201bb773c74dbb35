use super::*;
use std::os::unix::net::UnixStream;
use std::thread;

fn key(byte: u8) -> Key {
    Key::parse(&format!("{byte:02x}").repeat(32)).unwrap()
}

/// A connected pair over a socketpair, the listener's side on a thread.
fn pair(
    server_key: Key,
    client_key: Key,
) -> (Result<Channel<UnixStream>>, Result<Channel<UnixStream>>) {
    let (a, b) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || Channel::accept(a, &server_key));
    let client = Channel::connect(b, &client_key);
    (server.join().unwrap(), client)
}

#[test]
fn messages_and_streams_cross_both_ways() {
    let (server, client) = pair(key(7), key(7));
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    // Larger than one frame, not a multiple of it.
    let big: Vec<u8> = (0..(3 * MAX_FRAME + 1234))
        .map(|i| (i * 31 % 251) as u8)
        .collect();
    let sent = big.clone();
    let t = thread::spawn(move || {
        client.send_json(&serde_json::json!({"hello": 1})).unwrap();
        client
            .send_from(&mut &sent[..], sent.len() as u64, &mut |_| {})
            .unwrap();
        client.send(&[]).unwrap();
        client.recv(16).unwrap()
    });
    let hello: serde_json::Value = server.recv_json().unwrap();
    assert_eq!(hello["hello"], 1);
    let mut got = Vec::new();
    let mut seen = 0;
    let n = server
        .recv_into(&mut got, u64::MAX, &mut |s| seen = s)
        .unwrap();
    assert_eq!((n, seen), (big.len() as u64, big.len() as u64));
    assert!(got == big, "the stream arrived changed");
    assert!(server.recv(0).unwrap().is_empty());
    server.send(b"done").unwrap();
    assert_eq!(t.join().unwrap(), b"done");
}

#[test]
fn a_peer_with_another_key_is_refused_on_both_sides() {
    let (server, client) = pair(key(1), key(2));
    assert!(
        matches!(server, Err(ChannelError::NotAuthenticated(_))),
        "{:?}",
        server.err()
    );
    // The listener dropped the connection: the client learns it was not
    // authenticated, not that the network failed.
    let err = client.err().expect("the client must fail too");
    assert!(matches!(err, ChannelError::NotAuthenticated(_)), "{err}");
    assert!(err.to_string().contains("same key file"), "{err}");
}

#[test]
fn a_listener_that_is_not_lazarus_is_told_apart_from_another_key() {
    // An HTTP server answers anything with its status line and hangs up.
    let (a, b) = UnixStream::pair().unwrap();
    let http = thread::spawn(move || {
        let mut a = a;
        let mut first = [0u8; 8];
        a.read_exact(&mut first).unwrap();
        a.write_all(b"HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n")
            .unwrap();
    });
    let err = Channel::connect(b, &key(1))
        .err()
        .expect("not a Lazarus peer");
    http.join().unwrap();
    assert!(matches!(err, ChannelError::NotLazarus(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("HTTP/1.1") && text.contains("lazarus serve"),
        "{text}"
    );
    assert!(!text.contains("key"), "not the key's fault: {text}");
}

#[test]
fn a_changed_frame_fails_to_open() {
    // A man in the middle that flips one bit of the first data frame.
    let (a, b) = UnixStream::pair().unwrap();
    let (mid_a, mid_b) = UnixStream::pair().unwrap();
    let server = thread::spawn(move || {
        let mut s = Channel::accept(a, &key(3)).unwrap();
        s.recv(1 << 20).map(|_| ())
    });
    let relay = thread::spawn(move || {
        use std::io::{Read, Write};
        let (mut from, mut to) = (mid_b, b);
        let mut buf = [0u8; 4096];
        let mut total = 0usize;
        // Handshake both ways first: relay the server's answer back.
        let mut back_from = to.try_clone().unwrap();
        let mut back_to = from.try_clone().unwrap();
        thread::spawn(move || std::io::copy(&mut back_from, &mut back_to));
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Past the handshake (2 + 48 bytes) and the length frame
            // (2 + 24): inside the first data frame's ciphertext.
            for (i, b) in buf[..n].iter_mut().enumerate() {
                if total + i == 2 + 48 + 2 + 24 + 10 {
                    *b ^= 1;
                }
            }
            total += n;
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
    let mut client = Channel::connect(mid_a, &key(3)).unwrap();
    client.send(&[5u8; 100]).unwrap();
    let got = server.join().unwrap();
    assert!(matches!(got, Err(ChannelError::Tampered)), "{got:?}");
    drop(client);
    let _ = relay.join();
}

#[test]
fn a_message_over_the_limit_is_refused_before_it_is_read() {
    let (server, client) = pair(key(4), key(4));
    let (mut server, mut client) = (server.unwrap(), client.unwrap());
    client.send(&[0u8; 100]).unwrap();
    let err = server.recv(99).unwrap_err();
    assert!(
        matches!(
            err,
            ChannelError::TooLarge {
                got: 100,
                limit: 99
            }
        ),
        "{err}"
    );
}

#[test]
fn key_files_are_private_and_checked() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("k");
    let made = Key::create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Key::load(&path).unwrap().bytes(), made.bytes());
    assert!(
        Key::create(&path).is_err(),
        "an existing key was overwritten"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Key::load(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::write(dir.path().join("bad"), "xyz\n").unwrap();
    std::fs::set_permissions(
        dir.path().join("bad"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let err = Key::load(&dir.path().join("bad")).unwrap_err().to_string();
    assert!(err.contains("64 hex digits"), "{err}");
}
