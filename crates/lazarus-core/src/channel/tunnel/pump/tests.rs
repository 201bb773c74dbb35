//! The pump without root: the source's page server and the lazy-pages
//! daemon played by plain sockets speaking CRIU's page server protocol,
//! the two tunnel ends on loopback.

use super::*;
use crate::channel::tunnel::{Door, LinkFrom, LocalDoor, LocalEnd, Session, Tunnel};
use crate::channel::Key;
use std::net::{IpAddr, Ipv4Addr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::thread::JoinHandle;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const WAIT: Duration = Duration::from_secs(10);
/// The fake page server's pipe buffers: it answers at most up to the end
/// of one, as CRIU's does.
const PIPE_PAGES: u64 = 200;

fn runs() -> Vec<LazyRun> {
    vec![
        LazyRun {
            pid: 1,
            vaddr: 0x10000,
            nr_pages: 700,
        },
        LazyRun {
            pid: 1,
            vaddr: 0x800000,
            nr_pages: 50,
        },
        LazyRun {
            pid: 7,
            vaddr: 0x400000,
            nr_pages: 10,
        },
    ]
}

/// Every page's bytes tell whose and where it is.
fn page(pid: u64, addr: u64) -> Vec<u8> {
    (0..PAGE)
        .map(|i| (pid * 31 + addr / PAGE * 7 + i) as u8)
        .collect()
}

#[derive(Default)]
struct Served {
    gets: AtomicU64,
    pages: AtomicU64,
    /// A request outside the lazy runs (CRIU would fail the dump).
    outside: AtomicBool,
    goodbye: AtomicBool,
    /// The client's stream ended cleanly after the goodbye.
    clean_end: AtomicBool,
}

/// The source's lazy page server: answers GETs inside the runs (clamped to
/// its pipe buffers), the goodbye with a status, then waits for the end.
fn page_server(listener: TcpListener, served: Arc<Served>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let (mut sk, _) = listener.accept().unwrap();
        let runs = runs();
        loop {
            let mut b = [0u8; PS_IOV_LEN];
            if sk.read_exact(&mut b).is_err() {
                return;
            }
            let iov = Iov::parse(&b);
            if iov.cmd == PS_IOV_CLOSE {
                served.goodbye.store(true, Ordering::SeqCst);
                sk.write_all(&0i32.to_le_bytes()).unwrap();
                let mut rest = Vec::new();
                let clean = sk.read_to_end(&mut rest).is_ok_and(|n| n == 0);
                served.clean_end.store(clean, Ordering::SeqCst);
                return;
            }
            assert_eq!(iov.cmd, PS_IOV_GET);
            let Some(run) = runs.iter().find(|r| {
                r.pid == iov.dst_id
                    && r.vaddr <= iov.vaddr
                    && iov.vaddr < r.vaddr + r.nr_pages * PAGE
            }) else {
                served.outside.store(true, Ordering::SeqCst);
                return;
            };
            let index = (iov.vaddr - run.vaddr) / PAGE;
            let pipe_end = (index / PIPE_PAGES + 1) * PIPE_PAGES;
            let n = iov.nr_pages.min(pipe_end - index).min(run.nr_pages - index);
            let mut out = Iov {
                cmd: (PE_PRESENT << 16) | PS_IOV_ADD_F,
                nr_pages: n,
                ..iov
            }
            .bytes()
            .to_vec();
            for i in 0..n {
                out.extend(page(iov.dst_id, iov.vaddr + i * PAGE));
            }
            if sk.write_all(&out).is_err() {
                return;
            }
            served.gets.fetch_add(1, Ordering::SeqCst);
            served.pages.fetch_add(n, Ordering::SeqCst);
        }
    })
}

fn no_drops(why: &str) {
    panic!("dropped: {why}");
}

/// Both tunnel ends, the receiver's pumping, its restore done: (the
/// daemon's door port, the source's tunnel, the receiver's, what the page
/// server served, it).
fn pumped() -> (u16, Tunnel, Tunnel, Arc<Served>, JoinHandle<()>) {
    let (port, a, b, served, server, plan) = pumped_before_the_restore_is_done();
    plan.restored();
    (port, a, b, served, server)
}

/// As [`pumped`], the restore still under way; and the pump's plan.
fn pumped_before_the_restore_is_done() -> (
    u16,
    Tunnel,
    Tunnel,
    Arc<Served>,
    JoinHandle<()>,
    Arc<PumpPlan>,
) {
    let k = Key::parse(&"5a".repeat(32)).unwrap();
    let session = Session::generate().unwrap();
    let door = Door::open(
        TcpListener::bind((LO, 0)).unwrap(),
        k.duplicate(),
        session.clone(),
        LO,
        WAIT,
        no_drops,
    )
    .unwrap();
    let port = door.port;
    let local = LocalDoor::bind().unwrap();
    let daemon_port = local.port;
    let plan = Arc::new(PumpPlan::default());
    let b = Tunnel::start(
        LinkFrom::Door(door),
        LocalEnd::Fetch(local, plan.clone()),
        WAIT,
        no_drops,
    )
    .unwrap();
    // Known before the restore starts the daemon.
    plan.set_runs(runs());
    let server = TcpListener::bind((LO, 0)).unwrap();
    let served = Arc::new(Served::default());
    let link = Link::connect(TcpStream::connect((LO, port)).unwrap(), &k, &session).unwrap();
    let mut a = Tunnel::start(
        LinkFrom::Ready(link),
        LocalEnd::ServeLazy(server.local_addr().unwrap()),
        WAIT,
        no_drops,
    )
    .unwrap();
    let handle = page_server(server, served.clone());
    a.go();
    (daemon_port, a, b, served, handle, plan)
}

/// Asks as CRIU's daemon does, one request at a time; short answers are
/// asked again from where they stopped. Returns the pages it got.
fn fetch(daemon: &mut TcpStream, pid: u64, vaddr: u64, nr_pages: u64) -> u64 {
    let mut at = vaddr;
    let end = vaddr + nr_pages * PAGE;
    while at < end {
        daemon
            .write_all(&Iov::get(pid, at, (end - at) / PAGE).bytes())
            .unwrap();
        let mut b = [0u8; PS_IOV_LEN];
        daemon.read_exact(&mut b).unwrap();
        let got = Iov::parse(&b);
        assert_eq!(
            (got.cmd & PS_CMD_MASK, got.vaddr, got.dst_id),
            (PS_IOV_ADD_F, at, pid)
        );
        assert!(
            got.nr_pages >= 1 && got.nr_pages <= (end - at) / PAGE,
            "{got:?}"
        );
        for i in 0..got.nr_pages {
            let mut p = vec![0u8; PAGE as usize];
            daemon.read_exact(&mut p).unwrap();
            assert!(
                p == page(pid, at + i * PAGE),
                "page {:#x} of {pid}",
                at + i * PAGE
            );
        }
        at += got.nr_pages * PAGE;
    }
    nr_pages
}

#[test]
fn the_daemon_gets_every_page_right_and_the_source_ends_cleanly() {
    let (port, mut a, mut b, served, server) = pumped();
    let mut daemon = TcpStream::connect((LO, port)).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    // A fault far into the first run, then the background fetch in order.
    fetch(&mut daemon, 1, 0x10000 + 650 * PAGE, 1);
    let mut pages = 1;
    for run in runs() {
        let mut at = run.vaddr;
        let end = run.vaddr + run.nr_pages * PAGE;
        while at < end {
            if at == 0x10000 + 650 * PAGE {
                at += PAGE;
                continue;
            }
            let n = 64
                .min((end - at) / PAGE)
                .min(match at < 0x10000 + 650 * PAGE {
                    true => (0x10000 + 650 * PAGE - at) / PAGE,
                    false => u64::MAX,
                });
            pages += fetch(&mut daemon, run.pid, at, n);
            at += n * PAGE;
        }
    }
    assert_eq!(pages, 760);
    goodbye(daemon, &mut a, &mut b, server, &served);
    // Each page crossed once: the fault's was asked ahead of the pump,
    // which then skipped it.
    let crossed = served.pages.load(Ordering::SeqCst);
    assert_eq!(crossed, 760, "pages crossed");
    // The pump asked in large requests, not in the daemon's 16 pages
    // (CRIU's first background size, 64 KiB: 48 requests or more).
    let gets = served.gets.load(Ordering::SeqCst);
    assert!(gets < 48, "{gets} requests");
}

/// The daemon's goodbye, answered by the source's status; both ends and
/// the source's page server then end cleanly.
fn goodbye(
    mut daemon: TcpStream,
    a: &mut Tunnel,
    b: &mut Tunnel,
    server: JoinHandle<()>,
    served: &Served,
) {
    let mut close = [0u8; PS_IOV_LEN];
    close[..4].copy_from_slice(&PS_IOV_CLOSE.to_le_bytes());
    daemon.write_all(&close).unwrap();
    let mut status = [0u8; 4];
    daemon.read_exact(&mut status).unwrap();
    assert_eq!(status, [0; 4]);
    daemon.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    assert_eq!(daemon.read_to_end(&mut rest).unwrap(), 0, "a clean end");
    assert_eq!(b.wait(WAIT), Some(Ok(())));
    assert_eq!(a.wait(WAIT), Some(Ok(())));
    server.join().unwrap();
    assert!(
        !served.outside.load(Ordering::SeqCst),
        "asked outside the lazy runs"
    );
    assert!(served.goodbye.load(Ordering::SeqCst));
    assert!(served.clean_end.load(Ordering::SeqCst));
}

#[test]
fn until_the_restore_is_done_only_its_faults_cross_then_everything() {
    let (port, mut a, mut b, served, server, plan) = pumped_before_the_restore_is_done();
    let mut daemon = TcpStream::connect((LO, port)).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    // The restore's own fault is answered at once.
    fetch(&mut daemon, 7, 0x400000 + 3 * PAGE, 1);
    // Unrestored, the pump would have asked for all 760 pages by now.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(served.pages.load(Ordering::SeqCst), 1, "pages crossed");
    plan.restored();
    let started = Instant::now();
    while served.pages.load(Ordering::SeqCst) < 760 {
        assert!(started.elapsed() < WAIT, "the pump never took over");
        std::thread::sleep(Duration::from_millis(5));
    }
    goodbye(daemon, &mut a, &mut b, server, &served);
    assert_eq!(served.pages.load(Ordering::SeqCst), 760, "each page once");
}

#[test]
fn a_daemon_gone_without_its_goodbye_fails_both_ends_and_resets_the_source() {
    let (port, mut a, mut b, served, server) = pumped();
    let mut daemon = TcpStream::connect((LO, port)).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    fetch(&mut daemon, 7, 0x400000, 10);
    drop(daemon);
    let b_end = b.wait(WAIT).expect("the receiver's end ended");
    assert!(b_end.is_err(), "{b_end:?}");
    let a_end = a.wait(WAIT).expect("the source's end ended");
    assert!(a_end.is_err(), "{a_end:?}");
    server.join().unwrap();
    assert!(!served.goodbye.load(Ordering::SeqCst));
    assert!(!served.clean_end.load(Ordering::SeqCst));
}

/// A request past any CRIU's size (a daemon gone wrong) ends both sides
/// with its reason, before the pump allocates for it or asks the source
/// for it.
#[test]
fn a_request_for_too_many_pages_fails_both_ends() {
    let (port, mut a, mut b, _, server) = pumped();
    let mut daemon = TcpStream::connect((LO, port)).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    daemon
        .write_all(&Iov::get(7, 0x400000, u64::MAX / 2).bytes())
        .unwrap();
    let b_end = b.wait(WAIT).expect("the receiver's end ended");
    let why = format!("{b_end:?}");
    assert!(why.contains("pages (at most"), "{why}");
    let a_end = a.wait(WAIT).expect("the source's end ended");
    assert!(a_end.is_err(), "{a_end:?}");
    server.join().unwrap();
}

#[test]
fn asked_ranges_merge_and_leave_gaps() {
    let mut r = Ranges::default();
    r.insert(1, 0x1000, 0x3000);
    r.insert(1, 0x5000, 0x6000);
    r.insert(2, 0x0, 0x10000);
    assert_eq!(r.gap(1, 0x0, 0x8000, 1 << 20), Some((0x0, 0x1000)));
    assert_eq!(r.gap(1, 0x1000, 0x8000, 1 << 20), Some((0x3000, 0x5000)));
    assert_eq!(r.gap(1, 0x3000, 0x8000, 0x1000), Some((0x3000, 0x4000)));
    assert_eq!(r.gap(2, 0x0, 0x10000, 1 << 20), None);
    r.insert(1, 0x3000, 0x5000);
    assert_eq!(r.containing(1, 0x4000), Some((0x1000, 0x6000)));
    assert_eq!(r.gap(1, 0x1000, 0x6000, 1 << 20), None);
    assert_eq!(r.containing(1, 0x6000), None);
}

#[test]
fn a_piece_is_given_once_and_its_rest_stays() {
    let mut st = State::default();
    let data: Vec<u8> = (0..4 * PAGE).map(|i| (i / PAGE) as u8).collect();
    st.cached = 4 * PAGE;
    st.cache.insert(
        (3, 0x10000),
        Piece {
            data: Arc::new(data),
            offset: 0,
            pages: 4,
        },
    );
    let (d, at, n) = st.take(3, 0x11000, 2).unwrap();
    assert_eq!((d[at], n), (1, 2));
    assert!(st.take(3, 0x11000, 1).is_none(), "given already");
    let (d, at, n) = st.take(3, 0x10000, 9).unwrap();
    assert_eq!((d[at], n), (0, 1));
    let (d, at, n) = st.take(3, 0x13000, 1).unwrap();
    assert_eq!((d[at], n), (3, 1));
    assert!(st.cache.is_empty());
    assert_eq!(st.cached, 0);
    assert!(st.take(4, 0x10000, 1).is_none());
}

#[test]
fn the_window_grows_on_a_quick_link_and_shrinks_on_a_slow_one() {
    let mut w = Window::default();
    let t0 = Instant::now();
    for i in 0..200 {
        let at = t0 + Duration::from_millis(i);
        w.answered(at, at + Duration::from_millis(2));
    }
    assert_eq!(w.bytes, WINDOW_MAX);
    assert_eq!(w.chunk(), CHUNK_PAGES * PAGE);
    // A queue builds: one cut per window's worth of answers.
    let slow = t0 + Duration::from_secs(1);
    w.answered(slow, slow + Duration::from_millis(50));
    w.answered(slow, slow + Duration::from_millis(60));
    assert_eq!(w.bytes, WINDOW_MAX / 2);
    for i in 1..20 {
        let at = slow + Duration::from_secs(i);
        w.answered(at, at + Duration::from_millis(500));
    }
    assert_eq!(w.bytes, WINDOW_MIN);
    assert_eq!(w.chunk(), 16 * PAGE);
}

#[test]
fn a_source_gone_mid_stream_fails_the_daemon() {
    let (port, mut a, mut b, _served, server) = pumped();
    let mut daemon = TcpStream::connect((LO, port)).unwrap();
    daemon.set_read_timeout(Some(WAIT)).unwrap();
    fetch(&mut daemon, 7, 0x400000, 10);
    // The source's CRIU dies: asked for a page outside the runs, the fake
    // page server gives up and closes, as a killed one would.
    daemon.write_all(&Iov::get(9, 0x1000, 1).bytes()).unwrap();
    server.join().unwrap();
    let mut rest = [0u8; 1];
    let read = daemon.read(&mut rest);
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the daemon hears of it: {read:?}"
    );
    assert!(b.wait(WAIT).expect("the receiver's end ended").is_err());
    assert!(a.wait(WAIT).expect("the source's end ended").is_err());
}
