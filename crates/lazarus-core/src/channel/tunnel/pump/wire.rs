//! The bytes on the pump's two sockets: CRIU's page server messages
//! ([`Iov`]) to and from the lazy-pages daemon, and the link to the
//! source's tunnel end, opened ([`Opened`]) and sealed ([`Sealer`]) as
//! Noise messages.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use super::super::link;
use super::super::{MAX_FRAME, MAX_NOISE, PS_IOV_LEN};
use super::PAGE;

pub(super) const PS_IOV_ADD_F: u32 = 6;
pub(super) const PS_IOV_GET: u32 = 7;
pub(super) const PE_PRESENT: u32 = 1 << 2;

/// A page server message header: u32 cmd, padding, nr_pages, vaddr,
/// dst_id (little-endian u64s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Iov {
    pub(super) cmd: u32,
    pub(super) nr_pages: u64,
    pub(super) vaddr: u64,
    pub(super) dst_id: u64,
}

impl Iov {
    pub(super) fn parse(b: &[u8; PS_IOV_LEN]) -> Iov {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Iov {
            cmd: u32::from_le_bytes(b[..4].try_into().unwrap()),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }

    pub(super) fn bytes(&self) -> [u8; PS_IOV_LEN] {
        let mut b = [0u8; PS_IOV_LEN];
        b[..4].copy_from_slice(&self.cmd.to_le_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..].copy_from_slice(&self.dst_id.to_le_bytes());
        b
    }

    pub(super) fn get(pid: u64, vaddr: u64, nr_pages: u64) -> Iov {
        Iov {
            cmd: PS_IOV_GET,
            nr_pages,
            vaddr,
            dst_id: pid,
        }
    }

    pub(super) fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE
    }

    pub(super) fn holds(&self, pid: u64, addr: u64) -> bool {
        self.dst_id == pid && self.vaddr <= addr && addr < self.end()
    }
}

/// The source's end of the link as a byte stream: Noise messages opened
/// as they come; the empty message is its end.
pub(super) struct Opened {
    pub(super) from: link::Opener,
    pub(super) plain: Vec<u8>,
    pub(super) at: usize,
    pub(super) ended: bool,
}

impl Read for Opened {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.plain.len() && !self.ended {
            self.plain.clear();
            self.at = 0;
            self.ended = self.from.open_into(&mut self.plain)? == 0;
        }
        let n = out.len().min(self.plain.len() - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The source's end of the link for writing: each call one write of
/// sealed messages.
pub(super) struct Sealer {
    pub(super) to: TcpStream,
    pub(super) noise: Arc<snow::StatelessTransportState>,
    pub(super) nonce: u64,
}

impl Sealer {
    pub(super) fn send(&mut self, plain: &[u8]) -> io::Result<()> {
        let mut wire =
            vec![0u8; plain.len() + (plain.len() / MAX_FRAME + 1) * (MAX_NOISE - MAX_FRAME + 2)];
        let mut at = 0;
        for chunk in plain.chunks(MAX_FRAME) {
            at += link::seal(&self.noise, self.nonce, chunk, &mut wire[at..])
                .map_err(io::Error::other)?;
            self.nonce += 1;
        }
        self.to.write_all(&wire[..at])
    }

    /// Our end of the stream: the empty message.
    pub(super) fn end(&mut self) -> io::Result<()> {
        let mut wire = [0u8; MAX_NOISE - MAX_FRAME + 2];
        let n = link::seal(&self.noise, self.nonce, &[], &mut wire).map_err(io::Error::other)?;
        self.nonce += 1;
        self.to.write_all(&wire[..n])?;
        self.to.shutdown(Shutdown::Write)
    }
}
