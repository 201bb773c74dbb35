//! `lazarus checkpoint --group/--compose`: one instant, all or none.

pub mod checkpoint;
