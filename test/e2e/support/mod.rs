//! The suite's harness: configuration and prerequisites, private daemon
//! sets, network-namespace hosts, commands with deadlines, clean-up and
//! leak checks, the CRI node, terminals, the application images.
//! Shared by the tests and by the benchmarks (test/e2e/benches).

pub mod apps;
pub mod cleanup;
pub mod cmd;
pub mod config;
pub mod cri;
pub mod harness;
pub mod lazarus;
pub mod leaks;
pub mod netns;
pub mod tty;
