//! Docker's container lifecycle on the runtime under test: run, exec,
//! stop, kill, pause, stats, update, wait, attach.

pub mod lifecycle;
