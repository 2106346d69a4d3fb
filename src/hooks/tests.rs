use std::time::Duration;

use super::exec::{remote_command, run_local, Tail, TAIL_BYTES};
use super::*;

fn hook(text: &str) -> Result<Hook, String> {
    let v: toml::Table = toml::from_str(&format!("h = {text}")).unwrap();
    Hook::from_toml(&v["h"])
}

#[test]
fn string_and_table_forms() {
    let h = hook(r#""pg_dump mydb""#).unwrap();
    assert_eq!(
        (h.run.as_str(), h.place, h.timeout),
        ("pg_dump mydb", Where::Local, DEFAULT_TIMEOUT)
    );
    let h = hook(r#"{ run = "x", where = "remote", timeout = "90s" }"#).unwrap();
    assert_eq!(
        (h.run.as_str(), h.place, h.timeout),
        ("x", Where::Remote, Duration::from_secs(90))
    );
    assert_eq!(
        hook(r#"{ run = "x", where = "local" }"#).unwrap().place,
        Where::Local
    );
}

#[test]
fn bad_hooks_say_what_and_show_an_example() {
    let cases = [
        (
            r#"{ run = "x", wehre = "remote" }"#,
            "unknown key \"wehre\"",
        ),
        (r#"{ run = "x", where = "there" }"#, "expected \"local\""),
        (r#"{ run = "x", where = 1 }"#, "expected \"local\""),
        (r#"{ run = "x", timeout = "soon" }"#, "timeout = \"soon\""),
        (
            r#"{ run = "x", timeout = 600 }"#,
            "expected a duration string",
        ),
        (r#"{ run = "x", timeout = "10ms" }"#, "too short"),
        (r#""  ""#, "empty"),
        (r#"{ run = "" }"#, "empty"),
        (r#"{ where = "remote" }"#, "needs `run`"),
        (r#"{ run = ["a"] }"#, "must be a string"),
        ("3", "(got 3)"),
    ];
    for (text, want) in cases {
        let err = hook(text).unwrap_err();
        assert!(err.contains(want), "{text}: {err}");
        assert!(err.contains("e.g."), "{text}: no example in {err}");
    }
}

#[test]
fn remote_hooks_need_an_ssh_host() {
    let h = hook(r#"{ run = "x", where = "remote" }"#).unwrap();
    let err = h
        .check_source(&crate::config::SourceSpec::Local)
        .unwrap_err();
    assert!(err.contains("source = \"local\""), "{err}");
    assert!(hook(r#""x""#)
        .unwrap()
        .check_source(&crate::config::SourceSpec::Local)
        .is_ok());
}

#[test]
fn debug_hides_the_command() {
    let h = hook(r#""PGPASSWORD=hunter2 pg_dump""#).unwrap();
    assert!(!format!("{h:?}").contains("hunter2"));
}

#[test]
fn notify_parse() {
    assert_eq!(Notify::parse("off", None), Ok(Notify::Off));
    assert_eq!(Notify::parse("macos", None), Ok(Notify::Macos));
    assert_eq!(Notify::parse("windows", None), Ok(Notify::Windows));
    assert_eq!(
        Notify::parse("linux", Some("alice")),
        Ok(Notify::Linux {
            user: Some("alice".into())
        })
    );
    for (kind, user, want) in [
        ("Linux", None, "expected \"off\", \"linux\""),
        ("osx", None, "e.g. notify = \"linux\""),
        ("linux", Some("-oProxy"), "not a login name"),
        ("linux", Some("a b"), "not a login name"),
        ("linux", Some(""), "not a login name"),
        ("macos", Some("alice"), "only applies to notify = \"linux\""),
    ] {
        let err = Notify::parse(kind, user).unwrap_err();
        assert!(err.contains(want), "{kind} {user:?}: {err}");
    }
}

#[test]
fn vars_are_complete() {
    let mut env = HookEnv::before("laptop", Some(7));
    env.stats.files = 12;
    env.message = Some("a\0b".into());
    let vars = env.vars();
    let get = |k: &str| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    assert_eq!(get("SNAPNEST_EVENT"), Some("before"));
    assert_eq!(get("SNAPNEST_HOST"), Some("laptop"));
    assert_eq!(get("SNAPNEST_RUN_ID"), Some("7"));
    assert_eq!(get("SNAPNEST_RESULT"), Some(""));
    assert_eq!(get("SNAPNEST_FILES"), Some("12"));
    assert_eq!(get("SNAPNEST_MESSAGE"), Some("ab"));
    assert_eq!(vars.len(), 14);
}

#[test]
fn tail_keeps_the_end_and_starts_at_a_character() {
    let mut t = Tail::default();
    t.push("é".repeat(3 * TAIL_BYTES).as_bytes());
    t.push(b"END");
    let s = t.text();
    assert!(s.starts_with("…é"), "{}", &s[..10]);
    assert!(s.ends_with("éEND"));
    assert!(!s.contains('\u{FFFD}'));
    assert!(s.len() <= TAIL_BYTES + 3);
}

/// The remote command run by a local `sh`: values arrive verbatim, nothing in them runs.
#[test]
fn remote_command_quotes_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let canary = dir.path().join("pwned");
    let hostile = format!(
        "it's '; touch {c}; ' $(touch {c}) `touch {c}` \"$HOME\" \\ \n end",
        c = canary.display()
    );
    let vars = vec![
        ("SNAPNEST_MESSAGE".to_string(), hostile.clone()),
        ("SNAPNEST_HOST".to_string(), "h'o\"st".to_string()),
    ];
    let cmd = remote_command(
        "printf '%s|%s' \"$SNAPNEST_MESSAGE\" \"$SNAPNEST_HOST\"",
        &vars,
        Duration::from_secs(5),
    );
    let ran = run_local(&cmd, &[], Duration::from_secs(10)).unwrap();
    assert_eq!(ran.status, 0, "{}", ran.tail);
    assert_eq!(ran.tail, format!("{hostile}|h'o\"st"));
    assert!(!canary.exists());
}
