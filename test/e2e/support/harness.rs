//! A private daemon set per test: containerd (and optionally dockerd) with
//! their own roots, sockets, logs, containerd namespace and cgroup parent,
//! all torn down in `Drop`, also when the test panics.

use crate::support::cleanup;
use crate::support::cmd::{run, Out, Proc};
use crate::support::config::{config, Config, IMAGE_CTR};
use crate::support::netns::Netns;
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(120);
/// In the daemons' environment, naming the set: every process they start
/// inherits it, which tells this set's processes from other tests'.
pub const SET_MARKER: &str = "LAZARUS_E2E_SET";

/// How a daemon set differs from the default one.
#[derive(Debug, Default, Clone)]
pub struct Setup {
    /// A Lazarus config file (TOML) for this set's shims: written to the
    /// set's directory and named by `LAZARUS_CONFIG` in containerd's
    /// environment, which shims inherit. runc's shim ignores it.
    pub lazarus_config: Option<String>,
    /// Makes containerd's CRI plugins' configuration (TOML, for the set's
    /// containerd version): when set, the CRI plugins are enabled with it
    /// (every other set runs containerd without CRI).
    pub cri_config: Option<fn(&Daemons) -> String>,
    /// Runs the set's daemons (and so its shims, CRIU and containers) in a
    /// network namespace of its own behind a veth pair: a second "host".
    pub own_network: bool,
}

pub struct Daemons {
    pub cfg: &'static Config,
    /// Unique short id: directory name, containerd namespace, cgroup parent.
    pub id: String,
    pub dir: PathBuf,
    test: String,
    /// The Lazarus config file given to containerd's environment, if any.
    lazarus_config: Option<PathBuf>,
    containerd: Option<Child>,
    dockerd: Option<Child>,
    /// Removed in `Drop`, after the daemons and their shims are gone (e.g.
    /// a Lazarus state root of the set's own).
    remove_on_drop: Vec<PathBuf>,
    /// Dropped after the daemons (fields drop after `Drop::drop`).
    netns: Option<Netns>,
}

fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    format!(
        "lz{}x{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

fn open_log(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open daemon log")
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Polls `probe` until it succeeds, failing early if the daemon died.
fn wait_ready(which: &str, child: &mut Child, log: &Path, probe: &mut Command) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        // A daemon still initialising may accept the connection and answer
        // late: a probe that hangs means "not ready yet", not a failure.
        let out = match Proc::spawn(probe).wait_or_kill(Duration::from_secs(10)) {
            Ok(out) if out.code == Some(0) => return,
            Ok(out) | Err(out) => out,
        };
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "{which} exited during start-up ({status}); log:\n{}",
                log_tail(log, 40)
            );
        }
        if Instant::now() >= deadline {
            panic!("{which} did not answer within {START_TIMEOUT:?}: {out}");
        }
        thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `sig` to a daemon and reaps it, escalating to SIGKILL after `grace`.
fn stop_child(child: &mut Child, sig: i32, grace: Duration) {
    unsafe { libc::kill(child.id() as i32, sig) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The host interface of the daemon set `id`'s bridge network (at most 15
/// characters: `b` + `lz<pid>x<n>`).
pub fn bridge_name(id: &str) -> String {
    format!("b{id}")
}

impl Daemons {
    /// A daemon set with containerd running (and no image yet).
    fn new(test: &str, setup: &Setup) -> Daemons {
        let cfg = config();
        let id = unique_id();
        let dir = cfg.base_dir.join(&id);
        fs::create_dir_all(&dir).expect("create daemon dir");
        fs::write(dir.join("test-name"), test).unwrap();
        let mut d = Daemons {
            cfg,
            id,
            dir,
            test: test.to_string(),
            lazarus_config: None,
            containerd: None,
            dockerd: None,
            remove_on_drop: Vec::new(),
            netns: None,
        };
        if setup.own_network {
            d.netns = Some(Netns::new(&d.id));
        }
        if let Some(text) = &setup.lazarus_config {
            let path = d.path("lazarus.toml");
            // `{SET_ID}` is the set's id (e.g. a state root of its own),
            // `{SET_DIR}` its directory (removed with it).
            let text = text
                .replace("{SET_ID}", &d.id)
                .replace("{SET_DIR}", &d.dir.to_string_lossy());
            fs::write(&path, text).unwrap();
            d.lazarus_config = Some(path);
        }
        let cri = setup.cri_config.map(|make| make(&d));
        let config = d.containerd_config(cri.as_deref());
        fs::write(d.path("containerd.toml"), config).unwrap();
        fs::create_dir_all(d.tmp_dir()).unwrap();
        d.start_containerd();
        d
    }

    /// containerd only, set up as `setup` says, with no image.
    pub fn bare(test: &str, setup: &Setup) -> Daemons {
        Daemons::new(test, setup)
    }

    /// containerd only, with the test image imported into the namespace.
    pub fn containerd_only(test: &str) -> Daemons {
        Daemons::containerd_only_with(test, &Setup::default())
    }

    /// [`Daemons::containerd_only`], set up as `setup` says.
    pub fn containerd_only_with(test: &str, setup: &Setup) -> Daemons {
        let d = Daemons::new(test, setup);
        let tar = d.cfg.image_oci_tar.to_str().unwrap();
        d.ctr(&["image", "import", tar]).ok();
        let images = d.ctr(&["image", "ls", "-q"]).ok();
        assert!(
            images.stdout.lines().any(|l| l == IMAGE_CTR),
            "image not imported: {images}"
        );
        d
    }

    /// containerd and dockerd, with the test image loaded into Docker.
    pub fn with_docker(test: &str) -> Daemons {
        Daemons::with_docker_with(test, &Setup::default())
    }

    /// [`Daemons::with_docker`], set up as `setup` says.
    pub fn with_docker_with(test: &str, setup: &Setup) -> Daemons {
        let mut d = Daemons::new(test, setup);
        d.start_dockerd();
        let tar = d.cfg.image_docker_tar.to_str().unwrap();
        d.docker(&["load", "-i", tar]).ok();
        d
    }

    /// Creates the Docker bridge network `net` (the private dockerd has no
    /// default bridge) on a /24 of its own; returns its name and the
    /// subnet's first three octets. The host reaches its containers by
    /// their addresses, from the host's network namespace.
    pub fn bridge_network(&self) -> (String, String) {
        let prefix = self.free_subnet("10.213");
        let bridge = bridge_name(&self.id);
        self.docker(&[
            "network",
            "create",
            "--subnet",
            &format!("{prefix}.0/24"),
            "-o",
            &format!("com.docker.network.bridge.name={bridge}"),
            "net",
        ])
        .ok();
        ("net".into(), prefix)
    }

    /// The first three octets of a /24 in `base`.0.0/16 that no route on
    /// the host uses yet (a leftover bridge with the same subnet would take
    /// the traffic), chosen from this set's id so concurrent sets differ.
    pub fn free_subnet(&self, base: &str) -> String {
        let seq: u32 = self.id.rsplit('x').next().unwrap().parse().unwrap();
        let routes = run(Command::new("ip").args(["-4", "route"])).ok().stdout;
        (0..250)
            .map(|i| format!("{base}.{}", (std::process::id() * 7 + seq + i) % 250 + 1))
            .find(|p| !routes.contains(&format!("{p}.0/24")))
            .unwrap_or_else(|| panic!("no free {base}.x.0/24"))
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The daemons' TMPDIR.
    pub fn tmp_dir(&self) -> PathBuf {
        self.path("tmp")
    }

    pub fn containerd_sock(&self) -> PathBuf {
        self.path("c.sock")
    }

    /// A container/task name unique to this daemon set.
    pub fn name(&self, what: &str) -> String {
        format!("{what}-{}", self.id)
    }

    pub fn runtime(&self) -> &str {
        &self.cfg.runtime
    }

    /// Whether this set runs Lazarus (else the reference, runc's shim).
    pub fn is_lazarus(&self) -> bool {
        self.runtime() == "io.containerd.lazarus.v2"
    }

    fn containerd_config(&self, cri: Option<&str>) -> String {
        let (version, mut disabled) = match self.cfg.containerd_version.as_str() {
            "1.7" => (2, r#"["io.containerd.grpc.v1.cri"]"#),
            _ => (
                3,
                r#"["io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime", "io.containerd.grpc.v1.cri"]"#,
            ),
        };
        if cri.is_some() {
            disabled = "[]";
        }
        let (root, state, sock) = (
            self.path("root"),
            self.path("state"),
            self.containerd_sock(),
        );
        format!(
            "version = {version}\nroot = {root:?}\nstate = {state:?}\ndisabled_plugins = {disabled}\n\n\
             [grpc]\n  address = {sock:?}\n\n[ttrpc]\n  address = \"{}.ttrpc\"\n\n\
             [debug]\n  level = \"debug\"\n\n{}",
            sock.display(),
            cri.unwrap_or_default()
        )
    }

    /// The set's own network namespace, if it was made with one.
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    fn spawn_daemon(&self, program: &Path, args: &[&str], log: &str) -> Child {
        let log = open_log(&self.path(log));
        // nsenter execs the daemon: the child's pid is the daemon's.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("nsenter");
                c.arg(format!("--net={}", ns.path())).arg("--").arg(program);
                c
            }
            None => Command::new(program),
        };
        if let Some(config) = &self.lazarus_config {
            cmd.env("LAZARUS_CONFIG", config);
        }
        cmd.args(args)
            .env(SET_MARKER, &self.id)
            // containerd unpacks checkpoint images into temporary
            // directories: the set's own, so a test sees only its own.
            .env("TMPDIR", self.tmp_dir())
            // containerd puts the directories it dumps checkpoints into in
            // $XDG_RUNTIME_DIR (os.MkdirTemp(os.Getenv("XDG_RUNTIME_DIR"),
            // "ctrd-checkpoint")): the set's own too.
            .env("XDG_RUNTIME_DIR", self.tmp_dir())
            .env("PATH", &self.cfg.daemon_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()))
    }

    pub fn start_containerd(&mut self) {
        assert!(self.containerd.is_none(), "containerd already running");
        let config = self.path("containerd.toml");
        let child = self.spawn_daemon(
            &self.cfg.containerd,
            &["--config", config.to_str().unwrap()],
            "containerd.log",
        );
        let (mut probe, log) = (self.ctr_cmd(&["version"]), self.path("containerd.log"));
        wait_ready(
            "containerd",
            self.containerd.insert(child),
            &log,
            &mut probe,
        );
    }

    /// Stops containerd with `sig` (SIGTERM for a clean stop) and reaps it.
    pub fn stop_containerd(&mut self, sig: i32) {
        let mut child = self.containerd.take().expect("containerd not running");
        stop_child(&mut child, sig, Duration::from_secs(20));
    }

    fn start_dockerd(&mut self) {
        let p = |n: &str| self.path(n).to_str().unwrap().to_string();
        let json = serde_json::json!({
            "hosts": [format!("unix://{}", p("d.sock"))],
            "containerd": p("c.sock"),
            "data-root": p("docker"),
            "exec-root": p("dx"),
            "pidfile": p("dockerd.pid"),
            "experimental": true,
            "iptables": false,
            "ip-masq": false,
            "bridge": "none",
            "storage-driver": "overlay2",
            // As scripts/install.sh registers it: `docker run --runtime lazarus`.
            "runtimes": {"lazarus": {"runtimeType": "io.containerd.lazarus.v2"}},
            // Absolute: a relative parent would land under the shim's own cgroup.
            "cgroup-parent": format!("/{}", self.id),
        });
        fs::write(
            self.path("daemon.json"),
            serde_json::to_string_pretty(&json).unwrap(),
        )
        .unwrap();
        let args = ["--config-file", &p("daemon.json")];
        let child = self.spawn_daemon(&self.cfg.dockerd, &args, "dockerd.log");
        let mut probe = self.docker_cmd(&["version", "--format", "{{.Server.Version}}"]);
        let log = self.path("dockerd.log");
        wait_ready("dockerd", self.dockerd.insert(child), &log, &mut probe);
    }

    /// Removes `path` (recursively, unmounting what is under it) when the
    /// set is torn down, after its processes are gone.
    pub fn remove_on_drop(&mut self, path: PathBuf) {
        self.remove_on_drop.push(path);
    }

    /// A simulated reboot of the set's host: every container and shim
    /// killed, dockerd and containerd killed (no clean stop), their
    /// run-time state (containerd's state directory, dockerd's exec root,
    /// the sockets, every mount) and the paths in `wipe` (e.g. a Lazarus
    /// state root) removed, as a reboot empties /run; then the daemons
    /// started afresh on their persistent roots.
    pub fn reboot(&mut self, wipe: &[&Path]) {
        cleanup::kill_cgroup_processes(&self.id);
        let docker = self.dockerd.is_some();
        if let Some(mut c) = self.dockerd.take() {
            stop_child(&mut c, libc::SIGKILL, Duration::from_secs(10));
        }
        if let Some(mut c) = self.containerd.take() {
            stop_child(&mut c, libc::SIGKILL, Duration::from_secs(10));
        }
        cleanup::kill_mentioning(&self.dir);
        cleanup::kill_cgroup_processes(&self.id);
        cleanup::unmount_all_under(&self.dir);
        for dir in ["state", "dx"] {
            let _ = fs::remove_dir_all(self.path(dir));
        }
        for file in ["c.sock", "c.sock.ttrpc", "d.sock", "dockerd.pid"] {
            let _ = fs::remove_file(self.path(file));
        }
        for p in wipe {
            cleanup::unmount_all_under(p);
            let _ = fs::remove_dir_all(p);
        }
        self.start_containerd();
        if docker {
            self.start_dockerd();
        }
    }

    /// `ctr -a <sock> -n <namespace> ARGS` (not yet run).
    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        self.ctr_cmd_ns(&self.id, args)
    }

    pub fn ctr_cmd_ns(&self, ns: &str, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cfg.ctr);
        c.arg("-a")
            .arg(self.containerd_sock())
            .args(["-n", ns])
            .args(args);
        c
    }

    /// `docker -H unix://<sock> ARGS` (not yet run).
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.cfg.docker);
        c.arg("-H")
            .arg(format!("unix://{}", self.path("d.sock").display()))
            .args(args);
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Out {
        run(&mut self.ctr_cmd(args))
    }

    /// Whether the set runs a dockerd (else containerd only).
    pub fn has_docker(&self) -> bool {
        self.dockerd.is_some()
    }

    pub fn docker(&self, args: &[&str]) -> Out {
        run(&mut self.docker_cmd(args))
    }

    /// Full argv of a client command, for tmux and shell pipelines.
    pub fn argv(cmd: &Command) -> Vec<String> {
        std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    /// Live processes whose name starts with `comm` that descend from
    /// this set's daemons (shims, runc, CRIU, restored tasks). A process
    /// is the set's when it or an ancestor carries the set's marker in its
    /// environment (CRIU overwrites its own environment with its title).
    pub fn processes_named(&self, comm: &str) -> Vec<i32> {
        let marker = format!("{SET_MARKER}={}", self.id);
        let has_marker = |pid: i32| {
            let env = fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            env.split(|&b| b == 0).any(|v| v == marker.as_bytes())
        };
        let mut found = Vec::new();
        for entry in fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let name = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if !name.trim().starts_with(comm) {
                continue;
            }
            if cleanup::ancestry(pid).into_iter().any(has_marker) {
                found.push(pid);
            }
        }
        found
    }

    /// The pid of this set's containerd.
    pub fn containerd_pid(&self) -> i32 {
        self.containerd
            .as_ref()
            .map(|c| c.id() as i32)
            .expect("this set's containerd runs")
    }

    /// Live shim processes serving this daemon set's containerd.
    pub fn shim_pids(&self) -> Vec<i32> {
        let needle = format!("-address {}", self.containerd_sock().display());
        cleanup::pids_mentioning(&needle)
            .into_iter()
            .filter(|&p| cleanup::alive(p))
            .collect()
    }

    fn report_failure(&self) {
        let keep = self
            .cfg
            .base_dir
            .join("failed")
            .join(format!("{}-{}", self.test, self.id));
        let _ = fs::create_dir_all(&keep);
        for log in ["containerd.log", "dockerd.log"] {
            let path = self.path(log);
            if path.exists() {
                let _ = fs::copy(&path, keep.join(log));
                eprintln!(
                    "===== tail of {log} ({}) =====\n{}",
                    self.test,
                    log_tail(&path, 60)
                );
            }
        }
        // CRIU's logs in the shims' work directories say why a dump or a
        // restore failed; the daemon set's directory is purged right after.
        for log in criu_logs(&self.path("state"), 6) {
            let name = log
                .strip_prefix(&self.dir)
                .unwrap_or(&log)
                .to_string_lossy()
                .replace('/', "_");
            let _ = fs::copy(&log, keep.join(&name));
            eprintln!(
                "===== tail of {} ({}) =====\n{}",
                log.display(),
                self.test,
                log_tail(&log, 30)
            );
        }
        eprintln!("===== daemon logs kept in {} =====", keep.display());
    }
}

/// `docker inspect -f FORMAT NAME` against the set's dockerd, trimmed.
pub fn inspect(d: &Daemons, name: &str, format: &str) -> String {
    d.docker(&["inspect", "-f", format, name])
        .ok()
        .text()
        .to_string()
}

/// CRIU's dump and restore logs under `dir`, at most `depth` levels down,
/// not entering container root filesystems.
fn criu_logs(dir: &Path, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        if is_dir && depth > 0 && name != "rootfs" {
            found.extend(criu_logs(&path, depth - 1));
        } else if !is_dir && (name == "dump.log" || name == "restore.log") {
            found.push(path);
        }
    }
    found
}

impl Drop for Daemons {
    fn drop(&mut self) {
        if thread::panicking() {
            self.report_failure();
        }
        // Containers first (fast, and frozen ones are thawed), then the
        // daemons, then whatever is left.
        cleanup::kill_cgroup_processes(&self.id);
        if let Some(mut c) = self.dockerd.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(20));
        }
        if let Some(mut c) = self.containerd.take() {
            stop_child(&mut c, libc::SIGTERM, Duration::from_secs(20));
        }
        cleanup::purge(&self.dir, &self.id);
        // The CLI's images in memory (its config's `memory_root`).
        let memory = crate::support::lazarus::memory_root(self);
        cleanup::unmount_all_under(&memory);
        let _ = fs::remove_dir_all(&memory);
        for p in &self.remove_on_drop {
            cleanup::unmount_all_under(p);
            let _ = fs::remove_dir_all(p);
        }
    }
}
