//! The pump's bookkeeping, under its one lock: what was asked of the
//! source ([`Ranges`]), what arrived and waits for the daemon (the cache of
//! [`Piece`]s), what is in flight and how much may be ([`Window`]), and
//! the daemon's requests not answered yet ([`State`]).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::wire::Iov;
use super::PAGE;

/// The most pages one pump request asks for (the source's page server may
/// answer fewer: it stops at the end of one of its pipe buffers).
pub(super) const CHUNK_PAGES: u64 = 256;
/// Bytes asked of the source and not yet arrived: from [`WINDOW_START`],
/// between these bounds.
pub(super) const WINDOW_MIN: u64 = 256 << 10;
pub(super) const WINDOW_START: u64 = 1 << 20;
pub(super) const WINDOW_MAX: u64 = 16 << 20;
/// An answer that took longer than this from its request halves the
/// window (once per window's worth of answers); one quicker than
/// [`LATENCY_LOW`] grows it by a chunk.
pub(super) const LATENCY_HIGH: Duration = Duration::from_millis(20);
pub(super) const LATENCY_LOW: Duration = Duration::from_millis(10);
/// Bytes arrived or asked that the daemon has not taken yet: the pump
/// waits for the daemon beyond this.
pub(super) const CACHE_CAP: u64 = 256 << 20;

/// Address ranges per process, merged: what was ever asked of the source.
#[derive(Debug, Default)]
pub(super) struct Ranges(BTreeMap<(u64, u64), u64>);

impl Ranges {
    pub(super) fn containing(&self, pid: u64, addr: u64) -> Option<(u64, u64)> {
        let (&(p, start), &end) = self.0.range(..=(pid, addr)).next_back()?;
        (p == pid && addr < end).then_some((start, end))
    }

    pub(super) fn insert(&mut self, pid: u64, mut start: u64, mut end: u64) {
        let touching: Vec<(u64, u64)> = self
            .0
            .range((pid, 0)..=(pid, end))
            .rev()
            .take_while(|(_, &e)| e >= start)
            .map(|(&k, &e)| (k.1, e))
            .collect();
        for (s, e) in touching {
            self.0.remove(&(pid, s));
            start = start.min(s);
            end = end.max(e);
        }
        self.0.insert((pid, start), end);
    }

    /// The first part of `[start, end)` not in here, at most `max` bytes.
    pub(super) fn gap(&self, pid: u64, start: u64, end: u64, max: u64) -> Option<(u64, u64)> {
        let from = self.containing(pid, start).map_or(start, |(_, e)| e);
        if from >= end {
            return None;
        }
        let next = self
            .0
            .range((pid, from)..(pid, end))
            .next()
            .map_or(end, |(k, _)| k.1);
        Some((from, next.min(end).min(from.saturating_add(max))))
    }
}

/// Pages arrived and not yet given to the daemon: a shared buffer and the
/// part of it still to give, keyed by (pid, first address).
pub(super) struct Piece {
    pub(super) data: Arc<Vec<u8>>,
    pub(super) offset: usize,
    pub(super) pages: u64,
}

/// What the source is to answer, in the order it will.
#[derive(Clone, Copy)]
pub(super) enum Asked {
    Get(Iov, Instant),
    Close,
}

/// How many bytes may be in flight: grown while answers come quickly,
/// halved when they queue (a slow or busy link), as a delay-based
/// congestion window does.
#[derive(Debug)]
pub(super) struct Window {
    pub(super) bytes: u64,
    /// Answers to requests made before this were asked under a window cut
    /// since: they do not cut it again.
    pub(super) cut_at: Instant,
}

impl Default for Window {
    fn default() -> Window {
        Window {
            bytes: WINDOW_START,
            cut_at: Instant::now(),
        }
    }
}

impl Window {
    pub(super) fn answered(&mut self, asked_at: Instant, now: Instant) {
        let took = now.saturating_duration_since(asked_at);
        if took > LATENCY_HIGH && asked_at >= self.cut_at {
            self.bytes = (self.bytes / 2).max(WINDOW_MIN);
            self.cut_at = now;
        } else if took < LATENCY_LOW {
            self.bytes = (self.bytes + self.chunk()).min(WINDOW_MAX);
        }
    }

    /// A pump request's size: a quarter of the window, at most
    /// [`CHUNK_PAGES`].
    pub(super) fn chunk(&self) -> u64 {
        (self.bytes / 4 / PAGE).clamp(16, CHUNK_PAGES) * PAGE
    }
}

/// One message of the daemon's.
pub(super) enum Request {
    Get(Iov),
    Goodbye(Iov),
}

#[derive(Default)]
pub(super) struct State {
    pub(super) cache: BTreeMap<(u64, u64), Piece>,
    pub(super) cached: u64,
    pub(super) in_flight: VecDeque<Asked>,
    pub(super) in_flight_bytes: u64,
    pub(super) window: Window,
    /// Everything ever asked of the source (the pump skips it).
    pub(super) asked: Ranges,
    /// The rest of requests the source answered in part (it stops at the
    /// end of one of its pipe buffers): asked again first.
    pub(super) again: VecDeque<Iov>,
    /// The daemon's requests not answered yet, in order.
    pub(super) requests: VecDeque<Request>,
    /// The daemon ended its stream.
    pub(super) daemon_ended: bool,
    /// The source's answer to the goodbye.
    pub(super) status: Option<[u8; 4]>,
    /// The source ended its stream (after its answer to the goodbye).
    pub(super) source_ended: bool,
}

impl State {
    /// Takes what the cache has of `[vaddr, vaddr + nr_pages)` of `pid`,
    /// from `vaddr` on (the daemon takes a shorter answer, as from CRIU).
    pub(super) fn take(
        &mut self,
        pid: u64,
        vaddr: u64,
        nr_pages: u64,
    ) -> Option<(Arc<Vec<u8>>, usize, u64)> {
        let (&key, piece) = self.cache.range(..=(pid, vaddr)).next_back()?;
        if key.0 != pid || vaddr >= key.1 + piece.pages * PAGE {
            return None;
        }
        let piece = self.cache.remove(&key)?;
        let skip = (vaddr - key.1) / PAGE;
        let n = nr_pages.min(piece.pages - skip);
        let at = piece.offset + (skip * PAGE) as usize;
        if skip > 0 {
            self.cache.insert(
                key,
                Piece {
                    data: piece.data.clone(),
                    offset: piece.offset,
                    pages: skip,
                },
            );
        }
        let rest = piece.pages - skip - n;
        if rest > 0 {
            self.cache.insert(
                (pid, vaddr + n * PAGE),
                Piece {
                    data: piece.data.clone(),
                    offset: at + (n * PAGE) as usize,
                    pages: rest,
                },
            );
        }
        self.cached -= n * PAGE;
        Some((piece.data, at, n))
    }

    /// Whether a page is here or on its way.
    pub(super) fn coming(&self, pid: u64, addr: u64) -> bool {
        let cached = self
            .cache
            .range(..=(pid, addr))
            .next_back()
            .is_some_and(|(k, p)| k.0 == pid && addr < k.1 + p.pages * PAGE);
        cached
            || self
                .in_flight
                .iter()
                .any(|a| matches!(a, Asked::Get(iov, _) if iov.holds(pid, addr)))
    }
}
