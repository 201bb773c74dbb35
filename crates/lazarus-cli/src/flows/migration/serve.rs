//! `lazarus serve --listen ADDR`: the receiving host's agent. It accepts
//! migrations from peers holding the shared key, one at a time, and makes
//! each an ordinary container of this host's Docker or containerd (the
//! engine it came from), restored as `lazarus restore --import` restores.
//!
//! One migration at a time on purpose: a restore is disk- and CPU-bound,
//! and two at once would only lengthen both downtimes. Connections are
//! taken, authenticated and bounded by [`gate`] on threads of their own;
//! this module runs the migrations they admit.

use std::fs::OpenOptions;
use std::io::{BufWriter, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use lazarus_core::channel::tunnel::Tunnel;
use lazarus_core::channel::{Channel, Key};
use lazarus_core::config::Config;

use super::follow::Following;
use super::gate::{self, Admitted};
use super::pages;
use super::{key_path, resolve, Answer, Offer, Plan, MAX_ARCHIVE, PEER_TIMEOUT};
use crate::engine::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::flows::import::{self, ImportArgs, SharedPumpPlan};
use crate::flows::restore_guard::RestoreGuard;
use crate::report::ImportReport;
use lazarus_core::checkpoint::postcopy::{PageMode, PageServer};
use lazarus_core::criu::{DirectWait, LazyPages, SwrkCriu};

mod checks;
use checks::check;

/// How long a restored container waits for the sender to confirm it took
/// the answer; without the confirmation the sender brings its source back,
/// so the copy here is removed (never two running).
const ACK_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(clap::Args)]
pub struct ServeArgs {
    /// Where to listen: HOST[:PORT] (port 7470 if none)
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// The key file both hosts hold (default /etc/lazarus/migration.key)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Receive one migration from a peer holding the key, then exit (its
    /// status is the migration's)
    #[arg(long)]
    pub once: bool,
}

pub async fn run(args: &ServeArgs, endpoints: &Endpoints, config: &Config) -> Result<()> {
    let key = Key::load(&key_path(args.key.clone()))?;
    let _only_agent = claim_scratch_roots(config)?;
    // Rules a killed agent of this host left (its guard killed too).
    super::filter::sweep_stale();
    let addr = resolve(&args.listen)?;
    let listener =
        TcpListener::bind(addr).map_err(lazarus_core::Error::io(format!("listen on {addr}")))?;
    let limits = gate::LIMITS;
    // The page tunnels' doors authenticate with the same key.
    let tunnel_key = key.duplicate();
    let migrations = gate::open(listener, key, limits, gate::stderr())?;
    eprintln!(
        "lazarus serve: listening on {addr} (handshakes: {} s each, {} at once, {} per \
         address; one migration at a time); Docker at {}, containerd at {}",
        limits.deadline.as_secs(),
        limits.handshakes,
        limits.per_address,
        endpoints.docker,
        endpoints.containerd
    );
    // Post-copy copies still faulting their memory in through this
    // agent's tunnels, each watched on a thread of its own until its
    // stream ends (a copy whose stream broke is removed once its shim has
    // killed it: see [`Following`]). This agent must outlive them: killed,
    // its copies lose their memory (and are killed by their shims; the
    // sources thaw), and stay here stopped.
    let mut following: Vec<Following> = Vec::new();
    // Nothing else runs on this thread: between migrations, waiting for
    // the next authenticated sender is all there is to do.
    for mut admitted in migrations.iter() {
        following.retain(|f| !f.ended());
        let peer = admitted.peer;
        let received = receive(&mut admitted, &tunnel_key, endpoints, config).await;
        // The slot is free for the next sender from here.
        drop(admitted);
        let received = received.map(|(copy, tunnel)| {
            if let Some(tunnel) = tunnel {
                let watched =
                    Following::start(tunnel, copy.clone(), endpoints.clone(), peer.to_string());
                match watched {
                    Ok(f) => following.push(f),
                    // Dropped with the closure's tunnel: cut (the copy dies
                    // and the source thaws), which is what it says.
                    Err(e) => eprintln!("lazarus serve: cannot follow {}: {e}", copy.name),
                }
            }
            copy.name
        });
        match &received {
            Ok(name) => eprintln!("lazarus serve: {peer}: {name} runs here"),
            Err(e) => eprintln!("lazarus serve: {peer}: {e}"),
        }
        if args.once {
            for f in following {
                f.join();
            }
            return received.map(drop);
        }
    }
    Err(Error::Refused(format!(
        "lazarus serve: no longer accepting connections on {addr}"
    )))
}

/// One agent per work root and per receive root: it holds a lock in each
/// for as long as it runs, so what an earlier agent (killed mid-migration)
/// left in their scratch space is its own to remove.
fn claim_scratch_roots(config: &Config) -> Result<Vec<nix::fcntl::Flock<std::fs::File>>> {
    let work = config.work_dir()?;
    // The receive root's scratch space is the root itself.
    let receive = config.receive_dir()?;
    let mut locks = Vec::new();
    for (root, scratch, setting) in [
        (&config.work_root, &work, "work_root"),
        (&receive, &receive, "receive_root"),
    ] {
        // Beside the scratch space, not in it (the work root's).
        let path = root.join("serve.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(lazarus_core::Error::io(format!("open {}", path.display())))?;
        let lock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
            .map_err(|_| {
                Error::Conflict(format!(
                    "another `lazarus serve` uses {} (its lock {} is held): one agent per \
                     {setting}",
                    root.display(),
                    path.display()
                ))
            })?;
        locks.push(lock);
        for entry in std::fs::read_dir(scratch).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().starts_with("receive-") {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    Ok(locks)
}

/// One authenticated sender's migration; returns the container's name
/// here, and post-copy the tunnel its memory still follows through.
async fn receive(
    admitted: &mut Admitted,
    key: &Key,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<(ImportReport, Option<Tunnel>)> {
    let (ch, offer, peer) = (&mut admitted.ch, &admitted.offer, admitted.peer);
    super::tune(ch.stream(), PEER_TIMEOUT)?;
    eprintln!(
        "lazarus serve: {peer}: offered {} ({} container, image {})",
        offer.name, offer.engine, offer.image
    );
    told(ch, check(offer, endpoints).await)?;
    ch.send_json(&Answer {
        postcopy: lazy_restore_supported(&config.criu_path),
        ..Answer::ready()
    })?;

    let plan: Plan = ch.recv_json()?;
    // Stop-and-copy: the memory arrives first, through CRIU's page server,
    // into memory (receive_root), not onto a disk.
    let scratch = match plan.postcopy {
        true => config.scratch_dir("receive")?,
        false => config.receive_scratch_dir("receive")?,
    };
    let receiver = match plan.postcopy {
        true => None,
        false => Some(told(ch, PageReceiver::start(scratch.path(), config))?),
    };
    // The page tunnel: its door for the sender, its loopback end for CRIU
    // (stop-and-copy: this host's page server; post-copy: a door for the
    // lazy-pages daemon the restore starts). Dropped, it is cut.
    let criu = receiver.as_ref().map(|r| r.address());
    let opened = pages::receiver(ch.stream(), key, criu);
    let tunnel = told(ch, opened)?;
    ch.send_json(&Answer {
        tunnel: Some(tunnel.offer.clone()),
        ..Answer::ready()
    })?;

    let path = scratch.path().join("archive.tar");
    receive_archive(ch, &path)?;
    let pages = match receiver {
        Some(r) => Some(told(ch, r.finish())?),
        None => None,
    };

    // From here a container exists here that the sender has not confirmed:
    // the guard removes it if this agent dies before it is settled.
    let guard = RestoreGuard::start(endpoints, &format!("the migration of {}", offer.name))?;
    guard.scratch(scratch.path())?;
    let settled = restore_and_confirm(
        ch,
        offer,
        path,
        scratch.path(),
        pages,
        tunnel.pump_plan.clone(),
        &Import {
            endpoints,
            config,
            guard: &guard,
        },
    )
    .await;
    guard.dismiss();
    // Post-copy: the container runs here and faults its memory in through
    // the tunnel until every page is here; the streams end it. Otherwise
    // it is dropped here: cut, and the door's filter removed.
    let copy = settled?;
    Ok((copy, plan.postcopy.then(|| tunnel.keep())))
}

/// A failure the sender is told of (as its refusal) before it is returned.
fn told<T>(ch: &mut Channel<TcpStream>, result: Result<T>) -> Result<T> {
    if let Err(e) = &result {
        let _ = ch.send_json(&Answer::refused(e));
    }
    result
}

/// Receives the archive into `path` (a new file, 0600), at most
/// [`MAX_ARCHIVE`] bytes.
fn receive_archive(ch: &mut Channel<TcpStream>, path: &Path) -> Result<()> {
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(lazarus_core::Error::io(format!(
            "create {}",
            path.display()
        )))?;
    let mut file = BufWriter::with_capacity(1 << 20, file);
    ch.recv_into(&mut file, MAX_ARCHIVE, &mut |_| {})?;
    file.flush()
        .map_err(lazarus_core::Error::io(format!("write {}", path.display())))?;
    Ok(())
}

/// Restores the received archive (unpacked within `scratch`, the
/// migration's scratch directory, which the guard removes) and waits for
/// the sender's confirmation; an unconfirmed copy is removed.
async fn restore_and_confirm(
    ch: &mut Channel<TcpStream>,
    offer: &Offer,
    path: PathBuf,
    scratch: &Path,
    pages: Option<PathBuf>,
    pump_plan: Option<SharedPumpPlan>,
    restorer: &impl Restorer,
) -> Result<ImportReport> {
    let args = ImportArgs {
        file: path,
        name: Some(offer.name.clone()),
        namespace: (offer.engine == "containerd").then(|| offer.namespace.clone()),
        runtime: None,
        json: true,
        // What the sender may ask for is the config's [import] section's
        // (nothing by default), as for any import.
        grants: Default::default(),
        identity: None,
        // The sender decided what travels (migrate --ignore-volumes).
        ignore_volumes: false,
        netlock: None,
        scratch_in: Some(scratch.to_path_buf()),
        pages,
        pump_plan: pump_plan.clone(),
        snapshot: None,
    };
    let restored = match restorer.restore(&args).await {
        Ok(v) => {
            // The container runs: the page pump may take the link (and the
            // CPU) from here on.
            if let Some(plan) = &pump_plan {
                plan.restored();
            }
            v
        }
        Err(e) => {
            let _ = ch.send_json(&Answer::refused(&e));
            return Err(e);
        }
    };
    let answer = Answer {
        restored: Some(restored.clone()),
        ..Answer::ready()
    };
    // The sender lets its source go only once it has the answer, and says
    // so; without that word it brings the source back, so this copy must go.
    let confirmed = ch.send_json(&answer).and_then(|_| {
        ch.stream()
            .set_read_timeout(Some(ACK_TIMEOUT))
            .map_err(|e| lazarus_core::channel::ChannelError::Io {
                context: "set the connection's timeouts",
                source: e,
            })?;
        ch.recv_json::<Answer>()
    });
    match confirmed {
        Ok(ack) if ack.ok => Ok(restored),
        unconfirmed => {
            let why = match unconfirmed {
                Err(e) => e.to_string(),
                Ok(_) => "the sender took its container back".into(),
            };
            let cleanup = restorer
                .remove(&restored)
                .await
                .err()
                .map(|e| e.to_string());
            Err(Error::Refused(format!(
                "{} was restored but the sender never confirmed ({why}): removed here, the \
                 source keeps it",
                offer.name
            ))
            .with_cleanup(cleanup))
        }
    }
}

/// The restore of a received archive and its undo: behind a seam, so
/// that the confirmation rule is unit-tested without an engine.
#[allow(async_fn_in_trait)] // Not a public API; one thread, no Send needed.
trait Restorer {
    async fn restore(&self, args: &ImportArgs) -> Result<ImportReport>;
    async fn remove(&self, restored: &ImportReport) -> Result<()>;
}

/// The real restore: an ordinary import, under the migration's guard.
struct Import<'a> {
    endpoints: &'a Endpoints,
    config: &'a Config,
    guard: &'a RestoreGuard,
}

impl Restorer for Import<'_> {
    async fn restore(&self, args: &ImportArgs) -> Result<ImportReport> {
        import::restore(args, self.endpoints, self.config, Some(self.guard)).await
    }

    async fn remove(&self, restored: &ImportReport) -> Result<()> {
        import::remove_restored(restored, self.endpoints).await
    }
}

/// How long the page server gets to end once the archive is here: the
/// sender's dump disconnected from it before the archive was made.
const PAGE_SERVER_END_TIMEOUT: Duration = Duration::from_secs(30);

/// This host's CRIU page server for one stop-and-copy migration: it listens
/// on loopback only, where this host's page tunnel connects to it, and
/// writes the memory the sender's dump pushes into `scratch/pages`. Killed
/// if the migration ends before it did.
struct PageReceiver {
    server: PageServer,
    daemon: Box<dyn LazyPages>,
    images: PathBuf,
}

impl PageReceiver {
    fn start(scratch: &Path, config: &Config) -> Result<PageReceiver> {
        let port = std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(lazarus_core::Error::io(
                "find a free loopback port for the page server",
            ))?
            .port();
        let server = PageServer::local(port, PageMode::Push);
        let images = scratch.join("pages");
        let work = scratch.join("pages-work");
        for dir in [&images, &work] {
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(dir)
                .map_err(lazarus_core::Error::io(format!("create {}", dir.display())))?;
        }
        let criu = SwrkCriu {
            binary: config.criu_path.clone(),
            limits: config.criu_limits(),
            waiter: Box::new(DirectWait),
        };
        let daemon = criu.receive_pages(&server.daemon_request(&images, &work))?;
        Ok(PageReceiver {
            server,
            daemon,
            images,
        })
    }

    /// Where the page server listens.
    fn address(&self) -> std::net::SocketAddr {
        std::net::SocketAddr::new(self.server.address, self.server.port)
    }

    /// Once the archive is here: the page server has ended well, and the
    /// memory is in the returned directory.
    fn finish(mut self) -> Result<PathBuf> {
        match self.daemon.wait(PAGE_SERVER_END_TIMEOUT) {
            Some(0) => Ok(self.images.clone()),
            status => {
                // Its log goes with the migration's scratch directory: its
                // errors are quoted here instead.
                let log = lazarus_core::criu::log::excerpt(self.daemon.log(), 10);
                Err(Error::Refused(format!(
                    "the page server receiving the memory {} ({})",
                    match status {
                        Some(code) => format!("failed (exit status {code})"),
                        None => format!("had not ended {PAGE_SERVER_END_TIMEOUT:?} after the dump"),
                    },
                    log.errors.join("; ")
                )))
            }
        }
    }
}

impl Drop for PageReceiver {
    fn drop(&mut self) {
        self.daemon.kill();
    }
}

/// Whether this host's CRIU and kernel can restore post-copy: the
/// lazy-pages daemon needs non-cooperative userfaultfd (fork and remap
/// events), which CRIU checks itself.
fn lazy_restore_supported(criu: &std::path::Path) -> bool {
    use lazarus_core::criu::{DirectWait, ExitWatch};
    const CHECK_TIMEOUT: Duration = Duration::from_secs(10);
    let child = std::process::Command::new(criu)
        .args(["check", "--feature", "uffd-noncoop"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    let Ok(mut child) = child else {
        return false;
    };
    match DirectWait.wait(&mut child, CHECK_TIMEOUT) {
        Some(code) => code == 0,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            false
        }
    }
}

#[cfg(test)]
mod tests;
