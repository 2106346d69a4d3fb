//! Turning what a source reports into trusted entries. Every path from a remote host passes
//! `snapshot_path`: whatever the host sends, an accepted path stays inside the snapshot.

use crate::model::{Entry, FileProblem, Kind, Severity};

/// The snapshot path of `abs` (an absolute path listed under `folder`), or why it is refused.
/// Refuses paths outside the folder, empty, `.` and `..` parts and NUL bytes.
pub fn snapshot_path(abs: &[u8], folder: &str) -> Result<Vec<u8>, String> {
    let folder = folder.as_bytes();
    let inside = abs == folder
        || folder == b"/"
        || (abs.len() > folder.len() && abs.starts_with(folder) && abs[folder.len()] == b'/');
    if !inside || !abs.starts_with(b"/") {
        return Err("path outside the listed folder".into());
    }
    let rel = &abs[1..];
    if rel.is_empty() {
        return Ok(Vec::new());
    }
    for part in rel.split(|&b| b == b'/') {
        if part.is_empty() || part == b"." || part == b".." || part.contains(&0) {
            return Err("path with an empty, . or .. part".into());
        }
    }
    Ok(rel.to_vec())
}

/// Parent folders of `folder` that the snapshot needs too: `/home/alice` → [`/home`].
pub fn ancestors(folder: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = folder;
    while let Some(i) = p.rfind('/') {
        p = &p[..i];
        if p.is_empty() {
            break;
        }
        out.push(p.to_string());
    }
    out.reverse();
    out
}

/// Ancestors of all folders, each once, parents first.
pub fn all_ancestors(folders: &[String]) -> Vec<String> {
    let mut out: Vec<String> = folders.iter().flat_map(|f| ancestors(f)).collect();
    out.sort();
    out.dedup();
    out
}

/// Problem for a name the host sent that cannot be stored safely.
pub fn refused(abs: &[u8], why: String) -> FileProblem {
    FileProblem {
        path: String::from_utf8_lossy(abs).into_owned(),
        action: "listing",
        message: format!("refused unsafe name: {why}"),
        severity: Severity::Error,
    }
}

/// GNU find `-printf` format of one record: 8 NUL-terminated fields.
pub const FIND_FORMAT: &str = r"%y\0%m\0%s\0%T@\0%U\0%G\0%p\0%l\0";

/// Length of the prefix of `buf` that holds whole `FIND_FORMAT` records (8 NULs each), so a
/// listing can be parsed as it streams in instead of being held whole.
pub fn whole_records_len(buf: &[u8]) -> usize {
    let mut nuls = 0;
    let mut end = 0;
    for (i, &b) in buf.iter().enumerate() {
        if b == 0 {
            nuls += 1;
            if nuls % 8 == 0 {
                end = i + 1;
            }
        }
    }
    end
}

/// Parse records printed with `FIND_FORMAT`. `folder_of` maps an absolute path to the
/// configured folder (or ancestor) it was listed under.
pub fn parse_find_output<'r>(
    out: &[u8],
    folder_of: impl Fn(&[u8]) -> Option<&'r str>,
    listing: &mut super::Listing,
) -> Result<(), String> {
    let mut fields = out.split(|&b| b == 0);
    loop {
        let Some(kind) = fields.next() else { break };
        if kind.is_empty() && fields.clone().next().is_none() {
            break; // the final terminator
        }
        let mut next = || {
            fields
                .next()
                .ok_or_else(|| "listing ended in the middle of a record".to_string())
        };
        let (mode, size, mtime, uid, gid, path, target) = (
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
            next()?,
        );
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let kind = match kind {
            [c] => Kind::from_code(*c as char),
            _ => None,
        }
        .ok_or_else(|| format!("unknown file type {:?} in listing", text(kind)))?;
        let num =
            |b: &[u8], radix| u64::from_str_radix(std::str::from_utf8(b).unwrap_or("x"), radix);
        let bad =
            |what: &str, b: &[u8]| format!("bad {what} {:?} in listing of {}", text(b), text(path));
        let mode = num(mode, 8).map_err(|_| bad("mode", mode))? as u32;
        let size = num(size, 10).map_err(|_| bad("size", size))?;
        let mtime_ns = parse_find_time(mtime).ok_or_else(|| bad("time", mtime))?;
        let uid = num(uid, 10).map_err(|_| bad("uid", uid))? as u32;
        let gid = num(gid, 10).map_err(|_| bad("gid", gid))? as u32;
        let Some(folder) = folder_of(path) else {
            listing
                .problems
                .push(refused(path, "not under a configured folder".into()));
            continue;
        };
        match snapshot_path(path, folder) {
            Ok(rel) => listing.entries.push(Entry {
                path: rel,
                kind,
                size: if kind == Kind::File { size } else { 0 },
                mtime_ns,
                mode: mode & 0o7777,
                uid,
                gid,
                target: (kind == Kind::Symlink).then(|| target.to_vec()),
            }),
            Err(why) => listing.problems.push(refused(path, why)),
        }
    }
    Ok(())
}

/// `1700000000.1234567890` (GNU find's `%T@`) → nanoseconds.
pub fn parse_find_time(b: &[u8]) -> Option<i64> {
    let s = std::str::from_utf8(b).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let mut digits: String = frac.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    // find prints floor-based times: -1.5 s is "-2.5000000000", so the sign is the seconds'.
    let secs = if neg { -secs } else { secs };
    secs.checked_mul(1_000_000_000)?
        .checked_add(digits.parse::<i64>().ok()?)
}

/// The configured folder (or ancestor) that `abs` was listed under: the longest match.
pub fn folder_of<'a>(roots: &'a [String]) -> impl Fn(&[u8]) -> Option<&'a str> + 'a {
    move |abs: &[u8]| {
        roots
            .iter()
            .filter(|r| {
                let r = r.as_bytes();
                abs == r || r == b"/" || (abs.starts_with(r) && abs.get(r.len()) == Some(&b'/'))
            })
            .max_by_key(|r| r.len())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_paths_stay_inside() {
        assert_eq!(
            snapshot_path(b"/home/alice/a", "/home/alice").unwrap(),
            b"home/alice/a"
        );
        assert_eq!(
            snapshot_path(b"/home/alice", "/home/alice").unwrap(),
            b"home/alice"
        );
        assert_eq!(snapshot_path(b"/x/y", "/").unwrap(), b"x/y");
        assert_eq!(snapshot_path(b"/", "/").unwrap(), b"");
        for bad in [
            &b"/home/alice/../../etc/passwd"[..],
            b"/home/alicex/a",
            b"/etc/passwd",
            b"/home/alice//a",
            b"/home/alice/./a",
            b"/home/alice/a/",
            b"home/alice/a",
            b"/home/alice/a\0b",
        ] {
            assert!(
                snapshot_path(bad, "/home/alice").is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn odd_but_legal_names_are_kept() {
        for ok in [
            &b"/h/-rf"[..],
            b"/h/a\nb",
            b"/h/tab\there",
            b"/h/back\\slash",
            b"/h/\xff\xfe",
            b"/h/...",
        ] {
            assert!(snapshot_path(ok, "/h").is_ok());
        }
    }

    #[test]
    fn ancestors_are_listed_parents_first() {
        assert_eq!(ancestors("/home/alice/docs"), vec!["/home", "/home/alice"]);
        assert!(ancestors("/etc").is_empty());
        assert!(ancestors("/").is_empty());
    }

    #[test]
    fn whole_records_stop_at_the_last_complete_one() {
        let rec = b"f\0644\01\01.0\00\00\0/h/a\0\0";
        let mut two = rec.to_vec();
        two.extend_from_slice(&rec[..10]);
        assert_eq!(whole_records_len(&two), rec.len());
        assert_eq!(whole_records_len(&rec[..5]), 0);
    }

    #[test]
    fn find_times_keep_nanoseconds() {
        assert_eq!(
            parse_find_time(b"1700000000.1234567890"),
            Some(1_700_000_000_123_456_789)
        );
        assert_eq!(
            parse_find_time(b"1700000000.5"),
            Some(1_700_000_000_500_000_000)
        );
        assert_eq!(
            parse_find_time(b"1700000000"),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(parse_find_time(b"-2.5000000000"), Some(-1_500_000_000));
        assert_eq!(parse_find_time(b"x"), None);
    }

    #[test]
    fn find_records_parse_and_hostile_paths_are_refused() {
        let out = b"d\0755\04096\01700000000.0000000000\00\00\0/h\0\0\
f\0644\05\01700000000.2500000000\01000\01000\0/h/a\nb\0\0\
l\0777\04\01700000000.0000000000\00\00\0/h/ln\0/etc\0\
f\0644\01\01700000000.0000000000\00\00\0/h/../etc/x\0\0";
        let mut l = super::super::Listing::default();
        parse_find_output(out, folder_of(&["/h".to_string()]), &mut l).unwrap();
        assert_eq!(l.problems.len(), 1);
        let sorted = l.entries.finish().unwrap();
        let entries: Vec<_> = sorted.iter().unwrap().map(|e| e.unwrap()).collect();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[1].path, b"h/a\nb");
        assert_eq!(entries[1].mtime_ns, 1_700_000_000_250_000_000);
        assert_eq!(entries[2].target.as_deref(), Some(&b"/etc"[..]));
    }
}
