//! The containerd calls the CLI makes (gRPC on containerd's socket, every
//! call in one namespace and under a deadline). A checkpoint is always the
//! shim's: `Tasks.Checkpoint` with runc's option type, which containerd
//! hands to every runtime and Lazarus's shim understands.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::container::Runtime;
use containerd_client::services::v1::snapshots::{
    snapshots_client::SnapshotsClient, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
};
use containerd_client::services::v1::{
    containers_client::ContainersClient, content_client::ContentClient,
    images_client::ImagesClient, tasks_client::TasksClient, CheckpointTaskRequest, Container,
    CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest, DeleteContentRequest,
    DeleteTaskRequest, GetContainerRequest, GetImageRequest, GetRequest, KillRequest,
    ListContainersRequest, PauseTaskRequest, ReadContentRequest, ResumeTaskRequest, StartRequest,
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

    /// The overlay upper directory of a snapshot: where the container's
    /// changes to its image live.
    pub async fn upper_dir(&self, snapshotter: &str, key: &str) -> Result<PathBuf> {
        let mounts = self.snapshot_mounts(snapshotter, key).await?;
        upper_of(&mounts).ok_or_else(|| {
            Error::Refused(format!(
                "snapshot {key} ({snapshotter}) is not an overlay with an upper directory \
                 ({mounts:?}); Lazarus carries root filesystem changes from overlayfs only"
            ))
        })
    }

    /// How a snapshot is mounted (a container's root filesystem).
    pub async fn snapshot_mounts(&self, snapshotter: &str, key: &str) -> Result<Vec<Mount>> {
        let mut s = SnapshotsClient::new(self.channel.clone());
        let req = self.request(
            MountsRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
            },
            CALL_TIMEOUT,
        );
        Ok(s.mounts(req)
            .await
            .map_err(Error::containerd(format!("mounts of snapshot {key}")))?
            .into_inner()
            .mounts)
    }

    /// An image's manifest-or-index descriptor, None when not on this host.
    pub async fn image_target(&self, name: &str) -> Result<Option<(String, String)>> {
        let mut i = ImagesClient::new(self.channel.clone());
        let req = self.request(GetImageRequest { name: name.into() }, CALL_TIMEOUT);
        match i.get(req).await {
            Ok(r) => Ok(r
                .into_inner()
                .image
                .and_then(|i| i.target)
                .map(|t| (t.media_type, t.digest))),
            Err(s) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(s) => Err(Error::containerd(format!("image {name}"))(s)),
        }
    }

    /// A blob of the content store.
    pub async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let mut c = ContentClient::new(self.channel.clone());
        let req = self.request(
            ReadContentRequest {
                digest: digest.into(),
                offset: 0,
                size: 0,
            },
            CALL_TIMEOUT,
        );
        let what = format!("read {digest}");
        let mut stream = c
            .read(req)
            .await
            .map_err(Error::containerd(&what))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(Error::containerd(&what))? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    /// A new active snapshot on `parent`; returns its mounts.
    pub async fn prepare(&self, snapshotter: &str, key: &str, parent: &str) -> Result<Vec<Mount>> {
        let lease = self.expiring_lease(key).await?;
        let mut s = SnapshotsClient::new(self.channel.clone());
        let mut req = self.request(
            PrepareSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
                parent: parent.into(),
                labels: Default::default(),
            },
            CALL_TIMEOUT,
        );
        req.metadata_mut().insert("containerd-lease", lease);
        Ok(s.prepare(req)
            .await
            .map_err(Error::containerd(format!(
                "prepare snapshot {key} on {parent}"
            )))?
            .into_inner()
            .mounts)
    }

    pub async fn remove_snapshot(&self, snapshotter: &str, key: &str) -> Result<()> {
        let mut s = SnapshotsClient::new(self.channel.clone());
        let req = self.request(
            RemoveSnapshotRequest {
                snapshotter: snapshotter.into(),
                key: key.into(),
            },
            CALL_TIMEOUT,
        );
        not_found_is_done(s.remove(req).await, &format!("remove snapshot {key}"))
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

/// What `checkpoint --all` asks of containerd besides.
impl Containerd {
    /// A lease that ends by itself (containerd collects it after an
    /// hour). A snapshot prepared with no lease and no container record
    /// referring to it yet is garbage to containerd's collector, which any
    /// deletion may set off at once: a restore's snapshot was seen removed
    /// between its prepare and its task (the rootfs mount then failed with
    /// ENOENT). Held by the lease until the container refers to it.
    async fn expiring_lease(&self, what: &str) -> Result<MetadataValue<Ascii>> {
        use containerd_client::services::v1::leases_client::LeasesClient;
        let mut l = LeasesClient::new(self.channel.clone());
        let expire = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let req = self.request(
            containerd_client::services::v1::CreateRequest {
                id: String::new(),
                labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
            },
            CALL_TIMEOUT,
        );
        let lease = l
            .create(req)
            .await
            .map_err(Error::containerd(format!("lease for {what}")))?
            .into_inner()
            .lease
            .map(|l| l.id)
            .unwrap_or_default();
        lease.parse().map_err(|_| {
            Error::Refused(format!(
                "containerd named a lease that cannot be sent back: {lease:?}"
            ))
        })
    }

    /// containerd's namespaces (a connection in any namespace lists them).
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        use containerd_client::services::v1::namespaces_client::NamespacesClient;
        use containerd_client::services::v1::ListNamespacesRequest;
        let mut n = NamespacesClient::new(self.channel.clone());
        let req = self.request(
            ListNamespacesRequest {
                filter: String::new(),
            },
            CALL_TIMEOUT,
        );
        let mut names: Vec<String> = n
            .list(req)
            .await
            .map_err(Error::containerd("list namespaces"))?
            .into_inner()
            .namespaces
            .into_iter()
            .map(|ns| ns.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// Every container of the namespace, oldest first.
    pub async fn containers(&self) -> Result<Vec<Container>> {
        let mut c = ContainersClient::new(self.channel.clone());
        let req = self.request(ListContainersRequest { filters: vec![] }, CALL_TIMEOUT);
        let mut list = c
            .list(req)
            .await
            .map_err(Error::containerd(format!(
                "list containers in namespace {}",
                self.namespace
            )))?
            .into_inner()
            .containers;
        list.sort_by_key(|c| c.created_at.as_ref().map(|t| (t.seconds, t.nanos)));
        Ok(list)
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

/// CRIU's advice when a dump needs an option (as it logs it, which is also
/// the CLI's flag) and what the option is for.
const CLI_ADVICE: [(&str, &str); 3] = [
    ("--tcp-established", "it has established TCP connections"),
    (
        "--ext-unix-sk",
        "it is connected to unix sockets outside the container",
    ),
    ("--file-locks", "it holds file locks"),
];

/// A checkpoint's failure as containerd passes the shim's on. CRIU's
/// becomes [`Error::Criu`]: when CRIU asked for a dump option, the first
/// line says so and names the CLI's flag (the shim's own first line tells
/// Docker's users of the annotation instead, and is dropped); CRIU's lines
/// follow.
pub fn checkpoint_error(id: &str, s: tonic::Status) -> Error {
    let message = s.message();
    if !message.contains("CRIU") {
        return Error::containerd(format!("checkpoint {id}"))(s);
    }
    let (first, rest) = message.split_once('\n').unwrap_or((message, ""));
    let needs: Vec<String> = CLI_ADVICE
        .iter()
        .filter(|(flag, _)| message.contains(flag))
        .map(|(flag, why)| format!("{why}: give {flag} to checkpoint them"))
        .collect();
    match needs.is_empty() {
        true => Error::Criu {
            summary: format!("checkpoint {id}: {first}"),
            log: rest.to_string(),
        },
        false => Error::Criu {
            summary: format!("checkpoint of {id} failed: {}", needs.join("; ")),
            log: rest.to_string(),
        },
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

/// The `upperdir=` of an overlay mount.
pub fn upper_of(mounts: &[Mount]) -> Option<PathBuf> {
    mounts
        .iter()
        .filter(|m| m.r#type == "overlay")
        .flat_map(|m| &m.options)
        .find_map(|o| o.strip_prefix("upperdir="))
        .map(PathBuf::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the shim answers when CRIU wants --tcp-established (its first
    /// line for Docker's users), as containerd passes it on.
    const TCP_REFUSAL: &str = "checkpoint of container web failed: CRIU needs \
        --tcp-established: create the container with the annotation \
        io.lazarus.checkpoint.tcp-established=true (docker run --annotation \
        io.lazarus.checkpoint.tcp-established=true), or checkpoint with the runtime option \
        open_tcp (lazarus checkpoint --tcp-established)\n\
        CRIU reported failure (errno 0): (00.1) Error (criu/sk-inet.c:191): inet: Connected \
        TCP socket, consider using --tcp-established option.\n\
        (00.1) Error (criu/cr-dump.c:1): Dumping FAILED.\n\
        (full CRIU log: /run/lazarus/logs/moby/web/dump.log)";

    #[test]
    fn a_dump_that_wants_an_option_names_the_clis_flag_first() {
        let e = checkpoint_error("web", tonic::Status::internal(TCP_REFUSAL));
        assert_eq!(e.exit_code(), crate::error::exit::CRIU);
        let text = e.to_string();
        let first = text.lines().next().unwrap();
        assert_eq!(
            first,
            "checkpoint of web failed: it has established TCP connections: give \
             --tcp-established to checkpoint them"
        );
        // The annotation line is Docker's; CRIU's lines follow.
        assert!(!text.contains("open_tcp"), "{text}");
        assert!(
            text.lines()
                .nth(1)
                .unwrap()
                .contains("Connected TCP socket"),
            "{text}"
        );
        assert!(text.contains("dump.log"), "{text}");
        // Any other CRIU failure keeps the shim's first line, after what failed.
        let e = checkpoint_error(
            "web",
            tonic::Status::internal("checkpoint of container web failed: CRIU ended\nlog"),
        );
        assert!(e
            .to_string()
            .starts_with("checkpoint web: checkpoint of container web failed"));
        assert_eq!(e.exit_code(), crate::error::exit::CRIU);
        // Not CRIU's: containerd's, as before.
        let e = checkpoint_error("web", tonic::Status::not_found("no task"));
        assert!(matches!(e, Error::Containerd { .. }), "{e}");
        assert_eq!(e.exit_code(), crate::error::exit::NOT_FOUND);
    }

    /// A socket this user may not open said as such (as non-root, on
    /// root's containerd socket: EACCES), not as a "transport error".
    #[tokio::test]
    async fn a_socket_that_refuses_says_why() {
        let denied = std::io::Error::from_raw_os_error(nix::libc::EACCES);
        let why = why_not_connected(&denied);
        assert!(
            why.contains("permission denied") && why.contains("must run as root"),
            "{why}"
        );
        // A socket file nobody listens on (a daemon that died).
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("c.sock");
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let err = Containerd::connect(sock.to_str().unwrap(), "default")
            .await
            .err()
            .expect("nothing listens");
        let text = err.to_string();
        assert!(text.contains("nothing listens"), "{text}");
        assert!(!text.contains("transport error"), "{text}");
        assert_eq!(err.exit_code(), crate::error::exit::UNREACHABLE);
    }

    #[test]
    fn only_a_dump_the_shim_finished_is_complete() {
        let dir = tempfile::tempdir().unwrap();
        let images = dir.path().to_str().unwrap();
        assert!(!dump_complete(""));
        assert!(!dump_complete(images));
        std::fs::write(dir.path().join("pages-1.img"), b"").unwrap();
        assert!(
            !dump_complete(images),
            "CRIU's files alone are not a checkpoint"
        );
        std::fs::write(dir.path().join("lazarus.json"), b"{}").unwrap();
        assert!(dump_complete(images));
    }

    /// Once `request` put any namespace into gRPC metadata with an
    /// `expect`: a non-ASCII or control character panicked the CLI (and
    /// `serve`, for a namespace offered by a peer). Now it is refused
    /// before anything is dialled, saying why.
    #[tokio::test]
    async fn a_namespace_containerd_cannot_take_is_a_clear_error() {
        for ns in ["é", "ns\nx", "tab\tx", "a b", "-x", "", "a/b", "\u{7f}"] {
            let err = Containerd::connect("/nonexistent/containerd.sock", ns)
                .await
                .err()
                .unwrap_or_else(|| panic!("{ns:?} was accepted"));
            let text = err.to_string();
            assert!(
                matches!(&err, Error::Core(e) if e.kind() == lazarus_core::error::ErrorKind::InvalidArgument),
                "{ns:?}: {text}"
            );
            assert!(text.contains("invalid containerd namespace"), "{text}");
        }
        // A good name gets as far as the (missing) socket.
        let err = Containerd::connect("/nonexistent/containerd.sock", "k8s.io")
            .await
            .err()
            .unwrap();
        assert!(matches!(err, Error::ContainerdUnreachable { .. }), "{err}");
        assert!(namespace_header("default").is_ok());
    }

    #[test]
    fn the_upper_directory_comes_from_the_overlay_options() {
        let m = Mount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "index=off".into(),
                "workdir=/s/5/work".into(),
                "upperdir=/s/5/fs".into(),
                "lowerdir=/s/1/fs".into(),
            ],
            ..Default::default()
        };
        assert_eq!(upper_of(&[m]), Some(PathBuf::from("/s/5/fs")));
        let bind = Mount {
            r#type: "bind".into(),
            source: "/s/1/fs".into(),
            options: vec!["rbind".into(), "ro".into()],
            ..Default::default()
        };
        assert_eq!(upper_of(&[bind]), None);
    }

    /// The bytes containerd's Go decoder reads as runc's CheckpointOptions.
    #[test]
    fn checkpoint_options_use_runcs_field_numbers() {
        let o = CheckpointOptions {
            exit: true,
            image_path: "/i".into(),
            ..Default::default()
        };
        // field 1 varint 1; field 8 length-delimited "/i"
        assert_eq!(o.encode_to_vec(), vec![0x08, 0x01, 0x42, 0x02, b'/', b'i']);
        let r = RuncOptions {
            criu_image_path: "/i".into(),
            criu_work_path: String::new(),
        };
        assert_eq!(r.encode_to_vec(), vec![0x52, 0x02, b'/', b'i']);
    }
}
