//! What export refuses, and why, before anything is stopped: a
//! destination that cannot be written, a container Lazarus does not run,
//! one not running, one Docker would restart afresh.

use std::path::Path;

use containerd_client::services::v1::Container;
use containerd_client::types::v1::Status;

use crate::engine::containerd::{Containerd, LAZARUS_RUNTIME};
use crate::engine::endpoints::Endpoints;
use crate::engine::runtimes::is_lazarus_type;
use crate::engine::target::Target;
use crate::error::{Error, Result};

pub(super) fn not_found(target: &Target, endpoints: &Endpoints) -> Error {
    let docker_status = target
        .docker
        .as_ref()
        .map(|v| v["State"]["Status"].as_str().unwrap_or(""));
    match docker_status {
        // Docker says it does not run: containerd has no task (nor, once
        // it exited, any record) of it, whichever containerd this is.
        Some(status) if !matches!(status, "running" | "paused" | "restarting" | "") => {
            Error::Refused(format!(
                "{} is not running (Docker says {status}): `docker start {}` it first, or export \
                 a checkpoint Docker took of it with --from-docker-checkpoint NAME",
                target.name, target.name
            ))
        }
        Some(_) => Error::NotFound(format!(
            "Docker knows {} but the containerd at {} has no container {} in namespace {}: \
             is it running? (a checkpoint Docker took of it: --from-docker-checkpoint NAME); \
             otherwise give the socket of the containerd dockerd uses (--address or \
             CONTAINERD_ADDRESS)",
            target.name, endpoints.containerd, target.id, target.namespace
        )),
        None => Error::NotFound(format!(
            "no container {} in containerd namespace {} (at {}), and Docker at {} knows no such \
             name: check the name, --namespace, --address, --host",
            target.id, target.namespace, endpoints.containerd, endpoints.docker
        )),
    }
}

/// `--export -`: the archive goes to standard output.
pub fn is_stdout(dest: &Path) -> bool {
    dest == Path::new("-")
}

/// The destination's directory must exist: the archive is written next to
/// it and renamed into place.
pub(crate) fn check_destination(dest: &Path) -> Result<()> {
    if is_stdout(dest) {
        return Ok(());
    }
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(Error::NotFound(format!(
            "{} does not exist: the archive's directory must exist",
            dir.display()
        )));
    }
    if dest.is_dir() {
        return Err(Error::Refused(format!(
            "{} is a directory: give the archive's file name (e.g. {}/checkpoint.tar.zst)",
            dest.display(),
            dest.display()
        )));
    }
    Ok(())
}

/// Only a container Lazarus runs can be checkpointed by Lazarus.
pub(super) fn refuse_unless_lazarus(target: &Target, container: &Container) -> Result<()> {
    let runtime = container
        .runtime
        .as_ref()
        .map(|r| r.name.as_str())
        .unwrap_or("");
    if !is_lazarus_type(runtime) {
        return Err(Error::Refused(format!(
            "{} runs {runtime:?}, not Lazarus ({LAZARUS_RUNTIME}): lazarus exports and migrates \
             only containers that run Lazarus (run it with --runtime lazarus)",
            target.name
        )));
    }
    Ok(())
}

/// Refuses a container whose task (as containerd reports it) is not
/// running or paused; and, when the checkpoint is to stop it (`exit`), a
/// Docker container with a restart policy.
pub fn refuse_unless_checkpointable(
    target: &Target,
    status: Option<Status>,
    exit: bool,
) -> Result<()> {
    match status {
        Some(Status::Running | Status::Paused) => {}
        status => {
            let status = status.map_or("not started".to_string(), |s| {
                format!("{s:?}").to_lowercase()
            });
            let hint = match target.docker {
                Some(_) => " (a checkpoint Docker already took: --from-docker-checkpoint NAME)",
                None => "",
            };
            return Err(Error::Refused(format!(
                "{} is {status}: only a running container can be checkpointed{hint}",
                target.name
            )));
        }
    }
    // Docker restarts a container with a restart policy when it exits, which
    // a checkpoint that stops it does: the restart would be a fresh start.
    if let (true, Some(v)) = (exit, &target.docker) {
        let policy = v["HostConfig"]["RestartPolicy"]["Name"]
            .as_str()
            .unwrap_or("");
        if !matches!(policy, "" | "no") {
            return Err(Error::Refused(format!(
                "{} has restart policy {policy:?}: Docker would start it afresh once the \
                 checkpoint stops it; `docker update --restart=no {}` first (a `lazarus \
                 checkpoint` can instead keep it running with --leave-running)",
                target.name, target.name
            )));
        }
    }
    Ok(())
}

/// [`refuse_unless_checkpointable`], asking containerd for the task.
pub(crate) async fn checkpointable(ctr: &Containerd, target: &Target, exit: bool) -> Result<()> {
    refuse_unless_checkpointable(target, ctr.task_status(&target.id).await?, exit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn docker_target(inspect: serde_json::Value) -> Target {
        Target {
            id: "0123abcd".into(),
            name: "web".into(),
            namespace: "moby".into(),
            docker: Some(inspect),
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            docker: "unix:///d.sock".into(),
            containerd: "/c.sock".into(),
        }
    }

    #[test]
    fn a_stopped_docker_container_is_said_to_be_not_running() {
        let e = not_found(
            &docker_target(json!({"State": {"Status": "exited"}})),
            &endpoints(),
        );
        let text = e.to_string();
        assert!(
            text.starts_with("web is not running (Docker says exited)"),
            "{text}"
        );
        assert!(text.contains("docker start web"), "{text}");
        assert!(
            !text.contains("containerd"),
            "no guess about sockets: {text}"
        );
        assert_eq!(e.exit_code(), crate::error::exit::REFUSED);
        // Running by Docker's word but unknown to this containerd: the
        // socket is the likely cause, and said.
        let e = not_found(
            &docker_target(json!({"State": {"Status": "running"}})),
            &endpoints(),
        );
        assert!(e.to_string().contains("--address"), "{e}");
        assert_eq!(e.exit_code(), crate::error::exit::NOT_FOUND);
    }

    #[test]
    fn a_restart_policy_refusal_suggests_nothing_migrate_lacks() {
        let t = docker_target(json!({"HostConfig": {"RestartPolicy": {"Name": "always"}}}));
        let text = refuse_unless_checkpointable(&t, Some(Status::Running), true)
            .unwrap_err()
            .to_string();
        assert!(text.contains("docker update --restart=no web"), "{text}");
        // --leave-running is `lazarus checkpoint`'s alone, and said so.
        assert!(
            text.contains("a `lazarus checkpoint` can instead"),
            "{text}"
        );
        assert!(!text.contains("use --leave-running"), "{text}");
    }
}
