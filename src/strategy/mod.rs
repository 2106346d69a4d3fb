//! How snapshots are kept on a destination, chosen from what `probe` learnt.
//!
//! Every strategy publishes a folder `<host>/<snapshot>/` and records each snapshot's
//! manifest in the catalog; they differ in how unchanged files are shared with the previous
//! snapshot and in what a snapshot folder holds:
//! - `hardlink`: full trees, unchanged files hard-linked (ext4, xfs, NTFS…);
//! - `btrfs`: each snapshot a read-only subvolume snapshot of the previous one, changes applied;
//! - `reflink`: full trees, unchanged files cloned (FICLONE);
//! - `image`: hard links inside an ext4 image loop-mounted from a share without them
//!   (`dest::image` mounts it; the storage root is the mount point);
//! - `history`: the newest snapshot is the full mirror; each older one keeps only its files
//!   that a later run replaced or deleted. A file of snapshot S is in the first of
//!   S, S+1, …, newest that has it (`locate`). Works on any disk.

pub mod btrfs;
pub mod chain;
pub mod history;

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::dest::probe::{self, Findings};
use crate::error::{Error, Result};
use crate::job::stage::{Keep, Linked, Stage};
use crate::model::Entry;
use crate::storage::Storage;
use crate::store::names::NameRules;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Strategy {
    HardLink,
    Btrfs,
    Reflink,
    History,
    Image,
}

impl Strategy {
    pub const ALL: [Strategy; 5] = [
        Strategy::Btrfs,
        Strategy::HardLink,
        Strategy::Reflink,
        Strategy::History,
        Strategy::Image,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::HardLink => "hardlink",
            Strategy::Btrfs => "btrfs",
            Strategy::Reflink => "reflink",
            Strategy::History => "history",
            Strategy::Image => "image",
        }
    }

    pub fn parse(s: &str) -> Option<Strategy> {
        Strategy::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Why this strategy works on a disk with these findings, or why it cannot.
    pub fn fits(self, f: &Findings) -> std::result::Result<String, String> {
        let need = |c: &probe::Check, what: &str| {
            if c.ok {
                Ok(())
            } else {
                Err(format!("{what} ({})", c.detail))
            }
        };
        match self {
            Strategy::Btrfs => need(&f.btrfs_snapshots, "no btrfs subvolume snapshots")
                .map(|_| "btrfs read-only subvolume snapshots: O(1) to make and to delete".into()),
            Strategy::HardLink => need(&f.hard_links, "no hard links")
                .and_then(|_| need(&f.symlinks, "no symlinks"))
                .map(|_| match f.link_limit {
                    Some(n) if n < 65_000 => format!(
                        "hard links work (at most {n} per file: a fresh copy starts a new chain)"
                    ),
                    _ => "hard links work: unchanged files cost no space".into(),
                }),
            Strategy::Reflink => need(&f.reflink, "no reflinks (FICLONE)")
                .and_then(|_| need(&f.symlinks, "no symlinks"))
                .map(|_| "reflink copies share unchanged blocks".into()),
            // Judged on the mounted image; whether the share can hold one is `image::fits`.
            Strategy::Image => need(&f.hard_links, "no hard links inside the image")
                .map(|_| "hard links inside the loop-mounted ext4 image".into()),
            Strategy::History => Ok(if f.hard_links.ok {
                "copy-with-history works anywhere".into()
            } else {
                format!(
                    "no hard links ({}): copy-with-history keeps a full mirror plus what each run replaced",
                    f.hard_links.detail
                )
            }),
        }
    }
}

/// `[storage] strategy`: let the probe decide, or insist on one.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Wanted {
    #[default]
    Auto,
    Named(Strategy),
}

impl Wanted {
    pub fn parse(s: &str) -> std::result::Result<Wanted, String> {
        match s {
            "auto" => Ok(Wanted::Auto),
            _ => Strategy::parse(s).map(Wanted::Named).ok_or_else(|| {
                format!("{s:?}: expected \"auto\", \"hardlink\", \"btrfs\", \"reflink\", \"history\" or \"image\"")
            }),
        }
    }
}

/// The strategy chosen for a disk, with the probe's reasons.
#[derive(Clone, Debug)]
pub struct Choice {
    pub strategy: Strategy,
    pub reasons: Vec<String>,
}

/// Pick a strategy: the first that fits (btrfs, hard links, history), or the named one if
/// it fits; a named one that cannot work is refused with the probe's reason.
pub fn choose(f: &Findings, wanted: &Wanted) -> Result<Choice> {
    let mut reasons = Vec::new();
    if !f.appends_kept.ok {
        reasons.push(format!(
            "the catalog works in the state folder and a whole copy replaces the disk's after each change: this driver loses data written to existing files ({})",
            f.appends_kept.detail
        ));
    }
    let with = |mut r: Vec<String>, why: String| {
        r.push(why);
        r
    };
    match wanted {
        Wanted::Named(s) => match s.fits(f) {
            Ok(why) => Ok(Choice {
                strategy: *s,
                reasons: with(reasons, format!("named in the config; {why}")),
            }),
            Err(why) => Err(Error::Other(format!(
                "strategy {:?} cannot work on {} ({}): {why}",
                s.name(),
                f.path.display(),
                f.filesystem
            ))),
        },
        Wanted::Auto => {
            for s in [Strategy::Btrfs, Strategy::HardLink, Strategy::History] {
                match s.fits(f) {
                    Ok(why) => {
                        reasons.push(why);
                        return Ok(Choice {
                            strategy: s,
                            reasons,
                        });
                    }
                    Err(why) => reasons.push(format!("not {}: {why}", s.name())),
                }
                if s == Strategy::HardLink && f.loop_mount.ok && f.durable_on_close.ok {
                    // Not chosen by itself: an image takes a size the user must pick, and
                    // its files cannot be read where the disk is plugged into a PC.
                    reasons.push(
                        "an ext4 image would give hard-link snapshots here: set strategy = \"image\" and image_size".into(),
                    );
                }
            }
            unreachable!("history fits every disk")
        }
    }
}

/// What a run needs to know about its destination.
#[derive(Clone, Debug)]
pub struct Active {
    pub strategy: Strategy,
    pub reasons: Vec<String>,
    pub findings: Findings,
    /// Set when this run found another disk than the one probed and probed again.
    pub reprobed: Option<String>,
}

impl Active {
    /// The recorded probe, checked cheaply against the disk (statfs type + fsid, or FUSE
    /// type + source; the marker was checked when the storage was opened). Probes again
    /// and records the result when the disk is not the one probed.
    pub fn load(storage: &Storage, catalog: &Catalog, wanted: &Wanted) -> Result<Active> {
        let root = storage.root();
        let now = crate::dest::fsinfo::Identity::of(root)
            .map_err(|e| Error::io(root, "reading filesystem of", e))?;
        let recorded = catalog.probe()?;
        let (findings, reprobed) = match recorded {
            Some(f) if f.identity.same_disk(&now) => (f, None),
            other => {
                let why = match &other {
                    Some(f) => format!(
                        "the disk is not the one probed (was {}, now {}); probed again",
                        f.identity.describe(),
                        now.describe()
                    ),
                    None => "no probe recorded for this storage; probed it".into(),
                };
                (probe::probe(root)?, Some(why))
            }
        };
        let choice = choose(&findings, wanted)?;
        let recorded_name = catalog.strategy_info()?.map(|s| s.strategy);
        if reprobed.is_some() || recorded_name.as_deref() != Some(choice.strategy.name()) {
            catalog.record_probe(&findings, &choice)?;
        }
        Ok(Active {
            strategy: choice.strategy,
            reasons: choice.reasons,
            findings,
            reprobed,
        })
    }

    /// What the disk keeps besides content; the rest lives in the manifest.
    pub fn keep(&self) -> Keep {
        Keep {
            mode: self.findings.mode_kept.ok,
            symlinks: self.findings.symlinks.ok,
            names: NameRules::from_refused(&self.findings.refused_bytes),
            sparse: self.findings.sparse_files.ok,
            // Whole MiB parts (FAT32: 4,095 MiB), just under the disk's largest file.
            split_at: self.findings.max_file_size.map(|max| match max >> 20 {
                0 => max,
                mib => mib << 20,
            }),
        }
    }

    /// The staging folder of a new run in `host_dir`, and whether it already holds files
    /// (a resumed run, or a btrfs snapshot of the previous one) to be reconciled with the
    /// listing.
    pub fn staging(&self, host_dir: &Path, prev: Option<&Path>) -> Result<(PathBuf, bool)> {
        match self.strategy {
            Strategy::Btrfs => btrfs::staging(host_dir, prev),
            _ => crate::job::staging_dir(host_dir),
        }
    }

    /// Give the staging folder the previous snapshot's copy of unchanged `e`.
    pub fn share(&self, stage: &Stage, prev_root: &Path, e: &Entry) -> std::io::Result<Linked> {
        match self.strategy {
            Strategy::HardLink | Strategy::Image => stage.link(prev_root, e),
            Strategy::Reflink => stage.clone_from(prev_root, e),
            // The staging snapshot already holds it, unless it changed there.
            Strategy::Btrfs if stage.complete(e) => Ok(Linked::Yes),
            Strategy::Btrfs => stage.clone_from(prev_root, e),
            Strategy::History => history::take(stage, prev_root, e),
        }
    }

    /// Give the staging folder its final name: a rename, or on a disk whose renamed folders
    /// lose their files (fusefat), a move of each file into a new folder.
    pub fn publish_folder(&self, staging: &Path, final_path: &Path) -> Result<()> {
        if self.findings.folder_renames.ok || self.strategy == Strategy::Btrfs {
            std::fs::rename(staging, final_path)
                .map_err(|e| Error::io(final_path, "publishing snapshot", e))
        } else {
            crate::store::moves::publish_by_moves(staging, final_path)
        }
    }

    /// After the staging folder got its final name.
    pub fn published(&self, snapshot: &Path) -> Result<()> {
        match self.strategy {
            Strategy::Btrfs => btrfs::freeze(snapshot),
            _ => Ok(()),
        }
    }
}

/// Finds the content of a snapshot's files on the disk (see `chain`).
pub struct Locator {
    chain: chain::Chain,
}

impl Locator {
    pub fn new(storage: &Storage, catalog: &Catalog, host: &str, name: &str) -> Result<Locator> {
        let snapshot = catalog
            .snapshots(Some(host))?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| Error::Other(format!("host {host} has no snapshot {name}")))?;
        let chain = chain::Chain::new(&storage.root().join(host), catalog, host, &snapshot)?;
        Ok(Locator { chain })
    }

    /// The snapshot's own folder.
    pub fn dir(&self) -> &Path {
        self.chain.dir()
    }

    /// Open the stored file of manifest entry `e`; the error names the snapshot's folder.
    pub fn open(&self, e: &Entry) -> Result<crate::store::parts::Joined> {
        let at = self.chain.dir().join(std::ffi::OsStr::from_bytes(&e.path));
        self.chain
            .open(e)
            .map_err(|err| Error::io(at, "opening", err))
    }

    /// As `open`, with the bare I/O error (NotFound: no copy of this version is stored).
    pub fn open_io(&self, e: &Entry) -> std::io::Result<crate::store::parts::Joined> {
        self.chain.open(e)
    }
}

/// Before a snapshot folder is removed: a copy-with-history snapshot hands the files that
/// older snapshots still find through it to the nearest older one.
pub fn before_delete(storage: &Storage, host: &str, id: i64, name: &str) -> Result<()> {
    let catalog = storage.catalog()?;
    if catalog.snapshot_strategy(id)?.as_deref() != Some(Strategy::History.name()) {
        return Ok(());
    }
    let host_dir = storage.root().join(host);
    // The nearest older one in publication order (see `Locator::new`).
    let mut all = catalog.snapshots(Some(host))?;
    all.sort_by_key(|s| s.id);
    let older = all
        .into_iter()
        .filter(|s| s.id < id)
        .map(|s| (host_dir.join(s.name), s.id))
        .rfind(|(p, _)| p.is_dir());
    match older {
        // Under other name rules nothing was taken from it (see job), so it needs nothing.
        Some((older, older_id))
            if catalog.snapshot_names(older_id)? == catalog.snapshot_names(id)? =>
        {
            history::merge_into(&host_dir.join(name), &older)
        }
        _ => Ok(()),
    }
}

use std::os::unix::ffi::OsStrExt;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dest::fsinfo::Identity;
    use crate::dest::probe::Check;

    fn disk(hard_links: bool, btrfs: bool, reflink: bool) -> Findings {
        let c = |ok| Check {
            ok,
            detail: "test".into(),
        };
        Findings {
            path: "/mnt/usb".into(),
            filesystem: "test".into(),
            identity: Identity {
                magic: 1,
                fsid: 1,
                fstype: "t".into(),
                source: "t".into(),
            },
            hard_links: c(hard_links),
            link_limit: None,
            link_limit_note: String::new(),
            symlinks: c(hard_links),
            mtime_step_ns: 1,
            mode_kept: c(true),
            owner_kept: c(true),
            case_sensitive: true,
            refused_bytes: vec![],
            max_name_bytes: 255,
            max_file_size: None,
            max_file_size_note: String::new(),
            sparse_files: c(true),
            reflink: c(reflink),
            btrfs_snapshots: c(btrfs),
            durable_on_close: c(true),
            appends_kept: c(true),
            folder_renames: c(true),
            loop_mount: c(true),
            free_bytes: None,
            total_bytes: None,
        }
    }

    #[test]
    fn auto_prefers_btrfs_then_hard_links_then_history() {
        let pick = |f: &Findings| choose(f, &Wanted::Auto).unwrap().strategy;
        assert_eq!(pick(&disk(true, true, true)), Strategy::Btrfs);
        assert_eq!(pick(&disk(true, false, true)), Strategy::HardLink);
        assert_eq!(pick(&disk(false, false, false)), Strategy::History);
        let c = choose(&disk(false, false, false), &Wanted::Auto).unwrap();
        assert!(
            c.reasons.iter().any(|r| r.starts_with("not hardlink")),
            "{:?}",
            c.reasons
        );
    }

    #[test]
    fn a_named_strategy_is_used_only_where_it_works() {
        let named = |s| Wanted::Named(s);
        let xfs = disk(true, false, true);
        assert_eq!(
            choose(&xfs, &named(Strategy::Reflink)).unwrap().strategy,
            Strategy::Reflink
        );
        assert_eq!(
            choose(&xfs, &named(Strategy::History)).unwrap().strategy,
            Strategy::History
        );
        let e = choose(&xfs, &named(Strategy::Btrfs))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot work") && e.contains("btrfs"), "{e}");
        let e = choose(&disk(false, false, false), &named(Strategy::HardLink)).unwrap_err();
        assert!(e.to_string().contains("no hard links"), "{e}");
    }

    #[test]
    fn a_disk_that_loses_appends_gets_a_copied_catalog() {
        let mut f = disk(false, false, false);
        f.appends_kept.ok = false;
        let c = choose(&f, &Wanted::Auto).unwrap();
        assert_eq!(c.strategy, Strategy::History);
        assert!(c.reasons[0].contains("whole copy"), "{:?}", c.reasons);
        let c = choose(&f, &Wanted::Named(Strategy::History)).unwrap();
        assert!(c.reasons[0].contains("whole copy"), "{:?}", c.reasons);
    }

    #[test]
    fn config_words() {
        assert_eq!(Wanted::parse("auto"), Ok(Wanted::Auto));
        assert_eq!(Wanted::parse("btrfs"), Ok(Wanted::Named(Strategy::Btrfs)));
        assert_eq!(Wanted::parse("image"), Ok(Wanted::Named(Strategy::Image)));
        assert!(Wanted::parse("zfs").is_err());
    }
}
