//! The floors `lazarus migrate` is held to: raw CRIU moving the same
//! program across the same veth, measured in the same run.
//!
//! The workload runs as a plain process on host A, in a pid namespace of
//! its own (`unshare --pid --fork setsid PROGRAM`): a lazy restore happens
//! while the frozen source still holds its pids, on the same kernel, so the
//! restored tree needs pids of its own, and CRIU wants the session leader
//! inside the namespace it dumps. Host B is the benchmark's network
//! namespace (`nsenter --net=`); its CRIUs run there, its images in memory
//! (/dev/shm), as Lazarus's do. CRIU's small images go from A to B by a
//! local copy, which costs CRIU nothing a real move would charge it (the
//! same favour the Docker baseline gets).
//!
//! - `criu-lazy`: `criu dump --lazy-pages` with its page server on A's veth
//!   address; once it says it is ready, the images are copied, `criu
//!   lazy-pages --page-server` starts on B and connects to A, and `criu
//!   restore --lazy-pages -d` runs on B. Downtime: from the dump's start
//!   until the restore returned; total: until the dump ended, every page
//!   served.
//! - `criu-stopcopy`: `criu page-server -d` on B (started before the
//!   freeze, as Lazarus's agent starts its own), `criu dump --page-server`
//!   to it from A, the other images copied, `criu restore -d` on B.
//!   Downtime and total: all of it.
//! - `-tls`: the same with CRIU's own TLS (`--tls`, GnuTLS), on
//!   certificates openssl makes for the run (CRIU's `--tls-no-cn-verify`:
//!   one certificate for both hosts).
//!
//! Each move is checked: the program ticks on in B, and memhog's checksum
//! of its whole heap is the one it printed before the freeze.

use crate::common::workload::{du_bytes, mib, within, Kind};
use crate::common::{since, Samples};
use crate::support::harness::Daemons;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The raw paths, in the order the report shows them.
pub const PATHS: [&str; 4] = [
    "criu-lazy",
    "criu-lazy-tls",
    "criu-stopcopy",
    "criu-stopcopy-tls",
];

/// The port CRIU's page servers use (on A for lazy, on B for stop-copy).
const PORT: &str = "27430";

pub struct Raw {
    dir: PathBuf,
    memhog: PathBuf,
    /// CRIU's TLS options for the `-tls` paths.
    tls: Vec<String>,
    /// A's address on the veth, where a lazy dump's page server listens.
    a_addr: String,
    /// B's address, where a stop-copy's page server listens.
    b_addr: String,
    /// B's network namespace file, for `nsenter --net=`.
    b_net: String,
}

impl Raw {
    pub fn new(b: &Daemons) -> Raw {
        let ns = b.netns().expect("host B has a network of its own");
        let dir = PathBuf::from(format!("/dev/shm/lazarus-bmr-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let memhog = dir.join("memhog");
        let built = Command::new("gcc")
            .args(["-O2", "-static", "-o"])
            .arg(&memhog)
            .arg(crate::support::config::repo_root().join("test/images/memhog.c"))
            .status()
            .unwrap();
        assert!(built.success(), "building memhog for the raw paths");
        let tls = certificates(&dir.join("pki"), &[&ns.outside(), &ns.inside]);
        Raw {
            dir,
            memhog,
            tls,
            a_addr: ns.outside(),
            b_addr: ns.inside.clone(),
            b_net: ns.path(),
        }
    }

    /// One move of `w` by `path` (one of [`PATHS`]); samples under `key`.
    pub fn measure(&self, w: Kind, path: &str, size: u64, key: &str, s: &mut Samples) {
        let mut run = Run::new(self, w, size);
        let tls: &[String] = if path.ends_with("-tls") {
            &self.tls
        } else {
            &[]
        };
        if path.starts_with("criu-lazy") {
            run.lazy(self, tls, key, s);
        } else {
            run.stopcopy(self, tls, key, s);
        }
        run.check_moved(w);
    }

    /// `criu ARGS` on B.
    fn on_b(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net={}", self.b_net)).arg("criu");
        cmd
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One move: its directories, the source and whatever it started, all
/// killed when it ends (a failed move included).
struct Run {
    dir: PathBuf,
    log: PathBuf,
    /// The `unshare` that holds the source's pid namespace.
    holder: Child,
    /// The source program (its pid on the host).
    pid: String,
    /// What the last tick before the freeze said.
    before: String,
    children: Vec<Child>,
}

impl Run {
    fn new(raw: &Raw, w: Kind, size: u64) -> Run {
        let dir = raw.dir.join("run");
        let _ = fs::remove_dir_all(&dir);
        for d in ["img", "img2", "dwork", "work"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        let log = dir.join("out");
        let holder = Command::new("unshare")
            .args(["--pid", "--fork", "setsid"])
            .args(w.host_argv(&raw.memhog, size))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut run = Run {
            dir,
            log,
            pid: String::new(),
            holder,
            before: String::new(),
            children: Vec::new(),
        };
        let children = format!("/proc/{0}/task/{0}/children", run.holder.id());
        let found = within(10, || {
            run.pid = fs::read_to_string(&children)
                .unwrap_or_default()
                .trim()
                .to_string();
            !run.pid.is_empty()
        });
        assert!(found, "the raw workload did not start");
        let ready = within(300, || run.ticks().len() > 1);
        assert!(ready, "raw {}: no tick within 300 s", w.name());
        run.before = run.ticks().pop().unwrap();
        run
    }

    /// The workload's `tick` lines so far.
    fn ticks(&self) -> Vec<String> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("tick"))
            .map(String::from)
            .collect()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn lazy(&mut self, raw: &Raw, tls: &[String], key: &str, s: &mut Samples) {
        let status = self.path("dump.status");
        fs::write(&status, "").unwrap();
        let t = Instant::now();
        // CRIU says on --status-fd when its page server is ready.
        let mut dump = Command::new("sh");
        dump.args(["-c", "exec \"$@\" 9>\"$STATUS\"", "sh", "criu", "dump"])
            .args(tls)
            .args(["-t", &self.pid, "--lazy-pages", "--address"])
            .args([raw.a_addr.as_str(), "--port", PORT, "--status-fd", "9"])
            .args(["-o", "dump.log"])
            .env("STATUS", &status);
        self.in_dirs(&mut dump, "img", "dwork");
        let dump = self.spawn(dump);
        let ready = soon(120, || {
            fs::metadata(&status).is_ok_and(|m| m.len() > 0) || self.exited(dump)
        });
        assert!(
            ready && !self.exited(dump),
            "criu dump --lazy-pages failed (log in {})",
            self.path("dwork").display()
        );
        copy_images(&self.path("img"), &self.path("img2"));
        let mut daemon = raw.on_b();
        daemon
            .arg("lazy-pages")
            .args(tls)
            .args(["--page-server", "--address", &raw.a_addr, "--port", PORT])
            .args(["-o", "lazy.log"]);
        self.in_dirs(&mut daemon, "img2", "work");
        let daemon = self.spawn(daemon);
        let socket = self.path("work/lazy-pages.socket");
        assert!(
            soon(30, || socket.exists() || self.exited(daemon)) && socket.exists(),
            "criu lazy-pages did not start (log in {})",
            self.path("work").display()
        );
        self.restore(raw, &["--lazy-pages"]);
        s.add(&format!("{key}/down"), since(t));
        let served = soon(600, || self.exited(dump));
        assert!(
            served && self.succeeded(dump),
            "the lazy dump did not end well"
        );
        s.add(&format!("{key}/total"), since(t));
        // No stream size: the pages crossed between CRIU's own ends.
    }

    fn stopcopy(&mut self, raw: &Raw, tls: &[String], key: &str, s: &mut Samples) {
        // Listening before the freeze; -d returns once it listens.
        let mut server = raw.on_b();
        server
            .arg("page-server")
            .args(tls)
            .args(["--address", &raw.b_addr, "--port", PORT, "-d"])
            .arg("--pidfile")
            .arg(self.path("server.pid"))
            .args(["-o", "server.log"]);
        self.in_dirs(&mut server, "img2", "work");
        ok(&mut server, "criu page-server");
        let t = Instant::now();
        let mut dump = Command::new("criu");
        dump.arg("dump")
            .args(tls)
            .args(["-t", &self.pid, "--page-server", "--address", &raw.b_addr])
            .args(["--port", PORT, "-o", "dump.log"]);
        self.in_dirs(&mut dump, "img", "dwork");
        ok(&mut dump, "criu dump --page-server");
        copy_images(&self.path("img"), &self.path("img2"));
        self.restore(raw, &[]);
        let down = since(t);
        s.add(&format!("{key}/down"), down);
        s.add(&format!("{key}/total"), down);
        s.add(&format!("{key}/bytes"), mib(du_bytes(&self.path("img2"))));
    }

    /// `criu restore -d` on B from img2; must succeed.
    fn restore(&mut self, raw: &Raw, extra: &[&str]) {
        let mut restore = raw.on_b();
        restore
            .arg("restore")
            .args(extra)
            .args(["-d", "-o", "restore.log", "--pidfile"])
            .arg(self.path("restored.pid"));
        self.in_dirs(&mut restore, "img2", "work");
        ok(&mut restore, "criu restore");
    }

    /// The program runs on in B, with the memory it had (memhog's sum).
    fn check_moved(&self, w: Kind) {
        let n = self.ticks().len();
        assert!(
            within(60, || self.ticks().len() > n + 1),
            "the restored {} never ticked on",
            w.name()
        );
        let sum = |line: &str| line.split(" sum ").nth(1).map(String::from);
        if let Some(before) = sum(&self.before) {
            let after = sum(self.ticks().last().unwrap());
            assert_eq!(after, Some(before), "the restored heap's checksum");
        }
    }

    fn in_dirs(&self, cmd: &mut Command, images: &str, work: &str) {
        cmd.arg("-D")
            .arg(self.path(images))
            .arg("-W")
            .arg(self.path(work))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
    }

    fn spawn(&mut self, mut cmd: Command) -> usize {
        self.children.push(cmd.spawn().unwrap());
        self.children.len() - 1
    }

    fn exited(&mut self, child: usize) -> bool {
        !matches!(self.children[child].try_wait(), Ok(None))
    }

    fn succeeded(&mut self, child: usize) -> bool {
        matches!(self.children[child].try_wait(), Ok(Some(st)) if st.success())
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // The source's pid only while its namespace's holder lives: once
        // the dump ended it, the number may be someone else's.
        let mut pids = Vec::new();
        if matches!(self.holder.try_wait(), Ok(None)) {
            pids.push(self.pid.clone());
        }
        for file in ["restored.pid", "server.pid"] {
            pids.extend(fs::read_to_string(self.path(file)).ok());
        }
        for pid in pids.iter().map(|p| p.trim()).filter(|p| !p.is_empty()) {
            let _ = Command::new("kill")
                .args(["-9", pid])
                .stderr(Stdio::null())
                .status();
        }
        for child in self.children.iter_mut().chain([&mut self.holder]) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs `cmd`, which must succeed within 10 minutes (the moves take
/// seconds; a CRIU that hangs fails the measurement, not the run). Polled
/// every millisecond: the suite's runner polls every 20, which would add
/// up to a tenth of raw CRIU's downtime.
fn ok(cmd: &mut Command, what: &str) {
    let mut child = cmd.spawn().unwrap();
    let t = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if t.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: no end within 600 s");
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    assert!(status.success(), "{what} failed ({status})");
}

/// Waits until `probe` holds, at most `secs`, looking every millisecond
/// (the suite's `within` looks every 100: too coarse inside a downtime of
/// a few hundred); whether it did.
fn soon(secs: u64, mut probe: impl FnMut() -> bool) -> bool {
    let t = Instant::now();
    while !probe() {
        if t.elapsed() > Duration::from_secs(secs) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    true
}

/// Copies CRIU's images from A's directory into B's (a stop-copy's pages
/// are there already).
fn copy_images(from: &Path, to: &Path) {
    let copied = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .status()
        .unwrap();
    assert!(copied.success(), "copying the images to B");
}

/// A CA and one certificate it signed for `addresses`, in `dir`; CRIU's
/// TLS options that use them.
fn certificates(dir: &Path, addresses: &[&str]) -> Vec<String> {
    fs::create_dir_all(dir).unwrap();
    let f = |name: &str| dir.join(name).display().to_string();
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl").args(args).output().unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    };
    let subj = "/CN=lazarus-bench-ca";
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        subj,
        "-keyout",
        &f("ca.key"),
        "-out",
        &f("ca.crt"),
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=lazarus-bench",
        "-keyout",
        &f("key.pem"),
        "-out",
        &f("req.csr"),
    ]);
    let san: Vec<String> = addresses.iter().map(|a| format!("IP:{a}")).collect();
    fs::write(
        dir.join("ext"),
        format!("subjectAltName={}\n", san.join(",")),
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-days",
        "2",
        "-in",
        &f("req.csr"),
        "-CA",
        &f("ca.crt"),
        "-CAkey",
        &f("ca.key"),
        "-CAcreateserial",
        "-extfile",
        &f("ext"),
        "-out",
        &f("cert.pem"),
    ]);
    [
        "--tls",
        "--tls-cacert",
        &f("ca.crt"),
        "--tls-cert",
        &f("cert.pem"),
        "--tls-key",
        &f("key.pem"),
        "--tls-no-cn-verify",
    ]
    .map(String::from)
    .to_vec()
}
