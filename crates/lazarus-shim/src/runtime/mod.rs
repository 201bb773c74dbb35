//! Seam 1: the OCI runtime under the shim.
//!
//! The task service only talks to [`Runtime`]; [`LibcontainerRuntime`] puts
//! youki's libcontainer behind it. Operations that clone processes or change
//! process-wide state (create, start, exec, delete with its hooks) run in a
//! short-lived, single-threaded helper: the shim binary re-executed with
//! `helper` as its first argument (see [`helper`]).

mod confinement;
mod executor;
pub mod helper;
mod leftovers;
mod libcontainer;
mod loopback;
mod metrics;
mod private;

use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::PathBuf;

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use oci_spec::runtime::LinuxResources;

use crate::error::Result;

pub use self::leftovers::kill_after_init_exit;
pub use self::libcontainer::LibcontainerRuntime;
pub use self::loopback::new_network_namespace;

/// The three fds a process gets as stdin, stdout and stderr.
pub struct ProcessStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

impl ProcessStdio {
    pub fn fds(&self) -> [BorrowedFd<'_>; 3] {
        use std::os::fd::AsFd;
        [self.stdin.as_fd(), self.stdout.as_fd(), self.stderr.as_fd()]
    }
}

/// How a new process is wired: plain fds, or a terminal whose master comes
/// back through a console socket.
pub enum ProcessIo<'a> {
    Stdio(&'a ProcessStdio),
    Console(PathBuf),
}

pub struct CreateOptions<'a> {
    pub id: &'a str,
    pub bundle: PathBuf,
    pub io: ProcessIo<'a>,
}

pub struct ExecOptions<'a> {
    pub id: &'a str,
    pub bundle: PathBuf,
    /// The OCI process spec (JSON) of the new process.
    pub process_json: &'a [u8],
    pub io: ProcessIo<'a>,
}

pub trait Runtime: Send + Sync {
    /// Creates the container; returns the pid of its (waiting) init.
    fn create(&self, opts: &CreateOptions) -> Result<i32>;
    /// Lets a created container's init run the user's process.
    fn start(&self, id: &str, bundle: &std::path::Path) -> Result<()>;
    /// Starts an extra process in a running container; returns its pid.
    fn exec(&self, opts: &ExecOptions) -> Result<i32>;
    /// Signals the init (or, with `all`, every process in the container).
    fn kill(&self, id: &str, signal: i32, all: bool) -> Result<()>;
    /// Removes the container's runtime state and cgroup.
    fn delete(&self, id: &str, bundle: &std::path::Path, force: bool) -> Result<()>;
    fn pause(&self, id: &str) -> Result<()>;
    fn resume(&self, id: &str) -> Result<()>;
    /// Pids of every process in the container's cgroup.
    fn pids(&self, id: &str) -> Result<Vec<i32>>;
    /// containerd's cgroup metrics (v1 or v2 type, as the host has).
    fn stats(&self, id: &str) -> Result<Any>;
    fn update(&self, id: &str, resources: &LinuxResources) -> Result<()>;
    /// Registers an init that CRIU restored (a child of the shim) as the
    /// container's, so kill, pause and delete work on it.
    fn adopt(&self, id: &str, bundle: &std::path::Path, pid: i32) -> Result<()>;
    /// Sets up the empty network namespace CRIU restored `pid` into, as
    /// create does: the spec's prestart/createRuntime hooks, then `lo` up.
    /// `spec` is the bundle's, as the restore already holds it.
    fn restore_network(
        &self,
        id: &str,
        bundle: &std::path::Path,
        spec: &oci_spec::runtime::Spec,
        pid: i32,
    ) -> Result<()>;
    /// The cgroup v1 memory directory, for OOM notifications (None on v2).
    fn memory_cgroup(&self, id: &str) -> Option<PathBuf>;
}
