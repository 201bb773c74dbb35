//! Restore: a checkpoint image back into a new container, at Start.
//!
//! This file: the plan checked at Create and CRIU's restore at Start, its
//! answer read and its failure undone. `criu_options.rs`: CRIU's options
//! built from the new container's spec; `images.rs`: the image directory
//! made ready for CRIU; `dead_shim.rs`: the record a restore under way
//! leaves, for the clean-up after a shim that died mid-restore.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use protobuf::MessageField;

use super::image::{self, Metadata};
use super::postcopy::PageServer;
use crate::criu::{self, rpc, Call, Criu, CriuError, CriuFailure, CriuOp, LazyPages};
use crate::error::{Error, Result};
use crate::host::cgroup;

mod criu_options;
mod dead_shim;
mod images;
#[cfg(test)]
mod tests;

use criu_options::mount_source;
pub use dead_shim::clean_after_dead_shim;

/// CRIU's index of an image directory; every dump writes it.
const INVENTORY: &str = "inventory.img";

/// How long the tasks of a failed restore get to die.
const FAILED_RESTORE_KILL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Recorded at Create, carried out at Start (as containerd's runc shim does).
#[derive(Debug, Clone)]
pub struct RestorePlan {
    pub images: PathBuf,
    pub work: PathBuf,
    pub metadata: Metadata,
    pub descriptors: Vec<String>,
    /// The image directory is a copy made for this restore alone
    /// (containerd's unpacked checkpoint image): removed once the restore
    /// succeeded or failed.
    pub temporary: bool,
    /// Post-copy: the memory is not in the images but served from here.
    pub page_server: Option<PageServer>,
    /// The scratch directory in memory the images were copied into (a
    /// store-backed checkpoint's pages, resolved there): its owner lock is
    /// held until the plan is gone, so one left by a shim that died is
    /// removed by the next sweep, and never while in use.
    pub memory: Option<std::sync::Arc<crate::scratch::Scratch>>,
}

/// The cgroup v1 mounts a restore binds from the host's hierarchies
/// (`/sys/fs/cgroup/<hierarchy>/<root>`) must name a hierarchy and a
/// cgroup, nothing that climbs out of `/sys/fs/cgroup`: lazarus.json comes
/// with the images, from wherever they came.
fn check_cgroup_mounts(images: &Path, metadata: &Metadata) -> Result<()> {
    use std::path::Component;
    for m in &metadata.cgroup_mounts {
        let hierarchy = Path::new(&m.mountpoint).file_name();
        let plain = |p: &str| {
            Path::new(p)
                .components()
                .all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
        };
        if hierarchy.is_none()
            || !plain(&m.mountpoint)
            || !m.root.starts_with('/')
            || !plain(&m.root)
        {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {}: cgroup mount {:?} of {:?} is not a cgroup hierarchy's directory: \
                 refusing a lazarus.json that was not written by Lazarus",
                images.display(),
                m.mountpoint,
                m.root
            )));
        }
    }
    Ok(())
}

/// The new container a checkpoint is restored into.
pub struct RestoreTarget<'a> {
    pub id: &'a str,
    pub bundle: &'a Path,
    pub spec: &'a Spec,
    /// The new process-side stdio fds (None with a terminal).
    pub stdio: Option<[RawFd; 3]>,
    /// Where a failed restore's CRIU log is kept.
    pub keep_failed_log: Option<&'a Path>,
    /// Where compressed pages of an image directory that must stay as it
    /// is are decompressed for CRIU (a private directory in it, removed
    /// after the restore).
    pub scratch_root: &'a Path,
    /// Asked while CRIU restores: true calls the restore off (CRIU is
    /// killed, and what it had restored with it), e.g. on a Kill.
    pub cancel: Option<&'a dyn Fn() -> bool>,
}

pub struct Restored {
    pub pid: i32,
    /// The restored terminal's master, when the checkpoint had one.
    pub pts_master: Option<File>,
    /// Post-copy: the daemon still fetching the memory. The process needs
    /// it until it exits with 0; if it fails, pages never arrive, and the
    /// process must be killed rather than left to read zeroes there.
    pub lazy_pages: Option<Box<dyn LazyPages>>,
}

impl RestorePlan {
    /// Checks the image against the new container's spec, so an incompatible
    /// bundle is refused at Create with a clear error, before anything runs.
    pub fn prepare(
        images: PathBuf,
        work: Option<PathBuf>,
        spec: &Spec,
        terminal: bool,
    ) -> Result<Self> {
        if !images.is_dir() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint directory {} does not exist ({})",
                images.display(),
                image::CTR_17_IMAGE_PATH_HINT
            )));
        }
        let metadata = Metadata::load(&images)?;
        // CRIU's own complaint about a missing index is an EOF on an
        // "empty-image": say which file is missing, at Create.
        if !images.join(INVENTORY).is_file() {
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} is incomplete: {INVENTORY} (CRIU's index of the images) is missing",
                images.display()
            )));
        }
        let descriptors = image::load_descriptors(&images)?;
        check_cgroup_mounts(&images, &metadata)?;
        // CRIU gives the processes the credentials and mounts of its
        // images, not those of this container: they may come from anywhere
        // (an imported archive), so they must not exceed what it grants.
        let bound_mounts: Vec<String> = (metadata.external_mounts.iter().cloned())
            .chain(metadata.cgroup_mounts.iter().map(|m| m.mountpoint.clone()))
            .collect();
        crate::security::creds::check_restore(&images, spec, &bound_mounts)?;
        for dest in &metadata.external_mounts {
            if mount_source(spec, dest).is_none() {
                return Err(Error::InvalidArgument(format!(
                    "checkpoint {} needs the mount {dest}, which this container's spec does not have: \
                     create the container with the same mounts and volumes as the checkpointed one",
                    images.display()
                )));
            }
        }
        let joined: Vec<String> = super::namespace_paths(spec)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        for kind in &metadata.external_namespaces {
            if !joined.contains(kind) {
                return Err(Error::InvalidArgument(format!(
                    "checkpoint {} was taken in a {kind} namespace joined from outside the container, \
                     but this container's spec gives no {kind} namespace path",
                    images.display()
                )));
            }
        }
        if metadata.terminal != terminal {
            let (had, has) = if metadata.terminal {
                ("with", "without")
            } else {
                ("without", "with")
            };
            return Err(Error::InvalidArgument(format!(
                "checkpoint {} was taken {had} a terminal but this container is created {has} one: \
                 use the same -t setting as the checkpointed container",
                images.display()
            )));
        }
        let work = work.unwrap_or_else(|| images.clone());
        // A push request came with the images: its memory is here already.
        let page_server =
            PageServer::read(&images)?.filter(|s| s.mode == super::postcopy::PageMode::Lazy);
        Ok(RestorePlan {
            images,
            work,
            metadata,
            descriptors,
            temporary: false,
            page_server,
            memory: None,
        })
    }

    /// Post-copy from a directory this restore does not own (an image
    /// path, an import's scratch directory): the lazy-pages daemon reads
    /// the images and its TLS files there after the restore has returned,
    /// while the memory streams, but their owner may remove them as soon
    /// as the container runs. The images are small (the memory is not in
    /// them), so they are copied into a private directory under `within`
    /// (the shim gives the container's bundle) that this restore owns and
    /// removes (as containerd's copy) once the daemon is done.
    pub fn own_postcopy_images(&mut self, within: &Path) -> Result<()> {
        if self.page_server.is_none() || self.temporary {
            return Ok(());
        }
        let copy = super::pages::decompressed_copy(&self.images, &[], within)?.keep();
        if self.work == self.images {
            self.work = copy.clone();
        }
        self.images = copy;
        self.temporary = true;
        Ok(())
    }

    /// Removes the image directory if it is a temporary copy (see
    /// [`RestorePlan::temporary`]); never across a mount point.
    pub fn discard_temporary_images(&self) {
        if self.temporary {
            image::remove_temporary(&self.images);
        }
    }

    /// Restores the process tree as a child of this process (rst_sibling).
    /// When the network namespace was dumped empty, CRIU creates a fresh one
    /// and `setup_network(pid)` configures it before sockets are restored
    /// (an established TCP connection needs its address back first).
    pub fn restore(
        &self,
        criu: &dyn Criu,
        target: &RestoreTarget,
        setup_network: &mut dyn FnMut(i32) -> Result<()>,
    ) -> Result<Restored> {
        let (id, bundle, spec) = (target.id, target.bundle, target.spec);
        let version = super::check_criu(criu)?;
        super::check_criu_can_read(&self.metadata.criu_version, version, &self.images)?;
        self.apply_rootfs_diff(id, spec, bundle)?;
        self.check_image(spec, bundle)?;
        image::create_dir(&self.work)?;
        // Held until CRIU is done: the private copy is removed with it.
        let readable = self.readable_images(target.scratch_root)?;
        let images_dir = criu::open_dir(readable.path())?;
        let work_dir = criu::open_dir(&self.work)?;
        let mut keep = vec![images_dir.as_raw_fd(), work_dir.as_raw_fd()];
        let new_cgroup = cgroup::path_of(spec, id);
        let (mut opts, namespaces) = self.criu_options(target, &new_cgroup, &mut keep)?;

        // Post-copy: the daemon listens before the restore, which hands it
        // the restored process's userfaultfds through the work directory.
        let mut lazy_pages = match &self.page_server {
            Some(server) => {
                opts.set_lazy_pages(true);
                Some(criu.lazy_pages(&server.daemon_request(readable.path(), &self.work))?)
            }
            None => None,
        };

        let mut req = rpc::Criu_req::new();
        req.set_type(rpc::Criu_req_type::RESTORE);
        req.opts = MessageField::some(opts);
        let mut notified_pid = 0;
        let empty_network = super::empties_network(&self.metadata.options.empty_namespaces);
        let log = self.work.join(image::RESTORE_LOG);
        let call = Call {
            op: CriuOp::Restore,
            request: req,
            inherited: &keep,
            log: Some(&log),
            cancel: target.cancel,
        };
        let outcome = criu.call(call, &mut |script, pid| {
            match script {
                "setup-namespaces" if empty_network => setup_network(pid)?,
                "post-restore" => notified_pid = pid,
                _ => {}
            }
            Ok(())
        });
        drop(namespaces);
        let failure = match outcome {
            Ok(o) => match self.restored_tree(o, notified_pid) {
                Ok((pid, pts_master)) => {
                    return Ok(Restored {
                        pid,
                        pts_master,
                        lazy_pages,
                    })
                }
                Err(failure) => failure,
            },
            Err(Error::Criu(e)) => e.failure,
            Err(e) => return Err(e),
        };
        Err(self.failed(target, failure, &mut lazy_pages, &new_cgroup, &log))
    }

    /// After a failed restore, what it started is stopped (the lazy-pages
    /// daemon, the tasks in `new_cgroup`, CRIU's cgroup yard); the error
    /// carries CRIU's error lines and the tail of its `log`.
    fn failed(
        &self,
        target: &RestoreTarget,
        failure: CriuFailure,
        lazy_pages: &mut Option<Box<dyn LazyPages>>,
        new_cgroup: &str,
        log: &Path,
    ) -> Error {
        let id = target.id;
        if let Some(daemon) = lazy_pages.as_mut() {
            daemon.kill();
        }
        // CRIU killed mid-restore (deadline, log bound) leaves the tasks it
        // was restoring, which may still be looping and writing to its log:
        // stop them before the log is read and copied.
        let left = cgroup::kill_all(new_cgroup, FAILED_RESTORE_KILL_TIMEOUT);
        if !left.is_empty() {
            ::log::error!("failed restore of {id}: pids {left:?} would not die");
        }
        criu::yard::remove_left_yard(&self.work);
        let mut err = CriuError::new(CriuOp::Restore, failure);
        err.subject = format!("restore of {id} from {}", self.images.display());
        super::dump::explain(&mut err, log, target.keep_failed_log, &[]);
        err.into()
    }

    /// The restored tree's pid and terminal master from CRIU's answer, or
    /// why the answer is a failure.
    fn restored_tree(
        &self,
        outcome: criu::Outcome,
        notified_pid: i32,
    ) -> std::result::Result<(i32, Option<File>), CriuFailure> {
        if !outcome.response.success() {
            return Err(CriuFailure::Refused {
                errno: outcome.response.cr_errno(),
                message: outcome.response.cr_errmsg().to_string(),
            });
        }
        let pid = match outcome.response.restore.pid() {
            0 => notified_pid,
            pid => pid,
        };
        if pid <= 0 {
            return Err(CriuFailure::Protocol(
                "CRIU reported no restored pid".into(),
            ));
        }
        let pts_master = outcome.received_fd.map(File::from);
        if self.metadata.terminal && pts_master.is_none() {
            return Err(CriuFailure::Protocol(
                "CRIU sent no terminal master for a terminal checkpoint".into(),
            ));
        }
        Ok((pid, pts_master))
    }
}
