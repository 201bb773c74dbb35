//! Runtime basics through containerd's clients: `ctr run`/`ctr task`,
//! nerdctl's path through the containerd API, errors as runc's shim answers
//! them, an exec'd process confined like the init.

pub mod api;
pub mod ctr;
pub mod errors;
pub mod exec_confinement;
pub mod options;
