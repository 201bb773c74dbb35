//! The migration channel's cipher against the other one Noise offers, on
//! this CPU: 1 GiB sealed and opened in full frames, as the page tunnel
//! does, through snow with ring (the channel's build). Why the channel
//! uses AES-GCM: see `channel/mod.rs`.
//!
//! `cargo run --release -p lazarus-core --features channel --example cipher_bench`

use std::time::Instant;

use lazarus_core::channel::{MAX_FRAME, PATTERN};

/// Seal and open speeds, MiB/s, of `frames` full frames.
fn speeds(pattern: &str, frames: usize) -> (f64, f64) {
    let psk = [7u8; 32];
    let builder = || {
        let params = pattern.parse().expect("a Noise pattern");
        snow::Builder::new(params)
            .psk(0, &psk)
            .expect("a 32-byte key")
    };
    let mut initiator = builder().build_initiator().unwrap();
    let mut responder = builder().build_responder().unwrap();
    let (mut wire, mut plain) = (vec![0u8; 65535], vec![0u8; 65535]);
    let n = initiator.write_message(&[], &mut wire).unwrap();
    responder.read_message(&wire[..n], &mut plain).unwrap();
    let n = responder.write_message(&[], &mut wire).unwrap();
    initiator.read_message(&wire[..n], &mut plain).unwrap();
    let mut sealer = initiator.into_transport_mode().unwrap();
    let mut opener = responder.into_transport_mode().unwrap();
    let frame: Vec<u8> = (0..MAX_FRAME).map(|i| (i * 31 % 251) as u8).collect();
    let (mut sealing, mut opening) = (0.0, 0.0);
    for _ in 0..frames {
        let t = Instant::now();
        let n = sealer.write_message(&frame, &mut wire).unwrap();
        sealing += t.elapsed().as_secs_f64();
        let t = Instant::now();
        opener.read_message(&wire[..n], &mut plain).unwrap();
        opening += t.elapsed().as_secs_f64();
    }
    let mib = (frames * MAX_FRAME) as f64 / f64::from(1 << 20);
    (mib / sealing, mib / opening)
}

fn main() {
    let frames = (1 << 30) / MAX_FRAME;
    let other = match PATTERN.contains("AESGCM") {
        true => PATTERN.replace("AESGCM", "ChaChaPoly"),
        false => PATTERN.replace("ChaChaPoly", "AESGCM"),
    };
    let (seal, open) = speeds(PATTERN, frames);
    let (other_seal, other_open) = speeds(&other, frames);
    println!(
        "{:<50} {:>12} {:>12}",
        "1 GiB in full frames", "seal MiB/s", "open MiB/s"
    );
    println!(
        "{:<50} {seal:>12.0} {open:>12.0}",
        format!("{PATTERN} (the channel's)")
    );
    println!("{other:<50} {other_seal:>12.0} {other_open:>12.0}");
    println!(
        "the channel's cipher: {:.2}x the other's speed to seal, {:.2}x to open",
        seal / other_seal,
        open / other_open
    );
}
