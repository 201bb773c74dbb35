//! What a reboot may change under the images: the kernel (a security
//! update is why one reboots) and CRIU (upgraded with it). CRIU's images
//! are not tied to either's version, so a change alone is no reason to
//! refuse: `restore --all` says so and goes on. What does break a restore
//! is a kernel (or CRIU) lacking what CRIU needs, which `criu check` tells:
//! only a failing check refuses the set, before anything is touched.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use lazarus_core::config::Config;
use lazarus_core::criu::{Criu, DirectWait, ExitWatch, SwrkCriu};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How long `criu check` may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// The kernel release (`uname -r`) and CRIU version of a host; None where
/// it could not be read (or an older record did not say).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub criu: Option<String>,
}

impl Platform {
    /// This host's.
    pub fn current(config: &Config) -> Platform {
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .ok()
            .map(|k| k.trim().to_string());
        let criu = SwrkCriu {
            binary: config.criu_path.clone(),
            limits: config.criu_limits(),
            waiter: Box::new(DirectWait),
        }
        .version()
        .ok()
        .map(|(a, b, c)| format!("{a}.{b}.{c}"));
        Platform { kernel, criu }
    }
}

/// What changed between the checkpoint's platform and this one, one
/// sentence each; empty when nothing did (or nothing was recorded).
pub fn changes(recorded: &Platform, now: &Platform) -> Vec<String> {
    let mut out = Vec::new();
    let mut compare = |what: &str, was: &Option<String>, is: &Option<String>| {
        if let (Some(was), Some(is)) = (was, is) {
            if was != is {
                out.push(format!(
                    "the {what} changed since the checkpoint: {was} then, {is} now"
                ));
            }
        }
    };
    compare("kernel", &recorded.kernel, &now.kernel);
    compare("CRIU version", &recorded.criu, &now.criu);
    out
}

/// The verdict on a restore: the notes for the report (what changed, and
/// that CRIU's check passed), or the refusal when the check failed.
/// `check` runs only when something changed (it costs a second or so).
pub fn judge(
    recorded: &Platform,
    now: &Platform,
    check: impl FnOnce() -> std::result::Result<(), String>,
) -> Result<Vec<String>> {
    let mut notes = changes(recorded, now);
    if notes.is_empty() {
        return Ok(notes);
    }
    match check() {
        Ok(()) => {
            notes.push(
                "CRIU's check passes on this host (CRIU's images are not tied to a kernel or \
                 CRIU version); each restore still checks what its images need"
                    .into(),
            );
            Ok(notes)
        }
        Err(why) => Err(Error::Refused(format!(
            "{}, and `criu check` fails here: {why}; CRIU cannot restore on this kernel as it \
             is. Boot the kernel the checkpoint was taken on ({}), or install a CRIU that \
             supports this one, then run restore --all again (the record and the archives \
             are kept)",
            notes.join("; "),
            recorded.kernel.as_deref().unwrap_or("unknown"),
        ))),
    }
}

/// `criu check`: CRIU's own test of the kernel features every dump and
/// restore needs. Its last lines when it fails.
pub fn criu_check(criu: &Path) -> std::result::Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let out = dir.path().join("check.log");
    let log = std::fs::File::create(&out).map_err(|e| e.to_string())?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    let mut child = Command::new(criu)
        .arg("check")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", criu.display()))?;
    let code = DirectWait.wait(&mut child, CHECK_TIMEOUT);
    if code.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    let tail: Vec<&str> = text.lines().rev().take(3).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    match code {
        Some(0) => Ok(()),
        Some(c) => Err(format!("exit {c}: {}", tail.join(" / "))),
        None => Err(format!("no answer in {}s", CHECK_TIMEOUT.as_secs())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(kernel: &str, criu: &str) -> Platform {
        Platform {
            kernel: Some(kernel.into()),
            criu: Some(criu.into()),
        }
    }

    #[test]
    fn the_same_platform_needs_no_check() {
        let notes = judge(&p("6.18.0", "4.2.1"), &p("6.18.0", "4.2.1"), || {
            panic!("checked")
        })
        .unwrap();
        assert!(notes.is_empty());
    }

    #[test]
    fn an_older_record_without_a_platform_is_not_judged() {
        let notes = judge(&Platform::default(), &p("6.18.0", "4.2.1"), || {
            panic!("checked")
        })
        .unwrap();
        assert!(notes.is_empty());
    }

    #[test]
    fn a_new_kernel_that_criu_accepts_is_a_note() {
        let notes = judge(&p("6.18.0", "4.2.1"), &p("6.18.5", "4.2.1"), || Ok(())).unwrap();
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(
            notes[0].contains("kernel changed since the checkpoint: 6.18.0 then, 6.18.5 now"),
            "{notes:?}"
        );
        assert!(notes[1].contains("CRIU's check passes"), "{notes:?}");
    }

    #[test]
    fn a_new_criu_is_named_too() {
        let notes = changes(&p("6.18.0", "4.1.1"), &p("6.18.0", "4.2.1"));
        assert_eq!(
            notes,
            ["the CRIU version changed since the checkpoint: 4.1.1 then, 4.2.1 now"]
        );
    }

    #[test]
    fn a_failing_check_on_a_new_kernel_refuses_with_what_to_do() {
        let e = judge(&p("6.18.0", "4.2.1"), &p("6.19.0", "4.2.1"), || {
            Err("exit 1: Error (criu/cr-check.c): Dirty tracking is OFF".into())
        })
        .unwrap_err();
        assert!(matches!(e, Error::Refused(_)), "{e:?}");
        let msg = e.to_string();
        assert!(msg.contains("6.18.0 then, 6.19.0 now"), "{msg}");
        assert!(msg.contains("Dirty tracking"), "{msg}");
        assert!(
            msg.contains("Boot the kernel the checkpoint was taken on (6.18.0)"),
            "{msg}"
        );
    }

    #[test]
    fn a_missing_criu_fails_the_check() {
        let e = criu_check(Path::new("/nonexistent/criu")).unwrap_err();
        assert!(e.contains("cannot run"), "{e}");
    }
}
