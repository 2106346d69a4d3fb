//! strategy = "image": an ext4 image file on a share without hard links (exFAT here),
//! loop-mounted by snapnest, with hard-linked snapshots inside; and where it is refused.

mod common;
mod mounts;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use mounts::tree::{change, keep_copy, odd_tree, used_bytes};
use mounts::{missing_facility, Fs, Mounted};

const MIB: u64 = 1 << 20;

fn mount(fs: Fs, size_mib: u64) -> Mounted {
    // A machine that cannot mount it fails the test: a skipped filesystem is an untested one.
    if let Some(why) = missing_facility(fs) {
        panic!("cannot test {fs:?} on this machine: {why}");
    }
    Mounted::new(fs, size_mib)
}

/// A config whose storage is an image of `size` on `share`, state in `work/state`.
fn image_config(work: &Path, share: &Path, size: &str, src: &Path) -> PathBuf {
    let config = work.join("snapnest.toml");
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\nstrategy = \"image\"\nimage_size = \"{size}\"\n\n[daemon]\nstate_dir = \"{}\"\n\n{}",
            share.display(),
            work.join("state").display(),
            local_host("box", src)
        ),
    )
    .unwrap();
    config
}

fn run(config: &Path, args: &[&str], code: i32) -> String {
    let out = snapnest(config, args);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}:\n{t}");
    t
}

/// Mount points under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(dir))
        .map(str::to_string)
        .collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn exfat_image_round_trip_with_hard_links_inside() {
    let m = mount(Fs::Exfat, 512);
    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    let src = work.path().join("src");
    odd_tree(&src);
    let share = m.mnt.join("backups");
    fs::create_dir(&share).unwrap();
    let config = image_config(work.path(), &share, "200MiB", &src);

    let init = run(&config, &["init"], 0);
    assert!(init.contains("strategy: image"), "{init}");
    assert!(
        init.contains("no sparse files here, so the image takes its whole size now"),
        "{init}"
    );
    // The share holds the image and nothing else: marker, catalog and snapshots are inside.
    assert_eq!(names_in(&share), ["snapnest.img"]);
    assert_eq!(
        fs::metadata(share.join("snapnest.img")).unwrap().len(),
        200 * MIB
    );
    assert!(mounts_under(&state).is_empty(), "init unmounts at its end");

    // First run: mounted for the run, unmounted after it.
    let first = work.path().join("first");
    keep_copy(&src, &first);
    let t = run(&config, &["backup", "box"], 0);
    assert!(t.contains("box: good"), "{t}");
    assert!(mounts_under(&state).is_empty(), "a one-shot run unmounts");

    // Mounted by hand (as the daemon would keep it): a run leaves it mounted.
    let t = run(&config, &["image", "mount"], 0);
    let mnt = PathBuf::from(
        t.trim()
            .rsplit("loop-mounted at ")
            .next()
            .unwrap()
            .trim_end_matches(')'),
    );
    assert_eq!(mounts_under(&state), [mnt.to_str().unwrap()]);
    assert!(mnt.join(".snapnest/marker").is_file());
    assert!(mnt.join(".snapnest/catalog.db").is_file());
    let before = used_bytes(&mnt);
    change(&src);
    let second = work.path().join("second");
    keep_copy(&src, &second);
    let t = run(&config, &["backup", "box"], 0);
    assert!(t.contains("box: good"), "{t}");
    let used = used_bytes(&mnt).saturating_sub(before);
    eprintln!("second run took {used} bytes inside the image");
    assert_eq!(mounts_under(&state).len(), 1, "left mounted: {t}");

    let snaps = mounts::snapshot_dirs(&mnt.join("box"));
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    // Hard links inside the image: the unchanged 3 MiB file is one inode in both.
    let big = |s: &Path| fs::metadata(in_snap(s, &src).join("big/unchanged.bin")).unwrap();
    assert_eq!(big(&snaps[0]).ino(), big(&snaps[1]).ino());
    assert_eq!(big(&snaps[0]).nlink(), 2);
    assert!(used < 2 * MIB, "the second snapshot took {used} bytes");
    // Names exFAT refuses are plain inside the image.
    assert!(in_snap(&snaps[0], &src).join("odd/a:b*c?.txt").is_file());
    let names: Vec<String> = snaps
        .iter()
        .map(|s| s.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    run(&config, &["image", "unmount"], 0);
    assert!(mounts_under(&state).is_empty());

    let list = run(&config, &["list", "box"], 0);
    assert!(
        list.contains("image ") && list.contains("snapnest.img"),
        "{list}"
    );
    assert!(list.contains("strategy image"), "{list}");
    for n in &names {
        assert!(
            list.lines()
                .any(|l| l.contains(n.as_str()) && l.contains("image")),
            "{n} listed with its strategy: {list}"
        );
    }
    for (name, expected) in names.iter().zip([&first, &second]) {
        let to = work.path().join(format!("restored-{name}"));
        run(
            &config,
            &["restore", "box", name, "/", "--to", to.to_str().unwrap()],
            0,
        );
        assert_same_tree(expected, &in_snap(&to, &src));
    }
    assert!(mounts_under(&state).is_empty(), "list and restore unmount");

    // Grow: the file and the filesystem inside.
    let t = run(&config, &["image", "grow", "300MiB"], 0);
    assert!(t.contains("grew"), "{t}");
    assert_eq!(
        fs::metadata(share.join("snapnest.img")).unwrap().len(),
        300 * MIB
    );
    run(&config, &["image", "mount"], 0);
    let total = Command::new("stat")
        .args(["-f", "-c", "%b %S"])
        .arg(&mnt)
        .output()
        .unwrap();
    let v: Vec<u64> = String::from_utf8_lossy(&total.stdout)
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    assert!(v[0] * v[1] > 250 * MIB, "ext4 inside grew: {v:?}");
    run(&config, &["image", "unmount"], 0);
    let t = run(&config, &["image", "grow", "100MiB"], 2);
    assert!(t.contains("shrinking is not supported"), "{t}");
    let t = run(&config, &["image", "grow", "2G"], 2);
    assert!(t.contains("free on exfat"), "{t}");

    // The image gone (the share is there): a clear error, nothing made in its place.
    fs::rename(share.join("snapnest.img"), m.mnt.join("elsewhere.img")).unwrap();
    let t = run(&config, &["backup", "box"], 2);
    assert!(t.contains("snapnest.img is missing"), "{t}");
    assert!(
        names_in(&share).is_empty(),
        "nothing made: {:?}",
        names_in(&share)
    );
    assert!(mounts_under(&state).is_empty());
    // The share gone (disk not mounted): said so.
    fs::rename(m.mnt.join("elsewhere.img"), share.join("snapnest.img")).unwrap();
    fs::rename(&share, m.mnt.join("moved")).unwrap();
    let t = run(&config, &["list"], 2);
    assert!(t.contains("is not there (is the disk mounted?)"), "{t}");
    // Back in place: everything is there again.
    fs::rename(m.mnt.join("moved"), &share).unwrap();
    let list = run(&config, &["list", "box"], 0);
    for n in &names {
        assert!(list.contains(n.as_str()), "{list}");
    }
    assert!(mounts_under(&state).is_empty());
}

/// A config for refusals: share on tmpfs (or FAT32) with world-writable folders.
fn refusal(share: &Path, size: &str) -> (tempfile::TempDir, PathBuf) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    sample_tree(&src);
    let config = image_config(work.path(), share, size, &src);
    for p in [work.path(), share] {
        // fusefat has no chmod (and lets everyone write anyway).
        let _ = fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777));
    }
    fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    (work, config)
}

/// `snapnest init` under `sh -c PREFIX` (a namespace or another user); its output.
fn init_through(prefix: &[&str], config: &Path) -> (Option<i32>, String) {
    let out = Command::new(prefix[0])
        .args(&prefix[1..])
        .arg(env!("CARGO_BIN_EXE_snapnest"))
        .arg("--config")
        .arg(config)
        .arg("init")
        .output()
        .unwrap();
    (out.status.code(), text(&out))
}

#[test]
fn an_image_is_refused_with_the_reason_where_it_cannot_work() {
    // FAT32: files end at 4 GiB − 1; a 5 GiB image cannot be one.
    let fat = mount(Fs::Fat32, 64);
    let (_w, config) = refusal(&fat.mnt, "5G");
    let t = run(&config, &["init"], 2);
    assert!(
        t.contains("strategy \"image\" cannot work") && t.contains("is more than the largest file"),
        "{t}"
    );
    // Smaller, it still cannot: fusefat loses data written into existing files.
    let (_w, config) = refusal(&fat.mnt, "64M");
    let t = run(&config, &["init"], 2);
    assert!(t.contains("loses data written to existing files"), "{t}");
    let leftover: Vec<String> = names_in(&fat.mnt);
    assert!(leftover.is_empty(), "nothing written: {leftover:?}");
    drop(fat);

    let tmp = mount(Fs::Tmpfs, 64);
    let share = tmp.mnt.join("share");
    fs::create_dir(&share).unwrap();
    let (work, config) = refusal(&share, "32M");

    // Not root.
    let (code, t) = init_through(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &config,
    );
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("not root: mounting an image needs root"), "{t}");

    // No loop device: /dev/loop-control is /dev/null in a mount namespace of this test.
    let (code, t) = init_through(
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount --bind /dev/null /dev/loop-control && exec \"$@\"",
            "sh",
        ],
        &config,
    );
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("no loop mount"), "{t}");

    // mkfs.ext4 missing: an empty /usr/sbin in a mount namespace of this test.
    let (code, t) = init_through(
        &[
            "unshare",
            "-m",
            "sh",
            "-c",
            "mount -t tmpfs none /usr/sbin && exec \"$@\"",
            "sh",
        ],
        &config,
    );
    assert_eq!(code, Some(2), "{t}");
    assert!(t.contains("mkfs.ext4 is not installed"), "{t}");

    assert!(
        names_in(&share).is_empty(),
        "nothing written: {:?}",
        names_in(&share)
    );
    assert!(!work.path().join("state/image").exists() || mounts_under(work.path()).is_empty());

    // The config says what is wrong with image_size.
    let src = work.path().join("src");
    for (size, says) in [
        ("", "needs the image's size"),
        ("1M", "too small"),
        ("lots", "image_size"),
    ] {
        let extra = if size.is_empty() {
            String::new()
        } else {
            format!("image_size = \"{size}\"\n")
        };
        fs::write(
            &config,
            format!(
                "[storage]\npath = \"{}\"\nstrategy = \"image\"\n{extra}\n{}",
                share.display(),
                local_host("box", &src)
            ),
        )
        .unwrap();
        let t = run(&config, &["list"], 2);
        assert!(
            t.contains("storage.image_size") && t.contains(says),
            "{size}: {t}"
        );
    }
    fs::write(
        &config,
        format!(
            "[storage]\npath = \"{}\"\nimage_size = \"1G\"\n\n{}",
            share.display(),
            local_host("box", &src)
        ),
    )
    .unwrap();
    let t = run(&config, &["list"], 2);
    assert!(t.contains("only used with strategy = \"image\""), "{t}");
}

#[test]
fn auto_on_exfat_says_an_image_would_give_hard_links() {
    let m = mount(Fs::Exfat, 64);
    let out = Command::new(env!("CARGO_BIN_EXE_snapnest"))
        .arg("probe")
        .arg(&m.mnt)
        .output()
        .unwrap();
    let t = text(&out);
    assert!(t.contains("strategy: history"), "{t}");
    assert!(
        t.contains("an ext4 image would give hard-link snapshots here"),
        "{t}"
    );
}

#[test]
fn the_daemon_keeps_the_image_mounted_and_unmounts_it_at_stop() {
    let m = mount(Fs::Exfat, 256);
    let setup = Setup::new("", "");
    let work = setup.dir.path();
    let state = work.join("state");
    let src = work.join("src");
    sample_tree(&src);
    let share = m.mnt.join("backups");
    fs::create_dir(&share).unwrap();
    fs::write(
        &setup.config,
        format!(
            "[storage]\npath = \"{}\"\nstrategy = \"image\"\nimage_size = \"64MiB\"\n\n[daemon]\nstate_dir = \"{}\"\npresence_interval = \"5s\"\nshutdown_grace = \"5s\"\n\n{}",
            share.display(),
            state.display(),
            local_host("box", &src)
        ),
    )
    .unwrap();
    run(&setup.config, &["init"], 0);
    assert!(mounts_under(&state).is_empty());
    let mut d = setup.start_daemon_on(&setup.config, &state);
    wait_until(
        "the daemon mounts the image",
        std::time::Duration::from_secs(20),
        || mounts_under(&state).len() == 1,
    );
    // `backup` hands the run to the daemon, which leaves the image mounted.
    let t = run(&setup.config, &["backup", "box"], 0);
    assert!(t.contains("good"), "{t}");
    assert_eq!(mounts_under(&state).len(), 1, "{}", d.log_text());
    d.signal(libc::SIGTERM);
    assert_eq!(d.wait_exit(std::time::Duration::from_secs(30)), Some(0));
    assert!(
        mounts_under(&state).is_empty(),
        "unmounted at stop: {}",
        d.log_text()
    );
    let list = run(&setup.config, &["list", "box"], 0);
    assert!(list.contains("image") && list.contains("good"), "{list}");
}
