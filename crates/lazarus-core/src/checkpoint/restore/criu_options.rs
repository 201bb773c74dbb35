//! CRIU's options for a restore, built from the new container's spec: the
//! options the dump recorded, the mounts and namespaces it left external
//! and where each comes from now, and the new process's stdio pipes in
//! place of the dumped ones.

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use oci_spec::runtime::Spec;

use super::{RestorePlan, RestoreTarget};
use crate::checkpoint::image;
use crate::criu::rpc;
use crate::error::{Error, Result};
use crate::host::cgroup;

impl RestorePlan {
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
            crate::checkpoint::rootfs_path(spec, bundle)
                .to_string_lossy()
                .into_owned(),
        );
        opts.set_rst_sibling(true);
        opts.set_notify_scripts(true);
        crate::checkpoint::apply_dump_options(&mut opts, &self.metadata.options)?;
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
            opts.ext_mnt
                .push(crate::checkpoint::ext_mount(dest, &source));
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
            opts.ext_mnt.push(crate::checkpoint::ext_mount(
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
        for (kind, path) in crate::checkpoint::namespace_paths(spec) {
            if !self.metadata.external_namespaces.contains(&kind) {
                continue;
            }
            let ns = File::open(&path).map_err(Error::io(format!("open namespace {path}")))?;
            opts.inherit_fd.push(inherit(
                ns.as_raw_fd(),
                &rust_criu::criu_ns_to_key(crate::checkpoint::criu_ns_name(&kind)),
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

    /// CRIU's options for this restore: those the dump recorded, the
    /// external mounts, namespaces and stdio pipes (their fds added to
    /// `keep`). The namespaces' files are returned, to be held open until
    /// CRIU is done.
    pub(super) fn criu_options(
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
}

fn inherit(fd: RawFd, key: &str) -> rpc::Inherit_fd {
    let mut i = rpc::Inherit_fd::new();
    i.set_fd(fd);
    i.set_key(key.into());
    i
}

/// The host path the new spec mounts at `dest` (a bind's source, or
/// /dev/null for a masked file).
pub(super) fn mount_source(spec: &Spec, dest: &str) -> Option<String> {
    let bound = spec
        .mounts()
        .iter()
        .flatten()
        .find(|m| crate::checkpoint::is_bind(m) && m.destination().to_string_lossy() == dest)
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
