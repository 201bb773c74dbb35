//! The import policy: what the user granted an archive (or a migration's
//! sender), by flag or in the config file, against what it asks for.
//! Nothing is granted by default.

use std::collections::BTreeSet;

use super::authority::{Grant, Item};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportPolicy {
    pub granted: BTreeSet<Grant>,
}

impl ImportPolicy {
    /// Everything granted (`--trust-archive`).
    pub fn trust_all() -> Self {
        ImportPolicy {
            granted: Grant::ALL.into_iter().collect(),
        }
    }

    pub fn with(mut self, grants: impl IntoIterator<Item = Grant>) -> Self {
        self.granted.extend(grants);
        self
    }

    /// Refuses, naming every item not granted and the flag that would
    /// grant it, unless each of `items` is granted. `what` names the
    /// archive or the migration.
    pub fn check(&self, what: &str, items: &[Item]) -> Result<()> {
        let refused: Vec<&Item> = items
            .iter()
            .filter(|i| !self.granted.contains(&i.grant))
            .collect();
        if refused.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = refused
            .iter()
            .map(|i| format!("  {} ({})", i.what, i.grant.flag()))
            .collect();
        let flags: BTreeSet<String> = refused.iter().map(|i| i.grant.flag()).collect();
        Err(Error::PermissionDenied(format!(
            "refusing {what}: it asks for more than this import was granted:\n{}\n\
             Nothing was created. If you trust whoever made it, grant what it needs with {} \
             (or --trust-archive), or allow it for every import in the [import] section of \
             /etc/lazarus/config.toml",
            lines.join("\n"),
            flags.into_iter().collect::<Vec<_>>().join(" ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> Vec<Item> {
        vec![
            Item {
                grant: Grant::Hooks,
                what: "createRuntime hook: /bin/sh".into(),
            },
            Item {
                grant: Grant::Privileged,
                what: "privileged mode".into(),
            },
        ]
    }

    #[test]
    fn nothing_is_granted_by_default_and_every_item_is_named() {
        let e = ImportPolicy::default()
            .check("archive a.tar", &items())
            .unwrap_err();
        assert_eq!(e.kind(), crate::error::ErrorKind::PermissionDenied);
        let text = e.to_string();
        for want in [
            "refusing archive a.tar",
            "createRuntime hook: /bin/sh (--allow-hooks)",
            "privileged mode (--allow-privileged)",
            "--allow-hooks --allow-privileged",
            "Nothing was created",
        ] {
            assert!(text.contains(want), "{want:?} not in {text}");
        }
        ImportPolicy::default().check("a", &[]).unwrap();
    }

    #[test]
    fn each_grant_lets_its_items_through_only() {
        let hooks = ImportPolicy::default().with([Grant::Hooks]);
        let text = hooks.check("a", &items()).unwrap_err().to_string();
        assert!(!text.contains("--allow-hooks"), "{text}");
        assert!(text.contains("--allow-privileged"), "{text}");
        hooks
            .with([Grant::Privileged])
            .check("a", &items())
            .unwrap();
        ImportPolicy::trust_all().check("a", &items()).unwrap();
    }
}
