//! `lazarus restore --import FILE`: the archive is verified whole and
//! extracted to a private scratch directory before anything is created;
//! then a new container is made from it (through Docker when it came from
//! Docker, else through containerd), its root filesystem changes applied,
//! and it is started from the checkpoint. A failure after the container was
//! created removes it again: nothing is left behind.

use std::path::Path;
use std::time::Instant;

use lazarus_core::archive::{self, group, ArchiveConfig};
use lazarus_core::checkpoint::handoff;
use lazarus_core::config::Config;
use lazarus_core::criu::DirectWait;
use lazarus_core::host::netlock::{self, NetlockRequest};
use lazarus_core::security::authority;
use serde_json::{json, Value};

use crate::containerd::{Containerd, NewContainer, LAZARUS_RUNTIME};
use crate::docker::Docker;
use crate::endpoints::{Endpoints, DEFAULT_NAMESPACE, DOCKER_NAMESPACE};
use crate::error::{Error, Result};
use crate::grants::GrantArgs;
use crate::progress::{self, Progress};
use crate::seal;
use crate::{docker_config, export, image_chain};
use lazarus_core::host::overlay::OverlayMount;

/// The name of the Docker checkpoint an import restores from (removed
/// once the container runs).
const IMPORT_CHECKPOINT: &str = "lazarus-import";
/// How long a group restore's network lock may be held before the shims
/// release it themselves (a group whose restore takes longer loses only
/// the lock's protection).
const NETLOCK_EXPIRY_SECONDS: i64 = 300;
/// The snapshotter a containerd restore prepares the root filesystem with.
const SNAPSHOTTER: &str = "overlayfs";

#[derive(clap::Args, Clone)]
pub struct ImportArgs {
    /// The archive to restore
    #[arg(long = "import", short = 'i', value_name = "FILE")]
    pub file: std::path::PathBuf,
    /// The new container's name (default: the checkpointed one's)
    #[arg(long)]
    pub name: Option<String>,
    /// Restore through containerd into this namespace (not Docker)
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Docker runtime name for the new container (default: the one
    /// recorded, e.g. lazarus)
    #[arg(long, verbatim_doc_comment)]
    pub runtime: Option<String>,
    /// Print the result as JSON
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub grants: GrantArgs,
    /// The age identity an encrypted archive is opened with (`lazarus
    /// keygen --age` writes one)
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub identity: Option<std::path::PathBuf>,
    /// Set by a group restore only: lock the container's network until the
    /// group is back (lazarus-core's `host::netlock`).
    #[arg(skip)]
    pub netlock: Option<NetlockRequest>,
    /// Set by `serve` only: make the scratch directory in this one (the
    /// migration's, which its guard removes if the agent dies).
    #[arg(skip)]
    pub scratch_in: Option<std::path::PathBuf>,
    /// Set by `serve` only, for a stop-and-copy migration: the memory
    /// received before the archive (CRIU's page server wrote its pagemap
    /// and pages images here), moved in beside the archive's images. On the
    /// same filesystem as `scratch_in`.
    #[arg(skip)]
    pub pages: Option<std::path::PathBuf>,
}

/// What was restored, for the report.
struct Restored {
    name: String,
    id: String,
    engine: &'static str,
    namespace: String,
}

pub async fn run(args: &ImportArgs, endpoints: &Endpoints, config: &Config) -> Result<()> {
    // An encrypted archive is decrypted into a private scratch directory
    // (held until the import ends) and imported from there.
    let _decrypted;
    let decrypted_args;
    let args = match seal::is_encrypted(&args.file) {
        false => args,
        true => {
            let scratch = config.scratch_dir("decrypt")?;
            let plain = scratch.path().join("archive.tar");
            seal::decrypt(&args.file, &plain, args.identity.as_deref())?;
            _decrypted = scratch;
            decrypted_args = ImportArgs {
                file: plain,
                ..args.clone()
            };
            &decrypted_args
        }
    };
    if group::is_group(&args.file) {
        let v = restore_group(args, endpoints, config).await?;
        match args.json {
            true => println!("{v:#}"),
            false => {
                for m in v["members"].as_array().into_iter().flatten() {
                    println!("{}", m["name"].as_str().unwrap_or_default());
                }
            }
        }
        return Ok(());
    }
    let v = restore(args, endpoints, config).await?;
    if args.json {
        println!("{v:#}");
    } else {
        println!("{}", v["name"].as_str().unwrap_or_default());
    }
    Ok(())
}

/// Restores every member of a group archive (`checkpoint --group`), in the
/// order they were checkpointed, each as [`restore`] does; if one fails,
/// the members restored before it are removed again: the group comes back
/// whole or not at all.
pub async fn restore_group(
    args: &ImportArgs,
    endpoints: &Endpoints,
    config: &Config,
) -> Result<Value> {
    if args.name.is_some() {
        return Err(Error::Refused(format!(
            "{} is a group archive: its members keep their names (--name names one container)",
            args.file.display()
        )));
    }
    let started = Instant::now();
    let scratch = config.scratch_dir("group-import")?;
    // Every member is verified against the group's index before any is
    // restored.
    let (index, files) = group::extract_group(&args.file, &scratch.path().join("members"))?;
    // Every member's network stays locked from before its restore until
    // all are back, so no member meets another half restored (see
    // host::netlock); the shims release it themselves if this process dies.
    let netlock = NetlockRequest {
        expires_at: chrono::Utc::now().timestamp() + NETLOCK_EXPIRY_SECONDS,
    };
    let mut restored: Vec<Value> = Vec::with_capacity(files.len());
    for (member, file) in index.members.iter().zip(files) {
        let one = ImportArgs {
            file,
            name: None,
            namespace: args.namespace.clone(),
            runtime: args.runtime.clone(),
            json: true,
            grants: args.grants.clone(),
            identity: None,
            netlock: Some(netlock),
            scratch_in: None,
            pages: None,
        };
        match restore(&one, endpoints, config).await {
            Ok(v) => restored.push(v),
            Err(error) => {
                let mut failed = Vec::new();
                for r in &restored {
                    if let Err(e) = remove(r, endpoints).await {
                        failed.push(format!("{}: {e}", r["name"].as_str().unwrap_or_default()));
                    }
                }
                let outcome = match failed.is_empty() {
                    true => "the members restored before it were removed again".to_string(),
                    false => format!(
                        "removing the members restored before it failed: {}",
                        failed.join("; ")
                    ),
                };
                return Err(Error::Group {
                    member: member.name.clone(),
                    error: Box::new(error),
                    outcome,
                });
            }
        }
    }
    let locked = Instant::now();
    let mut unlock_failed = Vec::new();
    for r in &restored {
        if let Err(e) = unlock_member(r, endpoints).await {
            unlock_failed.push(format!("{}: {e}", r["name"].as_str().unwrap_or_default()));
        }
    }
    if !unlock_failed.is_empty() {
        eprintln!(
            "lazarus: warning: the network lock of {} (it expires by itself within {} s)",
            unlock_failed.join("; "),
            NETLOCK_EXPIRY_SECONDS
        );
    }
    Ok(json!({
        "group": args.file,
        "unlock_seconds": locked.elapsed().as_secs_f64(),
        "frozen_at": index.frozen_at,
        "members": restored,
        "restore_seconds": started.elapsed().as_secs_f64(),
    }))
}

/// Restores the archive; returns the report `--json` prints.
pub async fn restore(args: &ImportArgs, endpoints: &Endpoints, config: &Config) -> Result<Value> {
    let started = Instant::now();
    let show = progress::wanted(args.json);
    // The manifest alone first: a file that is not an archive, or is of a
    // newer format, is refused at once.
    let manifest = archive::read_manifest(&args.file)?;
    args.grants.check_signature(config, &manifest, &args.file)?;
    let scratch = match &args.scratch_in {
        Some(parent) => lazarus_core::scratch::Scratch::new_in(parent, "import")?,
        None => config.scratch_dir("import")?,
    };
    let dir = scratch.path().join("archive");
    let bar = Progress::bytes(show, "verify", manifest.total_size());
    let limits = config.import.limits();
    let extracted =
        archive::extract_with(&args.file, &dir, &limits, &|_| true, &mut |n| bar.set(n));
    bar.finish();
    extracted?;
    let pages_bytes = match &args.pages {
        Some(pages) => Some(move_pages(pages, &dir.join(archive::CHECKPOINT_DIR))?),
        None => None,
    };
    // What follows is the restore proper, from the extracted image path.
    let extract_seconds = started.elapsed().as_secs_f64();
    if let Some(request) = &args.netlock {
        request.write(&dir.join(archive::CHECKPOINT_DIR))?;
    }
    let cfg = read_config(&dir)?;
    let recorded = read_engine_config(&dir)?;
    // What the archive asks of this host, from the configuration this
    // restore will replay: Docker's create request, or the OCI spec.
    let asked = match (&args.namespace, &recorded) {
        (None, Some(body)) => authority::of_docker(body),
        _ => authority::of_oci_spec(&read_spec(&dir)?),
    };
    let what = format!("checkpoint archive {}", args.file.display());
    args.grants.policy(config).check(&what, &asked)?;
    let docker = Docker::new(&endpoints.docker)?;
    let restored = match (&args.namespace, recorded) {
        (None, Some(recorded)) => {
            if !docker.reachable().await {
                return Err(Error::DockerUnreachable {
                    address: endpoints.docker.clone(),
                    why: format!(
                        "{} came from Docker; to restore it without Docker give --namespace",
                        args.file.display()
                    ),
                });
            }
            into_docker(args, &docker, &cfg, &recorded, &dir, show).await?
        }
        (namespace, _) => {
            let ns = namespace
                .clone()
                .unwrap_or_else(|| match cfg.namespace.as_str() {
                    "" | DOCKER_NAMESPACE => DEFAULT_NAMESPACE.to_string(),
                    ns => ns.to_string(),
                });
            into_containerd(args, endpoints, &ns, &cfg, &dir, show).await?
        }
    };
    Ok(json!({
        "name": restored.name,
        "id": restored.id,
        "engine": restored.engine,
        "namespace": restored.namespace,
        "from": args.file,
        "extract_seconds": extract_seconds,
        "restore_seconds": started.elapsed().as_secs_f64(),
        "pages_bytes": pages_bytes,
    }))
}

/// Moves every file of `pages` (a page server's images directory) into the
/// extracted `images`, which must not have them already: an archive that
/// carried its own would be a different dump. Returns the bytes moved.
fn move_pages(pages: &Path, images: &Path) -> Result<u64> {
    let read = |e| lazarus_core::Error::io(format!("read {}", pages.display()))(e);
    let mut bytes = 0;
    for entry in std::fs::read_dir(pages).map_err(read)? {
        let entry = entry.map_err(read)?;
        let to = images.join(entry.file_name());
        if to.symlink_metadata().is_ok() {
            return Err(Error::Refused(format!(
                "the archive has its own {} beside the memory the page server received: not \
                 one dump",
                to.display()
            )));
        }
        bytes += entry.metadata().map_err(read)?.len();
        std::fs::rename(entry.path(), &to).map_err(lazarus_core::Error::io(format!(
            "move {} into {}",
            entry.path().display(),
            images.display()
        )))?;
    }
    Ok(bytes)
}

fn read_config(dir: &Path) -> Result<ArchiveConfig> {
    let path = dir.join(archive::CONFIG_DUMP);
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not what Lazarus writes: {e}",
            archive::CONFIG_DUMP
        ))
    })
}

/// The archive's OCI spec, as JSON (its shape is checked where used).
fn read_spec(dir: &Path) -> Result<Value> {
    let bytes = std::fs::read(dir.join(archive::SPEC_DUMP)).map_err(lazarus_core::Error::io(
        format!("read {}", archive::SPEC_DUMP),
    ))?;
    serde_json::from_slice(&bytes).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::SPEC_DUMP
        ))
    })
}

fn read_engine_config(dir: &Path) -> Result<Option<Value>> {
    let path = dir.join(archive::ENGINE_DUMP);
    if !path.exists() {
        return Ok(None);
    }
    let bytes = std::fs::read(&path)
        .map_err(lazarus_core::Error::io(format!("read {}", path.display())))?;
    serde_json::from_slice(&bytes).map(Some).map_err(|e| {
        Error::Refused(format!(
            "the archive's {} is not JSON: {e}",
            archive::ENGINE_DUMP
        ))
    })
}

async fn into_docker(
    args: &ImportArgs,
    docker: &Docker,
    cfg: &ArchiveConfig,
    recorded: &Value,
    dir: &Path,
    show: bool,
) -> Result<Restored> {
    let image = docker_image(docker, &cfg.image_name, &cfg.image_digest).await?;
    let name = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    let runtime = args
        .runtime
        .clone()
        .or_else(|| docker_config::runtime(recorded).map(str::to_string))
        .unwrap_or_else(|| LAZARUS_RUNTIME.to_string());
    let mut body = docker_config::for_import(recorded, &image, &runtime);
    // Lazarus restores from the extracted images where they lie (see
    // lazarus_core::checkpoint::handoff); another runtime only through
    // Docker's own checkpoint, which Docker copies twice before it starts.
    let images = dir.join(archive::CHECKPOINT_DIR);
    let hand_off = runtime == LAZARUS_RUNTIME;
    if hand_off {
        handoff::offer(&images)?;
        docker_config::hand_off(&mut body, &images);
    }
    let id = docker.create(&name, &body).await.map_err(|e| match e {
        Error::Docker { status: 409, .. } => Error::Refused(format!(
            "a container named {name} already exists on this host: give the restored one another \
             name with --name"
        )),
        Error::Docker { message, .. } if message.contains("runtime") => Error::Refused(format!(
            "Docker here does not know the runtime {runtime:?} ({message}): register it in \
             daemon.json, or give --runtime {LAZARUS_RUNTIME}"
        )),
        e => e,
    })?;
    let restored = async {
        let v = docker
            .container(&id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("Docker lost the new container {name}")))?;
        apply_rootfs_diff(dir, &export::docker_overlay(&v, &name)?)?;
        if hand_off {
            let bar = Progress::spinner(show, "restore");
            let started = docker.start(&id).await;
            bar.finish();
            return started;
        }
        // Docker restores only from its own checkpoint directory.
        let checkpoint = docker.checkpoint_dir(&id, IMPORT_CHECKPOINT).await?;
        export::move_dir(&images, &checkpoint)?;
        let bar = Progress::spinner(show, "restore");
        let started = docker.start_from_checkpoint(&id, IMPORT_CHECKPOINT).await;
        bar.finish();
        started?;
        // Docker copied it for containerd; its own copy is not needed again.
        if let Err(e) = docker.remove_checkpoint(&id, IMPORT_CHECKPOINT).await {
            eprintln!("lazarus: warning: {e}");
        }
        Ok::<(), Error>(())
    }
    .await;
    if let Err(e) = restored {
        let cleanup = docker.remove(&id).await.err().map(|c| c.to_string());
        return Err(e.with_cleanup(cleanup));
    }
    Ok(Restored {
        name,
        id,
        engine: "docker",
        namespace: DOCKER_NAMESPACE.into(),
    })
}

/// How this host's Docker names the archive's image: by its name when that
/// is the same image, else by its id. Missing or different: an error naming
/// both, before anything is created.
pub async fn docker_image(docker: &Docker, image_name: &str, want: &str) -> Result<String> {
    let by_name = match image_name.is_empty() {
        true => None,
        false => docker.image(image_name).await?,
    };
    let name_id = by_name
        .as_ref()
        .and_then(|v| v["Id"].as_str())
        .unwrap_or("");
    if want.is_empty() || name_id == want {
        if by_name.is_some() {
            return Ok(image_name.to_string());
        }
    } else if docker.image(want).await?.is_some() {
        return Ok(want.to_string());
    }
    if by_name.is_some() {
        return Err(Error::Refused(format!(
            "image {} on this host is {name_id}, but the checkpoint was taken on {want}: load the \
             same image (docker save on the source, docker load here), then import again",
            image_name
        )));
    }
    Err(Error::NotFound(format!(
        "image {} ({}) is not on this host: docker pull {} (or docker load it), then import again",
        image_name,
        if want.is_empty() {
            "no digest recorded"
        } else {
            want
        },
        image_name
    )))
}

/// Applies the archive's root filesystem changes to the new container's
/// root filesystem, mounted for this at a private directory.
fn apply_rootfs_diff(dir: &Path, overlay: &[String]) -> Result<()> {
    let merged = dir.join("rootfs");
    std::fs::create_dir(&merged).map_err(lazarus_core::Error::io(format!(
        "create {}",
        merged.display()
    )))?;
    let mounted = OverlayMount::mount(overlay, &merged)?;
    lazarus_core::checkpoint::rootfs::apply_extracted(dir, mounted.path())?;
    Ok(())
}

async fn into_containerd(
    args: &ImportArgs,
    endpoints: &Endpoints,
    ns: &str,
    cfg: &ArchiveConfig,
    dir: &Path,
    show: bool,
) -> Result<Restored> {
    let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
    let id = args.name.clone().unwrap_or_else(|| cfg.name.clone());
    lazarus_core::ids::check_component("container name", &id)?;
    match ctr.container(&id).await {
        Ok(_) => {
            return Err(Error::Refused(format!(
                "a container {id} already exists in namespace {ns}: give the restored one another \
                 name with --name"
            )))
        }
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    let chain = image_chain::snapshot_parent(&ctr, cfg).await?;
    let snapshotter = SNAPSHOTTER;
    let spec = image_chain::respec(read_spec(dir)?, &id, ns);
    let mut created = Vec::new();
    let restored = async {
        let mounts = ctr.prepare(snapshotter, &id, &chain).await?;
        created.push("snapshot");
        let overlay = mounts
            .iter()
            .find(|m| m.r#type == "overlay")
            .ok_or_else(|| {
                Error::Refused(format!("snapshot of {id} is not an overlay: {mounts:?}"))
            })?;
        apply_rootfs_diff(dir, &overlay.options)?;
        let labels = Default::default();
        ctr.create_container(NewContainer {
            id: &id,
            image: &cfg.image_name,
            spec: &spec,
            snapshotter,
            labels: &labels,
        })
        .await?;
        created.push("container");
        ctr.create_restoring_task(&id, mounts, &dir.join(archive::CHECKPOINT_DIR))
            .await?;
        created.push("task");
        let bar = Progress::spinner(show, "restore");
        let pid = ctr.start_task(&id).await;
        bar.finish();
        pid
    }
    .await;
    if let Err(e) = restored {
        let mut failed = Vec::new();
        for what in created.iter().rev() {
            let undone = match *what {
                "task" => ctr.remove_task(&id).await,
                "container" => ctr.remove_container(&id).await,
                _ => ctr.remove_snapshot(snapshotter, &id).await,
            };
            if let Err(c) = undone {
                failed.push(c.to_string());
            }
        }
        return Err(e.with_cleanup((!failed.is_empty()).then(|| failed.join("; "))));
    }
    Ok(Restored {
        name: id.clone(),
        id,
        engine: "containerd",
        namespace: ns.into(),
    })
}

/// Removes a container [`restore`] made (its report names it): a
/// migration whose sender never confirmed must not leave a second copy.
pub async fn remove(restored: &Value, endpoints: &Endpoints) -> Result<()> {
    let id = restored["id"].as_str().unwrap_or_default();
    match restored["engine"].as_str() {
        Some("docker") => Docker::new(&endpoints.docker)?.remove(id).await,
        _ => {
            let ns = restored["namespace"].as_str().unwrap_or(DEFAULT_NAMESPACE);
            let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
            ctr.remove_task(id).await?;
            ctr.remove_container(id).await?;
            ctr.remove_snapshot(SNAPSHOTTER, id).await
        }
    }
}

/// Releases a restored group member's network lock, through its init's
/// namespace.
async fn unlock_member(restored: &Value, endpoints: &Endpoints) -> Result<()> {
    let id = restored["id"].as_str().unwrap_or_default();
    let ns = restored["namespace"].as_str().unwrap_or(DEFAULT_NAMESPACE);
    let ctr = Containerd::connect(&endpoints.containerd, ns).await?;
    let pid = ctr.task_pid(id).await?;
    let netns = std::path::PathBuf::from(format!("/proc/{pid}/ns/net"));
    netlock::unlock(&netns, &DirectWait)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_pages_move_in_beside_the_archives_images() {
        let pages = tempfile::tempdir().unwrap();
        let images = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("pagemap-1.img"), [1u8; 10]).unwrap();
        std::fs::write(pages.path().join("pages-1.img"), [2u8; 4096]).unwrap();
        std::fs::write(images.path().join("inventory.img"), b"").unwrap();
        assert_eq!(move_pages(pages.path(), images.path()).unwrap(), 4106);
        assert!(images.path().join("pages-1.img").is_file());
        assert!(images.path().join("pagemap-1.img").is_file());
        assert_eq!(std::fs::read_dir(pages.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_archive_with_pages_of_its_own_is_not_one_dump() {
        let pages = tempfile::tempdir().unwrap();
        let images = tempfile::tempdir().unwrap();
        std::fs::write(pages.path().join("pages-1.img"), b"received").unwrap();
        std::fs::write(images.path().join("pages-1.img"), b"archived").unwrap();
        let e = move_pages(pages.path(), images.path())
            .unwrap_err()
            .to_string();
        assert!(e.contains("not one dump"), "{e}");
        assert_eq!(
            std::fs::read(images.path().join("pages-1.img")).unwrap(),
            b"archived"
        );
    }
}
