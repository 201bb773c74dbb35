//! What `restore --import` grants the archive: the `--allow-*` flags and
//! `--require-signed`, on top of the config's `[import]` section.

use std::path::{Path, PathBuf};

use lazarus_core::archive::{Manifest, TrustedKeys};
use lazarus_core::config::Config;
use lazarus_core::security::{Grant, ImportPolicy};

use crate::error::Result;

#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrantArgs {
    /// Let the archive's OCI hooks run (as root, on this host)
    #[arg(long)]
    pub allow_hooks: bool,
    /// Allow Docker's privileged mode
    #[arg(long)]
    pub allow_privileged: bool,
    /// Allow capabilities beyond the default set
    #[arg(long)]
    pub allow_capabilities: bool,
    /// Allow the host's namespaces (pid, ipc, uts, mount, network) or
    /// joining another container's
    #[arg(long, verbatim_doc_comment)]
    pub allow_host_namespaces: bool,
    /// Allow bind mounts of host paths, other containers' volumes, volumes
    /// with driver options
    #[arg(long, verbatim_doc_comment)]
    pub allow_host_mounts: bool,
    /// Allow devices and device access rules
    #[arg(long)]
    pub allow_devices: bool,
    /// Allow seccomp, AppArmor or SELinux disabled or replaced,
    /// no_new_privileges off, masked paths shown
    #[arg(long, verbatim_doc_comment)]
    pub allow_security_options: bool,
    /// Allow sysctls
    #[arg(long)]
    pub allow_sysctls: bool,
    /// Grant the archive everything it asks for (all of --allow-*)
    #[arg(long)]
    pub trust_archive: bool,
    /// Import only an archive signed by one of the public keys in FILE
    /// (`lazarus keygen --sign` writes them), as the trusted_keys setting
    #[arg(long, value_name = "FILE", verbatim_doc_comment)]
    pub require_signed: Option<PathBuf>,
}

impl GrantArgs {
    /// The flags' grants beside the config's.
    pub fn policy(&self, config: &Config) -> ImportPolicy {
        if self.trust_archive {
            return ImportPolicy::trust_all();
        }
        let flags = [
            (self.allow_hooks, Grant::Hooks),
            (self.allow_privileged, Grant::Privileged),
            (self.allow_capabilities, Grant::Capabilities),
            (self.allow_host_namespaces, Grant::HostNamespaces),
            (self.allow_host_mounts, Grant::HostMounts),
            (self.allow_devices, Grant::Devices),
            (self.allow_security_options, Grant::SecurityOptions),
            (self.allow_sysctls, Grant::Sysctls),
        ];
        ImportPolicy::default()
            .with(config.import.allow.iter().copied())
            .with(flags.into_iter().filter_map(|(on, g)| on.then_some(g)))
    }

    /// Refuses `manifest` (of `archive`) unless it is signed by a trusted
    /// key, when this import or the config requires signatures.
    pub fn check_signature(
        &self,
        config: &Config,
        manifest: &Manifest,
        archive: &Path,
    ) -> Result<()> {
        let keys = self
            .require_signed
            .as_deref()
            .or(config.import.trusted_keys.as_deref());
        if let Some(keys) = keys {
            let what = format!("checkpoint archive {}", archive.display());
            TrustedKeys::load(keys)?.check(manifest, &what)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_add_to_the_config_and_trust_grants_all() {
        let mut config = Config::default();
        config.import.allow = vec![Grant::Sysctls];
        let args = GrantArgs {
            allow_hooks: true,
            ..Default::default()
        };
        let p = args.policy(&config);
        assert_eq!(
            p.granted.iter().copied().collect::<Vec<_>>(),
            [Grant::Hooks, Grant::Sysctls]
        );
        assert_eq!(
            GrantArgs::default().policy(&Config::default()),
            ImportPolicy::default()
        );
        let all = GrantArgs {
            trust_archive: true,
            ..Default::default()
        };
        assert_eq!(all.policy(&Config::default()), ImportPolicy::trust_all());
    }
}
