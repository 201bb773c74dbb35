//! The checkpoint benchmark's paths: Docker, ctr, the direct image path and
//! raw CRIU, each one measurement of one workload and size.

use crate::common::workload::{self, docker, start_checkpoint, ticks, Kind, MIXED_FILL};
use crate::common::{since, sync, Samples, LAZARUS, RUNC};
use crate::support::apps::image_dir;
use crate::support::config::repo_root;
use crate::support::harness::Daemons;
use crate::support::lazarus::lazarus_cmd;
use serde_json::Value;
use std::fs;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const CPUACCT: &str = "/sys/fs/cgroup/cpuacct";

/// The benchmark's own cpuacct cgroup (cgroup v1): user + system time of
/// everything it starts. None where there is no such controller.
pub struct Cpu(Option<PathBuf>);

impl Cpu {
    /// Moves this process into a new cpuacct cgroup, so that what it starts
    /// from now on is counted.
    pub fn enter() -> Cpu {
        let dir = PathBuf::from(CPUACCT).join(format!("lazarus-bench-{}", std::process::id()));
        let entered = fs::create_dir(&dir).is_ok()
            && fs::write(dir.join("cgroup.procs"), std::process::id().to_string()).is_ok();
        if !entered {
            eprintln!(
                "[bench] no cpuacct cgroup at {}: the CPU columns stay empty",
                dir.display()
            );
        }
        Cpu(entered.then_some(dir))
    }

    fn nanos(&self) -> Option<u64> {
        let text = fs::read_to_string(self.0.as_ref()?.join("cpuacct.usage")).ok()?;
        text.trim().parse().ok()
    }
}

impl Drop for Cpu {
    fn drop(&mut self) {
        if let Some(dir) = &self.0 {
            let _ = fs::write(
                PathBuf::from(CPUACCT).join("cgroup.procs"),
                std::process::id().to_string(),
            );
            let _ = fs::remove_dir(dir);
        }
    }
}

pub struct Bench<'a> {
    d: &'a Daemons,
    cpu: Cpu,
    /// Where the direct and raw paths keep their images.
    images_at: PathBuf,
    memhog: PathBuf,
}

impl<'a> Bench<'a> {
    pub fn new(d: &'a Daemons, cpu: Cpu, images_at: &str) -> Bench<'a> {
        let images_at =
            PathBuf::from(images_at).join(format!("lazarus-bcp-{}", std::process::id()));
        fs::create_dir_all(&images_at).unwrap();
        fs::write(
            images_at.join("direct.toml"),
            format!("work_root = {:?}\n", images_at.join("work")),
        )
        .unwrap();
        // The images, for ctr: the busybox test image and the warm image's Python.
        let warm = image_dir().join("warm-oci.tar");
        d.ctr(&["image", "import", warm.to_str().unwrap()]).ok();
        d.ctr(&["image", "import", d.cfg.image_oci_tar.to_str().unwrap()])
            .ok();
        let memhog = images_at.join("memhog");
        let built = Command::new("gcc")
            .args(["-O2", "-static", "-o"])
            .arg(&memhog)
            .arg(repo_root().join("test/images/memhog.c"))
            .status()
            .unwrap();
        assert!(built.success(), "building memhog for the raw path");
        Bench {
            d,
            cpu,
            images_at,
            memhog,
        }
    }

    /// One measurement of `path`, for both runtimes where it has both.
    pub fn measure(&self, path: &str, kind: Kind, size: u64, s: &mut Samples) {
        let prefix = |rt: &str| format!("{}/{size}/{path}/{rt}", kind.name());
        let ok = match path {
            "docker" | "ctr" => [RUNC, LAZARUS].iter().all(|rt| {
                s.measure(&prefix(rt), |s| match path {
                    "docker" => self.docker(kind, rt, size, &prefix(rt), s),
                    _ => self.ctr(kind, rt, size, &prefix(rt), s),
                })
            }),
            "direct" => s.measure(&prefix(LAZARUS), |s| {
                self.direct(kind, size, &prefix(LAZARUS), s)
            }),
            "raw" => s.measure(&prefix("-"), |s| self.raw(kind, size, &prefix("-"), s)),
            _ => panic!("unknown path {path:?} (docker, ctr, direct, raw)"),
        };
        if !ok {
            self.clear();
        }
    }

    /// Runs `f` after a sync (the step before's dirty pages are written back
    /// before the clock starts); records its wall and CPU seconds.
    fn timed<T>(&self, s: &mut Samples, key: &str, f: impl FnOnce() -> T) -> T {
        sync();
        let (t, c) = (Instant::now(), self.cpu.nanos());
        let out = f();
        s.add(&format!("{key}/wall"), since(t));
        if let (Some(c0), Some(c1)) = (c, self.cpu.nanos()) {
            s.add(&format!("{key}/cpu"), (c1 - c0) as f64 / 1e9);
        }
        out
    }

    fn docker(&self, kind: Kind, rt: &str, size: u64, key: &str, s: &mut Samples) {
        let d = self.d;
        let name = workload::unique("b");
        workload::start(d, kind, rt, &name, size);
        self.timed(s, &format!("{key}/cp"), || {
            docker(d, &["checkpoint", "create", &name, "cp"])
        });
        let bytes = workload::du_bytes(&workload::checkpoints_dir(d, &name).join("cp"));
        s.add(&format!("{key}/size"), workload::mib(bytes));
        let before = ticks(d, &name);
        thread::sleep(Duration::from_secs(3)); // Docker re-uploads the blob: too soon is "already exists"
        self.timed(s, &format!("{key}/rst"), || {
            start_checkpoint(d, "cp", &name)
        });
        workload::wait_works(d, kind, &name, before, 60);
        docker(d, &["rm", "-f", &name]);
    }

    fn ctr(&self, kind: Kind, rt: &str, size: u64, key: &str, s: &mut Samples) {
        let d = self.d;
        let id = workload::unique("c");
        let (restored, image) = (format!("{id}-r"), format!("bench/{id}:cp"));
        self.ctr_workload(kind, rt, size, &id);
        self.timed(s, &format!("{key}/cp"), || {
            d.ctr(&["container", "checkpoint", "--rw", "--task", &id, &image])
                .ok()
        });
        let before = self.ctr_count(kind, &id, "tick");
        self.remove_ctr(&id);
        self.timed(s, &format!("{key}/rst"), || {
            d.ctr(&["container", "restore", "--live", "--rw", &restored, &image])
                .ok()
        });
        self.wait_ctr_ticks(kind, &restored, before);
        self.remove_ctr(&restored);
        let _ = d.ctr(&["container", "delete", &id, &restored]);
        let _ = d.ctr(&["image", "rm", &image]);
    }

    fn direct(&self, kind: Kind, size: u64, key: &str, s: &mut Samples) {
        let d = self.d;
        let id = workload::unique("d");
        let file = self.images_at.join(format!("{id}.tar"));
        let file = file.to_str().unwrap();
        self.ctr_workload(kind, LAZARUS, size, &id);
        let before = self.ctr_count(kind, &id, "tick");
        let (c0, report) = (
            self.cpu.nanos(),
            self.lazarus(&[
                "checkpoint",
                "-n",
                &d.id,
                &id,
                "--export",
                file,
                "--compress",
                "none",
                "--json",
            ]),
        );
        s.add(
            &format!("{key}/cp/wall"),
            report["checkpoint_seconds"]
                .as_f64()
                .expect("checkpoint_seconds"),
        );
        self.add_cpu(s, &format!("{key}/cp"), c0);
        let _ = d.ctr(&["task", "delete", &id]);
        d.ctr(&["container", "delete", &id]).ok();
        let (c0, report) = (
            self.cpu.nanos(),
            self.lazarus(&["restore", "-n", &d.id, "--import", file, "--json"]),
        );
        let seconds = |k: &str| {
            report[k]
                .as_f64()
                .unwrap_or_else(|| panic!("{k} in {report}"))
        };
        s.add(
            &format!("{key}/rst/wall"),
            seconds("restore_seconds") - seconds("extract_seconds"),
        );
        self.add_cpu(s, &format!("{key}/rst"), c0);
        self.wait_ctr_ticks(kind, &id, before);
        self.remove_ctr(&id);
        let _ = d.ctr(&["container", "delete", &id]);
        let _ = fs::remove_file(file);
    }

    fn raw(&self, kind: Kind, size: u64, key: &str, s: &mut Samples) {
        let dir = self.images_at.join("raw");
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("img")).unwrap();
        let log = dir.join("out");
        let mut child = self.spawn_raw(kind, size, &log);
        let pid = child.id().to_string();
        let ticks = || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .filter(|l| l.starts_with("tick"))
                .count()
        };
        let ready = workload::within(300, || {
            fs::read_to_string(&log)
                .unwrap_or_default()
                .starts_with("ready")
        });
        assert!(ready, "raw {}: not ready within 300 s", kind.name());
        let img = dir.join("img");
        let criu = |args: &[&str]| {
            let out = Command::new("criu")
                .args(args)
                .arg("-D")
                .arg(&img)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "criu {args:?} failed (log in {})",
                img.display()
            );
        };
        self.timed(s, &format!("{key}/cp"), || {
            criu(&["dump", "-t", &pid, "-o", "dump.log"])
        });
        let _ = child.wait(); // the dumped process is gone; its pid must be free for the restore
        s.add(
            &format!("{key}/size"),
            workload::mib(workload::du_bytes(&img)),
        );
        let before = ticks();
        self.timed(s, &format!("{key}/rst"), || {
            criu(&["restore", "-d", "-o", "restore.log"])
        });
        // The restored program (same pid) writes on to the same file.
        let ticked = workload::within(60, || ticks() > before);
        let _ = Command::new("kill").args(["-9", &pid]).status();
        assert!(ticked, "the restored program never ticked on");
        let _ = fs::remove_dir_all(&dir);
    }

    fn spawn_raw(&self, kind: Kind, size: u64, log: &std::path::Path) -> Child {
        Command::new("setsid")
            .args(kind.host_argv(&self.memhog, size))
            .stdin(Stdio::null())
            .stdout(fs::File::create(log).unwrap())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// `lazarus ARGS` with the direct path's config; its --json report.
    fn lazarus(&self, args: &[&str]) -> Value {
        let mut cmd = lazarus_cmd(self.d);
        cmd.env("LAZARUS_CONFIG", self.images_at.join("direct.toml"))
            .args(args);
        let out = crate::support::cmd::run_timeout(&mut cmd, None, Duration::from_secs(600)).ok();
        serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("lazarus {args:?}: {e}: {out}"))
    }

    fn add_cpu(&self, s: &mut Samples, key: &str, c0: Option<u64>) {
        if let (Some(c0), Some(c1)) = (c0, self.cpu.nanos()) {
            s.add(&format!("{key}/cpu"), (c1 - c0) as f64 / 1e9);
        }
    }

    /// Runs `kind` as ctr container `id`, writing its lines to /tmp/ticks
    /// in the rw layer; waits until it is ready.
    fn ctr_workload(&self, kind: Kind, rt: &str, size: u64, id: &str) {
        let memhog = format!(
            "memhog {} > /tmp/ticks",
            kind.memhog_args(size).unwrap_or_default()
        );
        let size = size.to_string();
        let mut args = vec!["run", "-d", "--runtime", rt];
        let python = "import sys; sys.stdout = open('/tmp/ticks', 'w', 1); exec(sys.argv.pop(1))";
        match kind {
            Kind::Random | Kind::Zero => args.extend([
                "docker.io/lazarus-test/busybox:latest",
                id,
                "sh",
                "-c",
                &memhog,
            ]),
            _ => args.extend([
                "docker.io/lazarus-test/warm:latest",
                id,
                "python3.11",
                "-c",
                python,
                MIXED_FILL,
                &size,
            ]),
        }
        self.d.ctr(&args).ok();
        let ready = workload::within(300, || self.ctr_count(kind, id, "ready") > 0);
        assert!(ready, "{id} not ready within 300 s");
    }

    /// How many lines of the container's /tmp/ticks start with `what`,
    /// read with the image's own tools (the warm image has no grep).
    fn ctr_count(&self, kind: Kind, id: &str, what: &str) -> usize {
        static EXECS: AtomicU32 = AtomicU32::new(0);
        let exec_id = format!("c{}", EXECS.fetch_add(1, Ordering::Relaxed));
        let grep = format!("^{what}");
        let python = format!("print(sum(l.startswith('{what}') for l in open('/tmp/ticks')))");
        let count: Vec<&str> = match kind {
            Kind::Random | Kind::Zero => vec!["grep", "-c", &grep, "/tmp/ticks"],
            _ => vec!["python3.11", "-c", &python],
        };
        let mut args = vec!["task", "exec", "--exec-id", &exec_id, id];
        args.extend(count);
        let out = self.d.ctr(&args);
        out.stdout
            .lines()
            .last()
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(0)
    }

    fn wait_ctr_ticks(&self, kind: Kind, id: &str, before: usize) {
        let ticked = workload::within(60, || self.ctr_count(kind, id, "tick") > before);
        assert!(
            ticked,
            "the restored {id} never ticked on (still {before} ticks after 60 s)"
        );
    }

    fn remove_ctr(&self, id: &str) {
        let _ = self.d.ctr(&["task", "kill", "-s", "KILL", id]);
        thread::sleep(Duration::from_secs(1));
        let _ = self.d.ctr(&["task", "delete", id]);
    }

    /// After a failed measurement: whatever it left goes.
    fn clear(&self) {
        workload::remove_all(self.d);
        let tasks = self.d.ctr(&["task", "ls", "-q"]).stdout;
        for id in tasks.split_whitespace() {
            let _ = self.d.ctr(&["task", "kill", "-s", "KILL", id]);
            let _ = self.d.ctr(&["task", "delete", "-f", id]);
        }
        let containers = self.d.ctr(&["container", "ls", "-q"]).stdout;
        for id in containers.split_whitespace() {
            let _ = self.d.ctr(&["container", "delete", id]);
        }
        let _ = fs::remove_dir_all(self.images_at.join("raw"));
    }
}

impl Drop for Bench<'_> {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.images_at);
    }
}
