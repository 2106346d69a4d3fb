//! Destinations: what a backup disk can do (`probe`), which disk it is (`fsinfo`), and the
//! btrfs/clone ioctls the strategies use.

pub mod btrfs;
pub mod fsinfo;
pub mod image;
pub mod probe;
