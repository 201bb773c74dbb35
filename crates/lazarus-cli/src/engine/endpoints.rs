//! Where the daemons are, found as `docker` and `ctr` find them, so that
//! one machine with several private daemon sets is several hosts.

pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";
pub const DEFAULT_CONTAINERD: &str = "/run/containerd/containerd.sock";
/// Docker's containerd namespace.
pub const DOCKER_NAMESPACE: &str = "moby";
pub const DEFAULT_NAMESPACE: &str = "default";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
