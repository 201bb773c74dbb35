//! `lazarus migrate`/`serve` between two hosts (B in a network namespace
//! of its own): moves and refusals, post-copy and stop-copy memory, an
//! outside client's address, serve's door, the page servers' filter.

pub mod address;
pub mod filter;
pub mod moves;
pub mod postcopy;
pub mod serve;
pub mod stopcopy;
pub mod volumes;
