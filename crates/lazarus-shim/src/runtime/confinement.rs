//! What a process started by exec inherits from its container, as with runc.
//!
//! libcontainer 0.7's tenant builder (exec) rebuilds the spec's `linux`
//! section from the namespaces, cgroups path, personality and time offsets
//! alone, so the container's seccomp filter never reaches the new process:
//! an exec ran unfiltered (`Seccomp: 0`) where runc applies the container's
//! filter to every exec (setns_init_linux.go). runc also falls back on the
//! container's capabilities and AppArmor profile when the process spec has
//! none (finalizeNamespace, newInitConfig).
//!
//! [`plan`] fills those in from the container's spec and decides where the
//! filter goes: the helper's executor loads it in the new process just before
//! execve ([`Confinement::apply`]), in runc's order. Without no_new_privs,
//! loading a filter needs CAP_SYS_ADMIN, so the filter comes first and the
//! capabilities are dropped after it (libcontainer is given none to drop);
//! with no_new_privs libcontainer drops them and the filter comes last.

use libcontainer::oci_spec::runtime::{LinuxCapabilities, LinuxSeccomp, Process, Spec};

/// The process spec libcontainer runs and what is left for the executor.
#[derive(Debug)]
pub struct ExecPlan {
    pub process: Process,
    pub confinement: Option<Confinement>,
}

/// Applied in the exec'd process itself, after libcontainer's own set-up.
#[derive(Clone, Debug, PartialEq)]
pub struct Confinement {
    seccomp: LinuxSeccomp,
    /// Capabilities to drop once the filter is loaded (the process has no
    /// no_new_privs); None when libcontainer already dropped them.
    caps_after_filter: Option<LinuxCapabilities>,
}

/// The exec's `process` completed from the container's `spec`.
pub fn plan(spec: &Spec, mut process: Process) -> Result<ExecPlan, String> {
    let init = spec.process().as_ref();
    if process.capabilities().is_none() {
        process.set_capabilities(init.and_then(|p| p.capabilities().clone()));
    }
    // runc reads an absent noNewPrivileges as false; containerd's clients
    // copy the container's value into every exec spec, so taking the
    // container's here differs only for a client that leaves it out, where
    // the stricter reading is the container's own.
    if process.no_new_privileges().is_none() {
        process.set_no_new_privileges(init.and_then(|p| p.no_new_privileges()));
    }
    if process
        .apparmor_profile()
        .as_deref()
        .unwrap_or("")
        .is_empty()
    {
        process.set_apparmor_profile(init.and_then(|p| p.apparmor_profile().clone()));
    }
    let Some(seccomp) = spec.linux().as_ref().and_then(|l| l.seccomp().clone()) else {
        return Ok(ExecPlan {
            process,
            confinement: None,
        });
    };
    if libcontainer::seccomp::is_notify(&seccomp) {
        // runc hands the notify fd to the profile's listener; this path
        // cannot, and an exec must not run outside the container's filter.
        return Err(
            "exec: the container's seccomp profile uses SCMP_ACT_NOTIFY, \
                    which exec does not support"
                .into(),
        );
    }
    let caps_after_filter = if process.no_new_privileges() == Some(true) {
        None
    } else {
        let caps = process.capabilities().clone();
        process.set_capabilities(None);
        caps
    };
    Ok(ExecPlan {
        process,
        confinement: Some(Confinement {
            seccomp,
            caps_after_filter,
        }),
    })
}

impl Confinement {
    /// Loads the filter, then drops what capabilities are left to drop. Any
    /// failure stops the exec: the command never runs half-confined.
    pub fn apply(&self) -> Result<(), String> {
        libcontainer::seccomp::initialize_seccomp(&self.seccomp)
            .map_err(|e| format!("load the container's seccomp filter: {e}"))?;
        if let Some(caps) = &self.caps_after_filter {
            let syscall = libcontainer::syscall::syscall::create_syscall();
            libcontainer::capabilities::drop_privileges(caps, syscall.as_ref())
                .map_err(|e| format!("drop capabilities: {e}"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A container spec as Docker writes it, with a filter that refuses
    /// `unshare` (Docker's default does, without CAP_SYS_ADMIN) with an
    /// errno nothing else gives it here (EOPNOTSUPP).
    fn container(nnp: Option<bool>) -> Spec {
        let mut process = json!({
            "user": {"uid": 0, "gid": 0},
            "cwd": "/",
            "args": ["sh"],
            "capabilities": {
                "bounding": ["CAP_KILL", "CAP_CHOWN"],
                "effective": ["CAP_KILL", "CAP_CHOWN"],
                "permitted": ["CAP_KILL", "CAP_CHOWN"]
            },
            "apparmorProfile": "docker-default"
        });
        if let Some(nnp) = nnp {
            process["noNewPrivileges"] = json!(nnp);
        }
        serde_json::from_value(json!({
            "ociVersion": "1.0.2",
            "process": process,
            "root": {"path": "rootfs"},
            "linux": {"seccomp": deny_unshare()}
        }))
        .unwrap()
    }

    fn deny_unshare() -> serde_json::Value {
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 95}]
        })
    }

    fn exec_process(extra: serde_json::Value) -> Process {
        let mut p = json!({"user": {"uid": 0, "gid": 0}, "cwd": "/", "args": ["id"]});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(p).unwrap()
    }

    fn caps_of(spec: &Spec) -> Option<LinuxCapabilities> {
        spec.process().as_ref().unwrap().capabilities().clone()
    }

    #[test]
    fn without_no_new_privs_the_filter_comes_before_the_capability_drop() {
        let spec = container(None);
        let plan = plan(&spec, exec_process(json!({}))).unwrap();
        assert_eq!(
            plan.process.capabilities(),
            &None,
            "libcontainer drops none"
        );
        assert_eq!(plan.process.no_new_privileges(), None);
        let c = plan.confinement.expect("the container's filter");
        assert_eq!(
            Some(&c.seccomp),
            spec.linux().as_ref().unwrap().seccomp().as_ref()
        );
        assert_eq!(c.caps_after_filter, caps_of(&spec), "the container's caps");
    }

    #[test]
    fn with_no_new_privs_libcontainer_drops_the_capabilities_and_the_filter_comes_last() {
        let spec = container(Some(true));
        let plan = plan(&spec, exec_process(json!({}))).unwrap();
        assert_eq!(plan.process.no_new_privileges(), Some(true), "inherited");
        assert_eq!(plan.process.capabilities(), &caps_of(&spec));
        let c = plan.confinement.unwrap();
        assert_eq!(c.caps_after_filter, None);
    }

    #[test]
    fn the_process_spec_overrides_what_it_sets() {
        let spec = container(Some(true));
        let own =
            json!({"bounding": ["CAP_KILL"], "effective": ["CAP_KILL"], "permitted": ["CAP_KILL"]});
        let process = exec_process(json!({
            "capabilities": own,
            "noNewPrivileges": false,
            "apparmorProfile": "mine"
        }));
        let plan = plan(&spec, process).unwrap();
        assert_eq!(plan.process.no_new_privileges(), Some(false));
        assert_eq!(plan.process.apparmor_profile().as_deref(), Some("mine"));
        let own: LinuxCapabilities = serde_json::from_value(own).unwrap();
        // No no_new_privs: its own capabilities are dropped after the filter.
        assert_eq!(plan.confinement.unwrap().caps_after_filter, Some(own));
        assert_eq!(plan.process.capabilities(), &None);
    }

    #[test]
    fn an_empty_apparmor_profile_is_the_containers() {
        let spec = container(None);
        for extra in [json!({}), json!({"apparmorProfile": ""})] {
            let plan = plan(&spec, exec_process(extra)).unwrap();
            assert_eq!(
                plan.process.apparmor_profile().as_deref(),
                Some("docker-default")
            );
        }
    }

    #[test]
    fn a_container_without_a_filter_needs_no_confinement() {
        let mut spec = container(Some(true));
        spec.set_linux(None);
        let plan = plan(&spec, exec_process(json!({}))).unwrap();
        assert_eq!(plan.confinement, None);
        assert_eq!(
            plan.process.capabilities(),
            &caps_of(&spec),
            "still inherited"
        );
    }

    #[test]
    fn a_notify_filter_is_refused_rather_than_left_out() {
        let mut value = serde_json::to_value(container(None)).unwrap();
        value["linux"]["seccomp"]["syscalls"][0]["action"] = json!("SCMP_ACT_NOTIFY");
        let spec: Spec = serde_json::from_value(value).unwrap();
        let err = plan(&spec, exec_process(json!({}))).unwrap_err();
        assert!(err.contains("SCMP_ACT_NOTIFY"), "{err}");
    }

    /// The filter really is loaded: in a child (a filter cannot be taken
    /// off), with no_new_privs so that no privilege is needed.
    #[test]
    fn apply_loads_the_filter_into_the_calling_process() {
        let seccomp: LinuxSeccomp = serde_json::from_value(deny_unshare()).unwrap();
        let confinement = Confinement {
            seccomp,
            caps_after_filter: None,
        };
        // SAFETY: the child only makes syscalls and reads a file, then exits
        // without returning into the test harness.
        match unsafe { nix::unistd::fork() }.unwrap() {
            nix::unistd::ForkResult::Child => {
                let code = (|| {
                    // SAFETY: plain prctl on the calling process.
                    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
                        return None;
                    }
                    confinement.apply().ok()?;
                    let status = std::fs::read_to_string("/proc/self/status").ok()?;
                    let filtered = status.lines().any(|l| l == "Seccomp:\t2");
                    let refused = nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)
                        == Err(nix::errno::Errno::EOPNOTSUPP);
                    Some(if filtered && refused { 0 } else { 3 })
                })()
                .unwrap_or(4);
                unsafe { libc::_exit(code) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                let status = nix::sys::wait::waitpid(child, None).unwrap();
                assert_eq!(status, nix::sys::wait::WaitStatus::Exited(child, 0));
            }
        }
    }
}
