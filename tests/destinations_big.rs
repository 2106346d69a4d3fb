//! Per filesystem: a tree with odd names and symlinks beside a 2 GiB sparse file and a file
//! of 4 GiB + 1 byte, backed up, changed, backed up again, both snapshots restored and
//! verified (see `mounts::big`). FAT32 (4 GiB − 1 at most per file) is in its own tests.

mod common;
mod mounts;

use mounts::big::big_files_round_trip;
use mounts::Fs;

#[test]
fn ext4_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Ext4, 64);
}

#[test]
fn xfs_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Xfs, 300);
}

#[test]
fn btrfs_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Btrfs, 160);
}

#[test]
fn tmpfs_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Tmpfs, 64);
}

#[test]
fn ntfs_sparse_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Ntfs, 64);
}

/// exFAT has no sparse files: 2 GiB + 4 GiB + 1 go through exfat-fuse in full, then the
/// changed 2 GiB again (copy-with-history moves the unchanged 4 GiB file instead).
#[test]
fn exfat_multi_gib_and_over_4_gib_files_round_trip() {
    big_files_round_trip(Fs::Exfat, 9 * 1024);
}
