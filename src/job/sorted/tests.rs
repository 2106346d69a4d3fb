use super::*;
use crate::model::Kind;
use crate::test_rng::Rng;

/// Few names, so paths repeat; names that sort around '/' and bytes that are not UTF-8.
const NAMES: &[&[u8]] = &[
    b"a",
    b"a.txt",
    b"a-b",
    b"b",
    b".",
    b"..",
    b"\xff",
    b"x\x80y",
    b"\xc3\xa9",
    b"a b",
    b"0",
];

fn random_entry(rng: &mut Rng, serial: u64) -> Entry {
    let mut path = Vec::new();
    if rng.below(50) != 0 {
        for i in 0..=rng.below(4) {
            if i > 0 {
                path.push(b'/');
            }
            path.extend_from_slice(NAMES[rng.below(NAMES.len() as u64) as usize]);
        }
    }
    let kind = [Kind::File, Kind::Dir, Kind::Symlink, Kind::Fifo][rng.below(4) as usize];
    Entry {
        path,
        kind,
        // The serial tells which of several entries of one path came back.
        size: serial,
        mtime_ns: rng.next() as i64,
        mode: rng.next() as u32,
        uid: rng.next() as u32,
        gid: rng.below(3) as u32,
        target: (kind == Kind::Symlink).then(|| {
            let mut t = vec![0u8; rng.below(20) as usize];
            t.iter_mut().for_each(|b| *b = rng.next() as u8);
            t
        }),
    }
}

fn listing(seed: u64, n: u64) -> Vec<Entry> {
    let mut rng = Rng::new(seed);
    (0..n).map(|i| random_entry(&mut rng, i)).collect()
}

/// What the sorter promises, computed the obvious way.
fn expected(list: &[Entry]) -> Vec<Entry> {
    let mut v = list.to_vec();
    v.sort_by(|a, b| a.path.cmp(&b.path));
    v.dedup_by(|later, first| later.path == first.path);
    v
}

fn sorter(dir: &Path, run_len: Option<usize>) -> Sorter {
    match run_len {
        Some(n) => Sorter::spilling(dir, n),
        None => Sorter::default(),
    }
}

fn all(sorted: &Sorted) -> Vec<Entry> {
    sorted.iter().unwrap().map(|e| e.unwrap()).collect()
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn comes_back_sorted_each_path_once_and_the_first_pushed_wins() {
    let spill = tempfile::tempdir().unwrap();
    // Creating a temp file costs ~0.7 ms on a slow disk: one run per entry on two seeds only.
    for seed in 1..=8 {
        let list = listing(seed, 800);
        let want = expected(&list);
        assert!(want.len() < list.len() * 9 / 10, "the test needs repeats");
        let one = (seed <= 2).then_some(1);
        for run_len in [one, Some(3), Some(500), None] {
            let mut s = sorter(spill.path(), run_len);
            for e in list.iter().cloned() {
                s.push(e);
            }
            assert_eq!(s.len(), 800);
            assert_eq!(files_in(spill.path()), 0, "spilled runs are unlinked");
            let sorted = s.finish().unwrap();
            assert_eq!(sorted.len(), 800, "len counts what was pushed");
            assert_eq!(sorted.spilled(), run_len.is_some(), "{run_len:?}");
            assert_eq!(all(&sorted), want, "seed {seed}, run_len {run_len:?}");
        }
    }
    assert_eq!(files_in(spill.path()), 0);
}

#[test]
fn passes_repeat_and_interleave() {
    let spill = tempfile::tempdir().unwrap();
    let list = listing(99, 3000);
    let want = expected(&list);
    for run_len in [Some(7), Some(1000), None] {
        let mut s = sorter(spill.path(), run_len);
        list.iter().cloned().for_each(|e| s.push(e));
        let sorted = s.finish().unwrap();
        assert_eq!(all(&sorted), want);
        assert_eq!(all(&sorted), want, "a second pass sees the same");
        // Two passes alive at once, one a step ahead: no shared file offset.
        let (mut a, mut b) = (sorted.iter().unwrap(), sorted.iter().unwrap());
        let first = b.next().unwrap().unwrap();
        assert_eq!(first, want[0]);
        for (i, w) in want.iter().enumerate() {
            assert_eq!(&a.next().unwrap().unwrap(), w, "pass a at {i}");
            if let Some(w) = want.get(i + 1) {
                assert_eq!(&b.next().unwrap().unwrap(), w, "pass b at {}", i + 1);
            }
        }
        assert!(a.next().is_none() && b.next().is_none());
    }
}

#[test]
fn exactly_run_len_entries_spill_nothing_and_one_more_spills_one_run() {
    let spill = tempfile::tempdir().unwrap();
    let list = listing(5, 40);
    let mut s = Sorter::spilling(spill.path(), 40);
    list.iter().cloned().for_each(|e| s.push(e));
    let sorted = s.finish().unwrap();
    assert!(!sorted.spilled(), "the last run stays in memory");
    assert_eq!(all(&sorted), expected(&list));

    let mut s = Sorter::spilling(spill.path(), 39);
    list.iter().cloned().for_each(|e| s.push(e));
    let sorted = s.finish().unwrap();
    assert_eq!(sorted.runs.len(), 1);
    assert_eq!(sorted.mem.len(), 1);
    assert_eq!(all(&sorted), expected(&list));
}

#[test]
fn empty_and_extreme_entries_survive_the_spill() {
    let spill = tempfile::tempdir().unwrap();
    let sorted = Sorter::spilling(spill.path(), 1).finish().unwrap();
    assert!(sorted.is_empty() && !sorted.spilled());
    assert_eq!(sorted.iter().unwrap().count(), 0);

    let huge = Entry {
        // Longer than one read buffer: the reader grows for it.
        path: vec![b'z'; 3 * READ_BUF + 5],
        kind: Kind::Symlink,
        size: u64::MAX,
        mtime_ns: i64::MIN,
        mode: u32::MAX,
        uid: u32::MAX,
        gid: u32::MAX,
        target: Some(vec![0xff; READ_BUF]),
    };
    let root = Entry {
        path: Vec::new(),
        kind: Kind::Dir,
        size: 0,
        mtime_ns: -1,
        mode: 0o755,
        uid: 0,
        gid: 0,
        target: None,
    };
    let mut list = listing(3, 200);
    list.insert(100, huge.clone());
    list.push(root.clone());
    let mut s = Sorter::spilling(spill.path(), 2);
    list.iter().cloned().for_each(|e| s.push(e));
    let sorted = s.finish().unwrap();
    let got = all(&sorted);
    assert_eq!(got, expected(&list));
    assert!(got.contains(&huge));
    assert_eq!(got[0].path, b"", "the root sorts first");
}

#[test]
fn a_missing_spill_folder_is_an_error_naming_it() {
    let spill = tempfile::tempdir().unwrap();
    let gone = spill.path().join("not-there");
    let mut s = Sorter::spilling(&gone, 2);
    listing(8, 10).into_iter().for_each(|e| s.push(e));
    assert_eq!(s.len(), 10);
    let err = s.finish().err().expect("no folder to spill to").to_string();
    assert!(err.contains("writing listing spill"), "{err}");
    assert!(err.contains(&*gone.to_string_lossy()), "{err}");
}

#[test]
fn a_damaged_run_ends_the_pass_with_an_error() {
    let spill = tempfile::tempdir().unwrap();
    let mut s = Sorter::spilling(spill.path(), 10);
    listing(4, 30).into_iter().for_each(|e| s.push(e));
    let sorted = s.finish().unwrap();
    // Cut the first run short: its last record now ends early.
    let run = &sorted.runs[0];
    run.file.set_len(run.bytes - 1).unwrap();
    // The first read of a small run takes all of it: the pass may fail at its start.
    let err = match sorted.iter() {
        Err(err) => err,
        Ok(pass) => {
            let results: Vec<_> = pass.collect();
            assert!(
                results.last().unwrap().is_err(),
                "nothing follows the error"
            );
            results.into_iter().find_map(|r| r.err()).unwrap()
        }
    }
    .to_string();
    assert!(err.contains("reading listing spill"), "{err}");
    assert!(err.contains(&*spill.path().to_string_lossy()), "{err}");
}

#[test]
fn runs_are_merged_in_tiers_so_few_stay_open() {
    let spill = tempfile::tempdir().unwrap();
    // One entry a run: 1,100 runs would be 1,100 open files without the tiers.
    let list = listing(21, 1100);
    let mut s = Sorter::spilling(spill.path(), 1);
    let mut most = 0;
    for e in list.iter().cloned() {
        s.push(e);
        most = most.max(s.runs.len());
        assert!(s.runs.windows(2).all(|w| w[0].tier >= w[1].tier));
    }
    assert!(most < 3 * FAN_IN, "at most {most} runs at once");
    assert_eq!(files_in(spill.path()), 0);
    let sorted = s.finish().unwrap();
    let tiers: Vec<u32> = sorted.runs.iter().map(|r| r.tier).collect();
    assert_eq!(tiers.iter().filter(|&&t| t == 2).count(), 1, "{tiers:?}");
    assert_eq!(all(&sorted), expected(&list));
}
