//! The receiver's hold on a post-copy copy whose memory still follows
//! through the page tunnel: the tunnel is kept (dropped, it is cut) and
//! watched on a thread of its own, so that `serve` goes on taking
//! migrations meanwhile.
//!
//! If the stream breaks before every page is here, the lazy-pages daemon
//! gives up and the copy's shim kills the copy (its missing pages cannot
//! be fetched any more; the source, still frozen, thaws). What remains
//! here is a stopped container that holds nothing of value: it is
//! removed, so the name is free for the next attempt. A copy that still
//! runs is never touched: the stream may have broken after its last page
//! arrived.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use lazarus_core::channel::tunnel::Tunnel;

use crate::engine::endpoints::Endpoints;
use crate::flows::import;
use crate::report::ImportReport;

/// How often the watcher looks whether the tunnel has ended.
const POLL: Duration = Duration::from_secs(1);
/// How long a copy whose stream broke gets to be stopped by its shim
/// before it is left alone (it then runs with its memory: see above).
const STOPPED_WITHIN: Duration = Duration::from_secs(60);

/// One copy being followed.
pub struct Following {
    thread: JoinHandle<()>,
}

impl Following {
    /// Watches `tunnel` until it ends; `peer` and the copy's report name
    /// it in what is said.
    pub fn start(
        tunnel: Tunnel,
        copy: ImportReport,
        endpoints: Endpoints,
        peer: String,
    ) -> std::io::Result<Following> {
        let thread = thread::Builder::new()
            .name("lazarus-follow".into())
            .spawn(move || watch(tunnel, &copy, &endpoints, &peer))?;
        Ok(Following { thread })
    }

    pub fn ended(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits until the copy's memory has all arrived or it was removed.
    pub fn join(self) {
        let _ = self.thread.join();
    }
}

fn watch(mut tunnel: Tunnel, copy: &ImportReport, endpoints: &Endpoints, peer: &str) {
    let ended = loop {
        if let Some(ended) = tunnel.wait(POLL) {
            break ended;
        }
    };
    let name = &copy.name;
    let Err(why) = ended else {
        eprintln!("lazarus serve: {peer}: every page of {name} is here");
        return;
    };
    eprintln!("lazarus serve: {peer}: the memory of {name} stopped arriving: {why}");
    // Engine calls from this thread: a small runtime of its own (the
    // agent's thread waits for the next sender meanwhile).
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return eprintln!("lazarus serve: cannot remove the dead copy of {name}: {e}"),
    };
    match runtime.block_on(remove_once_stopped(copy, endpoints)) {
        Ok(true) => eprintln!("lazarus serve: {peer}: removed the dead copy of {name}"),
        Ok(false) => eprintln!(
            "lazarus serve: {peer}: {name} still runs here {STOPPED_WITHIN:?} after its stream \
             ended: left as it is (see its shim's log)"
        ),
        Err(e) => eprintln!("lazarus serve: {peer}: removing the dead copy of {name}: {e}"),
    }
}

/// Removes the copy once it is no longer running; false if it still runs
/// after [`STOPPED_WITHIN`].
async fn remove_once_stopped(copy: &ImportReport, endpoints: &Endpoints) -> crate::Result<bool> {
    let until = Instant::now() + STOPPED_WITHIN;
    while import::is_running(copy, endpoints).await? {
        if Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    import::remove_restored(copy, endpoints).await?;
    Ok(true)
}
