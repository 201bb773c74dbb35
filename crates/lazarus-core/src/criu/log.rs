//! Reading CRIU's log for error messages without ever reading all of it:
//! a CRIU looping on a damaged image can write gigabytes a minute.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// How much of the log's start and end is read for an excerpt.
const HEAD_BYTES: u64 = 8 << 20;
const TAIL_BYTES: u64 = 256 << 10;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Excerpt {
    /// CRIU's `Error (...)` lines, the first (usually the cause) first,
    /// harmless ones left out.
    pub errors: Vec<String>,
    /// The log's last lines.
    pub tail: Vec<String>,
}

/// The first `lines` error lines and the last `lines` lines of the log,
/// reading at most a few MiB of it whatever its size.
pub fn excerpt(log: &Path, lines: usize) -> Excerpt {
    let Ok(mut file) = File::open(log) else {
        return Excerpt::default();
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let head = read_range(&mut file, 0, HEAD_BYTES.min(size));
    let tail_start = size.saturating_sub(TAIL_BYTES).max(HEAD_BYTES.min(size));
    let tail = read_range(&mut file, tail_start, size - tail_start);
    let mut errors: Vec<String> = head
        .lines()
        .chain(tail.lines())
        .filter(|l| l.contains("Error (") && !is_harmless(l))
        .take(lines)
        .map(str::to_string)
        .collect();
    errors.dedup();
    let whole = if tail.is_empty() { &head } else { &tail };
    let all: Vec<&str> = whole.lines().collect();
    Excerpt {
        errors,
        tail: all[all.len().saturating_sub(lines)..]
            .iter()
            .map(|l| l.to_string())
            .collect(),
    }
}

fn read_range(file: &mut File, start: u64, len: u64) -> String {
    let mut buf = Vec::with_capacity(len as usize);
    if file.seek(SeekFrom::Start(start)).is_ok() {
        let _ = Read::by_ref(file).take(len).read_to_end(&mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// CRIU logs this as an error on every run under a container manager's
/// rlimits and carries on: leading with it would hide the real cause.
pub fn is_harmless(line: &str) -> bool {
    line.contains("Can't setup RLIMIT_NOFILE for self")
}

/// Copies the log to `dest` (0600), at most `max` bytes: its start and its
/// end with a marker between, so the cause and the last words both survive.
pub fn keep_copy(log: &Path, dest: &Path, max: u64) -> std::io::Result<()> {
    let mut src = File::open(log)?;
    let size = src.metadata()?.len();
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut out = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(dest)?;
    if size <= max {
        // Bounded even so: the log may still be growing.
        std::io::copy(&mut Read::by_ref(&mut src).take(max), &mut out)?;
        return Ok(());
    }
    let half = max / 2;
    std::io::copy(&mut Read::by_ref(&mut src).take(half), &mut out)?;
    writeln!(
        out,
        "\n[... {} bytes of CRIU's log left out by Lazarus ...]",
        size - 2 * half
    )?;
    src.seek(SeekFrom::Start(size - half))?;
    std::io::copy(&mut src, &mut out)?;
    Ok(())
}

/// What to do when CRIU refused for want of a dump option, recognised by
/// the advice CRIU itself logs: (CRIU's advice, runc option, annotation).
/// Said for those who reach the shim through Docker, nerdctl or ctr (the
/// annotation, which they can set), then the runc option (Kubernetes,
/// containerd clients) and `lazarus checkpoint`'s flag (CRIU's own
/// spelling, which the CLI's error leads with instead).
pub fn option_hint(excerpt: &Excerpt, advice: &[(&str, &str, &str)]) -> Option<String> {
    let found: Vec<String> = advice
        .iter()
        .filter(|(text, _, _)| {
            excerpt
                .errors
                .iter()
                .chain(&excerpt.tail)
                .any(|l| l.contains(text))
        })
        .map(|(text, option, annotation)| {
            format!(
                "CRIU needs {text}: create the container with the annotation \
                 {annotation}=true (docker run --annotation {annotation}=true), or checkpoint \
                 with the runtime option {option} (lazarus checkpoint {text})",
                text = text
            )
        })
        .collect();
    (!found.is_empty()).then(|| found.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cause_leads_and_the_harmless_rlimit_line_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("restore.log");
        std::fs::write(
            &log,
            "(00.0) Error (criu/rlimit.c:1): rlimit: Can't setup RLIMIT_NOFILE for self\n\
             (00.1) Error (criu/image.c:2): Unable to open inventory.img: No such file\n\
             (00.2) last line\n",
        )
        .unwrap();
        let e = excerpt(&log, 5);
        assert_eq!(e.errors.len(), 1, "{e:?}");
        assert!(e.errors[0].contains("inventory.img"));
        assert_eq!(e.tail.last().unwrap(), "(00.2) last line");
    }

    #[test]
    fn a_huge_log_is_read_only_in_part_and_copied_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("dump.log");
        let mut f = File::create(&log).unwrap();
        writeln!(f, "(0.1) Error (criu/x.c:1): the real cause").unwrap();
        let line = "(0.2) spinning on a page that is not there\n".repeat(1 << 12);
        for _ in 0..200 {
            f.write_all(line.as_bytes()).unwrap(); // ~36 MB in all
        }
        writeln!(f, "(9.9) the end").unwrap();
        drop(f);
        let e = excerpt(&log, 3);
        assert_eq!(e.errors, ["(0.1) Error (criu/x.c:1): the real cause"]);
        assert_eq!(e.tail.last().unwrap(), "(9.9) the end");
        let copy = dir.path().join("kept/dump.log");
        keep_copy(&log, &copy, 1 << 20).unwrap();
        let kept = std::fs::read_to_string(&copy).unwrap();
        assert!(kept.len() < (1 << 20) + 200, "{}", kept.len());
        assert!(kept.starts_with("(0.1) Error") && kept.ends_with("(9.9) the end\n"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn criu_advice_becomes_a_hint() {
        let e = Excerpt {
            errors: vec!["Error (sk-inet.c:1): Connected TCP socket, consider using \
                          --tcp-established option."
                .into()],
            tail: vec![],
        };
        let advice = [("--tcp-established", "open_tcp", "io.x.tcp")];
        let hint = option_hint(&e, &advice).unwrap();
        assert!(
            hint.contains("open_tcp") && hint.contains("io.x.tcp"),
            "{hint}"
        );
        // The annotation first: what Docker's users can set.
        assert!(
            hint.find("io.x.tcp=true").unwrap() < hint.find("open_tcp").unwrap(),
            "{hint}"
        );
        assert_eq!(option_hint(&Excerpt::default(), &advice), None);
    }
}
