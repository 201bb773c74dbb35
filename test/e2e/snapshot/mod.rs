//! `lazarus snapshot`: a series of a running container's states in the
//! host's store, reverted to in any order, copied, exported, pruned; the
//! store after a killed snapshot and with a damaged block; store-backed
//! Docker checkpoints (`docker_checkpoints = "store"`).

mod docker_store;
mod series;
