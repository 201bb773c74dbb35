//! What a checkpoint image directory holds, read from CRIU's own images
//! (process tree and commands, TCP sockets, mounts, page sizes, dump
//! statistics): for `lazarus inspect`. Decoded with protobuf's generic
//! field access and CRIU's field numbers, so no CRIU schema is compiled in;
//! damaged input is an error naming the file, never a panic.

pub mod memory;
mod summary;

pub use crate::criu::images::Error;
pub use summary::{
    field, human, render_text, summarize, ImageSummary, MountInfo, ProcessInfo, SocketInfo,
};

#[cfg(test)]
mod real_dump_tests {
    use super::*;
    use std::path::Path;

    /// testdata/listen-fork: testdata/listen-fork.c dumped by CRIU 4.2.1
    /// (`criu dump --shell-job --tcp-established -v3`): a listener, a
    /// loopback connection to it, then a fork. Started with `env -i` so its
    /// pages hold no environment; a C program to keep it at 156 KiB.
    #[test]
    fn a_real_dump_is_summarised() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/listen-fork");
        let s = summarize(&dir).unwrap();
        assert_eq!(s.processes.len(), 2);
        let (parent, child) = (&s.processes[0], &s.processes[1]);
        assert_eq!((parent.ppid, child.ppid), (0, parent.pid));
        for p in &s.processes {
            assert_eq!((p.comm.as_deref(), p.threads), (Some("listen-fork"), 1));
        }
        let tcp: Vec<_> = s
            .tcp
            .iter()
            .map(|t| (t.state.as_str(), t.local.as_str(), t.remote.as_str()))
            .collect();
        let want = [
            ("LISTEN", "127.0.0.1:60429", "0.0.0.0:0"),
            ("ESTABLISHED", "127.0.0.1:47430", "127.0.0.1:60429"),
            ("ESTABLISHED", "127.0.0.1:60429", "127.0.0.1:47430"),
        ];
        assert_eq!(tcp, want);
        assert!(s.mounts.is_empty(), "no mount namespace of its own");
        assert_eq!((s.files, s.pages_bytes), (23, 2 * 65536));
        assert_eq!(s.criu_version.as_deref(), Some("4.2.1"));
        assert!(s.stats["pages_written"] > 0 && s.stats["frozen_time_us"] > 0);
        let text = render_text(&s);
        assert!(text.contains("    listen-fork\n"), "{text}");
    }
}
