use super::*;
use crate::model::Kind;
use crate::store::clash::Renamed;
use crate::store::names::NameRules;

fn entry(path: &[u8], kind: Kind, n: u64) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        size: n * 7,
        mtime_ns: n as i64 * 1_000_000_007,
        mode: 0o600 + (n as u32 % 64),
        uid: n as u32,
        gid: 1000 + n as u32,
        target: (kind == Kind::Symlink).then(|| [b"../t" as &[u8], &n.to_be_bytes()].concat()),
    }
}

/// A sorted manifest with folders, files, symlinks, a FIFO and awkward bytes, its dirty flags
/// and hashes (some files hashed, some not).
fn manifest() -> (Vec<Entry>, Vec<bool>, Vec<Option<[u8; 32]>>) {
    let mut paths: Vec<(Vec<u8>, Kind)> = vec![
        (b"".to_vec(), Kind::Dir),
        (b"a".to_vec(), Kind::Dir),
        (b"a b".to_vec(), Kind::File),
        (b"a-1".to_vec(), Kind::File),
        (b"a.txt".to_vec(), Kind::File),
        (b"a/b".to_vec(), Kind::Dir),
        (b"a/b/c".to_vec(), Kind::File),
        (b"a/b/d".to_vec(), Kind::Symlink),
        (b"a/b/e".to_vec(), Kind::Dir),
        (b"a/b/e/f".to_vec(), Kind::Fifo),
        (b"a0".to_vec(), Kind::File),
        (b"a\x00z".to_vec(), Kind::File),
        (b"a\xff".to_vec(), Kind::Dir),
        (b"a\xff/\xfe\xff".to_vec(), Kind::File),
        (b"b".to_vec(), Kind::Dir),
        (b"\xff".to_vec(), Kind::File),
    ];
    for i in 0..40u32 {
        paths.push((format!("b/f{i:03}").into_bytes(), Kind::File));
    }
    paths.sort_by(|a, b| a.0.cmp(&b.0));
    let entries: Vec<Entry> = paths
        .iter()
        .enumerate()
        .map(|(i, (p, k))| entry(p, *k, i as u64))
        .collect();
    let dirty = (0..entries.len()).map(|i| i % 5 == 1).collect();
    let hashes = entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.kind == Kind::File && i % 3 != 0).then_some([i as u8; 32]))
        .collect();
    (entries, dirty, hashes)
}

fn stats() -> Stats {
    Stats {
        entries: 55,
        files: 44,
        bytes: 12345,
        new_files: 3,
        new_bytes: 99,
        ..Stats::default()
    }
}

fn open() -> (tempfile::TempDir, Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let c = Catalog::open(&dir.path().join("c.db")).unwrap();
    (dir, c)
}

fn all_entries(c: &Catalog, id: i64) -> Vec<(Entry, bool)> {
    let mut out = Vec::new();
    c.for_each_entry(id, None, |e, d| {
        out.push((e, d));
        Ok(())
    })
    .unwrap();
    out
}

fn all_hashes(c: &Catalog, id: i64) -> Vec<(Vec<u8>, [u8; 32])> {
    let mut out = Vec::new();
    c.for_each_hash(id, |p, h| out.push((p.to_vec(), h)))
        .unwrap();
    out
}

fn count(c: &Catalog, table: &str, id: i64) -> i64 {
    c.conn
        .query_row(
            &format!("SELECT count(*) FROM {table} WHERE snapshot_id = ?1"),
            [id],
            |r| r.get(0),
        )
        .unwrap()
}

/// Started, appended in three batches, finished and published: the same snapshot row,
/// manifest, dirty flags and hashes as `add_snapshot` + `set_hashes` + `publish` give.
#[test]
fn windows_write_what_add_snapshot_writes() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();

    let run_a = c.begin_run("h", 10).unwrap();
    let a = c
        .add_snapshot(
            "h",
            "2026-01-01_000000",
            run_a,
            Outcome::Partial,
            &stats(),
            20,
            30,
            &entries,
            &dirty,
        )
        .unwrap();
    c.set_hashes(
        a,
        entries
            .iter()
            .zip(&hashes)
            .filter_map(|(e, h)| Some((e.path.as_slice(), h.as_ref()?))),
    )
    .unwrap();
    c.publish(a).unwrap();

    let run_b = c.begin_run("h", 11).unwrap();
    let b = c.start_snapshot("h", run_b, 20).unwrap();
    let cuts = [0, 5, 6, entries.len()];
    for w in cuts.windows(2) {
        let r = w[0]..w[1];
        c.append_entries(b, &entries[r.clone()], &dirty[r.clone()], &hashes[r])
            .unwrap();
    }
    c.append_entries(b, &[], &[], &[]).unwrap();
    c.finish_snapshot(b, "2026-01-02_000000", Outcome::Partial, &stats(), 30)
        .unwrap();
    c.publish(b).unwrap();

    assert_eq!(all_entries(&c, a), all_entries(&c, b));
    assert_eq!(all_entries(&c, b).len(), entries.len());
    assert!(all_entries(&c, b).iter().any(|(_, d)| *d));
    assert_eq!(all_hashes(&c, a), all_hashes(&c, b));
    assert!(!all_hashes(&c, b).is_empty());
    let snaps = c.snapshots(Some("h")).unwrap();
    assert_eq!(snaps.len(), 2);
    let (sa, sb) = (&snaps[0], &snaps[1]);
    assert_eq!(sb.name, "2026-01-02_000000");
    assert!(sa.published && sb.published);
    assert_eq!(
        (
            sa.result,
            sa.created_ms,
            sa.duration_ms,
            sa.entries,
            sa.files
        ),
        (
            sb.result,
            sb.created_ms,
            sb.duration_ms,
            sb.entries,
            sb.files
        )
    );
    assert_eq!(
        (sa.bytes, sa.new_files, sa.new_bytes),
        (sb.bytes, sb.new_files, sb.new_bytes)
    );
    assert_eq!(c.latest_snapshot("h").unwrap().unwrap().id, b);
    let runs = c.runs("h", 10).unwrap();
    assert_eq!(runs[0].snapshot.as_deref(), Some("2026-01-02_000000"));
    assert_eq!(runs[1].snapshot.as_deref(), Some("2026-01-01_000000"));
}

/// Before `finish_snapshot` the snapshot is in no list, no base, no history; `recover` drops
/// it with every row of every table, and what was published before stays.
#[test]
fn a_started_snapshot_is_invisible_and_recover_drops_it_whole() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();
    let run0 = c.begin_run("h", 1).unwrap();
    let old = c
        .add_snapshot(
            "h",
            "old",
            run0,
            Outcome::Good,
            &stats(),
            1,
            1,
            &entries,
            &dirty,
        )
        .unwrap();
    c.publish(old).unwrap();
    c.finish_run(run0, Outcome::Good, &stats(), None, &[], 2)
        .unwrap();

    let run = c.begin_run("h", 5).unwrap();
    let id = c.start_snapshot("h", run, 5).unwrap();
    // More rows than one cleanup transaction deletes.
    let many: Vec<Entry> = (0..2 * CHUNK + 17)
        .map(|i| {
            entry(
                &[b"\xff\xff", format!("{i:06}").as_bytes()].concat(),
                Kind::File,
                i as u64,
            )
        })
        .collect();
    c.append_entries(id, &entries, &dirty, &hashes).unwrap();
    let n = many.len();
    c.append_entries(id, &many, &vec![false; n], &vec![Some([9; 32]); n])
        .unwrap();
    c.set_snapshot_names(id, &NameRules::none()).unwrap();
    let mut renamed = Renamed::default();
    renamed.insert(b"a.txt".to_vec(), b"A.txt~1".to_vec());
    c.set_snapshot_renamed(id, &renamed).unwrap();
    c.set_snapshot_strategy(id, "hardlink").unwrap();

    // Nobody sees it.
    let ids = |c: &Catalog| -> Vec<i64> {
        c.snapshots(None)
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect()
    };
    assert_eq!(ids(&c), vec![old]);
    assert_eq!(c.latest_snapshot("h").unwrap().unwrap().id, old);
    assert!(!c.is_published(id).unwrap());
    let hist = c.host_history("h").unwrap();
    assert_eq!(hist.last_good_started_ms, Some(1));
    assert_eq!(hist.last_run.unwrap().state, "running");
    assert!(!c.mark_deleting(id).unwrap(), "prune cannot take it");
    assert!(c.deleting().unwrap().is_empty());
    assert_eq!(c.runs("h", 10).unwrap()[0].snapshot, None);
    assert!(has_entry(&c, id, b"\xff\xff000000").unwrap());

    // The next run's recover: gone, with all its rows; the old one untouched.
    c.recover("h", |_| true).unwrap();
    for table in [
        "entries",
        "file_hashes",
        "snapshot_names",
        "snapshot_renamed",
        "snapshot_strategy",
    ] {
        assert_eq!(count(&c, table, id), 0, "{table}");
    }
    let left: i64 = c
        .conn
        .query_row("SELECT count(*) FROM snapshots WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(left, 0);
    assert_eq!(ids(&c), vec![old]);
    assert_eq!(all_entries(&c, old).len(), entries.len());
    assert_eq!(c.last_run("h").unwrap().unwrap().state, "interrupted");
    let points: Option<i64> = c
        .conn
        .query_row("SELECT snapshot_id FROM runs WHERE id = ?1", [run], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(points, None);
    assert!(
        c.finish_snapshot(id, "x", Outcome::Good, &stats(), 1)
            .is_err(),
        "a dropped snapshot cannot be finished"
    );

    // The same run id can start again (placeholder names are free once dropped).
    let again = c.start_snapshot("h", run, 6).unwrap();
    assert!(ids(&c).iter().all(|&i| i != again));
}

/// A finished but unpublished snapshot is what `add_snapshot` leaves: recover publishes it
/// if its folder made it; `abandon_snapshot` never touches it.
#[test]
fn a_finished_snapshot_recovers_like_add_snapshot() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();
    let run = c.begin_run("h", 1).unwrap();
    let id = c.start_snapshot("h", run, 1).unwrap();
    c.append_entries(id, &entries, &dirty, &hashes).unwrap();
    c.finish_snapshot(id, "snap", Outcome::Good, &stats(), 3)
        .unwrap();
    c.abandon_snapshot(id).unwrap();
    assert!(
        c.append_entries(id, &entries[..0], &[], &[]).is_err(),
        "no rows after finishing"
    );
    let snaps = c.snapshots(Some("h")).unwrap();
    assert_eq!((snaps.len(), snaps[0].published), (1, false));
    c.recover("h", |name| name == "snap").unwrap();
    assert!(c.is_published(id).unwrap());
    assert_eq!(c.last_run("h").unwrap().unwrap().state, "good");
    assert_eq!(all_entries(&c, id).len(), entries.len());
}

#[test]
fn rows_must_come_in_order_and_match_their_flags() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();
    let run = c.begin_run("h", 1).unwrap();
    let id = c.start_snapshot("h", run, 1).unwrap();
    c.append_entries(id, &entries[..10], &dirty[..10], &hashes[..10])
        .unwrap();
    // Overlapping the previous batch, unsorted within one, short flags.
    assert!(c
        .append_entries(id, &entries[9..12], &dirty[9..12], &hashes[9..12])
        .is_err());
    let swapped = vec![entries[11].clone(), entries[10].clone()];
    assert!(c
        .append_entries(id, &swapped, &[false; 2], &[None; 2])
        .is_err());
    assert!(c
        .append_entries(id, &entries[10..12], &dirty[10..11], &hashes[10..12])
        .is_err());
    assert_eq!(all_entries(&c, id).len(), 10, "refused batches add nothing");
    c.append_entries(id, &entries[10..], &dirty[10..], &hashes[10..])
        .unwrap();
    assert_eq!(all_entries(&c, id).len(), entries.len());
}

/// Ranges include both ends, compare bytes (0x00, '/', '0', 0xff), and use the index.
#[test]
fn ranges_are_inclusive_bytewise_and_seek_the_index() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();
    let run = c.begin_run("h", 1).unwrap();
    let id = c.start_snapshot("h", run, 1).unwrap();
    c.append_entries(id, &entries, &dirty, &hashes).unwrap();
    let other = c.start_snapshot("h", run + 1, 1).unwrap();
    c.append_entries(other, &entries, &dirty, &hashes).unwrap();

    let bounds: Vec<Vec<u8>> = [
        &b""[..],
        b"\x00",
        b"a",
        b"a/",
        b"a/b",
        b"a/b/e/f",
        b"a0",
        b"a\x00z",
        b"a\xff",
        b"a\xff/\xfe\xff",
        b"b/f010",
        b"b/f0105",
        b"\xff",
        b"\xff\xff",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect();
    for from in &bounds {
        for to in &bounds {
            let want: Vec<(Entry, bool)> = entries
                .iter()
                .zip(&dirty)
                .filter(|(e, _)| from <= &e.path && &e.path <= to)
                .map(|(e, d)| (e.clone(), *d))
                .collect();
            let mut got = Vec::new();
            c.for_each_entry_between(id, from, to, |e, d| {
                got.push((e, d));
                Ok(())
            })
            .unwrap();
            assert_eq!(got, want, "{from:?}..={to:?}");
            let want_h: Vec<(Vec<u8>, [u8; 32])> = entries
                .iter()
                .zip(&hashes)
                .filter(|(e, _)| from <= &e.path && &e.path <= to)
                .filter_map(|(e, h)| Some((e.path.clone(), (*h)?)))
                .collect();
            let mut got_h = Vec::new();
            c.for_each_hash_between(id, from, to, |p, h| got_h.push((p.to_vec(), h)))
                .unwrap();
            assert_eq!(got_h, want_h, "{from:?}..={to:?}");
        }
    }

    // An error from the callback stops the walk and comes back.
    let mut seen = 0;
    let r = c.for_each_entry_between(id, b"", b"\xff", |_, _| {
        seen += 1;
        Err(crate::error::Error::Other("stop".into()))
    });
    assert!(r.is_err());
    assert_eq!(seen, 1);

    for sql in [ENTRIES_BETWEEN, HASHES_BETWEEN] {
        let mut st = c
            .conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap();
        let rows = st
            .query_map(params![id, b"a".to_vec(), b"b".to_vec()], |r| {
                r.get::<_, String>(3)
            })
            .unwrap();
        let plan = rows.map(|r| r.unwrap()).collect::<Vec<_>>().join("; ");
        assert!(
            plan.contains("SEARCH") && plan.contains("snapshot_id=? AND path>? AND path<?"),
            "{sql}: {plan}"
        );
        assert!(!plan.contains("TEMP B-TREE"), "{sql}: {plan}");
    }
}

/// Folders come deepest first: each after every folder inside it, in reverse path order.
#[test]
fn folders_come_contents_first() {
    let (entries, dirty, hashes) = manifest();
    let (_d, mut c) = open();
    let run = c.begin_run("h", 1).unwrap();
    let id = c.start_snapshot("h", run, 1).unwrap();
    c.append_entries(id, &entries, &dirty, &hashes).unwrap();
    let mut got = Vec::new();
    c.for_each_dir_rev(id, |e| {
        assert_eq!(e.kind, Kind::Dir);
        got.push(e);
        Ok(())
    })
    .unwrap();
    let mut want: Vec<Entry> = entries
        .iter()
        .filter(|e| e.kind == Kind::Dir)
        .cloned()
        .collect();
    want.reverse();
    assert_eq!(got, want);
    let names: Vec<&[u8]> = got.iter().map(|e| e.path.as_slice()).collect();
    assert_eq!(
        names,
        [&b"b"[..], b"a\xff", b"a/b/e", b"a/b", b"a", b""],
        "deepest first"
    );
    let mut st = c
        .conn
        .prepare(&format!("EXPLAIN QUERY PLAN {DIRS_REV}"))
        .unwrap();
    let plan: Vec<String> = st
        .query_map([id], |r| r.get::<_, String>(3))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let plan = plan.join("; ");
    assert!(
        plan.contains("SEARCH") && plan.contains("snapshot_id=?"),
        "{plan}"
    );
    assert!(!plan.contains("TEMP B-TREE"), "{plan}");
    assert!(!has_entry(&c, id, b"a/b/zz").unwrap());
    assert!(has_entry(&c, id, b"a\x00z").unwrap());
}

/// Whether the snapshot's manifest has `path`, through the range read the job uses.
fn has_entry(c: &Catalog, snapshot_id: i64, path: &[u8]) -> crate::error::Result<bool> {
    let mut found = false;
    c.for_each_entry_between(snapshot_id, path, path, |_, _| {
        found = true;
        Ok(())
    })?;
    Ok(found)
}
