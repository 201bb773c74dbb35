//! Where the daemons are, found as `docker` and `ctr` find them, so that
//! one machine with several private daemon sets is several hosts.
//!
//! containerd, when neither --address nor CONTAINERD_ADDRESS names it, is
//! the one dockerd uses (a dockerd answering at the Docker socket): Docker
//! 27+ says it in `GET /info` (`Containerd.Address`); Docker 26 does not,
//! so it is read from how that dockerd was started (the process at the
//! socket's other end: its `--containerd` flag, else the `containerd` key
//! of its daemon.json, else the containerd it runs itself under its exec
//! root when there is no system one). Without a dockerd, the default.

use std::path::Path;

use serde_json::Value;

use crate::engine::docker::Docker;

pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_CONTAINERD: &str = "/run/containerd/containerd.sock";
/// Docker's containerd namespace.
pub const DOCKER_NAMESPACE: &str = "moby";
pub const DEFAULT_NAMESPACE: &str = "default";
/// dockerd's defaults for what its command line does not say.
const DOCKERD_CONFIG: &str = "/etc/docker/daemon.json";
const DOCKERD_EXEC_ROOT: &str = "/var/run/docker";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    /// dockerd's socket, `unix:///…`.
    pub docker: String,
    /// containerd's socket (the one dockerd uses, for Docker's containers).
    pub containerd: String,
}

impl Endpoints {
    /// A flag wins over the environment, which wins over the default.
    pub fn resolve(host: Option<String>, address: Option<String>) -> Endpoints {
        Endpoints::from(host, address, |k| std::env::var(k).ok())
    }

    /// [`Endpoints::resolve`]; then, when no containerd was given (flag or
    /// environment), the one the dockerd at the Docker socket uses.
    pub async fn discover(host: Option<String>, address: Option<String>) -> Endpoints {
        let given = address
            .as_deref()
            .or(std::env::var("CONTAINERD_ADDRESS").ok().as_deref())
            .is_some_and(|a| !a.is_empty());
        let mut e = Endpoints::resolve(host, address);
        if !given {
            if let Some(address) = dockers_containerd(&e.docker).await {
                e.containerd = address;
            }
        }
        e
    }

    fn from(
        host: Option<String>,
        address: Option<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Endpoints {
        let pick = |flag: Option<String>, key: &str, default: &str| {
            flag.or_else(|| env(key))
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        Endpoints {
            docker: pick(host, "DOCKER_HOST", DEFAULT_DOCKER_HOST),
            containerd: pick(address, "CONTAINERD_ADDRESS", DEFAULT_CONTAINERD),
        }
    }
}

/// The containerd socket the dockerd at `docker_host` uses, when a dockerd
/// answers there and says (or its command line says) another than the
/// default.
async fn dockers_containerd(docker_host: &str) -> Option<String> {
    let docker = Docker::new(docker_host).ok()?;
    if !docker.reachable().await {
        return None;
    }
    if let Ok(info) = docker.info().await {
        if let Some(address) = info_address(&info) {
            return Some(address);
        }
    }
    let args = dockerd_args(&docker)?;
    containerd_of_dockerd(
        &args,
        |p| std::fs::read_to_string(p).ok(),
        |p| Path::new(p).exists(),
    )
}

/// How the dockerd answering on `docker`'s socket was started (the
/// process at the socket's other end, as /proc shows it).
pub fn dockerd_args(docker: &Docker) -> Option<Vec<String>> {
    let pid = docker.peer_pid()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        cmdline
            .split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The value of dockerd's flag `--name` in `args` (`--name V` or
/// `--name=V`).
fn flag_of(args: &[String], name: &str) -> Option<String> {
    let long = format!("--{name}");
    let eq = format!("--{name}=");
    args.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix(&eq) {
            Some(v) => Some(v.to_string()),
            None if *a == long => args.get(i + 1).cloned(),
            None => None,
        })
}

/// dockerd's configuration file as `args` name it (`--config-file`, else
/// /etc/docker/daemon.json), parsed; Null when there is none.
pub fn dockerd_config(args: &[String], read: impl Fn(&str) -> Option<String>) -> Value {
    read(&flag_of(args, "config-file").unwrap_or_else(|| DOCKERD_CONFIG.into()))
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null)
}

/// Docker 27+'s `GET /info` `Containerd.Address`.
fn info_address(info: &Value) -> Option<String> {
    info["Containerd"]["Address"]
        .as_str()
        .filter(|a| !a.is_empty())
        .map(str::to_string)
}

/// The containerd a dockerd started with `args` uses, as dockerd decides
/// it: `--containerd`, else its config file's `containerd`, else (no
/// system containerd at the default socket) the one it supervises under
/// its exec root. None: the default.
fn containerd_of_dockerd(
    args: &[String],
    read: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    let config = dockerd_config(args, read);
    let setting = |name: &str| {
        flag_of(args, name).or_else(|| {
            config[name]
                .as_str()
                .filter(|v| !v.is_empty())
                .map(str::to_string)
        })
    };
    if let Some(address) = setting("containerd") {
        return Some(address.trim_start_matches("unix://").to_string());
    }
    if exists(DEFAULT_CONTAINERD) {
        return None;
    }
    let exec_root = setting("exec-root").unwrap_or_else(|| DOCKERD_EXEC_ROOT.into());
    let supervised = format!("{exec_root}/containerd/containerd.sock");
    exists(&supervised).then_some(supervised)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_then_environment_then_defaults() {
        let env = |k: &str| match k {
            "DOCKER_HOST" => Some("unix:///e/d.sock".to_string()),
            "CONTAINERD_ADDRESS" => Some(String::new()),
            _ => None,
        };
        let e = Endpoints::from(None, None, env);
        assert_eq!(e.docker, "unix:///e/d.sock");
        // Set but empty counts as unset, as for docker and ctr.
        assert_eq!(e.containerd, DEFAULT_CONTAINERD);
        let e = Endpoints::from(Some("unix:///f".into()), Some("/c".into()), env);
        assert_eq!(
            (e.docker.as_str(), e.containerd.as_str()),
            ("unix:///f", "/c")
        );
    }

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn dockerds_containerd_from_its_flag_or_its_config_file() {
        let none = |_: &str| None;
        let no = |_: &str| false;
        for a in [
            &["dockerd", "--containerd", "/p/c.sock"][..],
            &["dockerd", "--containerd=/p/c.sock"],
            &["dockerd", "--containerd=unix:///p/c.sock"],
        ] {
            assert_eq!(
                containerd_of_dockerd(&args(a), none, no).as_deref(),
                Some("/p/c.sock"),
                "{a:?}"
            );
        }
        // As the test harness and many hosts start it: a config file.
        let read = |p: &str| match p {
            "/s/daemon.json" => Some(r#"{"containerd": "/s/c.sock", "hosts": []}"#.to_string()),
            DOCKERD_CONFIG => Some(r#"{"containerd": "/etc-default/c.sock"}"#.to_string()),
            _ => None,
        };
        let a = args(&["dockerd", "--config-file", "/s/daemon.json"]);
        assert_eq!(
            containerd_of_dockerd(&a, read, no).as_deref(),
            Some("/s/c.sock")
        );
        assert_eq!(
            containerd_of_dockerd(&args(&["dockerd"]), read, no).as_deref(),
            Some("/etc-default/c.sock")
        );
        // The flag wins over the file, as in dockerd.
        let a = args(&[
            "dockerd",
            "--config-file=/s/daemon.json",
            "--containerd",
            "/f",
        ]);
        assert_eq!(containerd_of_dockerd(&a, read, no).as_deref(), Some("/f"));
    }

    #[test]
    fn without_a_setting_the_system_containerd_else_dockerds_own() {
        let none = |_: &str| None;
        let system = |p: &str| p == DEFAULT_CONTAINERD;
        assert_eq!(
            containerd_of_dockerd(&args(&["dockerd"]), none, system),
            None
        );
        let own = |p: &str| p == "/var/run/docker/containerd/containerd.sock";
        assert_eq!(
            containerd_of_dockerd(&args(&["dockerd"]), none, own).as_deref(),
            Some("/var/run/docker/containerd/containerd.sock")
        );
        let own = |p: &str| p == "/x/containerd/containerd.sock";
        let a = args(&["dockerd", "--exec-root", "/x"]);
        assert_eq!(
            containerd_of_dockerd(&a, none, own).as_deref(),
            Some("/x/containerd/containerd.sock")
        );
        assert_eq!(
            containerd_of_dockerd(&args(&["dockerd"]), none, |_| false),
            None
        );
    }

    #[test]
    fn docker_27_says_it_in_its_info() {
        let info = json!({"Containerd": {"Address": "/run/k/c.sock", "Namespaces": {"Containers": "moby"}}});
        assert_eq!(info_address(&info).as_deref(), Some("/run/k/c.sock"));
        assert_eq!(
            info_address(&json!({"ContainerdCommit": {"ID": "x"}})),
            None
        );
    }
}
