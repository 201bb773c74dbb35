//! `lazarus checkpoint --export` on one host, `lazarus restore --import` on
//! another (or through a pipe); bad archives; named volumes travelling
//! with the container.

pub mod export_import;
pub mod pipe;
pub mod runtime_names;
pub mod volumes;
