//! `lazarus migrate CONTAINER --to ADDR`: the sending side. The receiver is
//! asked first (nothing is frozen until it says ready), then the container
//! is checkpointed (its memory going through CRIU's page stream) into a
//! private archive, the archive streamed, and the source let go only when
//! the receiver says the container runs there. Until then the source's
//! dump holds it frozen; any failure before calls the dump off, and the
//! source runs on here, thawed, where it stopped.

use std::fs::File;
use std::io::BufReader;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lazarus_core::channel::tunnel::Tunnel;
use lazarus_core::channel::{Channel, ChannelError, Key};
use lazarus_core::config::Config;

use super::{
    key_path, resolve, Answer, Mode, Offer, Plan, CONNECT_TIMEOUT, PEER_TIMEOUT, PROTOCOL,
};
use super::{moving, pages, postcopy};
use crate::engine::endpoints::Endpoints;
use crate::engine::target::Target;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::flows::export::{self, Compress, ExportArgs, MigrationDump, Source};
use crate::flows::restore_guard::RestoreGuard;
use crate::progress::{self, Progress};
use crate::report::{ExportReport, ImportReport, MigrationReport, PageStreamReport};
use lazarus_core::checkpoint::postcopy as lazy;

#[derive(clap::Args)]
pub struct MigrateArgs {
    /// A Docker container's name or id, or a containerd container id
    pub container: String,
    /// The receiving host's `lazarus serve`: HOST[:PORT] (port 7470 if none)
    #[arg(long, value_name = "ADDR")]
    pub to: String,
    /// The key file both hosts hold (default /etc/lazarus/migration.key)
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The container's name on the receiving host (default: the same)
    #[arg(long)]
    pub name: Option<String>,
    /// A containerd namespace: CONTAINER is a containerd container there
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// The containerd namespace on the receiving host (default: the same)
    #[arg(long, value_name = "NAMESPACE")]
    pub to_namespace: Option<String>,
    /// Remove the source container once it runs on the receiving host
    /// (default: leave it stopped)
    #[arg(long, verbatim_doc_comment)]
    pub rm: bool,
    /// Checkpoint established TCP connections (CRIU --tcp-established)
    #[arg(long)]
    pub tcp_established: bool,
    /// Leave the container's named volumes behind (by default their
    /// contents go with it and are made afresh there)
    #[arg(long, verbatim_doc_comment)]
    pub ignore_volumes: bool,
    /// How the memory moves. postcopy: the container resumes on the
    /// receiver once its minimal state is there (downtime well under a
    /// second) and its memory follows (encrypted, in Lazarus's page
    /// tunnel); if the source host or the
    /// link fails before every page has arrived, the moved container is
    /// killed (the source was already let go). stopcopy: the container is
    /// down while all of its memory is dumped, sent (encrypted, into the
    /// receiver's memory, no disk on either side) and restored; nothing
    /// depends on the source afterwards. auto: postcopy when both hosts
    /// can, else stopcopy
    #[arg(long, value_enum, default_value_t = Mode::Auto, verbatim_doc_comment)]
    pub mode: Mode,
    /// Compress the archive (the container's file changes and CRIU's
    /// small images; the memory goes raw): zstd (on every core) or none
    #[arg(long, value_enum, default_value_t = Compress::Zstd)]
    pub compress: Compress,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
}

pub async fn run(
    args: &MigrateArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<MigrationReport> {
    let key = Key::load(&key_path(args.key.clone()))?;
    let addr = resolve(&args.to)?;
    // Found and checked once, before the receiver is bothered: what export
    // would refuse is refused here.
    let source =
        Source::resolve(&args.container, args.namespace.as_deref(), false, endpoints).await?;
    let image = export::image_of(&source.target, source.container.as_ref(), &source.ctr).await?;
    // Rules a killed migration of this host left (its guard killed too).
    super::filter::sweep_stale();
    let started = Instant::now();
    let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT).map_err(|e| {
        Error::Refused(format!(
            "cannot reach {} ({addr}): {e}; is `lazarus serve` running there?",
            args.to
        ))
    })?;
    super::tune(&stream, PEER_TIMEOUT)?;
    let mut ch = Channel::connect(stream, &key)?;
    let receiver_postcopy = offer(&mut ch, args, &source.target, image)?;
    let postcopy = choose_mode(args, receiver_postcopy, &source.target.name)?;
    // The page tunnel is up before anything is frozen; dropped (when this
    // function returns) it is cut, and a dump still using it fails safe.
    let mut pages = plan(&mut ch, args, postcopy, &source.target.name, &key)?;
    // From here the source is frozen until it runs there, or here again.
    let scratch = config.scratch_dir("migrate")?;
    // Killed, this command leaves its scratch to the guard, which removes
    // it once the dump there was called off (see `restore_guard`).
    let guard = RestoreGuard::start(endpoints, &format!("the migration of {}", args.container))?;
    guard.scratch(scratch.path())?;
    let dump = MigrationDump {
        dir: scratch.path().to_path_buf(),
        server: pages.server.clone(),
    };
    // Renewed until this function returns: if this process dies, the
    // source's dump is called off within 30 s and the container thaws.
    let _lease = lazarus_core::checkpoint::control::Lease::hold(&dump.images());
    let mut moved = Move {
        args,
        source: &source,
        dump: &dump,
        ch: &mut ch,
        tunnel: &mut pages.tunnel,
        config,
    };
    let moved = moving::run(&mut moved, args, &source.target.name, postcopy).await;
    // Returned, this command removes its scratch itself (with `scratch`).
    guard.dismiss();
    let mut report = moved?;
    report.total_seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// Offers the container (with its image's name and digest); the
/// receiver's answer: whether it can restore post-copy, or why it refuses
/// (nothing was touched).
fn offer(
    ch: &mut Channel<TcpStream>,
    args: &MigrateArgs,
    target: &Target,
    (image, image_digest): (String, String),
) -> Result<bool> {
    ch.send_json(&Offer {
        protocol: PROTOCOL,
        engine: target.engine().into(),
        name: args.name.clone().unwrap_or_else(|| target.name.clone()),
        namespace: args
            .to_namespace
            .clone()
            .unwrap_or_else(|| target.namespace.clone()),
        image,
        image_digest,
    })?;
    let ready: Answer = ch.recv_json()?;
    if !ready.ok {
        return Err(ready.refusal(format!(
            "{} refused the migration: {}; {} was not touched",
            args.to,
            ready.error.clone().unwrap_or_default(),
            target.name
        )));
    }
    Ok(ready.postcopy)
}

/// Post-copy or stop-and-copy, as asked and as both hosts can.
fn choose_mode(args: &MigrateArgs, receiver_postcopy: bool, name: &str) -> Result<bool> {
    match args.mode {
        Mode::Stopcopy => Ok(false),
        Mode::Auto => Ok(receiver_postcopy && lazy::check_pipe_max_size().is_ok()),
        Mode::Postcopy if !receiver_postcopy => Err(Error::Refused(format!(
            "{} cannot restore post-copy (its CRIU or kernel lacks non-cooperative \
             userfaultfd: `criu check --feature uffd-noncoop` fails there): migrate with \
             --mode stopcopy; {name} was not touched",
            args.to
        ))),
        Mode::Postcopy => {
            lazy::check_pipe_max_size()?;
            Ok(true)
        }
    }
}

/// Sends the plan; connects the page tunnel to the receiver's door, and
/// returns it with the page server request the dump is given.
fn plan(
    ch: &mut Channel<TcpStream>,
    args: &MigrateArgs,
    postcopy: bool,
    name: &str,
    key: &Key,
) -> Result<pages::Sender> {
    ch.send_json(&Plan { postcopy })?;
    let prepared: Answer = ch.recv_json()?;
    if !prepared.ok {
        return Err(Error::Refused(format!(
            "{} could not prepare the migration: {}; {name} was not touched",
            args.to,
            prepared.error.unwrap_or_default(),
        )));
    }
    let Some(offer) = prepared.tunnel else {
        return Err(Error::Refused(format!(
            "{} opened no page tunnel for the memory; {name} was not touched",
            args.to
        )));
    };
    pages::sender(ch.stream(), key, &offer, postcopy)
        .map_err(|e| Error::Refused(format!("{e}; {name} was not touched")))
}

/// The move's real steps (see [`moving`]): the source frozen from its
/// dump on, the receiver at the other end of `ch`.
struct Move<'a> {
    args: &'a MigrateArgs,
    source: &'a Source,
    dump: &'a MigrationDump,
    ch: &'a mut Channel<TcpStream>,
    tunnel: &'a mut Tunnel,
    config: &'a Config,
}

impl moving::Steps for Move<'_> {
    async fn dump(&mut self) -> Result<ExportReport> {
        let file = self.file();
        export::export(&self.export_args(&file), self.source, self.config).await
    }

    fn pages_go(&mut self) {
        self.tunnel.go();
    }

    fn hand_over(&mut self) -> Result<Option<ImportReport>> {
        let show = progress::wanted(self.args.json);
        hand_over(self.ch, &self.file(), show)
    }

    async fn release(&mut self) -> Result<()> {
        postcopy::let_go(&self.source.ctr, &self.source.target, self.dump).await
    }

    fn confirm(&mut self) -> std::result::Result<(), ChannelError> {
        self.ch.send_json(&Answer::ready())
    }

    async fn memory_followed(&mut self) -> Result<(f64, u64)> {
        let (args, source) = (self.args, self.source);
        let name = args.name.as_deref().unwrap_or(&source.target.name);
        postcopy::memory_followed(
            &source.ctr,
            &source.target,
            self.dump,
            name,
            &args.to,
            args.json,
        )
        .await
    }

    async fn call_off(&mut self, error: Error) -> Error {
        postcopy::call_off(error, &self.source.ctr, &self.source.target, self.dump).await
    }

    fn page_stream(&mut self) -> PageStreamReport {
        stream_report(self.tunnel)
    }

    /// `--rm`: the source goes once it runs there (a failure is a warning:
    /// the container runs).
    async fn remove_source(&mut self) {
        let source = self.source;
        if let Err(e) = source.engine().remove(&source.target.id).await {
            let name = self.args.name.as_deref().unwrap_or(&source.target.name);
            eprintln!(
                "lazarus: warning: {name} runs on {} but removing it here failed: {e}",
                self.args.to
            );
        }
    }
}

impl Move<'_> {
    fn file(&self) -> PathBuf {
        self.dump.dir.join("archive.tar")
    }

    /// The archive's export: the container stopped, its memory through
    /// the migration's page server.
    fn export_args(&self, file: &Path) -> ExportArgs {
        let args = self.args;
        ExportArgs {
            container: Some(args.container.clone()),
            group: Vec::new(),
            compose: None,
            pod: None,
            export: file.to_path_buf(),
            leave_running: false,
            tcp_established: args.tcp_established,
            ext_unix_sk: false,
            shell_job: false,
            file_locks: false,
            ignore_volumes: args.ignore_volumes,
            compress: args.compress,
            print_stats: false,
            json: args.json,
            namespace: args.namespace.clone(),
            from_docker_checkpoint: None,
            // The channel authenticates the sender already.
            sign: None,
            encrypt: None,
            migration: Some(self.dump.clone()),
            scratch_in: None,
            dump_in_memory: false,
            into: None,
            incremental: None,
        }
    }
}

/// How long the tunnel gets to see both ends of CRIU's stream once the
/// dump has ended (its bytes are all through by then).
const TUNNEL_END_TIMEOUT: Duration = Duration::from_secs(10);

/// What went through the tunnel, once it has ended (or as far as it got).
fn stream_report(tunnel: &mut Tunnel) -> PageStreamReport {
    if let Some(Err(e)) = tunnel.wait(TUNNEL_END_TIMEOUT) {
        eprintln!("lazarus: warning: the page tunnel ended with an error after the move: {e}");
    }
    let stats = tunnel.stats();
    PageStreamReport {
        sent_bytes: stats.sent,
        received_bytes: stats.received,
        seconds: stats.seconds,
        mib_per_second: stats.bytes_per_second().map(|b| b / (1 << 20) as f64),
    }
}

/// Streams the archive and waits for the receiver's word that the
/// container runs there; returns the receiver's restore report. (The
/// caller confirms, once it has let the source go.)
fn hand_over(ch: &mut Channel<TcpStream>, file: &Path, show: bool) -> Result<Option<ImportReport>> {
    let open = |e| lazarus_core::Error::io(format!("read {}", file.display()))(e);
    let len = std::fs::metadata(file).map_err(open)?.len();
    let mut reader = BufReader::with_capacity(1 << 20, File::open(file).map_err(open)?);
    let bar = Progress::bytes(show, "send", len);
    let sent = ch.send_from(&mut reader, len, &mut |n| bar.set(n));
    bar.finish();
    sent?;
    let spinner = Progress::spinner(show, "restore there");
    let answer = ch.recv_json::<Answer>();
    spinner.finish();
    let answer = answer?;
    if !answer.ok {
        return Err(answer.refusal(format!(
            "the receiving host could not restore it: {}",
            answer.error.clone().unwrap_or_default()
        )));
    }
    Ok(answer.restored)
}

#[cfg(test)]
mod tests;
