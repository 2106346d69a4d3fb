//! A copy-with-history run moves the previous snapshot's unchanged files into its staging
//! folder. If it is killed and the next run uses another strategy (the config changed, or a
//! re-probe chose differently), those files must still go back: they are the only copies.

mod common;

use std::fs;

use common::*;

#[test]
fn files_moved_by_a_killed_history_run_go_back_even_when_the_strategy_changed() {
    let disk = LoopDisk::ext4(96);
    let src = tempfile::tempdir().unwrap();
    let KilledHistoryRun {
        setup,
        first,
        original,
    } = killed_history_run(&disk, src.path(), "");

    // Now hard links, and keep0 is gone at the source.
    set_strategy(&setup, "hardlink");
    fs::remove_file(src.path().join("keep0")).unwrap();
    fs::remove_file(src.path().join("big")).unwrap();
    setup.backup("box", 0);

    let first_name = name_of(&first);
    let to = setup.restore_folder("box", &first_name, src.path());
    assert_same_tree(
        original.path(),
        &to.path().join(src.path().file_name().unwrap()),
    );
}
