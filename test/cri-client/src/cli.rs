//! The command line (clap derive), modelled on crictl's where it helps.

use clap::{Args, Parser, Subcommand};

use crate::kv::parse_kv;

/// A small Kubernetes CRI (v1) client, for the Lazarus tests and by hand
///
/// Talks to a runtime's CRI socket (containerd 2.1 with its CRI plugin
/// enabled) the way the kubelet or crictl would. IDs are printed bare on
/// stdout; structured answers as JSON. An error is one line on stderr
/// naming the command and the runtime's gRPC code and message (exit 1);
/// bad arguments exit 2.
///
/// Every call has a deadline: --timeout (before the subcommand) bounds
/// connecting and each RPC; `checkpoint` and `exec` have their own
/// --timeout for the runtime's work, and wait that long plus 10 s.
// Doc comments are shown verbatim: their line breaks are the help's.
#[derive(Parser)]
#[command(name = "cri-client", version, verbatim_doc_comment)]
pub struct Cli {
    /// The CRI socket: unix:///path or /path; default
    /// $CONTAINER_RUNTIME_ENDPOINT, else /run/containerd/containerd.sock
    #[arg(long, value_name = "PATH", global = true, verbatim_doc_comment)]
    pub endpoint: Option<String>,

    /// Deadline in seconds for connecting and for each RPC [default: 60;
    /// 300 for `create` from a checkpoint archive]
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..), verbatim_doc_comment)]
    pub timeout: Option<u64>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// The runtime's name and versions (RuntimeService.Version), as JSON
    Version,
    /// The runtime handlers and the features each supports
    /// (RuntimeService.Status), as JSON: [{name, recursive_read_only_mounts,
    /// user_namespaces}]
    #[command(verbatim_doc_comment)]
    Handlers,
    /// Pull an image (ImageService.PullImage); prints the image reference
    Pull {
        /// The image, e.g. docker.io/library/busybox:latest
        image: String,
    },
    /// List images as JSON: [{id, repo_tags, repo_digests}]
    Images,
    /// Run a pod sandbox (RunPodSandbox); prints the pod id
    Runp(RunpArgs),
    /// Create a container in a pod (CreateContainer); prints its id
    Create(CreateArgs),
    /// Start a created container; prints its id
    Start {
        /// Container id
        id: String,
    },
    /// Stop a container (SIGTERM, SIGKILL after --grace); prints its id
    Stop {
        /// Container id
        id: String,
        /// Seconds between the stop signal and SIGKILL
        #[arg(long, value_name = "SECS", default_value_t = 10)]
        grace: u64,
    },
    /// Remove a container; prints its id
    Rm {
        /// Container id
        id: String,
    },
    /// Stop a pod sandbox and its containers; prints its id
    Stopp {
        /// Pod id
        pod_id: String,
    },
    /// Remove a pod sandbox and its containers; prints its id
    Rmp {
        /// Pod id
        pod_id: String,
    },
    /// List containers as JSON (running ones unless --all)
    Ps {
        /// Only the containers of this pod
        #[arg(long, value_name = "POD_ID")]
        pod: Option<String>,
        /// Containers in every state, not only running ones
        #[arg(long)]
        all: bool,
    },
    /// List pod sandboxes as JSON
    Pods,
    /// A container's status with the runtime's verbose info, as JSON
    Inspect {
        /// Container id
        id: String,
    },
    /// A pod sandbox's status with the runtime's verbose info, as JSON
    Inspectp {
        /// Pod id
        pod_id: String,
    },
    /// Run a command in a container (ExecSync) and exit with its status
    Exec {
        /// Container id
        id: String,
        /// Seconds the command may run before the runtime stops it
        /// (ExecSyncRequest.timeout); the call waits 10 s longer
        #[arg(long, value_name = "SECS", default_value_t = 10,
              value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
        /// The command and its arguments, after `--`
        #[arg(last = true, required = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Checkpoint a container into an archive file (CheckpointContainer);
    /// prints LOCATION
    #[command(verbatim_doc_comment)]
    Checkpoint {
        /// Container id
        id: String,
        /// The archive to write (a path on the runtime's host)
        location: String,
        /// Seconds the runtime may take (CheckpointContainerRequest.timeout);
        /// the call waits 10 s longer
        #[arg(long, value_name = "SECS", default_value_t = 300,
              value_parser = clap::value_parser!(u64).range(1..))]
        timeout: u64,
    },
    /// Print a container's output from its CRI log file (this host only)
    Logs {
        /// Container id
        id: String,
    },
}

#[derive(Args)]
pub struct RunpArgs {
    /// The pod's name (also its hostname)
    #[arg(long)]
    pub name: String,
    /// The pod's Kubernetes namespace
    #[arg(long, default_value = "default")]
    pub namespace: String,
    /// The pod's UID [default: the name and the current time]
    #[arg(long)]
    pub uid: Option<String>,
    /// The runtime handler (a runtime configured in containerd's CRI plugin)
    #[arg(long, value_name = "HANDLER")]
    pub runtime: Option<String>,
    /// Directory for the containers' log files (PodSandboxConfig.log_directory)
    #[arg(long, value_name = "DIR")]
    pub log_dir: Option<String>,
    /// The pod's parent cgroup (LinuxPodSandboxConfig.cgroup_parent), e.g.
    /// /kubepods; its containers' cgroups go under it [default: the runtime's]
    #[arg(long, value_name = "CGROUP", verbatim_doc_comment)]
    pub cgroup_parent: Option<String>,
    /// Use the host's network namespace instead of the pod's own
    #[arg(long)]
    pub host_network: bool,
    /// A label (repeatable)
    #[arg(long = "label", value_name = "K=V", value_parser = parse_kv)]
    pub labels: Vec<(String, String)>,
    /// An annotation (repeatable)
    #[arg(long = "annotation", value_name = "K=V", value_parser = parse_kv)]
    pub annotations: Vec<(String, String)>,
}

#[derive(Args)]
pub struct CreateArgs {
    /// The pod to create the container in
    pub pod_id: String,
    /// The container's name
    #[arg(long)]
    pub name: String,
    /// The image, or the path of a checkpoint archive on the runtime's host:
    /// containerd 2.1 then restores the checkpoint (`checkpoint`'s LOCATION)
    #[arg(long, verbatim_doc_comment)]
    pub image: String,
    /// An environment variable (repeatable)
    #[arg(long = "env", value_name = "K=V", value_parser = parse_kv)]
    pub envs: Vec<(String, String)>,
    /// A label (repeatable)
    #[arg(long = "label", value_name = "K=V", value_parser = parse_kv)]
    pub labels: Vec<(String, String)>,
    /// An annotation (repeatable)
    #[arg(long = "annotation", value_name = "K=V", value_parser = parse_kv)]
    pub annotations: Vec<(String, String)>,
    /// The log file, relative to the pod's log directory [default: NAME.log]
    #[arg(long, value_name = "REL")]
    pub log_path: Option<String>,
    /// The pod's log directory, if it was given to `runp --log-dir` and the
    /// runtime's verbose pod status does not say it
    #[arg(long, value_name = "DIR", verbatim_doc_comment)]
    pub pod_log_dir: Option<String>,
    /// The container's seccomp profile: runtime/default (the runtime's
    /// default profile, as critest's seccomp specs ask) or unconfined
    /// [default: none given, which Kubernetes reads as unconfined]
    #[arg(long, value_name = "PROFILE", value_parser = ["runtime/default", "unconfined"], verbatim_doc_comment)]
    pub seccomp: Option<String>,
    /// A host path mounted into the container (repeatable):
    /// HOST:CONTAINER[:OPTION,...] with options ro, rro (recursively
    /// read-only; implies ro), private, host-to-container, bidirectional
    /// (the mount's propagation)
    #[arg(long = "mount", value_name = "HOST:CONTAINER[:OPTS]", value_parser = parse_mount, verbatim_doc_comment)]
    pub mounts: Vec<MountArg>,
    /// Command and arguments, after `--` [default: the image's]
    #[arg(last = true, value_name = "CMD")]
    pub cmd: Vec<String>,
}

/// One `--mount`, as the CRI's Mount wants it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountArg {
    pub host: String,
    pub container: String,
    pub readonly: bool,
    pub recursive_read_only: bool,
    /// CRI's MountPropagation: 0 private, 1 host-to-container, 2 bidirectional.
    pub propagation: i32,
}

fn parse_mount(text: &str) -> Result<MountArg, String> {
    let mut parts = text.splitn(3, ':');
    let (Some(host), Some(container)) = (parts.next(), parts.next()) else {
        return Err(format!("{text:?}: want HOST:CONTAINER[:OPTS]"));
    };
    if host.is_empty() || container.is_empty() {
        return Err(format!("{text:?}: want HOST:CONTAINER[:OPTS]"));
    }
    let mut mount = MountArg {
        host: host.into(),
        container: container.into(),
        readonly: false,
        recursive_read_only: false,
        propagation: 0,
    };
    for option in parts.next().into_iter().flat_map(|o| o.split(',')) {
        match option {
            "ro" => mount.readonly = true,
            "rro" => (mount.readonly, mount.recursive_read_only) = (true, true),
            "private" => mount.propagation = 0,
            "host-to-container" => mount.propagation = 1,
            "bidirectional" => mount.propagation = 2,
            other => {
                return Err(format!(
                    "unknown mount option {other:?}: use ro, rro, private, host-to-container or bidirectional"
                ))
            }
        }
    }
    Ok(mount)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_with_their_options() {
        let m = parse_mount("/h:/c").unwrap();
        assert_eq!((m.host.as_str(), m.container.as_str()), ("/h", "/c"));
        assert!(!m.readonly && !m.recursive_read_only && m.propagation == 0);
        let m = parse_mount("/h:/c:rro,host-to-container").unwrap();
        assert!(m.readonly && m.recursive_read_only);
        assert_eq!(m.propagation, 1);
        assert_eq!(parse_mount("/h:/c:bidirectional").unwrap().propagation, 2);
        assert!(parse_mount("/h").is_err());
        assert!(parse_mount(":/c").is_err());
        let err = parse_mount("/h:/c:rw").unwrap_err();
        assert!(err.contains("\"rw\""), "{err}");
    }
}
