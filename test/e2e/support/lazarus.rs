//! The lazarus CLI against a daemon set: its config and scratch spaces,
//! `lazarus serve` as host B's agent, migration keys. Shared by the tests
//! (archive, migrate, group, security, cri) and the benchmarks.

use crate::support::cmd::{run, wait_until, Out};
use crate::support::config::lazarus_cli;
use crate::support::harness::{Daemons, Setup};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The CLI's scratch space on host `d` (its own, so a test sees only what
/// its commands left).
pub fn work_root(d: &Daemons) -> PathBuf {
    d.path("lazarus-work")
}

/// Where `lazarus serve` on `d` receives stop-copy memory: the set's own
/// (on disk here, beside its work root; the default, a memory filesystem,
/// is what the set-up's config and the migration demo use).
pub fn receive_root(d: &Daemons) -> PathBuf {
    d.path("lazarus-receive")
}

/// The snapshot store on host `d` (its own, removed with the set).
pub fn store_root(d: &Daemons) -> PathBuf {
    d.path("lazarus-store")
}

/// Where the CLI on `d` puts images in memory (`memory_root`): the set's
/// own directory on /dev/shm, removed with the set.
pub fn memory_root(d: &Daemons) -> PathBuf {
    PathBuf::from("/dev/shm/lazarus-e2e").join(d.name("memory"))
}

/// The CLI's config on `d`: its own scratch spaces and snapshot store, and
/// `extra` settings.
pub fn write_cli_config(d: &Daemons, extra: &str) {
    fs::write(
        d.path("cli.toml"),
        format!(
            "work_root = {:?}\nreceive_root = {:?}\nmemory_root = {:?}\nstore_root = {:?}\n\
             {extra}",
            work_root(d),
            receive_root(d),
            memory_root(d),
            store_root(d)
        ),
    )
    .unwrap();
}

/// `lazarus ARGS` against host `d`'s daemons.
pub fn lazarus(d: &Daemons, args: &[&str]) -> Out {
    run(lazarus_cmd(d).args(args))
}

/// The CLI, set up to find host `d`'s daemons and use its scratch space,
/// in `d`'s network when it has one of its own.
pub fn lazarus_cmd(d: &Daemons) -> Command {
    lazarus_cmd_of(d, &lazarus_cli())
}

/// [`lazarus_cmd`] with another copy of the CLI binary.
pub fn lazarus_cmd_of(d: &Daemons, cli: &Path) -> Command {
    let config = d.path("cli.toml");
    if !config.exists() {
        write_cli_config(d, "");
    }
    let mut cmd = match d.netns() {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={}", ns.path())).arg("--").arg(cli);
            c
        }
        None => Command::new(cli),
    };
    cmd.env(
        "DOCKER_HOST",
        format!("unix://{}", d.path("d.sock").display()),
    )
    .env("CONTAINERD_ADDRESS", d.containerd_sock())
    .env("LAZARUS_CONFIG", &config)
    // What it starts (an agent's CRIU page server) is the set's.
    .env(crate::support::harness::SET_MARKER, &d.id);
    cmd
}

/// Host B: its daemons (so its shims, CRIU and containers) and its agent
/// in a network namespace of their own, reached across a veth pair.
pub const B_HOST: Setup = Setup {
    lazarus_config: None,
    cri_config: None,
    own_network: true,
};

/// `lazarus serve` on host `d`, killed when dropped.
pub struct Serve {
    child: Child,
    log: PathBuf,
    pub addr: String,
}

impl Serve {
    /// In the network namespace of `d`'s own (a set made with
    /// `Setup::own_network`), on its address there: the agent, the daemons
    /// and the shims of host B all behind the veth.
    pub fn start(d: &Daemons, key: &str) -> Serve {
        let ns = d.netns().expect("a daemon set with a network of its own");
        Serve::start_at(d, key, &format!("{}:7470", ns.inside))
    }

    /// [`Serve::start`], running the CLI binary at `cli`.
    pub fn start_from(d: &Daemons, key: &str, cli: &Path) -> Serve {
        let ns = d.netns().expect("a daemon set with a network of its own");
        let cmd = lazarus_cmd_of(d, cli);
        Serve::spawn(d, key, cmd, &format!("{}:7470", ns.inside))
    }

    /// On `addr`, in `d`'s network (`lazarus_cmd` enters it).
    pub fn start_at(d: &Daemons, key: &str, addr: &str) -> Serve {
        Serve::spawn(d, key, lazarus_cmd(d), addr)
    }

    fn spawn(d: &Daemons, key: &str, mut cmd: Command, addr: &str) -> Serve {
        let addr = addr.to_string();
        let log = d.path(&format!("serve-{}.log", addr.replace(':', "-")));
        let child = cmd
            .args(["serve", "--listen", &addr, "--key", key])
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn lazarus serve");
        let serve = Serve { child, log, addr };
        wait_until("lazarus serve to listen", Duration::from_secs(20), || {
            serve.log().contains("listening on").then_some(())
        });
        serve
    }

    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Whether the agent still runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills the agent (a lost peer, as a test makes it).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A new key file on `d`, mode 0600 as `lazarus keygen` makes it.
pub fn keygen(d: &Daemons, name: &str) -> String {
    let path = d.path(name);
    lazarus(d, &["keygen", path.to_str().unwrap()]).ok();
    let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the key opens migrations: 0600");
    path.to_str().unwrap().to_string()
}

/// Scratch directories in memory of operations called `what` that the
/// CLI on `d` made (`memory_root(d)/WHAT-*`) whose owner is gone: one whose
/// owner just died goes within moments (its guard, or the next command,
/// removes it), so a caller polls.
pub fn dead_scratches_in_memory(d: &Daemons, what: &str) -> Vec<PathBuf> {
    scratches_in_memory(d, what, false)
}

/// Those whose owner is alive.
pub fn live_scratches_in_memory(d: &Daemons, what: &str) -> Vec<PathBuf> {
    scratches_in_memory(d, what, true)
}

fn scratches_in_memory(d: &Daemons, what: &str, alive: bool) -> Vec<PathBuf> {
    use nix::fcntl::{Flock, FlockArg};
    let prefix = format!("{what}-");
    let dirs = std::fs::read_dir(memory_root(d))
        .into_iter()
        .flatten()
        .flatten();
    dirs.filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .filter(|dir| {
            // No owner file: being made, or being removed by its owner.
            let Ok(owner) = std::fs::File::open(dir.join(".owner")) else {
                return false;
            };
            let free = Flock::lock(owner, FlockArg::LockExclusiveNonblock).is_ok();
            free != alive
        })
        .collect()
}
