//! Two ends of an authenticated migration channel on loopback, for unit
//! tests that script the other host.

use std::net::{TcpListener, TcpStream};

use lazarus_core::channel::{Channel, Key};

/// (the connecting end, the accepting end), both holding one key.
pub fn pair() -> (Channel<TcpStream>, Channel<TcpStream>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let key = Key::generate().unwrap();
    let theirs = key.duplicate();
    let accepting = std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        Channel::accept(stream, &theirs).unwrap()
    });
    let ours = Channel::connect(TcpStream::connect(addr).unwrap(), &key).unwrap();
    (ours, accepting.join().unwrap())
}

/// Runs `peer` on the other end on a thread of its own; join it for what
/// it saw.
pub fn script<T: Send + 'static>(
    mut theirs: Channel<TcpStream>,
    peer: impl FnOnce(&mut Channel<TcpStream>) -> T + Send + 'static,
) -> std::thread::JoinHandle<T> {
    std::thread::spawn(move || peer(&mut theirs))
}
