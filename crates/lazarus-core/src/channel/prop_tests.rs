//! Properties of the channel's framing as the receiving end sees it (what
//! `lazarus serve` reads from anyone who connects): whatever the bytes, an
//! error and never a panic; the same bytes read in any pieces give the same
//! messages; a changed, cut, dropped or repeated frame is refused, never
//! delivered as data.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::thread;

use proptest::prelude::*;

use super::*;

/// One end's stream in memory: reads come from `input` in pieces of the
/// sizes in `pieces` (cycled; none means as much as asked), writes go to
/// `output`.
#[derive(Default)]
struct Memory {
    input: Vec<u8>,
    at: usize,
    pieces: Vec<usize>,
    reads: usize,
    output: Vec<u8>,
}

impl Memory {
    fn reading(input: Vec<u8>, pieces: Vec<usize>) -> Memory {
        Memory {
            input,
            pieces,
            ..Memory::default()
        }
    }
}

impl Read for Memory {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let piece = match self.pieces.len() {
            0 => usize::MAX,
            n => self.pieces[self.reads % n],
        };
        self.reads += 1;
        let n = piece.min(buf.len()).min(self.input.len() - self.at);
        buf[..n].copy_from_slice(&self.input[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

impl Write for Memory {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn key(byte: u8) -> Key {
    Key::parse(&format!("{byte:02x}").repeat(32)).unwrap()
}

/// A sender and a receiver past the handshake (made over a socketpair),
/// each now over a stream in memory.
fn established() -> (Channel<Memory>, Channel<Memory>) {
    let (a, b) = UnixStream::pair().unwrap();
    let receiver = thread::spawn(move || Channel::accept(a, &key(9)).unwrap());
    let sender = Channel::connect(b, &key(9)).unwrap();
    let receiver = receiver.join().unwrap();
    (
        sender.map_stream(|_| Memory::default()),
        receiver.map_stream(|_| Memory::default()),
    )
}

/// The bytes `messages` make on the wire.
fn wire(sender: &mut Channel<Memory>, messages: &[Vec<u8>]) -> Vec<u8> {
    for m in messages {
        sender.send(m).unwrap();
    }
    std::mem::take(&mut sender.stream.output)
}

/// Reads at most `count` messages from `bytes`, read in `pieces`; what
/// arrived, and the error that stopped it.
fn receive(
    receiver: &mut Channel<Memory>,
    bytes: Vec<u8>,
    pieces: Vec<usize>,
    count: usize,
) -> (Vec<Vec<u8>>, Option<ChannelError>) {
    receiver.stream = Memory::reading(bytes, pieces);
    let mut got = Vec::new();
    for _ in 0..count {
        match receiver.recv(u64::MAX) {
            Ok(m) => got.push(m),
            Err(e) => return (got, Some(e)),
        }
    }
    (got, None)
}

/// Where each frame of `wire` starts and how long its body is.
fn frames(wire: &[u8]) -> Vec<(usize, usize)> {
    let mut at = 0;
    let mut out = Vec::new();
    while at < wire.len() {
        let len = u16::from_be_bytes([wire[at], wire[at + 1]]) as usize;
        out.push((at, len));
        at += 2 + len;
    }
    out
}

/// Messages whose lengths straddle the frame size (empty, small, one frame
/// exactly, several frames); the content is a pattern, not random, so that
/// large messages cost little to make.
fn messages() -> impl Strategy<Value = Vec<Vec<u8>>> {
    let len = prop_oneof![0..64usize, MAX_FRAME - 2..MAX_FRAME + 3, 0..3 * MAX_FRAME,];
    let message = (len, any::<u8>()).prop_map(|(len, seed)| {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect()
    });
    prop::collection::vec(message, 1..4)
}

/// Read sizes, never 0 (a read of 0 bytes is the end of the stream).
fn pieces() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..4usize, 1..100usize, 1..2 * MAX_NOISE], 1..8)
}

/// A handshake as `lazarus migrate` opens it: the initiator's first
/// message on the wire (its answer never comes, so `connect` fails after
/// writing it).
fn first_handshake_message(with: &Key) -> Vec<u8> {
    let mut stream = Memory::default();
    assert!(Channel::connect(&mut stream, with).is_err());
    stream.output
}

proptest! {
    // Every case makes a real handshake (X25519, unoptimized in tests).
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn no_bytes_make_the_receiver_panic(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        // Before the handshake: refused, whatever they are.
        let accepted = Channel::accept(Memory::reading(bytes.clone(), Vec::new()), &key(9));
        prop_assert!(accepted.is_err());
        // After it: an error, not a message.
        let (_, mut receiver) = established();
        let (got, error) = receive(&mut receiver, bytes, Vec::new(), 4);
        prop_assert!(got.is_empty() && error.is_some());
    }

    #[test]
    fn no_bytes_after_a_valid_prefix_make_the_receiver_panic(
        messages in messages(),
        cut in any::<prop::sample::Index>(),
        tail in prop::collection::vec(any::<u8>(), 0..4096),
    ) {
        let (mut sender, mut receiver) = established();
        let mut bytes = wire(&mut sender, &messages);
        bytes.truncate(cut.index(bytes.len()));
        bytes.extend_from_slice(&tail);
        let (got, _) = receive(&mut receiver, bytes, Vec::new(), messages.len() + 2);
        // Whatever arrived is what was sent, in order.
        prop_assert!(got.len() <= messages.len());
        prop_assert!(got[..] == messages[..got.len()]);
    }

    #[test]
    fn messages_read_in_any_pieces_arrive_the_same(messages in messages(), pieces in pieces()) {
        let (mut sender, mut receiver) = established();
        let bytes = wire(&mut sender, &messages);
        let (got, error) = receive(&mut receiver, bytes, pieces, messages.len());
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert!(got == messages);
    }

    #[test]
    fn a_frame_split_at_any_point_arrives_the_same(
        message in messages().prop_map(|mut m| m.swap_remove(0)),
        split in any::<prop::sample::Index>(),
    ) {
        let (mut sender, mut receiver) = established();
        let bytes = wire(&mut sender, std::slice::from_ref(&message));
        let first = split.index(bytes.len()).max(1);
        let (got, error) = receive(&mut receiver, bytes, vec![first, usize::MAX], 1);
        prop_assert!(error.is_none(), "{:?}", error);
        prop_assert!(got == vec![message]);
    }

    #[test]
    fn the_handshake_read_in_any_pieces_is_accepted(pieces in pieces()) {
        let hello = first_handshake_message(&key(9));
        let accepted = Channel::accept(Memory::reading(hello, pieces), &key(9));
        prop_assert!(accepted.is_ok(), "{:?}", accepted.err());
    }

    #[test]
    fn a_changed_byte_is_refused(
        messages in messages(),
        at in any::<prop::sample::Index>(),
        bit in 0..8u8,
    ) {
        let (mut sender, mut receiver) = established();
        let mut bytes = wire(&mut sender, &messages);
        let at = at.index(bytes.len());
        let in_body = frames(&bytes)
            .iter()
            .any(|&(start, len)| at >= start + 2 && at < start + 2 + len);
        bytes[at] ^= 1 << bit;
        let (got, error) = receive(&mut receiver, bytes, Vec::new(), messages.len());
        // The messages before the changed frame, unchanged; then a refusal.
        prop_assert!(got.len() < messages.len());
        prop_assert!(got[..] == messages[..got.len()]);
        let error = error.expect("refused");
        if in_body {
            prop_assert!(matches!(error, ChannelError::Tampered), "{}", error);
        }
    }

    #[test]
    fn a_dropped_or_repeated_frame_is_refused(
        messages in messages(),
        which in any::<prop::sample::Index>(),
        repeat in any::<bool>(),
    ) {
        let (mut sender, mut receiver) = established();
        let bytes = wire(&mut sender, &messages);
        let frames = frames(&bytes);
        let (start, len) = frames[which.index(frames.len())];
        let end = start + 2 + len;
        let changed = match repeat {
            true => [&bytes[..end], &bytes[start..]].concat(),
            false => [&bytes[..start], &bytes[end..]].concat(),
        };
        let (got, error) = receive(&mut receiver, changed, Vec::new(), messages.len());
        prop_assert!(got[..] == messages[..got.len()]);
        if repeat && end == bytes.len() {
            // The last frame again, after the last message: never read.
            prop_assert!(got.len() == messages.len());
        } else {
            prop_assert!(got.len() < messages.len());
            let error = error.expect("refused");
            prop_assert!(
                matches!(error, ChannelError::Tampered | ChannelError::Closed(_)),
                "{}", error
            );
        }
    }

    #[test]
    fn a_changed_handshake_is_refused(at in any::<prop::sample::Index>(), bit in 0..8u8) {
        let mut hello = first_handshake_message(&key(9));
        let at = at.index(hello.len());
        hello[at] ^= 1 << bit;
        let accepted = Channel::accept(Memory::reading(hello, Vec::new()), &key(9));
        prop_assert!(accepted.is_err());
    }
}

#[test]
fn a_handshake_under_another_key_is_refused_as_unauthenticated() {
    let hello = first_handshake_message(&key(1));
    let accepted = Channel::accept(Memory::reading(hello, Vec::new()), &key(9));
    assert!(
        matches!(accepted, Err(ChannelError::NotAuthenticated(_))),
        "{:?}",
        accepted.err()
    );
}

#[test]
fn a_claimed_huge_message_is_not_allocated_up_front() {
    // An authenticated peer claiming 2^63 bytes then closing: an error
    // (the stream ended), not an allocation failure.
    let (mut sender, mut receiver) = established();
    sender.send_frame(&(1u64 << 63).to_be_bytes()).unwrap();
    let bytes = std::mem::take(&mut sender.stream.output);
    let (got, error) = receive(&mut receiver, bytes, Vec::new(), 1);
    assert!(got.is_empty());
    assert!(matches!(error, Some(ChannelError::Closed(_))), "{error:?}");
}
