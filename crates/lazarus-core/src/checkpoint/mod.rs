//! Checkpoint and restore: what a request means ([`request`]), what the
//! image directory holds ([`image`]), and the CRIU requests for [`dump`]
//! and [`restore`], built from the container's OCI spec; the root
//! filesystem's changes saved beside the images and applied before a
//! restore ([`rootfs`]).

pub mod control;
pub mod dump;
pub mod handoff;
pub mod identity;
pub mod image;
pub mod incremental;
pub mod pages;
pub mod postcopy;
pub mod request;
pub mod restore;
pub mod rootfs;

use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::criu::{rpc, Criu};
use crate::error::{Error, Result};
use image::DumpOptions;

/// CRIU must be at least 4.0; on Linux >= 6.16 dumping any socket needs
/// 4.2 (SO_PASSCRED/SO_PASSSEC exist only for unix and netlink sockets there).
pub fn check_criu(criu: &dyn Criu) -> Result<(u32, u32, u32)> {
    let version = criu.version()?;
    let needed = if crate::host::kernel_at_least(6, 16) {
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

/// Refuses a checkpoint taken with a newer CRIU (major.minor) than the one
/// restoring it: its images may hold what this CRIU cannot read.
pub fn check_criu_can_read(recorded: &str, running: (u32, u32, u32), images: &Path) -> Result<()> {
    let mut parts = recorded.split('.').map(|p| p.parse::<u32>());
    let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
        return Err(Error::InvalidArgument(format!(
            "checkpoint {}: invalid criu_version {recorded:?} in {}",
            images.display(),
            image::METADATA_FILE
        )));
    };
    if (major, minor) > (running.0, running.1) {
        return Err(Error::FailedPrecondition(format!(
            "checkpoint {} was taken with CRIU {recorded}, newer than this host's CRIU {}.{}.{}: \
             restore it on a host with CRIU >= {major}.{minor}, or upgrade CRIU here",
            images.display(),
            running.0,
            running.1,
            running.2
        )));
    }
    Ok(())
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
fn rootfs_path(spec: &Spec, bundle: &Path) -> PathBuf {
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

/// Whether the restore rebuilds the network of a namespace the runtime
/// creates, so the dump leaves it empty (CRIU's `empty_ns`) rather than
/// saving its links, addresses, routes and firewall rules:
/// - hooks configure it (Docker's bridge networks plug in a veth from a
///   prestart hook; CRIU cannot bring back a veth whose peer is on the
///   host): the restore replays the hooks into a fresh namespace;
/// - or nothing in the container can have changed it (Docker's `none`
///   network, `ctr run`): no CAP_NET_ADMIN in its bounding set and no
///   `net.*` sysctl in its spec, so it holds what the runtime made, `lo`
///   up, and the restore makes that again. Saving and replaying it runs
///   `ip` and `iptables-save`/`-restore` a dozen times: about 45 ms of the
///   dump and 50 ms of the restore here, all of it downtime in a
///   migration.
fn network_rebuilt_on_restore(spec: &Spec) -> bool {
    new_network_namespace(spec) && (has_setup_hooks(spec) || network_unchangeable(spec))
}

/// Whether the spec has hooks that run as the container is set up
/// (prestart, createRuntime): those that plug a network in.
pub fn has_setup_hooks(spec: &Spec) -> bool {
    spec.hooks().as_ref().is_some_and(|h| {
        [h.prestart(), h.create_runtime()]
            .iter()
            .any(|stage| stage.as_ref().is_some_and(|hooks| !hooks.is_empty()))
    })
}

/// The container cannot change its network namespace: its bounding set
/// lacks CAP_NET_ADMIN (so its processes and an ordinary exec cannot get
/// it; a privileged exec brings its own capabilities, and what it changes
/// there is not carried: docs/limits.md), and the spec sets no network
/// sysctl. A spec without a bounding set says nothing, so it may.
fn network_unchangeable(spec: &Spec) -> bool {
    let bounding = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.bounding().as_ref());
    let no_net_admin =
        bounding.is_some_and(|b| !b.contains(&oci_spec::runtime::Capability::NetAdmin));
    let net_sysctl = spec
        .linux()
        .as_ref()
        .and_then(|l| l.sysctl().as_ref())
        .is_some_and(|s| s.keys().any(|k| k.starts_with("net.")));
    no_net_admin && !net_sysctl
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

/// Whether the spec asks for a new network namespace (one without a path).
pub fn new_network_namespace(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    namespaces
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Network && n.path().is_none())
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        Capability, HookBuilder, HooksBuilder, LinuxBuilder, LinuxCapabilitiesBuilder,
        LinuxNamespaceBuilder, ProcessBuilder, SpecBuilder,
    };
    use std::collections::{HashMap, HashSet};

    /// A spec with a network namespace of its own (or joined by path),
    /// these bounding capabilities, sysctls and prestart hooks.
    fn spec(own_netns: bool, caps: Option<&[Capability]>, sysctl: &[&str], hooked: bool) -> Spec {
        let mut ns = LinuxNamespaceBuilder::default().typ(LinuxNamespaceType::Network);
        if !own_netns {
            ns = ns.path("/var/run/netns/pod");
        }
        let linux = LinuxBuilder::default()
            .namespaces(vec![ns.build().unwrap()])
            .sysctl(
                sysctl
                    .iter()
                    .map(|k| (k.to_string(), "1".to_string()))
                    .collect::<HashMap<_, _>>(),
            )
            .build()
            .unwrap();
        let mut process = ProcessBuilder::default().build().unwrap();
        process.set_capabilities(caps.map(|caps| {
            let set: HashSet<Capability> = caps.iter().copied().collect();
            LinuxCapabilitiesBuilder::default()
                .bounding(set)
                .build()
                .unwrap()
        }));
        let mut b = SpecBuilder::default().linux(linux).process(process);
        if hooked {
            let hook = HookBuilder::default().path("/hook").build().unwrap();
            b = b.hooks(
                HooksBuilder::default()
                    .prestart(vec![hook])
                    .build()
                    .unwrap(),
            );
        }
        b.build().unwrap()
    }

    #[test]
    fn a_network_is_left_out_of_the_dump_only_when_the_restore_rebuilds_it() {
        let plain = [Capability::Chown, Capability::NetBindService];
        let admin = [Capability::Chown, Capability::NetAdmin];
        // Docker's bridge: hooks rebuild it, whatever the capabilities.
        assert!(network_rebuilt_on_restore(&spec(
            true,
            Some(&admin),
            &[],
            true
        )));
        // Docker's none network, ctr run: only lo, which nothing can change.
        assert!(network_rebuilt_on_restore(&spec(
            true,
            Some(&plain),
            &[],
            false
        )));
        // Anything the container may have changed is dumped.
        assert!(!network_rebuilt_on_restore(&spec(
            true,
            Some(&admin),
            &[],
            false
        )));
        assert!(!network_rebuilt_on_restore(&spec(true, None, &[], false)));
        let sysctl = ["net.ipv4.ip_unprivileged_port_start"];
        assert!(!network_rebuilt_on_restore(&spec(
            true,
            Some(&plain),
            &sysctl,
            false
        )));
        // A namespace joined by path (a pod's) is external, never emptied.
        assert!(!network_rebuilt_on_restore(&spec(
            false,
            Some(&plain),
            &[],
            true
        )));
        assert!(!network_rebuilt_on_restore(&spec(
            false,
            Some(&plain),
            &[],
            false
        )));
    }

    #[test]
    fn a_checkpoint_of_a_newer_criu_is_refused() {
        let at = Path::new("/cp");
        check_criu_can_read("4.2.1", (4, 2, 0), at).unwrap();
        check_criu_can_read("4.1.9", (4, 2, 1), at).unwrap();
        check_criu_can_read("3.19", (4, 2, 1), at).unwrap();
        let err = check_criu_can_read("4.3.0", (4, 2, 1), at).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)));
        let text = err.to_string();
        assert!(
            text.contains("CRIU 4.3.0") && text.contains("4.2.1"),
            "{text}"
        );
        assert!(check_criu_can_read("5.0.0", (4, 2, 1), at).is_err());
        assert!(matches!(
            check_criu_can_read("four", (4, 2, 1), at),
            Err(Error::InvalidArgument(_))
        ));
    }
}
