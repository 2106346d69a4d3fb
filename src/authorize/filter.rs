//! The forced-command filter: `filter.sh` with this host's exact commands baked in. The
//! commands come from `source::commands`, the same functions a backup uses, so the filter
//! and snapnest cannot disagree about a byte.

use crate::source::commands;

const TEMPLATE: &str = include_str!("filter.sh");

/// The filter script for `host` reading `folders`. `sudo_path`: in sudo mode, the script's
/// own absolute path on the host (it runs itself again as root through `sudo -n`).
pub fn script(host: &str, folders: &[String], sudo_path: Option<&str>) -> String {
    TEMPLATE
        // The host name only appears in comments: keep it to one harmless line.
        .replace(
            "@HOST@",
            &host.replace(|c: char| c.is_control() || c == '`' || c == '$', "?"),
        )
        .replace("@PROBE@", &commands::quote(&commands::probe(folders)))
        .replace("@LIST@", &commands::quote(&commands::listing(folders)))
        .replace("@TAR@", &commands::quote(commands::TAR))
        .replace("@HASH@", &commands::quote(crate::source::tail::HASH))
        .replace("@TAIL@", &commands::quote(crate::source::tail::TAIL))
        .replace("@NAMES@", &commands::quote(&names_regex(folders)))
        .replace("@REACHABLE@", &commands::quote(&reachable(folders)))
        .replace("@SUDO@", &commands::quote(sudo_path.unwrap_or("")))
}

/// An extended regex (for `grep -z -E`, C locale) matching names relative to / that are a
/// configured folder or lie under one. Every ASCII punctuation character is made literal.
pub fn names_regex(folders: &[String]) -> String {
    if folders.iter().any(|f| f == "/") {
        return "^.".to_string();
    }
    let alternatives: Vec<String> = folders
        .iter()
        .map(|f| f.trim_start_matches('/').chars().map(literal).collect())
        .collect();
    format!("^({})(/|$)", alternatives.join("|"))
}

/// A command printing every non-folder under `folders` that `find -P` reaches (a configured
/// folder that is itself a symlink is followed, as the listing does), NUL-separated and
/// relative to /, the way snapnest names them to tar.
pub fn reachable(folders: &[String]) -> String {
    let mut cmd = String::from("LC_ALL=C; export LC_ALL; ");
    for f in folders {
        let rel = f.trim_matches('/');
        // A -printf format: only % and \ are special in it.
        let prefix = rel.replace('\\', "\\\\").replace('%', "%%");
        let q = commands::quote(f);
        if rel.is_empty() {
            cmd += &format!("find -H {q} -mindepth 1 ! -type d -printf '%P\\0'; ");
        } else {
            // The folder itself may be a file; what lies under it is prefix/%P.
            cmd += &format!(
                "find -H {q} -maxdepth 0 ! -type d -printf {}; find -H {q} -mindepth 1 ! -type d -printf {}; ",
                commands::quote(&format!("{prefix}\\0")),
                commands::quote(&format!("{prefix}/%P\\0"))
            );
        }
    }
    cmd
}

fn literal(c: char) -> String {
    match c {
        '/' => "/".into(),
        // Inside brackets these are special or undefined: escape them the ERE way.
        '^' => r"\^".into(),
        '\\' => r"\\".into(),
        // grep splits patterns at newlines: the nearest class that cannot is "a control
        // character" (the fence widens only to names differing in that one control byte).
        '\n' => "[[:cntrl:]]".into(),
        c if c.is_ascii_punctuation() || c == ' ' => format!("[{c}]"),
        c => c.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed NUL-separated names through `grep -z -E` with the regex, as the filter does.
    fn kept(folders: &[&str], names: &[&str]) -> Vec<String> {
        use std::io::Write;
        let folders: Vec<String> = folders.iter().map(|s| s.to_string()).collect();
        let mut child = std::process::Command::new("grep")
            .env("LC_ALL", "C")
            .args(["-z", "-E", "-e", &names_regex(&folders)])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = Vec::new();
        for n in names {
            input.extend_from_slice(n.as_bytes());
            input.push(0);
        }
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let out = child.wait_with_output().unwrap();
        out.stdout
            .split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect()
    }

    #[test]
    fn names_regex_keeps_only_what_is_under_the_folders() {
        let folders = [
            "/home/a.b",
            "/tmp/x; touch /tmp/pwned",
            "/w/[x]^$\\(y)*+?{1}|",
            "/n/new\nline",
        ];
        let ok = [
            "home/a.b",
            "home/a.b/file",
            "tmp/x; touch /tmp/pwned/f",
            "w/[x]^$\\(y)*+?{1}|/z",
            "n/new\nline/f",
        ];
        let bad = [
            "home/aXb/file",
            "home/a.bc",
            "etc/shadow",
            "tmp/x",
            "w/x",
            "home",
            "n/newline/f",
        ];
        let all: Vec<&str> = ok.iter().chain(bad.iter()).copied().collect();
        assert_eq!(kept(&folders, &all), ok);
    }

    #[test]
    fn the_script_is_valid_sh_and_holds_the_commands() {
        let s = script("laptop", &["/home/o'neil".to_string()], None);
        for p in [
            "@HOST@",
            "@PROBE@",
            "@LIST@",
            "@TAR@",
            "@HASH@",
            "@TAIL@",
            "@NAMES@",
            "@REACHABLE@",
            "@SUDO@",
        ] {
            assert!(!s.contains(p), "placeholder {p} left");
        }
        let st = std::process::Command::new("sh")
            .args(["-n", "-c", &s])
            .status()
            .unwrap();
        assert!(st.success());
    }
}
