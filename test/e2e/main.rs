//! End-to-end suite: private containerd (1.7 or 2.1) and dockerd instances
//! driven through the real clients (`ctr`, `docker`), against the runtime
//! named by `LAZARUS_TEST_RUNTIME`. One folder per feature; `support/` is
//! the harness. See test/README.md.

mod support;

mod archive;
mod checkpoint;
mod cli;
mod containerd;
mod cri;
mod docker;
mod faults;
mod group;
mod migrate;
mod reboot;
mod security;
mod snapshot;
