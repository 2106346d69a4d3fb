//! Every command string snapnest sends to an SSH host for reading it: the access probe, the
//! listing and the tar stream. One place, so that the forced-command filter printed by
//! `snapnest authorize` can match them exactly. Config folders are single-quoted here; names
//! that come from a host never enter a command line (they travel on stdin, NUL-separated).

use super::listing::{all_ancestors, FIND_FORMAT};

/// Single-quote for a POSIX shell: inside '…' nothing is special but the quote itself.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn quoted(list: &[String]) -> String {
    list.iter().map(|f| quote(f)).collect::<Vec<_>>().join(" ")
}

/// Which tools the host has, and one word per folder, in order: `ok`, `denied`, `missing`
/// or `noparent` (a parent folder is not searchable). Only fixed words come back, never a
/// name, so nothing the host sends is parsed as a path.
pub fn probe(folders: &[String]) -> String {
    format!(
        "LC_ALL=C; export LC_ALL; find --version 2>&1; tar --version 2>&1; \
         for d in {}; do p=\"${{d%/*}}\"; \
         if [ -d \"$d\" ]; then if [ -r \"$d\" ] && [ -x \"$d\" ]; then w=ok; else w=denied; fi; \
         elif [ -e \"$d\" ]; then if [ -r \"$d\" ]; then w=ok; else w=denied; fi; \
         elif [ -n \"$p\" ] && [ -d \"$p\" ] && [ ! -x \"$p\" ]; then w=noparent; \
         else w=missing; fi; echo \"snapnest-folder: $w\"; done",
        quoted(folders)
    )
}

/// The listing of `folders` and their parents, as `FIND_FORMAT` records.
pub fn listing(folders: &[String]) -> String {
    let ancestors = all_ancestors(folders);
    let mut cmd = String::from("LC_ALL=C; export LC_ALL; ");
    if !ancestors.is_empty() {
        cmd += &format!(
            "find -H {} -maxdepth 0 -printf '{FIND_FORMAT}'; ",
            quoted(&ancestors)
        );
    }
    // -H: a configured folder that is a symlink is backed up as the folder it points to.
    cmd += &format!("find -H {} -printf '{FIND_FORMAT}'", quoted(folders));
    cmd
}

/// A tar stream of the files named on stdin (relative to /, NUL-separated). Read-only (`-c`),
/// no recursion, names taken verbatim (a name starting with `-` is still a name).
pub const TAR: &str = "LC_ALL=C TAR_OPTIONS= tar --hard-dereference -C / --null --verbatim-files-from --no-recursion --quoting-style=literal -T - -cf -";

#[cfg(test)]
mod tests {
    use super::*;

    /// Run a built command in a real `sh` and see what it did.
    fn sh(cmd: &str) -> String {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn quoting_survives_quotes_and_metacharacters() {
        assert_eq!(quote("/a b/it's"), r"'/a b/it'\''s'");
        for s in [
            "/tmp/x; touch /tmp/pwned",
            "$(id)",
            "`id`",
            "a'b\"c",
            "-rf",
            "a\nb",
        ] {
            assert_eq!(sh(&format!("printf %s {}", quote(s))), s);
        }
    }

    #[test]
    fn probe_reports_words_per_folder_in_order() {
        let d = tempfile::tempdir().unwrap();
        let ok = d.path().join("x; touch pwned");
        std::fs::create_dir(&ok).unwrap();
        let folders = vec![
            ok.to_string_lossy().into_owned(),
            d.path().join("nope").to_string_lossy().into_owned(),
        ];
        let out = sh(&probe(&folders));
        let words: Vec<&str> = out
            .lines()
            .filter_map(|l| l.strip_prefix("snapnest-folder: "))
            .collect();
        assert_eq!(words, ["ok", "missing"]);
        assert!(!std::path::Path::new("pwned").exists());
    }
}
