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
use std::time::Instant;

use lazarus_core::channel::{Channel, Key};
use lazarus_core::config::Config;
use serde_json::{json, Value};

use super::postcopy;
use super::{
    key_path, resolve, Answer, Mode, Offer, Plan, CONNECT_TIMEOUT, PEER_TIMEOUT, PROTOCOL,
};
use crate::containerd::Containerd;
use crate::endpoints::Endpoints;
use crate::error::{Error, Result};
use crate::export::{self, Compress, ExportArgs, MigrationDump, Source};
use crate::progress::{self, Progress};
use lazarus_core::checkpoint::postcopy::{self as lazy, PageMode};

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
    /// How the memory moves. postcopy: the container resumes on the
    /// receiver once its minimal state is there (downtime well under a
    /// second) and its memory follows over TLS; if the source host or the
    /// link fails before every page has arrived, the moved container is
    /// killed (the source was already let go). stopcopy: the container is
    /// down while all of its memory is dumped, sent (over TLS, into the
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

pub async fn run(args: &MigrateArgs, endpoints: &Endpoints, config: &Config) -> Result<()> {
    let key = Key::load(&key_path(args.key.clone()))?;
    let addr = resolve(&args.to)?;
    // Found and checked once, before the receiver is bothered: what export
    // would refuse is refused here.
    let source =
        Source::resolve(&args.container, args.namespace.as_deref(), false, endpoints).await?;
    let target = &source.target;
    let (image, image_digest) =
        export::image_of(target, source.container.as_ref(), &source.ctr).await?;

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
    let name = args.name.clone().unwrap_or_else(|| target.name.clone());
    ch.send_json(&Offer {
        protocol: PROTOCOL,
        engine: target.engine().into(),
        name: name.clone(),
        namespace: args
            .to_namespace
            .clone()
            .unwrap_or_else(|| target.namespace.clone()),
        image,
        image_digest,
    })?;
    let ready: Answer = ch.recv_json()?;
    if !ready.ok {
        return Err(Error::Refused(format!(
            "{} refused the migration: {}; {} was not touched",
            args.to,
            ready.error.unwrap_or_default(),
            target.name
        )));
    }

    let postcopy = match args.mode {
        Mode::Stopcopy => false,
        Mode::Auto => ready.postcopy && lazy::check_pipe_max_size().is_ok(),
        Mode::Postcopy if !ready.postcopy => {
            return Err(Error::Refused(format!(
                "{} cannot restore post-copy (its CRIU or kernel lacks non-cooperative \
                 userfaultfd: `criu check --feature uffd-noncoop` fails there): migrate with \
                 --mode stopcopy; {} was not touched",
                args.to, target.name
            )))
        }
        Mode::Postcopy => {
            lazy::check_pipe_max_size()?;
            true
        }
    };

    ch.send_json(&Plan { postcopy })?;
    let prepared: Answer = ch.recv_json()?;
    let server = match (postcopy, prepared) {
        (_, a) if !a.ok => {
            return Err(Error::Refused(format!(
                "{} could not prepare the migration: {}; {} was not touched",
                args.to,
                a.error.unwrap_or_default(),
                target.name
            )))
        }
        (true, _) => postcopy::page_server(ch.stream(), PageMode::Lazy)?,
        (false, Answer { pages: Some(s), .. }) => s,
        (false, _) => {
            return Err(Error::Refused(format!(
                "{} prepared no page server for the memory; {} was not touched",
                args.to, target.name
            )))
        }
    };

    // Post-copy: the source's page server (CRIU's lazy dump, in this
    // host's shim) takes the first connection to its port, on every
    // address: only the receiver may make it. Held until the dump has
    // served the memory (or was called off), when this function returns.
    let _filter = match postcopy {
        true => Some(
            postcopy::filter(ch.stream(), &server)
                .map_err(|e| Error::Refused(format!("{e}; {} was not touched", target.name)))?,
        ),
        false => None,
    };

    // From here the source is frozen until it runs there, or here again.
    let scratch = config.scratch_dir("migrate")?;
    let file = scratch.path().join("archive.tar");
    let dump = MigrationDump {
        dir: scratch.path().to_path_buf(),
        server,
    };
    // Renewed until this function returns: if this process dies, the
    // source's dump is called off within 30 s and the container thaws.
    let _lease = lazarus_core::checkpoint::control::Lease::hold(&dump.images());
    let export_args = ExportArgs {
        container: Some(args.container.clone()),
        group: Vec::new(),
        compose: None,
        pod: None,
        export: file.clone(),
        leave_running: false,
        tcp_established: args.tcp_established,
        ext_unix_sk: false,
        shell_job: false,
        file_locks: false,
        compress: args.compress,
        print_stats: false,
        json: args.json,
        namespace: args.namespace.clone(),
        from_docker_checkpoint: None,
        // The channel authenticates the sender already.
        sign: None,
        encrypt: None,
        migration: Some(dump.clone()),
    };
    let frozen = Instant::now();
    // A failed export leaves the container running (its own guarantee; a
    // dump that got as far as serving or sending pages is called off here).
    let exported = match export::export(&export_args, &source, config).await {
        Ok(v) => v,
        Err(e) => return Err(postcopy::call_off(e, &source, &dump).await),
    };
    let archived = frozen.elapsed().as_secs_f64();
    let sent = Instant::now();
    let show = progress::wanted(args.json);
    let restored = match hand_over(&mut ch, &file, show) {
        Ok(v) => v,
        Err(e) => return Err(postcopy::call_off(e, &source, &dump).await),
    };
    let downtime = frozen.elapsed().as_secs_f64();
    let transfer =
        sent.elapsed().as_secs_f64() - restored["restore_seconds"].as_f64().unwrap_or(0.0);
    // Stop-and-copy: the source, frozen at the end of its dump, ends now
    // (before the receiver keeps its copy: never two running).
    if !postcopy {
        if let Err(e) = postcopy::let_go(&source, &dump).await {
            return Err(postcopy::call_off(e, &source, &dump).await);
        }
    }
    // Without this word the receiver removes its copy. Lost after a
    // stop-and-copy source was let go, so is the container: said plainly.
    // (A post-copy source, still frozen, runs on once its stream fails.)
    if let Err(e) = ch.send_json(&Answer::ready()) {
        return Err(match postcopy {
            true => e.into(),
            false => Error::Refused(format!(
                "{name} ran on {} and was let go here, but the confirmation could not be sent \
                 ({e}): the receiver removes its unconfirmed copy within 30 s",
                args.to
            )),
        });
    }
    let memory = match postcopy {
        true => Some(postcopy::memory_followed(&source, &dump, &name, &args.to, args.json).await?),
        false => None,
    };
    if args.rm {
        let removed = match &source.docker {
            Some(d) => d.remove(&target.id).await,
            None => remove_containerd(&source.ctr, &target.id).await,
        };
        if let Err(e) = removed {
            eprintln!(
                "lazarus: warning: {} runs on {} but removing it here failed: {e}",
                name, args.to
            );
        }
    }
    let report = json!({
        "container": target.name,
        "to": args.to,
        "mode": if postcopy { "postcopy" } else { "stopcopy" },
        "restored": restored,
        "source": if args.rm { "removed" } else { "stopped" },
        "downtime_seconds": downtime,
        "checkpoint_seconds": exported["checkpoint_seconds"],
        "archive_seconds": archived,
        "transfer_seconds": transfer,
        "restore_seconds": restored["restore_seconds"],
        "archive_bytes": exported["archive_bytes"],
        "memory_seconds": memory.map(|m| m.0),
        "memory_bytes": memory.map(|m| m.1).or(restored["pages_bytes"].as_u64()),
        "total_seconds": started.elapsed().as_secs_f64(),
    });
    if args.json {
        println!("{report:#}");
    } else {
        println!("{}", text(&report));
    }
    Ok(())
}

/// Streams the archive and waits for the receiver's word that the
/// container runs there; returns the receiver's restore report. (The
/// caller confirms, once it has let the source go.)
fn hand_over(ch: &mut Channel<TcpStream>, file: &Path, show: bool) -> Result<Value> {
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
        return Err(Error::Refused(format!(
            "the receiving host could not restore it: {}",
            answer.error.unwrap_or_default()
        )));
    }
    Ok(answer.restored.unwrap_or_default())
}

async fn remove_containerd(ctr: &Containerd, id: &str) -> Result<()> {
    let c = ctr.container(id).await?;
    ctr.remove_task(id).await?;
    ctr.remove_container(id).await?;
    ctr.remove_snapshot(&c.snapshotter, &c.snapshot_key).await
}

fn text(r: &Value) -> String {
    let s = |k: &str| r[k].as_f64().unwrap_or(0.0);
    let human = |k: &str| lazarus_core::inspect::human(r[k].as_u64().unwrap_or(0));
    let memory = match r["memory_seconds"].as_f64() {
        Some(m) => format!(
            "; its memory ({}) followed in {m:.2}s",
            human("memory_bytes")
        ),
        None => format!("; memory {} through the page stream", human("memory_bytes")),
    };
    format!(
        "{} runs on {} as {} (source {}, {}): downtime {:.2}s (checkpoint and archive {:.2}s, \
         transfer {:.2}s of {}, restore {:.2}s){memory}",
        r["container"].as_str().unwrap_or_default(),
        r["to"].as_str().unwrap_or_default(),
        r["restored"]["name"].as_str().unwrap_or_default(),
        r["source"].as_str().unwrap_or_default(),
        r["mode"].as_str().unwrap_or_default(),
        s("downtime_seconds"),
        s("archive_seconds"),
        s("transfer_seconds"),
        human("archive_bytes"),
        s("restore_seconds"),
    )
}
