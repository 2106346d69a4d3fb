//! How snapshot paths are stored on disks that refuse some names.

pub mod clash;
pub mod moves;
pub mod names;
pub mod parts;
