//! The single-threaded helper that drives libcontainer's cloning operations.
//!
//! The shim runs `containerd-shim-lazarus-v2 helper '<json request>'` with
//! its cwd in the bundle, the process's stdio (if any) on fds 3, 4 and 5, and
//! waits for the helper's exit through the shim's reaper. The helper writes
//! its [`HelperReply`] as JSON to `reply_path`. Its logs go to containerd's
//! log fifo (`./log` in the bundle) when containerd is reading it.

use std::fs::OpenOptions;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::{Container, ContainerStatus, State};
use libcontainer::hooks;
use libcontainer::oci_spec::runtime::{Process, Spec};
use libcontainer::syscall::syscall::SyscallType;
use serde::{Deserialize, Serialize};

use super::executor::RuncCompatibleExecutor;

/// fds 3, 4 and 5 of the helper carry the new process's stdin/out/err.
pub const STDIO_FDS: [i32; 3] = [3, 4, 5];

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Operation {
    Create {
        bundle: PathBuf,
    },
    Start,
    Exec {
        process_json: PathBuf,
    },
    Delete {
        force: bool,
    },
    /// Sets up the empty network namespace of a restored init (`pid`) as a
    /// create would have: the spec's prestart and createRuntime hooks
    /// (Docker's bridge networking plugs its veth in there), then `lo` up.
    RestoreNetwork {
        bundle: PathBuf,
        pid: i32,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct HelperRequest {
    pub root: PathBuf,
    pub id: String,
    pub reply_path: PathBuf,
    /// Stdio is on fds 3..=5.
    pub stdio: bool,
    pub console_socket: Option<PathBuf>,
    pub log_level: String,
    #[serde(flatten)]
    pub operation: Operation,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct HelperReply {
    pub pid: Option<i32>,
    pub error: Option<String>,
}

/// Entry point of `containerd-shim-lazarus-v2 helper <request>`.
pub fn main(request: &str) -> i32 {
    let request: HelperRequest = match serde_json::from_str(request) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("lazarus helper: bad request: {e}");
            return 2;
        }
    };
    init_logging(&request.log_level);
    let reply = match run(&request) {
        Ok(pid) => HelperReply { pid, error: None },
        Err(e) => {
            log::error!("{} {:?}: {e}", request.id, request.operation);
            HelperReply {
                pid: None,
                error: Some(e),
            }
        }
    };
    let text = serde_json::to_vec(&reply).expect("serialise helper reply");
    match std::fs::write(&request.reply_path, text) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!(
                "lazarus helper: write {}: {e}",
                request.reply_path.display()
            );
            1
        }
    }
}

fn run(req: &HelperRequest) -> Result<Option<i32>, String> {
    let container_dir = req.root.join(&req.id);
    match &req.operation {
        Operation::Create { bundle } => {
            let container = builder(req, RuncCompatibleExecutor::default())?
                .validate_id()
                .map_err(describe)?
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
                .map_err(describe)?;
            let pid = container.pid().map(|p| p.as_raw());
            let spec = Spec::load(bundle.join("config.json")).map_err(describe)?;
            if let (Some(pid), true) = (pid, super::loopback::new_network_namespace(&spec)) {
                // Last thing this process does: it leaves our namespace.
                super::loopback::bring_up(pid)?;
            }
            Ok(pid)
        }
        Operation::Start => {
            let mut container = Container::load(container_dir).map_err(describe)?;
            container.start().map_err(describe)?;
            Ok(container.pid().map(|p| p.as_raw()))
        }
        Operation::Exec { process_json } => {
            let executor = confine_exec(&container_dir, process_json)?;
            let pid = builder(req, executor)?
                .as_tenant()
                .with_process(Some(process_json))
                .with_detach(true)
                .build()
                .map_err(describe)?;
            Ok(Some(pid.as_raw()))
        }
        Operation::RestoreNetwork { bundle, pid } => {
            let spec = Spec::load(bundle.join("config.json")).map_err(describe)?;
            if let Some(hooks) = spec.hooks() {
                let mut state = State::new(
                    &req.id,
                    ContainerStatus::Creating,
                    Some(*pid),
                    bundle.clone(),
                );
                state.annotations = spec.annotations().clone();
                let pid = Some(nix::unistd::Pid::from_raw(*pid));
                for stage in [hooks.prestart(), hooks.create_runtime()] {
                    hooks::run_hooks(stage.as_ref(), Some(&state), None, pid, None)
                        .map_err(describe)?;
                }
            }
            // Last thing this process does: it leaves our namespace.
            super::loopback::bring_up(*pid)?;
            Ok(None)
        }
        Operation::Delete { force } => {
            if !container_dir.exists() {
                return Ok(None);
            }
            let mut container = Container::load(container_dir).map_err(describe)?;
            container.delete(*force).map_err(describe)?;
            Ok(None)
        }
    }
}

/// Completes the exec's process spec (rewritten in place) from the
/// container's spec, which libcontainer reads from the bundle its state
/// names (a restored container's too), and returns the executor that puts
/// the process under the container's seccomp filter.
fn confine_exec(
    container_dir: &Path,
    process_json: &Path,
) -> Result<RuncCompatibleExecutor, String> {
    let container = Container::load(container_dir.to_path_buf()).map_err(describe)?;
    let spec = Spec::load(container.bundle().join("config.json")).map_err(describe)?;
    let text = std::fs::read(process_json).map_err(|e| format!("read exec process spec: {e}"))?;
    let process: Process =
        serde_json::from_slice(&text).map_err(|e| format!("invalid exec process spec: {e}"))?;
    let plan = super::confinement::plan(&spec, process)?;
    let text = serde_json::to_vec(&plan.process).map_err(|e| e.to_string())?;
    std::fs::write(process_json, text).map_err(|e| format!("write exec process spec: {e}"))?;
    Ok(RuncCompatibleExecutor {
        confinement: plan.confinement,
    })
}

/// What create and exec share: the container, the state root, the new
/// process's stdio or console, and how its command is checked and run.
fn builder(
    req: &HelperRequest,
    executor: RuncCompatibleExecutor,
) -> Result<ContainerBuilder, String> {
    let mut builder = ContainerBuilder::new(req.id.clone(), SyscallType::default())
        .with_root_path(&req.root)
        .map_err(describe)?;
    if req.stdio {
        // SAFETY: the shim placed these fds on 3..=5 for us and nothing else
        // in this process owns them.
        let [i, o, e] = STDIO_FDS.map(|fd| unsafe { OwnedFd::from_raw_fd(fd) });
        builder = builder.with_stdin(i).with_stdout(o).with_stderr(e);
    }
    Ok(builder
        .with_console_socket(req.console_socket.as_ref())
        .with_executor(executor))
}

/// libcontainer's errors nest their causes; show the whole chain.
fn describe(err: impl std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Logs (libcontainer's `tracing` events arrive as `log` records) go to
/// containerd's log fifo if someone is reading it; never block on it.
fn init_logging(level: &str) {
    let path = Path::new("log");
    let is_fifo = path
        .metadata()
        .map(|m| m.file_type().is_fifo())
        .unwrap_or(false);
    if !is_fifo {
        return;
    }
    let Ok(file) = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    else {
        return;
    };
    let logger = containerd_shim::logger::FifoLogger::with_file(file);
    if log::set_boxed_logger(Box::new(logger)).is_ok() {
        log::set_max_level(level.parse().unwrap_or(log::LevelFilter::Info));
    }
}
