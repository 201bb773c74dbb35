//! The `lazarus` CLI's own commands: inspect of real and non-checkpoints,
//! version.

pub mod exit_codes;
pub mod inspect;
