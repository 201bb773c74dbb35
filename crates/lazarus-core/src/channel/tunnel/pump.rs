//! The receiver's page pump (post-copy). CRIU's lazy-pages daemon keeps
//! one background request in flight, so through the tunnel every chunk of
//! memory costs a round trip across both hosts and both tunnel ends, and
//! the memory followed at a fraction of the link's speed. Here the
//! receiver's tunnel end is the daemon's page server: it asks the source's
//! page server for every lazy page itself, many requests in flight, and
//! answers the daemon from what has arrived. A daemon's request for a page
//! neither here nor asked for yet goes to the source at once, ahead of the
//! pump's next requests (a fault jumps the queue). It still waits behind
//! the answers already on their way (one stream, in order), so the bytes
//! in flight follow the link ([`Window`]): as many as cross it in about
//! [`LATENCY_HIGH`], so that a fault waits no longer than that.
//!
//! Both sides speak CRIU's page server protocol (criu/page-xfer.c, `struct
//! page_server_iov`, `PS_IOV_GET` answered by `PS_IOV_ADD_F` and the
//! pages, `PS_IOV_CLOSE` by a 32-bit status). The source's page server
//! sees one client, as before, that asks only for the runs its pagemaps
//! mark lazy ([`LazyRun`]): a request outside them would fail the dump.
//! Nothing changes on the source's host or on the wire between the hosts.
//!
//! The pump holds back until the restore is done ([`PumpPlan::restored`]):
//! the daemon connects while CRIU is still restoring, and on a host with
//! few cores the pump's stream (the tunnel's cipher, both page servers)
//! took the CPU the restore needed, which is the container's downtime
//! (measured on two busy cores, 256 MiB: CRIU's last stages, from
//! unlocking the network to resuming the task, took 246 ms with the pump
//! running and 75-80 ms without it). Until then only the daemon's own
//! requests (the restore's faults) are asked for.
//!
//! Three threads, one lock (never held across I/O): one reads the
//! daemon's requests, one reads the source's answers into the cache, and
//! the calling one decides: answers the daemon in order, asks the source,
//! and ends the stream once the daemon said goodbye and was answered.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use super::link::{self, Link};
use super::{
    Shared, MAX_FRAME, MAX_NOISE, PS_CMD_MASK, PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE, PS_IOV_LEN,
};

/// CRIU's page size on the hosts Lazarus runs on (x86-64).
pub const PAGE: u64 = 4096;
/// The most pages one pump request asks for (the source's page server may
/// answer fewer: it stops at the end of one of its pipe buffers).
const CHUNK_PAGES: u64 = 256;
/// Bytes asked of the source and not yet arrived: from [`WINDOW_START`],
/// between these bounds.
const WINDOW_MIN: u64 = 256 << 10;
const WINDOW_START: u64 = 1 << 20;
const WINDOW_MAX: u64 = 16 << 20;
/// An answer that took longer than this from its request halves the
/// window (once per window's worth of answers); one quicker than
/// [`LATENCY_LOW`] grows it by a chunk.
const LATENCY_HIGH: Duration = Duration::from_millis(20);
const LATENCY_LOW: Duration = Duration::from_millis(10);
/// Bytes arrived or asked that the daemon has not taken yet: the pump
/// waits for the daemon beyond this.
const CACHE_CAP: u64 = 256 << 20;
/// How often the deciding thread looks whether the tunnel was aborted.
const TICK: Duration = Duration::from_millis(50);

const PS_IOV_ADD_F: u32 = 6;
const PS_IOV_GET: u32 = 7;
const PE_PRESENT: u32 = 1 << 2;

/// A run of lazy pages of the dump: `nr_pages` from `vaddr` of the
/// process `pid` (its pagemap-PID.img, the page server's `dst_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LazyRun {
    pub pid: u64,
    pub vaddr: u64,
    pub nr_pages: u64,
}

/// What the receiver's pump is told by the import: the dump's lazy runs
/// (known once the archive is extracted, before the restore starts the
/// daemon; without them the tunnel passes the daemon's requests on as
/// bytes) and that the restore is done (the pump's own requests wait for
/// it).
#[derive(Debug, Default)]
pub struct PumpPlan {
    runs: OnceLock<Vec<LazyRun>>,
    restored: AtomicBool,
}

impl PumpPlan {
    /// The dump's lazy runs; only the first word counts.
    pub fn set_runs(&self, runs: Vec<LazyRun>) {
        let _ = self.runs.set(runs);
    }

    pub fn runs(&self) -> Option<&[LazyRun]> {
        self.runs.get().map(Vec::as_slice)
    }

    /// The restore is done: the pump may take the link and the CPU.
    pub fn restored(&self) {
        self.restored.store(true, Ordering::SeqCst);
    }

    fn is_restored(&self) -> bool {
        self.restored.load(Ordering::SeqCst)
    }
}

/// A page server message header: u32 cmd, padding, nr_pages, vaddr,
/// dst_id (little-endian u64s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Iov {
    cmd: u32,
    nr_pages: u64,
    vaddr: u64,
    dst_id: u64,
}

impl Iov {
    fn parse(b: &[u8; PS_IOV_LEN]) -> Iov {
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Iov {
            cmd: u32::from_le_bytes(b[..4].try_into().unwrap()),
            nr_pages: u64_at(8),
            vaddr: u64_at(16),
            dst_id: u64_at(24),
        }
    }

    fn bytes(&self) -> [u8; PS_IOV_LEN] {
        let mut b = [0u8; PS_IOV_LEN];
        b[..4].copy_from_slice(&self.cmd.to_le_bytes());
        b[8..16].copy_from_slice(&self.nr_pages.to_le_bytes());
        b[16..24].copy_from_slice(&self.vaddr.to_le_bytes());
        b[24..].copy_from_slice(&self.dst_id.to_le_bytes());
        b
    }

    fn get(pid: u64, vaddr: u64, nr_pages: u64) -> Iov {
        Iov {
            cmd: PS_IOV_GET,
            nr_pages,
            vaddr,
            dst_id: pid,
        }
    }

    fn end(&self) -> u64 {
        self.vaddr + self.nr_pages * PAGE
    }

    fn holds(&self, pid: u64, addr: u64) -> bool {
        self.dst_id == pid && self.vaddr <= addr && addr < self.end()
    }
}

/// Address ranges per process, merged: what was ever asked of the source.
#[derive(Debug, Default)]
struct Ranges(BTreeMap<(u64, u64), u64>);

impl Ranges {
    fn containing(&self, pid: u64, addr: u64) -> Option<(u64, u64)> {
        let (&(p, start), &end) = self.0.range(..=(pid, addr)).next_back()?;
        (p == pid && addr < end).then_some((start, end))
    }

    fn insert(&mut self, pid: u64, mut start: u64, mut end: u64) {
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
    fn gap(&self, pid: u64, start: u64, end: u64, max: u64) -> Option<(u64, u64)> {
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
struct Piece {
    data: Arc<Vec<u8>>,
    offset: usize,
    pages: u64,
}

/// What the source is to answer, in the order it will.
#[derive(Clone, Copy)]
enum Asked {
    Get(Iov, Instant),
    Close,
}

/// How many bytes may be in flight: grown while answers come quickly,
/// halved when they queue (a slow or busy link), as a delay-based
/// congestion window does.
#[derive(Debug)]
struct Window {
    bytes: u64,
    /// Answers to requests made before this were asked under a window cut
    /// since: they do not cut it again.
    cut_at: Instant,
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
    fn answered(&mut self, asked_at: Instant, now: Instant) {
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
    fn chunk(&self) -> u64 {
        (self.bytes / 4 / PAGE).clamp(16, CHUNK_PAGES) * PAGE
    }
}

/// One message of the daemon's.
enum Request {
    Get(Iov),
    Goodbye(Iov),
}

#[derive(Default)]
struct State {
    cache: BTreeMap<(u64, u64), Piece>,
    cached: u64,
    in_flight: VecDeque<Asked>,
    in_flight_bytes: u64,
    window: Window,
    /// Everything ever asked of the source (the pump skips it).
    asked: Ranges,
    /// The rest of requests the source answered in part (it stops at the
    /// end of one of its pipe buffers): asked again first.
    again: VecDeque<Iov>,
    /// The daemon's requests not answered yet, in order.
    requests: VecDeque<Request>,
    /// The daemon ended its stream.
    daemon_ended: bool,
    /// The source's answer to the goodbye.
    status: Option<[u8; 4]>,
    /// The source ended its stream (after its answer to the goodbye).
    source_ended: bool,
    failed: Option<String>,
}

impl State {
    /// Takes what the cache has of `[vaddr, vaddr + nr_pages)` of `pid`,
    /// from `vaddr` on (the daemon takes a shorter answer, as from CRIU).
    fn take(&mut self, pid: u64, vaddr: u64, nr_pages: u64) -> Option<(Arc<Vec<u8>>, usize, u64)> {
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
    fn coming(&self, pid: u64, addr: u64) -> bool {
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

    fn fail(&mut self, why: String) {
        self.failed.get_or_insert(why);
    }
}

struct Pump<'a> {
    state: Mutex<State>,
    wake: Condvar,
    shared: &'a Shared,
}

impl Pump<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fail(&self, why: String) {
        self.lock().fail(why);
        self.shared.shut();
        self.wake.notify_all();
    }
}

/// The source's end of the link as a byte stream: Noise messages opened
/// as they come; the empty message is its end.
struct Opened {
    from: BufReader<TcpStream>,
    noise: Arc<snow::StatelessTransportState>,
    nonce: u64,
    wire: Vec<u8>,
    plain: Vec<u8>,
    at: usize,
    len: usize,
    ended: bool,
}

impl Read for Opened {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.at == self.len && !self.ended {
            let got =
                link::read_msg(&mut self.from, &mut self.wire).map_err(|e| match e.kind() {
                    io::ErrorKind::UnexpectedEof => io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the tunnel connection ended mid-stream",
                    ),
                    _ => e,
                })?;
            self.len = self
                .noise
                .read_message(self.nonce, &self.wire[..got], &mut self.plain)
                .map_err(|_| {
                    io::Error::new(io::ErrorKind::InvalidData, "a frame failed to open")
                })?;
            self.nonce += 1;
            self.at = 0;
            self.ended = self.len == 0;
        }
        let n = out.len().min(self.len - self.at);
        out[..n].copy_from_slice(&self.plain[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// The source's end of the link for writing: each call one write of
/// sealed messages.
struct Sealer {
    to: TcpStream,
    noise: Arc<snow::StatelessTransportState>,
    nonce: u64,
}

impl Sealer {
    fn send(&mut self, plain: &[u8]) -> io::Result<()> {
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
    fn end(&mut self) -> io::Result<()> {
        let mut wire = [0u8; MAX_NOISE - MAX_FRAME + 2];
        let n = link::seal(&self.noise, self.nonce, &[], &mut wire).map_err(io::Error::other)?;
        self.nonce += 1;
        self.to.write_all(&wire[..n])?;
        self.to.shutdown(Shutdown::Write)
    }
}

/// Runs the pump between the daemon (`daemon`, connected) and the source's
/// page server (through `link`) until the stream ended cleanly.
pub(super) fn run(link: Link, daemon: TcpStream, plan: &PumpPlan, s: &Shared) -> io::Result<()> {
    let runs = plan.runs().unwrap_or_default();
    let clone = |t: &TcpStream| t.try_clone();
    let mut sealer = Sealer {
        to: clone(&link.stream)?,
        noise: link.noise.clone(),
        nonce: link.send_nonce,
    };
    let opened = Opened {
        from: link::reader(link.stream),
        noise: link.noise.clone(),
        nonce: link.recv_nonce,
        wire: vec![0u8; MAX_NOISE],
        plain: vec![0u8; MAX_NOISE],
        at: 0,
        len: 0,
        ended: false,
    };
    let pump = Pump {
        state: Mutex::default(),
        wake: Condvar::new(),
        shared: s,
    };
    let (requests_from, mut answers_to) = (clone(&daemon)?, daemon);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            if let Err(e) = read_requests(&pump, requests_from) {
                pump.fail(format!("reading the lazy-pages daemon's requests: {e}"));
            }
        });
        scope.spawn(|| {
            if let Err(e) = read_answers(&pump, opened) {
                pump.fail(format!("reading the source's pages: {e}"));
            }
        });
        let result = decide(&pump, runs, plan, &mut sealer, &mut answers_to);
        if let Err(e) = &result {
            pump.fail(e.to_string());
        }
        result
    })
}

fn read_requests(pump: &Pump, mut from: TcpStream) -> io::Result<()> {
    loop {
        let mut b = [0u8; PS_IOV_LEN];
        let mut got = 0;
        while got < PS_IOV_LEN {
            match from.read(&mut b[got..]) {
                Ok(0) if got == 0 => {
                    pump.lock().daemon_ended = true;
                    pump.wake.notify_all();
                    return Ok(());
                }
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "a request cut short",
                    ))
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let iov = Iov::parse(&b);
        let request = match iov.cmd & PS_CMD_MASK {
            PS_IOV_GET if iov.nr_pages > 0 => Request::Get(iov),
            PS_IOV_CLOSE | PS_IOV_FORCE_CLOSE => Request::Goodbye(iov),
            cmd => {
                return Err(io::Error::other(format!(
                    "an unexpected request ({cmd:#x})"
                )))
            }
        };
        pump.lock().requests.push_back(request);
        pump.wake.notify_all();
    }
}

fn read_answers(pump: &Pump, mut from: Opened) -> io::Result<()> {
    loop {
        let mut first = [0u8; 1];
        if from.read(&mut first)? == 0 {
            let mut st = pump.lock();
            // Only after its answer to the goodbye: an end before it is
            // the source's CRIU gone (killed, failed), and the daemon must
            // hear of it rather than wait for pages that will not come.
            if st.status.is_none() {
                return Err(io::Error::other(
                    "the source's page server ended before the daemon had every page",
                ));
            }
            st.source_ended = true;
            pump.wake.notify_all();
            return Ok(());
        }
        // Still in flight (the daemon's requests for its pages wait for
        // it) until its pages are in the cache.
        let asked = pump.lock().in_flight.front().copied();
        match asked {
            None => return Err(io::Error::other("the source sent what was not asked")),
            Some(Asked::Close) => {
                let mut status = [first[0], 0, 0, 0];
                from.read_exact(&mut status[1..])?;
                let mut st = pump.lock();
                st.in_flight.pop_front();
                st.status = Some(status);
            }
            Some(Asked::Get(asked, asked_at)) => {
                let mut b = [0u8; PS_IOV_LEN];
                b[0] = first[0];
                from.read_exact(&mut b[1..])?;
                let got = Iov::parse(&b);
                if got.cmd & PS_CMD_MASK != PS_IOV_ADD_F
                    || got.vaddr != asked.vaddr
                    || got.dst_id != asked.dst_id
                    || got.nr_pages == 0
                    || got.nr_pages > asked.nr_pages
                {
                    return Err(io::Error::other(format!(
                        "asked for {asked:?}, the source answered {got:?}"
                    )));
                }
                let mut data = vec![0u8; (got.nr_pages * PAGE) as usize];
                from.read_exact(&mut data)?;
                let c = &pump.shared.counters;
                c.add(&c.received, PS_IOV_LEN + data.len());
                let mut st = pump.lock();
                st.in_flight.pop_front();
                st.in_flight_bytes -= asked.nr_pages * PAGE;
                st.window.answered(asked_at, Instant::now());
                if got.nr_pages < asked.nr_pages {
                    st.again.push_back(Iov::get(
                        got.dst_id,
                        got.end(),
                        asked.nr_pages - got.nr_pages,
                    ));
                }
                st.cached += got.nr_pages * PAGE;
                st.cache.insert(
                    (got.dst_id, got.vaddr),
                    Piece {
                        data: Arc::new(data),
                        offset: 0,
                        pages: got.nr_pages,
                    },
                );
            }
        }
        pump.wake.notify_all();
    }
}

/// The pump's next request: the first part of a lazy run not asked yet.
fn next_ask(runs: &[LazyRun], cursor: &mut usize, asked: &Ranges, chunk: u64) -> Option<Iov> {
    while let Some(run) = runs.get(*cursor) {
        let end = run.vaddr + run.nr_pages * PAGE;
        if let Some((from, to)) = asked.gap(run.pid, run.vaddr, end, chunk) {
            return Some(Iov::get(run.pid, from, (to - from) / PAGE));
        }
        *cursor += 1;
    }
    None
}

/// What the deciding thread does next, decided under the lock and done
/// without it.
enum Step {
    Answer(Iov, Arc<Vec<u8>>, usize, u64),
    Ask(Vec<u8>),
    Status([u8; 4]),
    EndToSource,
    Done,
    Wait,
}

fn decide(
    pump: &Pump,
    runs: &[LazyRun],
    plan: &PumpPlan,
    to_source: &mut Sealer,
    to_daemon: &mut TcpStream,
) -> io::Result<()> {
    let mut progress = Progress::default();
    let mut st = pump.lock();
    loop {
        if let Some(why) = &st.failed {
            return Err(io::Error::other(why.clone()));
        }
        if pump.shared.stop.load(Ordering::SeqCst) {
            return Err(io::Error::other("called off"));
        }
        let step = next_step(&mut st, runs, plan.is_restored(), &mut progress)?;
        if let Step::Wait = step {
            // On the lock the other threads wake it through: nothing they
            // say between the decision and the wait is missed.
            st = match pump.wake.wait_timeout(st, TICK) {
                Ok((st, _)) => st,
                Err(e) => e.into_inner().0,
            };
            continue;
        }
        drop(st);
        match step {
            Step::Answer(iov, data, at, n) => {
                let header = Iov {
                    cmd: (PE_PRESENT << 16) | PS_IOV_ADD_F,
                    nr_pages: n,
                    vaddr: iov.vaddr,
                    dst_id: iov.dst_id,
                };
                to_daemon.write_all(&header.bytes())?;
                to_daemon.write_all(&data[at..at + (n * PAGE) as usize])?;
            }
            Step::Ask(bytes) => {
                to_source.send(&bytes)?;
                let c = &pump.shared.counters;
                c.add(&c.sent, bytes.len());
            }
            Step::Status(status) => to_daemon.write_all(&status)?,
            Step::EndToSource => to_source.end()?,
            Step::Done => return to_daemon.shutdown(Shutdown::Write),
            Step::Wait => {}
        }
        st = pump.lock();
    }
}

/// Where the deciding thread is: the pump's place in the runs, and the
/// goodbye's way.
#[derive(Default)]
struct Progress {
    cursor: usize,
    goodbye_sent: bool,
    status_given: bool,
    end_sent: bool,
}

fn next_step(
    st: &mut State,
    runs: &[LazyRun],
    restored: bool,
    p: &mut Progress,
) -> io::Result<Step> {
    // The daemon's oldest request, answered from what is here.
    if let Some(&Request::Get(iov)) = st.requests.front() {
        if let Some((data, at, n)) = st.take(iov.dst_id, iov.vaddr, iov.nr_pages) {
            st.requests.pop_front();
            return Ok(Step::Answer(iov, data, at, n));
        }
    }
    let mut ask = Vec::new();
    while let Some(iov) = st.again.pop_front() {
        ask_for(st, iov, &mut ask);
    }
    match st.requests.front() {
        // Not here, nor on its way: asked for ahead of the pump.
        Some(&Request::Get(iov)) if !st.coming(iov.dst_id, iov.vaddr) => {
            // Up to what is asked already; all of it if its first page was
            // asked and given before (the daemon asks again).
            let gap = st.asked.gap(iov.dst_id, iov.vaddr, iov.end(), u64::MAX);
            let iov = match gap {
                Some((from, to)) if from == iov.vaddr => {
                    Iov::get(iov.dst_id, from, (to - from) / PAGE)
                }
                _ => iov,
            };
            ask_for(st, iov, &mut ask);
        }
        // Passed on once every answer has arrived: the source's status
        // follows the last of them.
        Some(&Request::Goodbye(iov))
            if !p.goodbye_sent && st.in_flight.is_empty() && ask.is_empty() =>
        {
            st.requests.pop_front();
            st.in_flight.push_back(Asked::Close);
            p.goodbye_sent = true;
            return Ok(Step::Ask(iov.bytes().to_vec()));
        }
        _ => {}
    }
    if p.goodbye_sent && !p.status_given {
        if let Some(status) = st.status {
            p.status_given = true;
            return Ok(Step::Status(status));
        }
    }
    if st.daemon_ended {
        if !p.goodbye_sent && ask.is_empty() {
            return Err(io::Error::other(
                "the lazy-pages daemon ended without its goodbye",
            ));
        }
        if p.status_given && !p.end_sent {
            p.end_sent = true;
            return Ok(Step::EndToSource);
        }
        if p.end_sent && st.source_ended {
            return Ok(Step::Done);
        }
    }
    // Then the pump, once the restore is done, while the window and the
    // cache have room, until the daemon says goodbye.
    let goodbye = p.goodbye_sent || matches!(st.requests.front(), Some(Request::Goodbye(_)));
    while restored
        && !goodbye
        && st.in_flight_bytes < st.window.bytes
        && st.cached + st.in_flight_bytes < CACHE_CAP
    {
        let Some(iov) = next_ask(runs, &mut p.cursor, &st.asked, st.window.chunk()) else {
            break;
        };
        ask_for(st, iov, &mut ask);
    }
    Ok(match ask.is_empty() {
        true => Step::Wait,
        false => Step::Ask(ask),
    })
}

fn ask_for(st: &mut State, iov: Iov, out: &mut Vec<u8>) {
    st.asked.insert(iov.dst_id, iov.vaddr, iov.end());
    st.in_flight_bytes += iov.nr_pages * PAGE;
    st.in_flight.push_back(Asked::Get(iov, Instant::now()));
    out.extend_from_slice(&iov.bytes());
}

#[cfg(test)]
#[path = "pump_tests.rs"]
mod tests;
