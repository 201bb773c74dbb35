//! Restore: a checkpoint image back into a new container, at Start.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use protobuf::MessageField;

use super::identity::{self, ImageIdentity};
use super::image::{self, Metadata};
use super::postcopy::PageServer;
use crate::criu::{self, rpc, Call, Criu, CriuError, CriuFailure, CriuOp, LazyPages};
use crate::error::{Error, Result};
use crate::host::cgroup;

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
}

/// Where a restore under way works, recorded in the bundle so that the
/// clean-up after a shim killed mid-restore (containerd's `delete` of a
/// dead shim) finds what the dead shim can no longer clean: CRIU's cgroup
/// yard mounted in the work directory, containerd's unpacked copy.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct RestoreRecord {
    images: PathBuf,
    work: PathBuf,
    temporary: bool,
}

const RESTORE_RECORD: &str = ".lazarus-restore.json";

impl RestorePlan {
    /// Writes the record [`clean_after_dead_shim`] reads.
    pub fn record_in(&self, bundle: &Path) -> Result<()> {
        let record = RestoreRecord {
            images: self.images.clone(),
            work: self.work.clone(),
            temporary: self.temporary,
        };
        let path = bundle.join(RESTORE_RECORD);
        std::fs::write(&path, serde_json::to_vec(&record)?)
            .map_err(Error::io(format!("write {}", path.display())))
    }
}

/// After a shim died during a restore: unmounts the cgroup yard a killed
/// CRIU left and removes containerd's temporary copy of the checkpoint.
pub fn clean_after_dead_shim(bundle: &Path) {
    let Ok(text) = std::fs::read(bundle.join(RESTORE_RECORD)) else {
        return; // no restore was under way
    };
    let Ok(record) = serde_json::from_slice::<RestoreRecord>(&text) else {
        return;
    };
    criu::yard::remove_left_yard(&record.work);
    if record.temporary {
        image::remove_temporary(&record.images);
    }
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

    /// CRIU's options for restoring from the directories `dirs` (images,
    /// work) into the new container's cgroup, with the options the dump
    /// recorded.
    fn restore_options(
        &self,
        spec: &Spec,
        bundle: &Path,
        dirs: [RawFd; 2],
        new_cgroup: &str,
    ) -> Result<rpc::Criu_opts> {
        let mut opts = rpc::Criu_opts::new();
        opts.set_images_dir_fd(dirs[0]);
        opts.set_work_dir_fd(dirs[1]);
        opts.set_log_file(image::RESTORE_LOG.into());
        opts.set_log_level(4);
        opts.set_root(
            super::rootfs_path(spec, bundle)
                .to_string_lossy()
                .into_owned(),
        );
        opts.set_rst_sibling(true);
        opts.set_notify_scripts(true);
        super::apply_dump_options(&mut opts, &self.metadata.options)?;
        opts.set_orphan_pts_master(self.metadata.terminal);
        cgroup::prepare_cpuset_parents(new_cgroup).map_err(Error::io(format!(
            "prepare the cpuset cgroups above {new_cgroup}"
        )))?;
        let mut root = rpc::Cgroup_root::new();
        root.set_path(new_cgroup.to_string());

        opts.cg_root.push(root);
        Ok(opts)
    }

    /// The mounts the dump left external, and where each comes from now.
    fn declare_mounts(&self, opts: &mut rpc::Criu_opts, spec: &Spec, new_cgroup: &str) {
        for dest in &self.metadata.external_mounts {
            let source = mount_source(spec, dest).expect("checked at Create");
            opts.ext_mnt.push(super::ext_mount(dest, &source));
        }
        for mount in &self.metadata.cgroup_mounts {
            // The container's own cgroup becomes the new container's (CRIU
            // creates it before binding it); a shared one (a hierarchy the
            // runtime leaves alone) stays what it was.
            let root = if mount.root == self.metadata.cgroup_path {
                new_cgroup
            } else {
                &mount.root
            };
            let hierarchy = Path::new(&mount.mountpoint).file_name().unwrap_or_default();
            let source = Path::new("/sys/fs/cgroup")
                .join(hierarchy)
                .join(root.trim_start_matches('/'));
            opts.ext_mnt.push(super::ext_mount(
                &mount.mountpoint,
                &source.to_string_lossy(),
            ));
        }
    }

    /// The namespaces the dump left external, opened from the new spec and
    /// handed to CRIU (`keep`: fds CRIU inherits). The files must stay open
    /// until CRIU is done.
    fn inherit_namespaces(
        &self,
        opts: &mut rpc::Criu_opts,
        spec: &Spec,
        keep: &mut Vec<RawFd>,
    ) -> Result<Vec<File>> {
        let mut namespaces: Vec<File> = Vec::new();
        for (kind, path) in super::namespace_paths(spec) {
            if !self.metadata.external_namespaces.contains(&kind) {
                continue;
            }
            let ns = File::open(&path).map_err(Error::io(format!("open namespace {path}")))?;
            opts.inherit_fd.push(inherit(
                ns.as_raw_fd(),
                &rust_criu::criu_ns_to_key(super::criu_ns_name(&kind)),
            ));
            keep.push(ns.as_raw_fd());
            namespaces.push(ns);
        }
        Ok(namespaces)
    }

    /// The new process's stdio pipes in place of the dumped ones (each
    /// dumped pipe once).
    fn inherit_stdio(&self, opts: &mut rpc::Criu_opts, fds: [RawFd; 3], keep: &mut Vec<RawFd>) {
        let mut seen = Vec::new();
        for (desc, fd) in self.descriptors.iter().zip(fds) {
            if desc.starts_with("pipe:") && !seen.contains(desc) {
                opts.inherit_fd.push(inherit(fd, desc));
                keep.push(fd);
                seen.push(desc.clone());
            }
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

    /// CRIU's options for this restore: those the dump recorded, the
    /// external mounts, namespaces and stdio pipes (their fds added to
    /// `keep`). The namespaces' files are returned, to be held open until
    /// CRIU is done.
    fn criu_options(
        &self,
        target: &RestoreTarget,
        new_cgroup: &str,
        keep: &mut Vec<RawFd>,
    ) -> Result<(rpc::Criu_opts, Vec<File>)> {
        let (spec, bundle) = (target.spec, target.bundle);
        let mut opts = self.restore_options(spec, bundle, [keep[0], keep[1]], new_cgroup)?;
        self.declare_mounts(&mut opts, spec, new_cgroup);
        let namespaces = self.inherit_namespaces(&mut opts, spec, keep)?;
        if let Some(fds) = target.stdio {
            self.inherit_stdio(&mut opts, fds, keep);
        }
        Ok((opts, namespaces))
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

/// The image directory CRIU reads: the checkpoint's own, or a private
/// copy with its pages decompressed (removed when dropped).
enum Readable<'a> {
    Images(&'a Path),
    Copy(tempfile::TempDir),
}

impl Readable<'_> {
    fn path(&self) -> &Path {
        match self {
            Readable::Images(p) => p,
            Readable::Copy(t) => t.path(),
        }
    }
}

impl RestorePlan {
    /// CRIU reads raw page images. Compressed ones are decompressed in
    /// place in containerd's temporary copy (discarded after the restore
    /// anyway); any other directory (a user's image path, a Docker
    /// checkpoint restored by the CLI) must stay as it is, so CRIU gets a
    /// private copy in `scratch_root`.
    fn readable_images(&self, scratch_root: &Path) -> Result<Readable<'_>> {
        let files = &self.metadata.compressed_pages;
        if files.is_empty() {
            return Ok(Readable::Images(&self.images));
        }
        let started = std::time::Instant::now();
        let readable = match self.temporary {
            true => {
                super::pages::decompress_in_place(&self.images, files)?;
                Readable::Images(&self.images)
            }
            false => Readable::Copy(super::pages::decompressed_copy(
                &self.images,
                files,
                scratch_root,
            )?),
        };
        ::log::info!(
            "restore from {}: {} page images decompressed into {} in {:?}",
            self.images.display(),
            files.len(),
            readable.path().display(),
            started.elapsed()
        );
        Ok(readable)
    }
}

impl RestorePlan {
    /// Refuses a rootfs of another image than the checkpoint's, unless the
    /// new container's annotation says to skip the check.
    ///
    /// (Placed after [`Self::apply_rootfs_diff`]: the identity was taken
    /// of the root filesystem with the container's own changes.)
    fn check_image(&self, spec: &Spec, bundle: &Path) -> Result<()> {
        let Some(recorded) = &self.metadata.image else {
            return Ok(()); // taken by a Lazarus that did not record it
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        if identity::skip_requested(&annotations)? {
            ::log::warn!(
                "restore from {}: image check skipped ({})",
                self.images.display(),
                identity::SKIP_IMAGE_CHECK_ANNOTATION
            );
            return Ok(());
        }
        let now = ImageIdentity::of_rootfs(&super::rootfs_path(spec, bundle));
        recorded.check(&now, &self.images)
    }
}

impl RestorePlan {
    /// A restore into another container than the checkpointed one (Docker's
    /// `start --checkpoint` of a new container, a copy on another host)
    /// first gets the checkpointed container's root filesystem changes,
    /// when the dump saved them. The same container still has them.
    fn apply_rootfs_diff(&self, id: &str, spec: &Spec, bundle: &Path) -> Result<()> {
        let tar = self.images.join(super::rootfs::ROOTFS_DIFF_TAR);
        if !self.metadata.rootfs_diff || self.metadata.container_id == id || !tar.is_file() {
            return Ok(());
        }
        let deleted = super::rootfs::read_deleted(&self.images.join(super::rootfs::DELETED_FILES))?;
        let rootfs = super::rootfs_path(spec, bundle);
        super::rootfs::apply(&tar, &deleted, &rootfs)?;
        ::log::info!(
            "restore of {id}: applied {}'s root filesystem changes ({} deleted paths)",
            self.metadata.container_id,
            deleted.len()
        );
        Ok(())
    }
}

fn inherit(fd: RawFd, key: &str) -> rpc::Inherit_fd {
    let mut i = rpc::Inherit_fd::new();
    i.set_fd(fd);
    i.set_key(key.into());
    i
}

/// The host path the new spec mounts at `dest` (a bind's source, or
/// /dev/null for a masked file).
fn mount_source(spec: &Spec, dest: &str) -> Option<String> {
    let bound = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| super::is_bind(m) && m.destination().to_string_lossy() == dest)
        .and_then(|m| {
            m.source()
                .as_ref()
                .map(|s| s.to_string_lossy().into_owned())
        });
    bound.or_else(|| {
        let masked = spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default();
        masked
            .iter()
            .any(|p| p == dest)
            .then(|| "/dev/null".to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(images: &Path, page_server: Option<PageServer>) -> RestorePlan {
        RestorePlan {
            images: images.into(),
            work: images.into(),
            metadata: Metadata::new("c1", (4, 2, 1)),
            descriptors: Vec::new(),
            temporary: false,
            page_server,
        }
    }

    #[test]
    fn a_postcopy_restore_works_on_its_own_copy_of_anothers_images() {
        let (images, bundle) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(images.path().join("pstree.img"), b"tree").unwrap();
        let server =
            super::super::postcopy::stand_in(27000, super::super::postcopy::PageMode::Lazy);
        let mut p = plan(images.path(), Some(server));
        p.own_postcopy_images(bundle.path()).unwrap();
        assert!(p.temporary && p.images.starts_with(bundle.path()), "{p:?}");
        assert_eq!(p.work, p.images, "the daemon works beside the copy");
        // The owner removes its directory as soon as the container runs.
        drop(images);
        assert_eq!(std::fs::read(p.images.join("pstree.img")).unwrap(), b"tree");
        p.discard_temporary_images();
        assert!(!p.images.exists(), "removed once the daemon is done");
    }

    #[test]
    fn other_restores_read_the_images_where_they_lie() {
        let (images, bundle) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let mut p = plan(images.path(), None);
        p.own_postcopy_images(bundle.path()).unwrap();
        assert!(!p.temporary && p.images == images.path());
        assert_eq!(std::fs::read_dir(bundle.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_cgroup_mount_outside_the_hierarchies_is_refused() {
        let mut m = Metadata::new("c1", (4, 2, 1));
        let at = Path::new("/cp");
        for (mountpoint, root) in [
            ("/sys/fs/cgroup/memory", "/default/c1"),
            ("/sys/fs/cgroup/systemd", "/"),
        ] {
            m.cgroup_mounts = vec![image::CgroupMount {
                mountpoint: mountpoint.into(),
                root: root.into(),
            }];
            check_cgroup_mounts(at, &m).unwrap();
        }
        for (mountpoint, root) in [
            ("/sys/fs/cgroup/memory", "/../../../etc"),
            ("/sys/fs/cgroup/..", "/"),
            ("/sys/fs/cgroup/memory", "etc"),
            ("/", "/"),
        ] {
            m.cgroup_mounts = vec![image::CgroupMount {
                mountpoint: mountpoint.into(),
                root: root.into(),
            }];
            let e = check_cgroup_mounts(at, &m).unwrap_err().to_string();
            assert!(
                e.contains("not a cgroup hierarchy"),
                "{mountpoint} {root}: {e}"
            );
        }
    }
}
