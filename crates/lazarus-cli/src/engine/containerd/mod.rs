//! The containerd calls the CLI makes (gRPC on containerd's socket, every
//! call in one namespace and under a deadline). A checkpoint is always the
//! shim's: `Tasks.Checkpoint` with runc's option type, which containerd
//! hands to every runtime and Lazarus's shim understands.
//!
//! This file: the connection, containers and tasks. `storage.rs`:
//! snapshots, images and the content store; `namespaces.rs`: the listings
//! `checkpoint --all` needs; `checkpoint_error.rs`: a failed checkpoint
//! said for people.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient, tasks_client::TasksClient,
    CheckpointTaskRequest, Container, CreateContainerRequest, CreateTaskRequest,
    DeleteContainerRequest, DeleteContentRequest, DeleteTaskRequest, GetContainerRequest,
    GetRequest, KillRequest, ListContainersRequest, PauseTaskRequest, ResumeTaskRequest,
    StartRequest,
};
use containerd_client::tonic::metadata::{Ascii, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{self, Request};
use containerd_client::types::v1::Process;
pub use containerd_client::types::v1::Status;
use containerd_client::types::Mount;
use prost::Message;
use prost_types::Any;

use crate::error::{Error, Result};

mod checkpoint_error;
mod namespaces;
mod storage;
#[cfg(test)]
mod tests;

pub use checkpoint_error::checkpoint_error;
pub use storage::upper_of;

pub const LAZARUS_RUNTIME: &str = "io.containerd.lazarus.v2";
/// containerd's type URL for an OCI spec in a container record.
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/// Most calls are quick; a checkpoint or a restore's start takes as long as
/// CRIU does (the shim's own limit, criu_timeout_seconds, ends it first).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const CRIU_TIMEOUT: Duration = Duration::from_secs(900);

/// runc's `containerd.runc.v1.CheckpointOptions` (field numbers as in
/// containerd's api/types/runc/options/oci.proto, which containerd-client
/// does not compile).
#[derive(Clone, PartialEq, Message)]
pub struct CheckpointOptions {
    #[prost(bool, tag = "1")]
    pub exit: bool,
    #[prost(bool, tag = "2")]
    pub open_tcp: bool,
    #[prost(bool, tag = "3")]
    pub external_unix_sockets: bool,
    #[prost(bool, tag = "4")]
    pub terminal: bool,
    #[prost(bool, tag = "5")]
    pub file_locks: bool,
    #[prost(string, repeated, tag = "6")]
    pub empty_namespaces: Vec<String>,
    #[prost(string, tag = "7")]
    pub cgroups_mode: String,
    #[prost(string, tag = "8")]
    pub image_path: String,
    #[prost(string, tag = "9")]
    pub work_path: String,
}

/// runc's `containerd.runc.v1.Options`: only the restore's image path.
#[derive(Clone, PartialEq, Message)]
struct RuncOptions {
    #[prost(string, tag = "10")]
    criu_image_path: String,
    #[prost(string, tag = "11")]
    criu_work_path: String,
}

/// `namespace` as gRPC metadata, once containerd's rule holds.
fn namespace_header(namespace: &str) -> Result<MetadataValue<Ascii>> {
    lazarus_core::ids::check_identifier("containerd namespace", namespace)?;
    namespace.parse().map_err(|_| {
        Error::Refused(format!(
            "containerd namespace {namespace:?} cannot be sent as gRPC metadata"
        ))
    })
}

pub struct Containerd {
    channel: Channel,
    namespace: String,
    /// The namespace as every request's metadata carries it.
    namespace_header: MetadataValue<Ascii>,
}

impl Containerd {
    /// Connects for calls in `namespace`, which must be a name containerd
    /// accepts (it comes from users, archives and migration peers, and
    /// gRPC metadata holds visible ASCII only).
    pub async fn connect(address: &str, namespace: &str) -> Result<Containerd> {
        let namespace_header = namespace_header(namespace)?;
        let unreachable = |why: String| Error::ContainerdUnreachable {
            address: address.to_string(),
            why,
        };
        if !Path::new(address).exists() {
            return Err(unreachable("no such socket".into()));
        }
        // gRPC would say only "transport error": the socket says why.
        if let Err(e) = std::os::unix::net::UnixStream::connect(address) {
            return Err(unreachable(why_not_connected(&e)));
        }
        let channel = tokio::time::timeout(CALL_TIMEOUT, containerd_client::connect(address))
            .await
            .map_err(|_| unreachable(format!("no answer within {CALL_TIMEOUT:?}")))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Containerd {
            channel,
            namespace: namespace.to_string(),
            namespace_header,
        })
    }

    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    fn request<T>(&self, message: T, timeout: Duration) -> Request<T> {
        let mut r = Request::new(message);
        r.set_timeout(timeout);
        r.metadata_mut()
            .insert("containerd-namespace", self.namespace_header.clone());
        r
    }

    pub async fn container(&self, id: &str) -> Result<Container> {
        let mut c = ContainersClient::new(self.channel.clone());
        let req = self.request(GetContainerRequest { id: id.into() }, CALL_TIMEOUT);
        let what = format!("container {id} in namespace {}", self.namespace);
        c.get(req)
            .await
            .map_err(Error::containerd(&what))?
            .into_inner()
            .container
            .ok_or_else(|| Error::NotFound(format!("{what}: not found")))
    }

    /// The containers matching a containerd filter (e.g.
    /// `labels."k"==v,labels."k2"==v2`), oldest first.
    pub async fn containers_matching(&self, filter: &str) -> Result<Vec<Container>> {
        let mut c = ContainersClient::new(self.channel.clone());
        let req = self.request(
            ListContainersRequest {
                filters: vec![filter.into()],
            },
            CALL_TIMEOUT,
        );
        let mut list = c
            .list(req)
            .await
            .map_err(Error::containerd(format!(
                "list containers matching {filter}"
            )))?
            .into_inner()
            .containers;
        list.sort_by_key(|c| c.created_at.as_ref().map(|t| (t.seconds, t.nanos)));
        Ok(list)
    }

    /// The task's init process as containerd reports it; None when the
    /// container has no task.
    async fn task_process(&self, id: &str) -> Result<Option<Process>> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            GetRequest {
                container_id: id.into(),
                exec_id: String::new(),
            },
            CALL_TIMEOUT,
        );
        match t.get(req).await {
            Ok(r) => Ok(r.into_inner().process),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::containerd(format!("task of {id}"))(s)),
        }
    }

    /// The task's status, None when the container has no task.
    pub async fn task_status(&self, id: &str) -> Result<Option<Status>> {
        Ok(self
            .task_process(id)
            .await?
            .map(|p| Status::try_from(p.status).unwrap_or(Status::Unknown)))
    }

    /// The pid of the task's init (in this host's pid namespace).
    pub async fn task_pid(&self, id: &str) -> Result<u32> {
        self.task_process(id)
            .await?
            .map(|p| p.pid)
            .filter(|&pid| pid > 0)
            .ok_or_else(|| Error::NotFound(format!("{id} has no running task")))
    }

    /// Has the shim dump the task's processes into `options.image_path`.
    pub async fn checkpoint(&self, id: &str, options: &CheckpointOptions) -> Result<()> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            CheckpointTaskRequest {
                container_id: id.into(),
                parent_checkpoint: String::new(),
                options: Some(any("containerd.runc.v1.CheckpointOptions", options)),
            },
            CRIU_TIMEOUT,
        );
        let answer = match t.checkpoint(req).await {
            Ok(a) => a.into_inner(),
            // containerd 1.7 commits its own copy after the shim's dump
            // (below); two checkpoints at once commit the same empty
            // directory's tar and the second fails ("content sha256:...:
            // already exists") although its dump is complete and the
            // container stopped as asked. A complete dump is the checkpoint.
            Err(s) if dump_complete(&options.image_path) => {
                eprintln!(
                    "lazarus: warning: containerd: checkpoint {id}: {} (the shim's checkpoint in \
                     {} is complete; only containerd's own copy failed)",
                    s.message(),
                    options.image_path
                );
                return Ok(());
            }
            Err(s) => return Err(checkpoint_error(id, s)),
        };
        // containerd 1.7 honours image_path only for runtimes named
        // io.containerd.runc*: for Lazarus it also committed its own (empty)
        // temporary checkpoint directory and the container's spec to its
        // content store. Nothing refers to them, and left there the next
        // checkpoint of the same container fails ("content ... already
        // exists") until containerd's garbage collector runs; removed, as
        // Docker removes what its checkpoints leave there.
        for blob in answer.descriptors {
            let mut c = ContentClient::new(self.channel.clone());
            let req = self.request(
                DeleteContentRequest {
                    digest: blob.digest.clone(),
                },
                CALL_TIMEOUT,
            );
            if let Err(e) = not_found_is_done(c.delete(req).await, "checkpoint content") {
                eprintln!("lazarus: warning: containerd kept {}: {e}", blob.digest);
            }
        }
        Ok(())
    }

    /// A container record running Lazarus, on the snapshot `key`.
    pub async fn create_container(&self, new: NewContainer<'_>) -> Result<()> {
        let mut c = ContainersClient::new(self.channel.clone());
        let container = Container {
            id: new.id.into(),
            labels: new.labels.clone(),
            image: new.image.into(),
            runtime: Some(Runtime {
                name: LAZARUS_RUNTIME.into(),
                options: None,
            }),
            spec: Some(Any {
                type_url: SPEC_TYPE.into(),
                value: new.spec.to_vec(),
            }),
            snapshotter: new.snapshotter.into(),
            snapshot_key: new.id.into(),
            ..Default::default()
        };
        let req = self.request(
            CreateContainerRequest {
                container: Some(container),
            },
            CALL_TIMEOUT,
        );
        c.create(req)
            .await
            .map_err(Error::containerd(format!("create container {}", new.id)))?;
        Ok(())
    }

    /// A task restored from the CRIU images in `images` when started.
    pub async fn create_restoring_task(
        &self,
        id: &str,
        rootfs: Vec<Mount>,
        images: &Path,
    ) -> Result<()> {
        let mut t = TasksClient::new(self.channel.clone());
        let options = RuncOptions {
            criu_image_path: images.to_string_lossy().into_owned(),
            criu_work_path: String::new(),
        };
        let req = self.request(
            CreateTaskRequest {
                container_id: id.into(),
                rootfs,
                options: Some(any("containerd.runc.v1.Options", &options)),
                ..Default::default()
            },
            CALL_TIMEOUT,
        );
        t.create(req)
            .await
            .map_err(Error::containerd(format!("create task {id}")))?;
        Ok(())
    }

    /// Starts a task; for one created from a checkpoint, the restore.
    pub async fn start_task(&self, id: &str) -> Result<u32> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            StartRequest {
                container_id: id.into(),
                exec_id: String::new(),
            },
            CRIU_TIMEOUT,
        );
        Ok(t.start(req)
            .await
            .map_err(Error::containerd(format!("start (restore) {id}")))?
            .into_inner()
            .pid)
    }

    /// Freezes the task's processes (the shim's cgroup freezer).
    pub async fn pause(&self, id: &str) -> Result<()> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            PauseTaskRequest {
                container_id: id.into(),
            },
            CALL_TIMEOUT,
        );
        t.pause(req)
            .await
            .map_err(Error::containerd(format!("pause {id}")))?;
        Ok(())
    }

    /// Thaws a paused task.
    pub async fn resume(&self, id: &str) -> Result<()> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            ResumeTaskRequest {
                container_id: id.into(),
            },
            CALL_TIMEOUT,
        );
        t.resume(req)
            .await
            .map_err(Error::containerd(format!("resume {id}")))?;
        Ok(())
    }

    /// Sends SIGKILL to every process of the task.
    pub async fn kill_all(&self, id: &str) -> Result<()> {
        let mut t = TasksClient::new(self.channel.clone());
        let req = self.request(
            KillRequest {
                container_id: id.into(),
                exec_id: String::new(),
                signal: 9,
                all: true,
            },
            CALL_TIMEOUT,
        );
        t.kill(req)
            .await
            .map_err(Error::containerd(format!("kill {id}")))?;
        Ok(())
    }

    /// Kills (SIGKILL) and deletes a task; nothing there is not an error.
    pub async fn remove_task(&self, id: &str) -> Result<()> {
        // A task that is not running cannot be killed; delete it anyway.
        let _ = self.kill_all(id).await;
        let mut t = TasksClient::new(self.channel.clone());
        let mut last = None;
        for _ in 0..50 {
            let del = self.request(
                DeleteTaskRequest {
                    container_id: id.into(),
                },
                CALL_TIMEOUT,
            );
            match t.delete(del).await {
                Ok(_) => return Ok(()),
                Err(s) if s.code() == tonic::Code::NotFound => return Ok(()),
                // Still running: the kill has not landed yet.
                Err(s) => last = Some(s),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(Error::containerd(format!("delete task {id}"))(
            last.expect("the loop ran"),
        ))
    }

    pub async fn remove_container(&self, id: &str) -> Result<()> {
        let mut c = ContainersClient::new(self.channel.clone());
        let req = self.request(DeleteContainerRequest { id: id.into() }, CALL_TIMEOUT);
        not_found_is_done(c.delete(req).await, &format!("delete container {id}"))
    }
}

/// Whether the shim finished a dump into `image_path` (it writes
/// lazarus.json last).
fn dump_complete(image_path: &str) -> bool {
    !image_path.is_empty()
        && Path::new(image_path)
            .join(lazarus_core::checkpoint::image::METADATA_FILE)
            .is_file()
}

/// What [`Containerd::create_container`] needs.
pub struct NewContainer<'a> {
    pub id: &'a str,
    pub image: &'a str,
    pub spec: &'a [u8],
    pub snapshotter: &'a str,
    pub labels: &'a std::collections::HashMap<String, String>,
}

fn any(type_url: &str, m: &impl Message) -> Any {
    Any {
        type_url: type_url.into(),
        value: m.encode_to_vec(),
    }
}

fn not_found_is_done<T>(r: std::result::Result<T, tonic::Status>, what: &str) -> Result<()> {
    match r {
        Ok(_) => Ok(()),
        Err(s) if s.code() == tonic::Code::NotFound => Ok(()),
        Err(s) => Err(Error::containerd(what)(s)),
    }
}

/// Why a daemon's socket refused this process, said for people: a user
/// without access is told lazarus must run as root.
pub fn why_not_connected(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => format!(
            "permission denied ({e}): lazarus must run as root (sudo lazarus ...), as the \
             daemons' sockets and CRIU need"
        ),
        std::io::ErrorKind::ConnectionRefused => {
            format!("nothing listens on the socket ({e}): is the daemon running?")
        }
        _ => e.to_string(),
    }
}
