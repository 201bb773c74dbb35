//! The containerd-shim `Shim`: bootstrap (`start`), clean-up after a dead
//! shim (`delete`), and building the task service when serving.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{api::DeleteResponse, ExitSignal, Flags, StartOpts};
use containerd_shim_protos::protobuf::MessageField;

use crate::config::Config;
use crate::events::ContainerdSink;
use crate::group_lock;
use crate::process::timestamp;
use crate::runtime::{LibcontainerRuntime, Runtime};
use crate::service::{Settings, TaskService};
use crate::task::TaskRpc;
use lazarus_core::criu::SwrkCriu;

pub const RUNTIME_ID: &str = "io.containerd.lazarus.v2";

pub struct LazarusShim {
    namespace: String,
    id: String,
    bundle: PathBuf,
    config: Config,
    exit: Arc<ExitSignal>,
    /// containerd runs at debug level (`-debug`).
    debug: bool,
}

fn shim_error(e: impl std::fmt::Display) -> containerd_shim::Error {
    containerd_shim::Error::Other(e.to_string())
}

impl LazarusShim {
    fn runtime(&self) -> crate::error::Result<LibcontainerRuntime> {
        LibcontainerRuntime::new(
            self.config.state_root(&self.namespace)?,
            self.config.log_level.clone(),
        )
    }
}

impl containerd_shim::Shim for LazarusShim {
    type T = TaskRpc;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut containerd_shim::Config) -> Self {
        let config = Config::load().unwrap_or_else(|e| {
            eprintln!("{RUNTIME_ID}: {e}; using defaults");
            Config::default()
        });
        let bundle = if args.bundle.is_empty() {
            std::env::current_dir().unwrap_or_default()
        } else {
            PathBuf::from(&args.bundle)
        };
        LazarusShim {
            namespace: args.namespace.clone(),
            id: args.id.clone(),
            bundle,
            config,
            exit: Arc::default(),
            debug: args.debug,
        }
    }

    fn start_shim(&mut self, opts: StartOpts) -> containerd_shim::Result<String> {
        // Both become path components (state root, logs, helper files):
        // refuse them here, where containerd shows the error to its client,
        // rather than in the serving shim, which could only die.
        for (kind, value) in [("namespace", &opts.namespace), ("container id", &opts.id)] {
            lazarus_core::ids::check_component(kind, value)
                .map_err(|e| containerd_shim::Error::InvalidArgument(e.to_string()))?;
        }
        let shim_cgroup = shim_cgroup_from_stdin()?;
        // One shim per group: a pod's containers (CRI's sandbox id) share
        // one, as runc's shim does; any other container gets its own.
        let Some(group) = grouping_key(Path::new("config.json")) else {
            let id = opts.id.clone();
            let (pid, address) = containerd_shim::spawn(opts, &id, Vec::new())?;
            adjust_oom_score(pid);
            place_in_cgroup(pid, shim_cgroup.as_deref())?;
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        };
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &group);
        // One start per group at a time, so that a second container finds
        // the first one's shim serving rather than racing it. The group's
        // shim is reused here: containerd-shim's own reuse (a new server
        // process that finds the socket taken and exits) leaves this start
        // process spinning in its SIGCHLD handler.
        let name = address.rsplit('/').next().unwrap_or("group");
        let _lock = group_lock::lock(&self.config.root.join("groups"), name, GROUP_LOCK_TIMEOUT)
            .map_err(|e| {
                containerd_shim::Error::Other(format!("lock the shim group {name}: {e}"))
            })?;
        if shim_answers(&address) {
            containerd_shim::util::write_address(&address)?;
            return Ok(address);
        }
        let (pid, address) = containerd_shim::spawn(opts, &group, Vec::new())?;
        adjust_oom_score(pid);
        place_in_cgroup(pid, shim_cgroup.as_deref())?;
        containerd_shim::util::write_address(&address)?;
        Ok(address)
    }

    /// containerd calls this when the shim died: kill and remove whatever is
    /// left of the container, unmount its rootfs, and report it killed.
    ///
    /// containerd kills this after 5 s, so the quick and sure steps come
    /// first: CRIU's yard and containerd's copy of a restore under way, then
    /// the cgroup (a bounded wait for its processes), then the runtime.
    fn delete_shim(&mut self) -> containerd_shim::Result<DeleteResponse> {
        lazarus_core::checkpoint::restore::clean_after_dead_shim(&self.bundle);
        let runtime = self.runtime().map_err(shim_error)?;
        if let Err(e) = runtime.kill(&self.id, libc::SIGKILL, true) {
            log::debug!("delete: kill {}: {e}", self.id);
        }
        if let Err(e) = runtime.delete(&self.id, &self.bundle, true) {
            eprintln!("delete {}: {e}", self.id);
        }
        // A shim that died mid-restore leaves no runtime state (the restored
        // init was never adopted), so the runtime's delete cannot find the
        // cgroup CRIU made: kill and remove it by the spec's path.
        if let Ok(spec) = crate::container::load_spec(&self.bundle) {
            let cgroup = lazarus_core::host::cgroup::path_of(&spec, &self.id);
            let left = lazarus_core::host::cgroup::kill_all(&cgroup, Duration::from_secs(3));
            if !left.is_empty() {
                eprintln!("delete {}: processes {left:?} survive SIGKILL", self.id);
            }
            lazarus_core::host::cgroup::remove(&cgroup);
        }
        let rootfs = self.bundle.join("rootfs");
        if rootfs.exists() {
            crate::container::unmount_rootfs(&rootfs);
        }
        Ok(DeleteResponse {
            pid: 0,
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: MessageField::some(timestamp(SystemTime::now())),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> TaskRpc {
        init_logger(self.debug, &self.config.log_level);
        // Subscribe to the reaper before anything can spawn a child.
        let exits =
            containerd_shim::monitor::monitor_subscribe(containerd_shim::monitor::Topic::Pid)
                .expect("subscribe to child exits");
        let runtime: Arc<dyn Runtime> = Arc::new(self.runtime().unwrap_or_else(|e| {
            log::error!("cannot set up the runtime: {e}");
            panic!("cannot set up the runtime: {e}")
        }));
        let address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
        let events = Arc::new(ContainerdSink::new(
            publisher,
            address,
            self.namespace.clone(),
        ));
        let criu = Arc::new(SwrkCriu {
            binary: self.config.criu_path.clone(),
            limits: self.config.criu_limits(),
            waiter: Box::new(crate::reaper::ReaperWait),
        });
        let settings = Settings {
            namespace: self.namespace.clone(),
            console_dir: self.config.console_dir(),
            checkpoint_exit: self.config.checkpoint_exit.clone(),
            // Checked by start_shim, which launched this process.
            logs: self.config.logs_dir(&self.namespace).unwrap_or_else(|e| {
                log::error!("{e}");
                panic!("{e}")
            }),
            compress_pages: self.config.compress_pages,
            restore_scratch: self.config.restore_scratch(),
            store_docker_checkpoints: self.config.docker_checkpoints
                == lazarus_core::config::DockerCheckpoints::Store,
            store_root: self.config.store_root.clone(),
            memory_root: self.config.memory_root.clone(),
        };
        let service = Arc::new(TaskService::new(
            runtime,
            criu,
            events,
            settings,
            self.exit.clone(),
        ));
        let watcher = service.clone();
        std::thread::Builder::new()
            .name("exits".into())
            .spawn(move || {
                for event in exits.rx.iter() {
                    let containerd_shim::monitor::Subject::Pid(pid) = event.subject else {
                        continue;
                    };
                    // Whose exit it is, in the reaper's order; the rest (a
                    // kill of survivors, a drain of up to 2 s) on a thread
                    // of its own, so that exits are handled concurrently.
                    let Some(exit) = watcher.claim_exit(pid, event.exit_code) else {
                        continue;
                    };
                    let service = watcher.clone();
                    let exit = std::sync::Arc::new(std::sync::Mutex::new(Some(exit)));
                    let handed = exit.clone();
                    let spawned =
                        std::thread::Builder::new()
                            .name("exit".into())
                            .spawn(move || {
                                if let Some(e) = handed.lock().unwrap().take() {
                                    service.finish_exit(e);
                                }
                            });
                    if spawned.is_err() {
                        // No thread to be had: here, as before.
                        if let Some(e) = exit.lock().unwrap().take() {
                            watcher.finish_exit(e);
                        }
                    }
                }
            })
            .expect("spawn exit watcher");
        TaskRpc(service)
    }
}

/// The annotations that put containers into one shim (checked in this
/// order): Lazarus's own, and the pod sandbox id containerd's CRI sets on
/// every container of a pod.
const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.lazarus.v2.group",
    "io.kubernetes.cri.sandbox-id",
];

/// The serving shim's logger ([`crate::log_fifo`]), at the configured
/// level (`RUST_LOG` first, as containerd-shim reads it), debug when
/// containerd runs at debug.
fn init_logger(debug: bool, log_level: &str) {
    let Ok(logger) = crate::log_fifo::FifoLog::open("log") else {
        return; // nobody reads: no logger (as containerd-shim's init fails)
    };
    if log::set_boxed_logger(Box::new(logger)).is_err() {
        return;
    }
    let configured = std::env::var(containerd_shim::logger::LOG_ENV)
        .ok()
        .and_then(|l| l.parse::<log::LevelFilter>().ok())
        .unwrap_or_else(|| log_level.parse().unwrap_or(log::LevelFilter::Info));
    let level = match debug {
        true => configured.max(log::LevelFilter::Debug),
        false => configured,
    };
    log::set_max_level(level);
}

/// Whether a shim serves at `address` (`unix://path`).
fn shim_answers(address: &str) -> bool {
    let path = address.strip_prefix("unix://").unwrap_or(address);
    std::os::unix::net::UnixStream::connect(path).is_ok()
}

/// How long a container's start waits for another start of its group.
const GROUP_LOCK_TIMEOUT: Duration = Duration::from_secs(30);

/// The group the bundle's spec (`start` runs in the bundle directory) puts
/// the container in, if any.
fn grouping_key(spec: &Path) -> Option<String> {
    let bytes = std::fs::read(spec).ok()?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    GROUP_ANNOTATIONS
        .iter()
        .find_map(|k| spec["annotations"][k].as_str().filter(|v| !v.is_empty()))
        .map(str::to_string)
}

/// The shim cgroup a client asked for (`WithShimCgroup`: runc.v1's
/// `shim_cgroup`, or the legacy CreateOptions' for runtimes not named
/// runc), from the options containerd writes on `shim start`'s stdin.
/// Checked before anything is spawned, so a missing cgroup costs nothing.
fn shim_cgroup_from_stdin() -> containerd_shim::Result<Option<String>> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        return Ok(None);
    }
    let Some(cgroup) = crate::options::shim_cgroup_on_start(stdin.lock()) else {
        return Ok(None);
    };
    if !lazarus_core::host::cgroup::exists(&cgroup) {
        return Err(containerd_shim::Error::InvalidArgument(format!(
            "shim cgroup {cgroup} does not exist: create it before starting the task"
        )));
    }
    Ok(Some(cgroup))
}

/// The kernel's bound on oom_score_adj.
const OOM_SCORE_ADJ_MAX: i32 = 1000;

/// Gives the new shim its parent's (containerd's) OOM score + 1, as runc's
/// shim does: under memory pressure the kernel kills a shim before the
/// containerd that manages it. A failure is logged, not fatal (runc's
/// shim fails the start; an unchanged score costs only that ordering).
fn adjust_oom_score(pid: u32) {
    let parent = nix::unistd::getppid();
    let read = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj"));
    let Some(score) = read.ok().and_then(|s| s.trim().parse::<i32>().ok()) else {
        eprintln!("lazarus shim: cannot read containerd's oom_score_adj (pid {parent})");
        return;
    };
    let path = format!("/proc/{pid}/oom_score_adj");
    if let Err(e) = std::fs::write(&path, shim_oom_score(score).to_string()) {
        eprintln!("lazarus shim: set {path}: {e}");
    }
}

/// The shim's OOM score for a parent scored `parent`.
fn shim_oom_score(parent: i32) -> i32 {
    (parent + 1).min(OOM_SCORE_ADJ_MAX)
}

/// Moves the new shim process into the client's shim cgroup, as runc's
/// shim does; a shim that cannot be placed is killed rather than left
/// running where the client did not want it.
fn place_in_cgroup(pid: u32, cgroup: Option<&str>) -> containerd_shim::Result<()> {
    let Some(cgroup) = cgroup else {
        return Ok(());
    };
    lazarus_core::host::cgroup::join(cgroup, pid as i32).map_err(|e| {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::SIGKILL,
        );
        containerd_shim::Error::Other(format!("join shim cgroup {cgroup}: {e}"))
    })
}

#[cfg(test)]
mod grouping_tests {
    use super::*;

    #[test]
    fn the_shim_scores_one_above_containerd_within_the_kernels_bound() {
        assert_eq!(shim_oom_score(0), 1);
        assert_eq!(shim_oom_score(-999), -998);
        assert_eq!(shim_oom_score(-1000), -999);
        assert_eq!(shim_oom_score(1000), 1000);
    }

    fn key(json: &str) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        std::fs::write(&path, json).unwrap();
        grouping_key(&path)
    }

    #[test]
    fn a_pods_containers_share_its_sandbox_id() {
        let pod = r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1"}}"#;
        assert_eq!(key(pod).as_deref(), Some("pod1"));
        let both = r#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","io.containerd.lazarus.v2.group":"g"}}"#;
        assert_eq!(key(both).as_deref(), Some("g"));
    }

    #[test]
    fn other_containers_have_no_group() {
        assert_eq!(key(r#"{"annotations":{"other":"x"}}"#), None);
        assert_eq!(
            key(r#"{"annotations":{"io.kubernetes.cri.sandbox-id":""}}"#),
            None
        );
        assert_eq!(key("{}"), None);
        assert_eq!(key("not json"), None);
        assert_eq!(grouping_key(Path::new("/nonexistent/config.json")), None);
    }
}
