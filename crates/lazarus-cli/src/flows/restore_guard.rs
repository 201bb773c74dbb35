//! The guard of a restore (see [`crate::guard`]): if the `lazarus` that
//! restores dies before it finished (SIGKILL, a closed terminal, or, for
//! `serve`, before the sender confirmed), the guard removes every
//! container and volume it was told was being made, and the restore's scratch
//! directory (unmounting first what is mounted there: the new container's
//! root filesystem while its changes were applied).
//!
//! `migrate` starts one for its scratch directory only: killed, it leaves
//! a dump there that the runtime calls off once its lease lapses; the
//! guard waits for that end and then removes the directory.
//!
//! `restore --import` (one container, or every member of a group archive:
//! the group comes back whole or not at all) and `serve` (a received
//! migration; without the confirmation the sender brings its source back,
//! so a copy left here would run twice) start one. The command tells it
//! each container's name *before* asking the engine to make it, and only
//! names it found free, so the guard never removes a container that was
//! there before. The engine may even finish a restore it had been asked
//! for after the command's death, and refuses to remove it until then:
//! the guard keeps trying for [`REMOVE_FOR`].

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::engine::containerd::Containerd;
use crate::engine::docker::Docker;
use crate::engine::endpoints::Endpoints;
use crate::error::Result;
use crate::flows::import;
use crate::guard::{self, Guard};

const REMOVE_FOR: Duration = Duration::from_secs(300);

/// `lazarus restore-guard`'s arguments (internal).
#[derive(clap::Args)]
pub struct RestoreGuardArgs {
    /// What is guarded, for its messages ("the import of FILE")
    #[arg(long)]
    pub what: String,
}

/// What the command tells its guard, a line each.
#[derive(Debug, PartialEq)]
enum Told {
    /// A scratch directory of the restore's, removed on rescue.
    Scratch(PathBuf),
    /// A container about to be made.
    Make(Made),
    /// A Docker volume about to be made.
    Volume(String),
}

/// A container the restore makes: its engine ("docker" or "containerd"),
/// containerd namespace and name (Docker) or id (containerd).
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub engine: String,
    pub namespace: String,
    pub name: String,
}

impl Told {
    fn line(&self) -> String {
        match self {
            Told::Scratch(p) => format!("scratch\t{}", p.display()),
            Told::Make(m) => format!("make\t{}\t{}\t{}", m.engine, m.namespace, m.name),
            Told::Volume(v) => format!("volume\t{v}"),
        }
    }

    fn parse(line: &str) -> Option<Told> {
        let mut f = line.split('\t');
        match (f.next()?, f.next(), f.next(), f.next(), f.next()) {
            ("scratch", Some(p), None, None, None) => Some(Told::Scratch(p.into())),
            ("volume", Some(v), None, None, None) => Some(Told::Volume(v.into())),
            ("make", Some(e), Some(ns), Some(n), None) => Some(Told::Make(Made {
                engine: e.into(),
                namespace: ns.into(),
                name: n.into(),
            })),
            _ => None,
        }
    }
}

/// The guard of one restore, held by the command.
pub struct RestoreGuard {
    guard: Guard,
}

impl RestoreGuard {
    /// Starts the guard of `what` (its endpoints are this command's).
    pub fn start(endpoints: &Endpoints, what: &str) -> Result<RestoreGuard> {
        let argv: Vec<String> = [
            "--host",
            &endpoints.docker,
            "--address",
            &endpoints.containerd,
            "restore-guard",
            "--what",
            what,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Ok(RestoreGuard {
            guard: Guard::start(&argv, what)?,
        })
    }

    /// The restore's scratch directory: removed if the command dies.
    pub fn scratch(&self, dir: &Path) -> Result<()> {
        self.guard.tell(&Told::Scratch(dir.to_path_buf()).line())
    }

    /// A container about to be made (its name found free): removed if the
    /// command dies.
    pub fn will_make(&self, made: Made) -> Result<()> {
        self.guard.tell(&Told::Make(made).line())
    }

    /// A Docker volume about to be made (its name found free): removed if
    /// the command dies.
    pub fn will_make_volume(&self, name: &str) -> Result<()> {
        self.guard.tell(&Told::Volume(name.to_string()).line())
    }

    /// The restore finished (or failed and undid itself).
    pub fn dismiss(self) {
        self.guard.dismiss()
    }
}

/// `lazarus restore-guard`: listens until dismissed; without that, removes
/// what it was told of.
pub async fn run(args: &RestoreGuardArgs, endpoints: &Endpoints) -> Result<()> {
    let mut made = Vec::new();
    let mut scratch = Vec::new();
    let mut volumes = Vec::new();
    let dismissed = guard::listen(|line| match Told::parse(line) {
        Some(Told::Make(m)) => made.push(m),
        Some(Told::Scratch(p)) => scratch.push(p),
        Some(Told::Volume(v)) => volumes.push(v),
        None => eprintln!("lazarus restore-guard: ignoring {line:?}"),
    });
    if dismissed {
        return Ok(());
    }
    eprintln!(
        "lazarus restore-guard: {} ended without finishing; removing what it made ({})",
        args.what,
        match made.len() {
            0 => "no container yet".to_string(),
            _ => made
                .iter()
                .map(|m| m.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }
    );
    for m in &made {
        remove_until_gone(m, endpoints).await;
    }
    // Once no container mounts them.
    if !volumes.is_empty() {
        match Docker::new(&endpoints.docker) {
            Ok(docker) => {
                for v in &volumes {
                    match docker.remove_volume(v).await {
                        Ok(()) => eprintln!("lazarus restore-guard: volume {v} removed"),
                        Err(e) => eprintln!("lazarus restore-guard: volume {v}: {e}"),
                    }
                }
            }
            Err(e) => eprintln!("lazarus restore-guard: {e}"),
        }
    }
    // Only once the containers are gone: a restore under way reads its
    // images from here. (And once a migration's dump there has ended.)
    for dir in &scratch {
        if !dump_ended(dir).await {
            eprintln!(
                "lazarus restore-guard: the dump in {} had not ended after {DUMP_END_FOR:?}; \
                 left in place",
                dir.display()
            );
            continue;
        }
        if lazarus_core::scratch::unmount_under(dir) {
            let _ = std::fs::remove_dir_all(dir);
        } else if dir.exists() {
            eprintln!(
                "lazarus restore-guard: something stays mounted in {}; left in place",
                dir.display()
            );
        }
    }
    Ok(())
}

/// How long a migration's dump gets to end once its command died: its
/// lease lapses, then the runtime calls it off and thaws the source.
const DUMP_END_FOR: Duration = Duration::from_secs(150);

/// Whether the migration dump whose images are in `scratch` (if any) has
/// ended, waiting for it up to [`DUMP_END_FOR`]: the runtime writes its
/// markers there until then.
async fn dump_ended(scratch: &Path) -> bool {
    use lazarus_core::checkpoint::control;
    let images = scratch.join(lazarus_core::archive::CHECKPOINT_DIR);
    let deadline = Instant::now() + DUMP_END_FOR;
    while control::is_requested(&images) && control::ended(&images).is_none() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    true
}

async fn remove_until_gone(m: &Made, endpoints: &Endpoints) {
    let deadline = Instant::now() + REMOVE_FOR;
    loop {
        // Idempotent: also what a half-made container left (a containerd
        // snapshot without its container).
        let removed = import::remove(&m.engine, &m.name, &m.namespace, endpoints).await;
        match (removed, exists(m, endpoints).await) {
            (Ok(()), Ok(false)) => {
                eprintln!("lazarus restore-guard: {} removed", m.name);
                return;
            }
            (Err(e), _) | (_, Err(e)) => {
                eprintln!("lazarus restore-guard: {}: {e} (retrying)", m.name)
            }
            (Ok(()), Ok(true)) => {}
        }
        if Instant::now() >= deadline {
            eprintln!(
                "lazarus restore-guard: {} is still here after {} s; remove it by hand",
                m.name,
                REMOVE_FOR.as_secs()
            );
            return;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Whether the container exists (`import` asks before it tells the guard).
pub async fn exists(m: &Made, endpoints: &Endpoints) -> Result<bool> {
    if m.engine == "docker" {
        return Ok(Docker::new(&endpoints.docker)?
            .container(&m.name)
            .await?
            .is_some());
    }
    let ctr = Containerd::connect(&endpoints.containerd, &m.namespace).await?;
    match ctr.container(&m.name).await {
        Ok(_) => Ok(true),
        Err(e) if e.is_not_found() => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_told_reads_back_as_it_was_said() {
        let made = Told::Make(Made {
            engine: "containerd".into(),
            namespace: "default".into(),
            name: "web".into(),
        });
        let scratch = Told::Scratch("/var/lib/lazarus/work/import-x y".into());
        let volume = Told::Volume("redis-data".into());
        for t in [made, scratch, volume] {
            assert_eq!(Told::parse(&t.line()), Some(t));
        }
        assert_eq!(Told::parse("make\tdocker\tmoby"), None);
        assert_eq!(Told::parse("unmount /"), None);
    }
}
