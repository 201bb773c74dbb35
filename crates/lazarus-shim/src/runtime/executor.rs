//! How the container's init finds and runs the user's program.
//!
//! libcontainer's default executor insists on PATH even for an absolute
//! command and words its errors its own way. Docker turns runc's wording
//! into exit codes ("executable file not found" and "no such file or
//! directory" are 127, "permission denied" 126), so this executor checks
//! the command as runc does, with runc's wording, then lets libcontainer's
//! default executor run it. For an exec it first puts the process under the
//! container's seccomp filter, which libcontainer leaves out (see
//! `confinement.rs`).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};

use super::confinement::Confinement;

#[derive(Clone, Default)]
pub struct RuncCompatibleExecutor {
    /// What an exec'd process still needs just before execve.
    pub confinement: Option<Confinement>,
}

impl Executor for RuncCompatibleExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(confinement) = &self.confinement {
            confinement.apply().map_err(ExecutorError::Other)?;
        }
        DefaultExecutor {}.exec(spec)
    }

    /// Runs inside the container, after pivot_root: paths are the container's.
    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let Some(process) = spec.process().as_ref() else {
            return Err(invalid("spec did not contain process".into()));
        };
        let Some(command) = process.args().as_ref().and_then(|a| a.first()) else {
            return Ok(());
        };
        let path_var = process
            .env()
            .iter()
            .flatten()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or_default();
        check_command(command, path_var)
            .map(|_| ())
            .map_err(invalid)
    }
}

fn invalid(message: String) -> ExecutorValidationError {
    ExecutorValidationError::ArgValidationError(message)
}

/// runc's checks and messages for the command of a new process.
pub fn check_command(command: &str, path_var: &str) -> Result<PathBuf, String> {
    if command.contains('/') {
        let path = Path::new(command);
        return match path.metadata() {
            Ok(m) if is_executable(&m) => Ok(path.to_path_buf()),
            Ok(_) => Err(format!("exec: {command:?}: permission denied")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
                "exec: {command:?}: stat {command}: no such file or directory"
            )),
            Err(e) => Err(format!("exec: {command:?}: stat {command}: {e}")),
        };
    }
    let mut denied = false;
    for dir in path_var.split(':').filter(|d| !d.is_empty()) {
        let candidate = Path::new(dir).join(command);
        match candidate.metadata() {
            Ok(m) if is_executable(&m) => return Ok(candidate),
            Ok(m) if m.is_file() => denied = true,
            _ => {}
        }
    }
    if denied {
        return Err(format!("exec: {command:?}: permission denied"));
    }
    Err(format!(
        "exec: {command:?}: executable file not found in $PATH"
    ))
}

fn is_executable(m: &std::fs::Metadata) -> bool {
    m.is_file() && m.permissions().mode() & 0o111 != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_runc() {
        assert_eq!(
            check_command("/bin/sh", "").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            check_command("sh", "/nowhere:/bin").unwrap(),
            PathBuf::from("/bin/sh")
        );
        assert_eq!(
            check_command("/nonexistent", "/bin").unwrap_err(),
            "exec: \"/nonexistent\": stat /nonexistent: no such file or directory"
        );
        assert_eq!(
            check_command("nonexistent", "/bin").unwrap_err(),
            "exec: \"nonexistent\": executable file not found in $PATH"
        );
        assert_eq!(
            check_command("/etc", "").unwrap_err(),
            "exec: \"/etc\": permission denied"
        );
        assert_eq!(
            check_command("sh", "").unwrap_err(),
            "exec: \"sh\": executable file not found in $PATH"
        );
    }
}
