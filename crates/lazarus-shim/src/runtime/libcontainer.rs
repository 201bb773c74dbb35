//! [`Runtime`] on youki's libcontainer.
//!
//! Cloning operations go through the helper process (see `helper.rs`); the
//! rest (signals, freezer, cgroup reads and writes) are plain file and
//! syscall work that is safe from the threaded shim and runs in-process.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use containerd_shim::monitor::{monitor_subscribe, Subject, Topic};
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use lazarus_core::ids::check_component;
use libcgroups::common::{
    create_cgroup_manager, AnyCgroupManager, CgroupConfig, CgroupManager, ControllerOpt,
};
use libcontainer::container::{Container, ContainerStatus};
use libcontainer::signal::Signal;
use oci_spec::runtime::LinuxResources;

use super::helper::{HelperReply, HelperRequest, Operation, STDIO_FDS};
use super::private;
use super::{metrics, CreateOptions, ExecOptions, ProcessIo, Runtime};
use crate::error::{Error, Result};

/// A helper that has not answered in this long is stuck (a hook hanging, a
/// frozen cgroup): kill it and report rather than hang the RPC forever.
const HELPER_TIMEOUT: Duration = Duration::from_secs(120);

pub struct LibcontainerRuntime {
    /// libcontainer's state root: `<root>/<container id>/state.json`.
    root: PathBuf,
    helper_exe: PathBuf,
    log_level: String,
}

impl LibcontainerRuntime {
    pub fn new(root: PathBuf, log_level: String) -> Result<Self> {
        private::private_dir(&root)?;
        private::private_dir(&root.join(".helper"))?;
        let helper_exe = std::env::current_exe().map_err(Error::io("find the shim binary"))?;
        Ok(LibcontainerRuntime {
            root,
            helper_exe,
            log_level,
        })
    }

    /// `<root>/<id>`, libcontainer's state directory of one container. The
    /// service checks ids at Create, but `delete_shim` gets its id from the
    /// command line: every path made from an id goes through here or
    /// [`check_component`] so that none can leave the root.
    fn state_dir(&self, id: &str) -> Result<PathBuf> {
        check_component("container id", id)?;
        Ok(self.root.join(id))
    }

    fn load(&self, id: &str) -> Result<Container> {
        Container::load(self.state_dir(id)?).map_err(|e| match e {
            libcontainer::error::LibcontainerError::NoDirectory => {
                Error::NotFound(format!("container {id} does not exist in the runtime"))
            }
            e => Error::Runtime(format!("load container {id}: {e}")),
        })
    }

    fn cgroup(&self, id: &str) -> Result<AnyCgroupManager> {
        let container = self.load(id)?;
        let config = container
            .spec()
            .map_err(|e| Error::Runtime(format!("read runtime config of {id}: {e}")))?;
        create_cgroup_manager(CgroupConfig {
            cgroup_path: config.cgroup_path,
            systemd_cgroup: false,
            container_name: id.to_string(),
        })
        .map_err(|e| Error::Runtime(format!("open cgroup of {id}: {e}")))
    }

    /// Runs one helper operation and waits for it through the shim's reaper
    /// (which reaps every child: a direct wait would race it).
    fn run_helper(
        &self,
        id: &str,
        cwd: &Path,
        io: Option<&ProcessIo>,
        operation: Operation,
    ) -> Result<HelperReply> {
        check_component("container id", id)?;
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let base = self
            .root
            .join(".helper")
            .join(format!("{id}-{}-{seq}", std::process::id()));
        let reply_path = base.with_extension("reply");
        let stderr_path = base.with_extension("stderr");
        let (stdio, console_socket) = match io {
            Some(ProcessIo::Stdio(s)) => (Some(*s), None),
            Some(ProcessIo::Console(path)) => (None, Some(path.clone())),
            None => (None, None),
        };
        let request = HelperRequest {
            root: self.root.clone(),
            id: id.to_string(),
            reply_path: reply_path.clone(),
            stdio: stdio.is_some(),
            console_socket,
            log_level: self.log_level.clone(),
            operation,
        };
        let what = format!("{:?} of {id}", request.operation);
        let stderr = std::fs::File::create(&stderr_path)
            .map_err(Error::io(format!("create {}", stderr_path.display())))?;

        let mut cmd = Command::new(&self.helper_exe);
        cmd.arg("helper")
            .arg(serde_json::to_string(&request)?)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr);
        if let Some(stdio) = stdio {
            // Park the fds above the target range first so that moving them
            // onto 3..=5 in the child cannot clobber one another.
            let parked: Vec<OwnedFd> = stdio
                .fds()
                .iter()
                .map(|fd| dup_above(fd.as_raw_fd(), 10))
                .collect::<Result<_>>()?;
            let raw: Vec<i32> = parked.iter().map(|f| f.as_raw_fd()).collect();
            // SAFETY: dup2 is async-signal-safe; nothing else runs pre-exec.
            unsafe {
                cmd.pre_exec(move || {
                    for (from, to) in raw.iter().zip(STDIO_FDS) {
                        if libc::dup2(*from, to) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
            // `parked` must live until spawn returns.
            return self.spawn_and_wait(cmd, &what, &reply_path, &stderr_path, Some(parked));
        }
        self.spawn_and_wait(cmd, &what, &reply_path, &stderr_path, None)
    }

    fn spawn_and_wait(
        &self,
        mut cmd: Command,
        what: &str,
        reply_path: &Path,
        stderr_path: &Path,
        keep_alive: Option<Vec<OwnedFd>>,
    ) -> Result<HelperReply> {
        let subscription = monitor_subscribe(Topic::Pid)
            .map_err(|e| Error::Other(format!("subscribe to exits: {e}")))?;
        let child = cmd
            .spawn()
            .map_err(Error::io(format!("spawn helper for {what}")))?;
        drop(keep_alive);
        let pid = child.id() as i32;
        let deadline = std::time::Instant::now() + HELPER_TIMEOUT;
        let status = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match subscription.rx.recv_timeout(left) {
                Ok(e) if matches!(e.subject, Subject::Pid(p) if p == pid) => {
                    break Some(e.exit_code)
                }
                Ok(_) => continue,
                Err(_) => break None,
            }
        };
        let stderr = std::fs::read_to_string(stderr_path).unwrap_or_default();
        let _ = std::fs::remove_file(stderr_path);
        let reply = std::fs::read(reply_path);
        let _ = std::fs::remove_file(reply_path);
        let Some(status) = status else {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::SIGKILL);
            return Err(Error::Runtime(format!(
                "{what}: runtime helper did not finish within {}s",
                HELPER_TIMEOUT.as_secs()
            )));
        };
        match reply {
            Ok(bytes) => {
                let reply: HelperReply = serde_json::from_slice(&bytes)
                    .map_err(|e| Error::Runtime(format!("{what}: bad helper reply: {e}")))?;
                match reply.error {
                    Some(err) => Err(Error::Runtime(err)),
                    None => Ok(reply),
                }
            }
            Err(_) => Err(Error::Runtime(format!(
                "{what}: runtime helper exited with status {status} without a reply: {}",
                stderr.trim()
            ))),
        }
    }
}

impl Runtime for LibcontainerRuntime {
    fn create(&self, opts: &CreateOptions) -> Result<i32> {
        let reply = self.run_helper(
            opts.id,
            &opts.bundle,
            Some(&opts.io),
            Operation::Create {
                bundle: opts.bundle.clone(),
            },
        )?;
        private::restrict(&self.state_dir(opts.id)?)?;
        reply
            .pid
            .ok_or_else(|| Error::Runtime(format!("create {}: no init pid", opts.id)))
    }

    fn start(&self, id: &str, bundle: &Path) -> Result<()> {
        self.run_helper(id, bundle, None, Operation::Start)
            .map(|_| ())
    }

    fn exec(&self, opts: &ExecOptions) -> Result<i32> {
        check_component("container id", opts.id)?;
        let dir = self.root.join(".helper");
        let process_json = dir.join(format!("{}-exec-{}.json", opts.id, std::process::id()));
        let process_json = unique_path(process_json);
        let terminal = matches!(opts.io, ProcessIo::Console(_));
        let json = with_terminal(opts.process_json, terminal)?;
        private::write_file(&process_json, &json)?;
        let result = self.run_helper(
            opts.id,
            &opts.bundle,
            Some(&opts.io),
            Operation::Exec {
                process_json: process_json.clone(),
            },
        );
        let _ = std::fs::remove_file(&process_json);
        result?
            .pid
            .ok_or_else(|| Error::Runtime(format!("exec in {}: no pid", opts.id)))
    }

    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()> {
        let signal = Signal::try_from(signal)
            .map_err(|e| Error::InvalidArgument(format!("signal {signal}: {e}")))?;
        let mut container = self.load(id)?;
        container.kill(signal, all).map_err(|e| match e {
            libcontainer::error::LibcontainerError::IncorrectStatus(_) => {
                Error::NotFound(format!("container {id}: process already finished"))
            }
            e => Error::Runtime(format!("kill {id}: {e}")),
        })
    }

    fn delete(&self, id: &str, bundle: &Path, force: bool) -> Result<()> {
        self.run_helper(id, bundle, None, Operation::Delete { force })
            .map(|_| ())
    }

    fn pause(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        container.pause().map_err(|e| status_error(id, "pause", e))
    }

    fn resume(&self, id: &str) -> Result<()> {
        let mut container = self.load(id)?;
        container
            .resume()
            .map_err(|e| status_error(id, "resume", e))
    }

    fn pids(&self, id: &str) -> Result<Vec<i32>> {
        let pids = self
            .cgroup(id)?
            .get_all_pids()
            .map_err(|e| Error::Runtime(format!("list processes of {id}: {e}")))?;
        Ok(pids.into_iter().map(|p| p.as_raw()).collect())
    }

    fn stats(&self, id: &str) -> Result<Any> {
        let manager = self.cgroup(id)?;
        let stats = manager
            .stats()
            .map_err(|e| Error::Runtime(format!("read cgroup stats of {id}: {e}")))?;
        match manager {
            AnyCgroupManager::V1(_) => metrics::v1(&stats),
            _ => metrics::v2(&stats),
        }
    }

    fn update(&self, id: &str, resources: &LinuxResources) -> Result<()> {
        self.cgroup(id)?
            .apply(&ControllerOpt {
                resources,
                disable_oom_killer: false,
                oom_score_adj: None,
                freezer_state: None,
            })
            .map_err(|e| Error::Runtime(format!("update resources of {id}: {e}")))
    }

    fn adopt(&self, id: &str, bundle: &Path, pid: i32) -> Result<()> {
        let dir = self.state_dir(id)?;
        let fail = |what: &str, e: &dyn std::fmt::Display| {
            Error::Runtime(format!("adopt restored {id}: {what}: {e}"))
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail("create state dir", &e))?;
        let spec = oci_spec::runtime::Spec::load(bundle.join("config.json"))
            .map_err(|e| fail("load spec", &e))?;
        libcontainer::config::YoukiConfig::from_spec(&spec, id)
            .and_then(|c| c.save(&dir))
            .map_err(|e| fail("save runtime config", &e))?;
        let mut container = Container::new(id, ContainerStatus::Running, Some(pid), bundle, &dir)
            .map_err(|e| fail("state", &e))?;
        container.set_annotations(spec.annotations().clone());
        container.save().map_err(|e| fail("save state", &e))?;
        private::restrict(&dir)
    }

    fn restore_network(
        &self,
        id: &str,
        bundle: &Path,
        spec: &oci_spec::runtime::Spec,
        pid: i32,
    ) -> Result<()> {
        // Without hooks there is only lo to bring up: a thread of ours does
        // it (its network namespace changes, and it ends), not a helper
        // process, which costs tens of milliseconds of a migration's
        // downtime. Hooks run in the single-threaded helper, as on create.
        check_component("container id", id)?;
        if !lazarus_core::checkpoint::has_setup_hooks(spec) {
            return std::thread::scope(|s| s.spawn(|| super::loopback::bring_up(pid)).join())
                .unwrap_or_else(|_| Err("bringing lo up panicked".into()))
                .map_err(|e| Error::Runtime(format!("restore network of {id}: {e}")));
        }
        let operation = Operation::RestoreNetwork {
            bundle: bundle.to_path_buf(),
            pid,
        };
        self.run_helper(id, bundle, None, operation).map(|_| ())
    }

    fn memory_cgroup(&self, id: &str) -> Option<PathBuf> {
        let config = self.load(id).ok()?.spec().ok()?;
        let rel = config
            .cgroup_path
            .strip_prefix("/")
            .unwrap_or(&config.cgroup_path)
            .to_path_buf();
        let dir = Path::new("/sys/fs/cgroup/memory").join(rel);
        dir.join("memory.oom_control").exists().then_some(dir)
    }
}

fn status_error(id: &str, op: &str, e: libcontainer::error::LibcontainerError) -> Error {
    match e {
        libcontainer::error::LibcontainerError::IncorrectStatus(status) => {
            let state = match status {
                ContainerStatus::Stopped => "stopped",
                ContainerStatus::Paused => "paused",
                ContainerStatus::Created | ContainerStatus::Creating => "not started",
                ContainerStatus::Running => "running",
            };
            Error::FailedPrecondition(format!("cannot {op} container {id}: it is {state}"))
        }
        e => Error::Runtime(format!("{op} {id}: {e}")),
    }
}

/// The exec's process spec with `terminal` set to how its stdio is wired:
/// the request's terminal flag decides, as in containerd's runc shim
/// (`spec.Terminal = r.Terminal`), and libcontainer refuses a console socket
/// for a process whose spec says `terminal: false`. Only that field is
/// touched; the rest of the JSON goes through as the client sent it.
fn with_terminal(process_json: &[u8], terminal: bool) -> Result<Vec<u8>> {
    let mut process: serde_json::Value = serde_json::from_slice(process_json)
        .map_err(|e| Error::InvalidArgument(format!("invalid exec process spec: {e}")))?;
    let Some(fields) = process.as_object_mut() else {
        return Err(Error::InvalidArgument(
            "invalid exec process spec: not a JSON object".into(),
        ));
    };
    fields.insert("terminal".into(), serde_json::Value::Bool(terminal));
    Ok(serde_json::to_vec(&process)?)
}

/// A close-on-exec duplicate of `fd` numbered at least `min`.
fn dup_above(fd: i32, min: i32) -> Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let new = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(min))
        .map_err(Error::sys("duplicate stdio fd"))?;
    // SAFETY: fcntl just returned this new fd to us.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

fn unique_path(path: PathBuf) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    path.with_extension(format!("{nanos}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal_of(json: &[u8]) -> serde_json::Value {
        let v: serde_json::Value = serde_json::from_slice(json).unwrap();
        v["terminal"].clone()
    }

    #[test]
    fn the_stdio_wiring_decides_the_terminal_flag() {
        let plain = br#"{"terminal":false,"args":["tty"],"cwd":"/","x-unknown":1}"#;
        let patched = with_terminal(plain, true).unwrap();
        assert_eq!(terminal_of(&patched), serde_json::json!(true));
        let v: serde_json::Value = serde_json::from_slice(&patched).unwrap();
        assert_eq!(v["args"], serde_json::json!(["tty"]));
        assert_eq!(v["x-unknown"], serde_json::json!(1), "other fields kept");

        let missing = br#"{"args":["tty"],"cwd":"/"}"#;
        assert_eq!(terminal_of(&with_terminal(missing, true).unwrap()), true);
        let tty = br#"{"terminal":true,"args":["tty"],"cwd":"/"}"#;
        assert_eq!(terminal_of(&with_terminal(tty, false).unwrap()), false);
    }

    #[test]
    fn a_process_spec_that_is_not_an_object_is_refused() {
        let err = with_terminal(b"[1]", true).unwrap_err();
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        assert!(with_terminal(b"{nope", true).is_err());
    }

    /// What libcontainer writes for a container (state.json and
    /// youki_config.json, under the umask) ends up readable by root alone.
    #[test]
    fn adopted_state_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ns");
        let rt = LibcontainerRuntime::new(root.clone(), "info".into()).unwrap();
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        let spec = oci_spec::runtime::Spec::default();
        spec.save(bundle.join("config.json")).unwrap();
        rt.adopt("c1", &bundle, 1).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&root.join(".helper")), 0o700);
        assert_eq!(mode(&root.join("c1")), 0o700);
        for file in ["state.json", "youki_config.json"] {
            assert_eq!(mode(&root.join("c1").join(file)), 0o600, "{file}");
        }
    }

    /// The runtime refuses ids that would leave its root on its own (the
    /// shim's `delete` passes one straight from the command line): every
    /// operation is INVALID_ARGUMENT and nothing appears outside the root.
    #[test]
    fn an_id_cannot_leave_the_state_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("ns").join("root");
        let rt = LibcontainerRuntime::new(root.clone(), "info".into()).unwrap();
        let bundle = tmp.path();
        for id in ["../evil", "../../evil", "..", "a/../../evil", "", "x\0y"] {
            let results = [
                rt.kill(id, 9, false).map(drop),
                rt.delete(id, bundle, true),
                rt.start(id, bundle),
                rt.pause(id),
                rt.resume(id),
                rt.pids(id).map(drop),
                rt.adopt(id, bundle, 1),
                rt.restore_network(id, bundle, &oci_spec::runtime::Spec::default(), 1),
            ];
            for (i, r) in results.into_iter().enumerate() {
                let e = r.expect_err(id);
                assert_eq!(
                    e.code(),
                    ttrpc::Code::INVALID_ARGUMENT,
                    "op {i} on {id:?}: {e}"
                );
            }
        }
        let listing = |dir: &Path| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(listing(tmp.path()), ["ns"]);
        assert_eq!(listing(&tmp.path().join("ns")), ["root"]);
        assert_eq!(listing(&root), [".helper"]);
        assert!(listing(&root.join(".helper")).is_empty());
    }
}
