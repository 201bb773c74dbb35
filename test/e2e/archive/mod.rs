//! `lazarus checkpoint --export` on one host, `lazarus restore --import` on
//! another; bad archives.

pub mod export_import;
pub mod runtime_names;
