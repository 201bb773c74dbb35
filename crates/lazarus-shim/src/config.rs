//! The shim reads Lazarus's one configuration file through the core.
pub use lazarus_core::config::*;
