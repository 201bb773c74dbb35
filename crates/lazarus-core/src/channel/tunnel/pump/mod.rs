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
//! Here: the threads and the decisions; `state.rs`: the bookkeeping under
//! the lock; `wire.rs`: the bytes on both sockets.

mod state;
mod wire;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use state::*;
use wire::*;

use super::link::{self, Link};
use super::{Shared, MAX_NOISE, PS_CMD_MASK, PS_IOV_CLOSE, PS_IOV_FORCE_CLOSE, PS_IOV_LEN};

/// CRIU's page size on the hosts Lazarus runs on (x86-64).
pub const PAGE: u64 = 4096;
/// How often the deciding thread looks whether the tunnel was aborted.
const TICK: Duration = Duration::from_millis(50);

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

struct Pump<'a> {
    state: Mutex<State>,
    wake: Condvar,
    shared: &'a Shared,
}

/// What the pump's own failures begin with.
const PREFIX: &str = "page pump: ";

impl Pump<'_> {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fails the tunnel (the first reason stays its reason) and wakes
    /// the deciding thread. The state's lock is taken once between the
    /// two, so a decision made before the failure was recorded is already
    /// waiting when the wake comes, and none is lost.
    fn fail(&self, why: impl std::fmt::Display) -> String {
        // A thread that passes on another's failure passes its reason,
        // already named.
        let why = why.to_string();
        let why = match why.starts_with(PREFIX) {
            true => why,
            false => format!("{PREFIX}{why}"),
        };
        let first = self.shared.fail(why);
        drop(self.lock());
        self.wake.notify_all();
        first
    }
}

/// Runs the pump between the daemon (`daemon`, connected) and the source's
/// page server (through `link`) until the stream ended cleanly; on a
/// failure, its first reason.
pub(super) fn run(
    link: Link,
    daemon: TcpStream,
    plan: &PumpPlan,
    s: &Shared,
) -> Result<(), String> {
    let runs = plan.runs().unwrap_or_default();
    let clone = |t: &TcpStream| t.try_clone().map_err(|e| format!("clone a socket: {e}"));
    let mut sealer = Sealer {
        to: clone(&link.stream)?,
        noise: link.noise.clone(),
        nonce: link.send_nonce,
    };
    let opened = Opened {
        from: link::Opener::new(link),
        plain: Vec::with_capacity(MAX_NOISE),
        at: 0,
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
        // A write cut short by the shutdown another thread's failure made
        // (a broken pipe) fails it too, but the first reason is reported.
        decide(&pump, runs, plan, &mut sealer, &mut answers_to).map_err(|e| pump.fail(e))
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
            PS_IOV_GET if iov.nr_pages > MAX_GET_PAGES => {
                return Err(io::Error::other(format!(
                    "a request for {} pages (at most {MAX_GET_PAGES} are asked at once)",
                    iov.nr_pages
                )))
            }
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

/// The most pages the daemon asks for at once, with room: CRIU's lazy-pages
/// daemon asks for at most 4 MiB (its MAX_XFER_LEN). A bound keeps a
/// request's size and the answer the pump allocates for it sane.
const MAX_GET_PAGES: u64 = 16 << 10;

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
        if let Some(why) = pump.shared.failure() {
            return Err(io::Error::other(why));
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
mod tests;
