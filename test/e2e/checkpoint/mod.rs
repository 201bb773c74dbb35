//! Checkpoint and restore through Docker, ctr and the containerd API:
//! the flows, kernel state across a restore, image paths and directories,
//! a checkpoint restored into another image, real applications.

pub mod apps;
pub mod flows;
pub mod image_dir;
pub mod image_path;
pub mod restore_image;
pub mod state;
