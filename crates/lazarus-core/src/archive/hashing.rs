//! sha256 on the way through: the manifest's digests are computed while
//! files stream into the archive and checked while they stream out, so no
//! file is read twice on the way out.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::manifest::hex;

/// Hashes (and counts, and reports) what is read through it.
pub(super) struct Hashing<'p, R> {
    inner: R,
    hasher: Sha256,
    size: u64,
    base: u64,
    progress: &'p mut dyn FnMut(u64),
}

impl<'p, R: Read> Hashing<'p, R> {
    pub(super) fn new(inner: R, base: u64, progress: &'p mut dyn FnMut(u64)) -> Self {
        Hashing {
            inner,
            hasher: Sha256::new(),
            size: 0,
            base,
            progress,
        }
    }

    pub(super) fn finish(self) -> (u64, String) {
        (self.size, hex(&self.hasher.finalize()))
    }
}

impl<R: Read> Read for Hashing<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.size += n as u64;
        (self.progress)(self.base + self.size);
        Ok(n)
    }
}

/// Copies `r` to `w`, returning the size and sha256 of what was copied.
pub(super) fn hash_copy(
    r: &mut dyn Read,
    w: &mut dyn Write,
    progress: &mut dyn FnMut(u64),
) -> io::Result<(u64, String)> {
    let mut reader = Hashing::new(r, 0, progress);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            return Ok(reader.finish());
        }
        w.write_all(&buf[..n])?;
    }
}
