//! Checkpoint and restore: what the requests mean (options), what the image
//! directory holds (image), and the CRIU requests for dump and restore.

pub mod dump;
pub mod image;
pub mod options;
pub mod restore;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::criu::{rpc, Criu};
use crate::error::{Error, Result};
use image::DumpOptions;

/// CRIU must be at least 4.0; on Linux >= 6.16 dumping any socket needs
/// 4.2 (SO_PASSCRED/SO_PASSSEC exist only for unix and netlink sockets there).
pub fn check_criu(criu: &dyn Criu) -> Result<(u32, u32, u32)> {
    let version = criu.version()?;
    let needed = if kernel_at_least(6, 16) {
        (4, 2)
    } else {
        (4, 0)
    };
    if (version.0, version.1) < needed {
        return Err(Error::FailedPrecondition(format!(
            "CRIU {}.{}.{} is too old for checkpoint/restore on this kernel: install criu >= {}.{} \
             (scripts/setup-host.sh builds 4.2.1)",
            version.0, version.1, version.2, needed.0, needed.1
        )));
    }
    Ok(version)
}

fn kernel_at_least(major: u32, minor: u32) -> bool {
    let Ok(uts) = nix::sys::utsname::uname() else {
        return true;
    };
    let release = uts.release().to_string_lossy().into_owned();
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let (a, b) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (a, b) >= (major, minor)
}

/// The CRIU options that dump and restore must agree on.
fn apply_dump_options(opts: &mut rpc::Criu_opts, o: &DumpOptions) -> Result<()> {
    opts.set_tcp_established(o.tcp_established);
    opts.set_ext_unix_sk(o.ext_unix_sk);
    opts.set_shell_job(o.shell_job);
    opts.set_file_locks(o.file_locks);
    opts.set_manage_cgroups(true);
    opts.set_manage_cgroups_mode(dump::cg_mode(o.cgroups_mode));
    let mut empty = 0u32;
    for ns in &o.empty_namespaces {
        empty |= match ns.as_str() {
            "network" | "net" => libc::CLONE_NEWNET as u32,
            other => {
                return Err(Error::InvalidArgument(format!(
                    "empty_namespaces: {other:?} is not supported (only \"network\")"
                )))
            }
        };
    }
    if empty != 0 {
        opts.set_empty_ns(empty);
    }
    Ok(())
}

fn ext_mount(key: &str, val: &str) -> rpc::Ext_mount_map {
    let mut m = rpc::Ext_mount_map::new();
    m.set_key(key.into());
    m.set_val(val.into());
    m
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// The container's rootfs as the host sees it.
fn rootfs(spec: &Spec, bundle: &Path) -> PathBuf {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_else(|| "rootfs".into());
    if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    }
}

/// The spec's cgroupsPath (libcontainer's default when absent).
pub fn cgroup_path(spec: &Spec, id: &str) -> String {
    spec.linux()
        .as_ref()
        .and_then(|l| l.cgroups_path().clone())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| format!("/youki/{id}"))
}

/// Whether hooks configure the network of a namespace the runtime creates
/// (Docker's bridge networks plug in a veth from a prestart hook). CRIU
/// cannot bring back a veth whose peer is on the host, so such a namespace
/// is dumped empty (runc does this for every container) and restore replays
/// the hooks into a fresh one.
fn network_set_up_by_hooks(spec: &Spec) -> bool {
    let new_netns = crate::runtime::new_network_namespace(spec);
    let hooked = spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime()]
            .iter()
            .any(|stage| stage.as_ref().is_some_and(|hooks| !hooks.is_empty()))
    });
    new_netns && hooked
}

/// Whether `empty_namespaces` names the network namespace.
fn empties_network(empty_namespaces: &[String]) -> bool {
    empty_namespaces
        .iter()
        .any(|ns| ns == "network" || ns == "net")
}

/// Namespaces the spec joins by path (external to the container), as
/// (OCI type name, path). Only those CRIU can treat as external.
fn namespace_paths(spec: &Spec) -> Vec<(String, String)> {
    let namespaces = spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().clone())
        .unwrap_or_default();
    namespaces
        .iter()
        .filter(|n| {
            matches!(
                n.typ(),
                LinuxNamespaceType::Network | LinuxNamespaceType::Pid
            )
        })
        .filter_map(|n| {
            let path = n.path().as_ref()?;
            let kind = match n.typ() {
                LinuxNamespaceType::Network => "network",
                _ => "pid",
            };
            Some((kind.to_string(), path.to_string_lossy().into_owned()))
        })
        .collect()
}

/// CRIU's short name for an OCI namespace type.
fn criu_ns_name(kind: &str) -> &'static str {
    if kind == "network" {
        "net"
    } else {
        "pid"
    }
}

/// Thaws the container's freezer if it is frozen: after a failed dump, and
/// after a restore (CRIU restores the freezer state it dumped under).
pub fn thaw(cgroup_path: &str) {
    let Some(dir) = dump::freezer_dir(cgroup_path) else {
        return;
    };
    let (file, thawed) = if dir.join("freezer.state").exists() {
        (dir.join("freezer.state"), "THAWED")
    } else {
        (dir.join("cgroup.freeze"), "0")
    };
    if let Err(e) = std::fs::write(&file, thawed) {
        log::warn!("thaw {}: {e}", file.display());
    }
}
