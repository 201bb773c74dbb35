//! The serving shim's logger: logfmt lines (as containerd-shim's own
//! logger writes them, which containerd re-logs) into the `log` FIFO that
//! containerd reads in the first container's bundle.
//!
//! Why not containerd-shim's logger: a group's shim (one per pod) outlives
//! that first container. Once it is deleted containerd stops reading, and
//! every write raises SIGPIPE; containerd-shim's signal thread, which is
//! also the thread that reaps children, logs each signal it receives, so it
//! spun on SIGPIPE forever and no exit was reaped again (seen: a pod's
//! other containers never stopped). Here the first broken pipe ends the
//! logging, and a full FIFO drops lines instead of blocking every thread
//! that logs. runc's shim loses its lines the same way.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use log::{Metadata, Record};

pub struct FifoLog {
    /// None once the reader is gone for good.
    file: Mutex<Option<File>>,
}

impl FifoLog {
    /// Opens `path` (a FIFO containerd reads) for non-blocking writes.
    pub fn open(path: &str) -> std::io::Result<FifoLog> {
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)?;
        Ok(FifoLog::with_file(file))
    }

    fn with_file(file: File) -> FifoLog {
        FifoLog {
            file: Mutex::new(Some(file)),
        }
    }
}

/// One line as containerd-shim writes it: `time="…" level=… msg="…"`.
pub fn line(record: &Record) -> String {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let level = record.level().as_str().to_lowercase();
    let msg = record
        .args()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"");
    format!("time=\"{time}\" level={level} msg=\"{msg}\"\n")
}

impl log::Log for FifoLog {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if self.enabled(record.metadata()) {
            self.write(&line(record));
        }
    }

    fn flush(&self) {}
}

impl FifoLog {
    fn write(&self, text: &str) {
        let Ok(mut guard) = self.file.lock() else {
            return;
        };
        let Some(file) = guard.as_mut() else {
            return;
        };
        // A full FIFO (WouldBlock) loses this line; a FIFO nobody reads any
        // more (BrokenPipe) ends logging.
        if let Err(e) = file.write_all(text.as_bytes()) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                *guard = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn record<'a>(args: std::fmt::Arguments<'a>) -> Record<'a> {
        Record::builder()
            .args(args)
            .level(log::Level::Error)
            .build()
    }

    #[test]
    fn lines_are_logfmt_with_quotes_escaped() {
        let l = line(&record(format_args!("a \"b\" c\\d")));
        assert!(l.starts_with("time=\""), "{l}");
        assert!(
            l.ends_with(" level=error msg=\"a \\\"b\\\" c\\\\d\"\n"),
            "{l}"
        );
    }

    #[test]
    fn a_pipe_nobody_reads_ends_logging_without_blocking() {
        let (r, w) = nix::unistd::pipe().unwrap();
        let log = FifoLog::with_file(File::from(w));
        log.write("first\n");
        let mut buf = [0u8; 16];
        let n = File::from(r).read(&mut buf).unwrap(); // and the reader is gone
        assert_eq!(&buf[..n], b"first\n");
        // The write fails (EPIPE; Rust ignores SIGPIPE) and logging stops.
        log.write("second\n");
        assert!(log.file.lock().unwrap().is_none());
        log.write("third\n");
    }
}
