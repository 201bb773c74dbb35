//! Processes a container's init leaves behind.
//!
//! In a pid namespace of its own, the kernel kills every process of the
//! container when its init dies. Without one (`docker run --pid host`, or a
//! namespace joined by path), nothing does, and the container's other
//! processes would live on after the task has stopped. containerd's runc
//! shim therefore kills everything left in the container's cgroup when the
//! init exits, before it reports the exit (`ShouldKillAllOnExit`, then
//! `runc kill --all KILL`); so does Lazarus.

use std::path::Path;
use std::time::Duration;

use lazarus_core::host::cgroup;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

/// How long the processes left over get to die. SIGKILL is resent while
/// waiting; only a process stuck in the kernel takes this long, and the
/// exit is reported after it either way.
const KILL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the init's exit does not take the rest of the container with it:
/// true unless the spec asks for a new pid namespace (one without a path),
/// as runc's shim decides.
pub fn survive_init(spec: &Spec) -> bool {
    let namespaces = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
    !namespaces
        .into_iter()
        .flatten()
        .any(|n| n.typ() == LinuxNamespaceType::Pid && n.path().is_none())
}

/// Called when the init of container `id` (bundle `bundle`) has exited, before
/// its exit is published: SIGKILLs every process still in the container's
/// cgroup if nothing else will (thawing it first, as a frozen process cannot
/// die). Waits at most [`KILL_TIMEOUT`]; call it with no lock held.
pub fn kill_after_init_exit(id: &str, bundle: &Path) {
    let config = bundle.join("config.json");
    let spec = match Spec::load(&config) {
        Ok(spec) => spec,
        Err(e) => {
            log::warn!(
                "{id}: cannot read {} to see whether processes outlive the init: {e}",
                config.display()
            );
            return;
        }
    };
    if !survive_init(&spec) {
        return;
    }
    let path = cgroup::path_of(&spec, id);
    let left = cgroup::kill_all(&path, KILL_TIMEOUT);
    if !left.is_empty() {
        log::warn!(
            "{id}: init exited; processes {left:?} still in cgroup {path} {}s after SIGKILL",
            KILL_TIMEOUT.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn spec_with(namespaces: Vec<(LinuxNamespaceType, Option<&str>)>) -> Spec {
        let namespaces = namespaces
            .into_iter()
            .map(|(typ, path)| {
                let mut ns = LinuxNamespaceBuilder::default().typ(typ);
                if let Some(path) = path {
                    ns = ns.path(path);
                }
                ns.build().unwrap()
            })
            .collect::<Vec<_>>();
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .build()
            .unwrap();
        SpecBuilder::default().linux(linux).build().unwrap()
    }

    #[test]
    fn only_a_new_pid_namespace_takes_the_container_down_with_its_init() {
        use LinuxNamespaceType::*;
        assert!(!survive_init(&spec_with(vec![(Mount, None), (Pid, None)])));
        // docker run --pid host: no pid namespace at all.
        assert!(survive_init(&spec_with(vec![
            (Mount, None),
            (Network, None)
        ])));
        // Another container's (or the host's) pid namespace, joined by path.
        assert!(survive_init(&spec_with(vec![(
            Pid,
            Some("/proc/1/ns/pid")
        )])));
        assert!(!survive_init(&Spec::default()), "the default spec has one");
    }
}
