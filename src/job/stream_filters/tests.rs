use super::*;
use crate::job::keep_well_formed;
use crate::test_rng::Rng;

/// Names that sort just before and after '/', names the rules below match, and a byte that
/// is not UTF-8.
const NAMES: &[&str] = &[
    "a",
    "a.txt",
    "a-b",
    "a b",
    "b",
    "d",
    "d.x",
    "keep",
    "keep.txt",
    "x.tmp",
    ".cache",
    "node_modules",
    "0",
    "\u{ff}",
];

const EXCLUDES: &[&str] = &[
    "*.tmp",
    ".cache/",
    "d/",
    "/d/",
    "a*",
    "**/b",
    "node_modules/",
    "a.txt",
    "*",
    "d.x",
    "/home/*/d/",
    "0",
];

const INCLUDES: &[&str] = &["keep", "*.txt", "keep/", "/d/keep/", "a-b", "**/keep.txt"];

fn entry(path: &[u8], kind: Kind) -> Entry {
    Entry {
        path: path.to_vec(),
        kind,
        size: path.len() as u64,
        mtime_ns: 0,
        mode: 0o644,
        uid: 0,
        gid: 0,
        target: None,
    }
}

fn name(rng: &mut Rng) -> Vec<u8> {
    let n = NAMES[rng.below(NAMES.len() as u64) as usize];
    // "\u{ff}" stands for the lone byte 0xff.
    match n {
        "\u{ff}" => vec![0xff],
        _ => n.as_bytes().to_vec(),
    }
}

fn grow(rng: &mut Rng, dir: &[u8], depth: u32, out: &mut Vec<Entry>) {
    let mut names: Vec<Vec<u8>> = (0..rng.below(5)).map(|_| name(rng)).collect();
    // Each name once: a repeated one would be a file and a folder of one path.
    names.sort();
    names.dedup();
    for n in names {
        if out.len() > 400 {
            return;
        }
        let mut path = dir.to_vec();
        if !path.is_empty() {
            path.push(b'/');
        }
        path.extend(n);
        if depth < 5 && rng.one_in(2) {
            out.push(entry(&path, Kind::Dir));
            grow(rng, &path, depth + 1, out);
        } else {
            out.push(entry(&path, Kind::File));
        }
    }
}

fn sorted(mut list: Vec<Entry>) -> Vec<Entry> {
    list.sort_by(|a, b| a.path.cmp(&b.path));
    list.dedup_by(|a, b| a.path == b.path);
    list
}

/// A well-formed listing: every parent a listed folder; sometimes under `home/alice`.
fn tree(rng: &mut Rng) -> Vec<Entry> {
    let mut out = Vec::new();
    if rng.one_in(2) {
        out.push(entry(b"", Kind::Dir));
    }
    let top: &[u8] = if rng.one_in(2) {
        out.push(entry(b"home", Kind::Dir));
        out.push(entry(b"home/alice", Kind::Dir));
        b"home/alice"
    } else {
        b""
    };
    grow(rng, top, 0, &mut out);
    sorted(out)
}

/// A listing a misbehaving host could send: folders turned into files, entries missing,
/// odd paths.
fn malformed(rng: &mut Rng) -> Vec<Entry> {
    let mut out = Vec::new();
    for mut e in tree(rng) {
        if rng.one_in(8) {
            continue;
        }
        if e.kind == Kind::Dir && rng.one_in(6) {
            e.kind = [Kind::File, Kind::Symlink][rng.below(2) as usize];
        }
        out.push(e);
    }
    let odd: &[(&[u8], Kind)] = &[
        (b"", Kind::File),
        (b"/x", Kind::File),
        (b"/", Kind::Dir),
        (b"a//b", Kind::File),
        (b"a/", Kind::Dir),
        (b"a/d/", Kind::File),
        (b"d/keep.txt", Kind::File),
    ];
    for (p, k) in odd {
        if rng.one_in(3) {
            out.push(entry(p, *k));
        }
    }
    sorted(out)
}

fn rules(rng: &mut Rng) -> Rules {
    let pick = |rng: &mut Rng, pool: &[&str]| -> Vec<String> {
        pool.iter()
            .filter(|_| rng.one_in(3))
            .map(|p| p.to_string())
            .collect()
    };
    let exclude = pick(rng, EXCLUDES);
    let include = pick(rng, INCLUDES);
    Rules::new(&exclude, &include).unwrap()
}

fn roots(rng: &mut Rng, list: &[Entry]) -> Vec<Vec<u8>> {
    let dirs: Vec<&Entry> = list.iter().filter(|e| e.kind == Kind::Dir).collect();
    let mut roots = vec![b"home/alice".to_vec()];
    for _ in 0..rng.below(3) {
        if let Some(d) = dirs.get(rng.below(dirs.len() as u64 + 1) as usize) {
            roots.push(d.path.clone());
        }
    }
    roots
}

fn stream_rules(rules: &Rules, roots: &[Vec<u8>], list: &[Entry]) -> (Vec<Entry>, u64) {
    let mut s = RulesStream::new(rules, roots);
    let mut out = Vec::new();
    for e in list {
        s.push(e.clone(), &mut out);
    }
    let excluded = s.finish(&mut out);
    (out, excluded)
}

fn stream_well_formed(list: &[Entry]) -> (Vec<Entry>, Vec<FileProblem>) {
    let mut w = WellFormed::default();
    let mut problems = Vec::new();
    let kept = list
        .iter()
        .filter(|e| w.check(e, &mut problems))
        .cloned()
        .collect();
    (kept, problems)
}

fn paths(list: &[Entry]) -> Vec<String> {
    list.iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect()
}

#[test]
fn well_formed_matches_the_whole_listing_filter() {
    let mut refused = 0;
    for seed in 0..600 {
        let mut rng = Rng::new(seed);
        let list = match seed % 2 {
            0 => tree(&mut rng),
            _ => malformed(&mut rng),
        };
        let mut want_problems = Vec::new();
        let want = keep_well_formed(list.clone(), &mut want_problems);
        let (got, problems) = stream_well_formed(&list);
        assert_eq!(got, want, "seed {seed}: {:?}", paths(&list));
        assert_eq!(problems, want_problems, "seed {seed}");
        if seed % 2 == 0 {
            assert_eq!(got.len(), list.len(), "seed {seed}: a tree is well formed");
        }
        refused += list.len() - got.len();
    }
    assert!(
        refused > 100,
        "the malformed listings refuse something: {refused}"
    );
}

#[test]
fn well_formed_refuses_children_of_files_across_siblings_that_sort_between() {
    let list = sorted(
        [
            ("", Kind::File),
            ("/x", Kind::File),
            ("a", Kind::File),
            ("a.txt", Kind::File),
            ("a/b", Kind::File),
            ("d", Kind::Dir),
            ("d-e", Kind::Dir),
            ("d-e/f", Kind::File),
            ("d.x", Kind::File),
            ("d/f", Kind::File),
            ("d/g/h", Kind::File),
        ]
        .iter()
        .map(|(p, k)| entry(p.as_bytes(), *k))
        .collect(),
    );
    let (kept, problems) = stream_well_formed(&list);
    assert_eq!(
        paths(&kept),
        ["a", "a.txt", "d", "d-e", "d-e/f", "d.x", "d/f"]
    );
    let refused: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        refused,
        [
            "error /: refused: its parent is not a listed folder (listing)",
            "error //x: refused: its parent is not a listed folder (listing)",
            "error /a/b: refused: its parent is not a listed folder (listing)",
            "error /d/g/h: refused: its parent is not a listed folder (listing)",
        ]
    );
}

#[test]
fn rules_stream_matches_rules_filter_on_random_trees_and_rules() {
    let (mut bare, mut excluded_total) = (0, 0);
    for seed in 0..800 {
        let mut rng = Rng::new(seed);
        let list = match seed % 4 {
            3 => malformed(&mut rng),
            _ => tree(&mut rng),
        };
        let rules = rules(&mut rng);
        let roots = roots(&mut rng, &list);
        let (want, want_excluded) = rules.filter(list.clone(), &roots);
        let (got, excluded) = stream_rules(&rules, &roots, &list);
        assert_eq!(paths(&got), paths(&want), "seed {seed}: {:?}", paths(&list));
        assert_eq!(got, want, "seed {seed}");
        assert_eq!(excluded, want_excluded, "seed {seed}");
        excluded_total += excluded;
        // Folders kept bare: excluded by their own rule, yet in the output.
        bare += got
            .iter()
            .filter(|e| {
                e.kind == Kind::Dir
                    && rules.decide(&e.path, true) == Some(false)
                    && !roots.iter().any(|r| is_ancestor_or_self(&e.path, r))
            })
            .count();
    }
    assert!(excluded_total > 1000, "rules exclude: {excluded_total}");
    assert!(
        bare > 20,
        "excluded folders kept as bare containers: {bare}"
    );
}

#[test]
fn well_formed_then_rules_stream_matches_the_whole_listing_pipeline() {
    for seed in 0..300 {
        let mut rng = Rng::new(seed + 10_000);
        let list = malformed(&mut rng);
        let rules = rules(&mut rng);
        let roots = roots(&mut rng, &list);
        let mut want_problems = Vec::new();
        let (want, want_excluded) =
            rules.filter(keep_well_formed(list.clone(), &mut want_problems), &roots);
        let mut w = WellFormed::default();
        let mut s = RulesStream::new(&rules, &roots);
        let (mut got, mut problems) = (Vec::new(), Vec::new());
        for e in &list {
            if w.check(e, &mut problems) {
                s.push(e.clone(), &mut got);
            }
        }
        let excluded = s.finish(&mut got);
        assert_eq!((got, excluded), (want, want_excluded), "seed {seed}");
        assert_eq!(problems, want_problems, "seed {seed}");
    }
}

fn listing(list: &[(&str, Kind)]) -> Vec<Entry> {
    list.iter().map(|(p, k)| entry(p.as_bytes(), *k)).collect()
}

#[test]
fn an_excluded_folder_holding_an_included_file_is_kept_bare_and_waits_past_its_siblings() {
    let rules = Rules::new(&["d/".into()], &["keep.txt".into()]).unwrap();
    let roots = vec![b"home".to_vec()];
    let list = listing(&[
        ("home", Kind::Dir),
        ("home/d", Kind::Dir),
        ("home/d.x", Kind::Dir),
        ("home/d.x/f", Kind::File),
        ("home/d/junk", Kind::File),
        ("home/d/keep.txt", Kind::File),
        ("home/e", Kind::File),
    ]);
    let mut s = RulesStream::new(&rules, &roots);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for e in &list {
        s.push(e.clone(), &mut out);
        seen.push(out.len());
    }
    // "home" goes out at once; from the undecided "home/d" on, output waits until an
    // included file inside it is seen.
    assert_eq!(seen, [1, 1, 1, 1, 1, 5, 6]);
    assert_eq!(s.finish(&mut out), 1, "only home/d/junk is excluded");
    assert_eq!(
        paths(&out),
        [
            "home",
            "home/d",
            "home/d.x",
            "home/d.x/f",
            "home/d/keep.txt",
            "home/e"
        ]
    );
    let (want, excluded) = rules.filter(list, &roots);
    assert_eq!((out, 1), (want, excluded));
}

#[test]
fn an_excluded_folder_with_nothing_included_is_dropped_when_it_closes() {
    let rules = Rules::new(&["d/".into()], &["keep.txt".into()]).unwrap();
    let list = listing(&[
        ("d", Kind::Dir),
        ("d.x", Kind::File),
        ("d/junk", Kind::File),
        ("d/sub", Kind::Dir),
        ("d/sub/more", Kind::File),
        ("e", Kind::File),
    ]);
    let mut s = RulesStream::new(&rules, &[]);
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for e in &list {
        s.push(e.clone(), &mut out);
        seen.push(out.len());
    }
    assert_eq!(
        seen,
        [0, 0, 0, 0, 0, 2],
        "d.x waits for d's fate; e closes d"
    );
    assert_eq!(s.finish(&mut out), 4);
    assert_eq!(paths(&out), ["d.x", "e"]);
}

#[test]
fn excluded_contents_are_not_held_so_memory_stays_at_the_open_folders() {
    let rules = Rules::new(&["node_modules/".into()], &["keep.txt".into()]).unwrap();
    let mut list = listing(&[("app", Kind::Dir), ("app/node_modules", Kind::Dir)]);
    for i in 0..2000 {
        let dir = format!("app/node_modules/m{i:05}");
        list.push(entry(dir.as_bytes(), Kind::Dir));
        list.push(entry(format!("{dir}/lib").as_bytes(), Kind::Dir));
        list.push(entry(format!("{dir}/lib/x.js").as_bytes(), Kind::File));
        list.push(entry(format!("{dir}/package.json").as_bytes(), Kind::File));
    }
    list.push(entry(b"app/z.txt", Kind::File));
    let list = sorted(list);
    let mut s = RulesStream::new(&rules, &[]);
    let mut out = Vec::new();
    let mut most_held = 0;
    for e in &list {
        s.push(e.clone(), &mut out);
        most_held = most_held.max(s.held.len());
    }
    assert!(
        most_held <= 3,
        "held {most_held}: node_modules and one open module"
    );
    assert_eq!(s.finish(&mut out), list.len() as u64 - 2);
    assert_eq!(paths(&out), ["app", "app/z.txt"]);
}

#[test]
fn no_rules_pass_everything_through_at_once() {
    let rules = Rules::default();
    let mut rng = Rng::new(7);
    let list = malformed(&mut rng);
    let mut s = RulesStream::new(&rules, &[]);
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        s.push(e.clone(), &mut out);
        assert_eq!(out.len(), i + 1);
    }
    assert_eq!(s.finish(&mut out), 0);
    assert_eq!(out, list);
}
