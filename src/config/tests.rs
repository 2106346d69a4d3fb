use super::*;

fn parse(text: &str) -> Result<Config> {
    Config::parse(text, Path::new("/etc/snapnest/test.toml"))
}

fn err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

const GOOD: &str = r#"
[storage]
path = "/mnt/usb/snapnest"

[defaults]
exclude = ["*.tmp", ".cache/"]
bwlimit = "2MiB/s"

[[host]]
name = "laptop"
address = "192.168.1.20"
port = 2222
user = "backup"
identity = "id_ed25519"
host_key = "SHA256:abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
folders = ["/home/alice/", "/etc"]
exclude = ["/home/alice/Downloads/"]
include = ["/home/alice/Downloads/keep/"]

[[host]]
name = "photos"
source = "local"
folders = ["/mnt/share/photos"]
bwlimit = "8Mbit"
"#;

#[test]
fn the_documented_example_parses() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.storage, PathBuf::from("/mnt/usb/snapnest"));
    assert_eq!(c.hosts.len(), 2);
    let laptop = &c.hosts[0];
    assert_eq!(laptop.folders, vec!["/home/alice", "/etc"]);
    assert_eq!(laptop.bwlimit, Some(2 * 1024 * 1024));
    let SourceSpec::Ssh(ssh) = &laptop.source else {
        panic!("laptop is ssh")
    };
    assert_eq!(ssh.port, 2222);
    assert_eq!(
        ssh.identity.as_deref(),
        Some(Path::new("/etc/snapnest/id_ed25519"))
    );
    // defaults' excludes and the host's own both apply, the include beats them
    assert_eq!(laptop.rules.decide(b"home/alice/x.tmp", false), Some(false));
    assert_eq!(
        laptop.rules.decide(b"home/alice/Downloads", true),
        Some(false)
    );
    assert_eq!(
        laptop.rules.decide(b"home/alice/Downloads/keep", true),
        Some(true)
    );
    assert!(matches!(c.hosts[1].source, SourceSpec::Local));
    assert_eq!(c.hosts[1].bwlimit, Some(1_000_000));
}

#[test]
fn unknown_keys_name_line_and_key() {
    let e = err("[storage]\npath = \"/x\"\n\n[[host]]\nname = \"a\"\nsource = \"local\"\nfolders = [\"/x\"]\nfolder = [\"/y\"]\n");
    assert!(e.contains("test.toml"), "{e}");
    assert!(e.contains("line 8"), "{e}");
    assert!(e.contains("folder"), "{e}");
}

#[test]
fn bad_values_name_line_and_key() {
    let text = GOOD.replace("bwlimit = \"8Mbit\"", "bwlimit = \"fast\"");
    let e = err(&text);
    assert!(
        e.contains("line 24") && e.contains("bwlimit") && e.contains("fast"),
        "{e}"
    );

    let e = err(&GOOD.replace("port = 2222", "port = 70000"));
    assert!(e.contains("line 12") && e.contains("port"), "{e}");

    let e = err(&GOOD.replace("name = \"photos\"", "name = \"Photos!\""));
    assert!(e.contains("line 21") && e.contains("host.name"), "{e}");

    let e = err(&GOOD.replace("name = \"photos\"", "name = \"laptop\""));
    assert!(e.contains("used twice"), "{e}");

    let e = err(&GOOD.replace("\"/etc\"]", "\"etc\"]"));
    assert!(e.contains("absolute"), "{e}");

    let e = err(&GOOD.replace("\"/etc\"]", "\"/home\"]"));
    assert!(e.contains("overlaps"), "{e}");

    let e = err(&GOOD.replace("SHA256:abc", "MD5:abc"));
    assert!(e.contains("host_key") && e.contains("line 15"), "{e}");
}

#[test]
fn missing_pieces_are_named() {
    assert!(err("").contains("[storage]"));
    assert!(err("[storage]\n").contains("storage.path"));
    let e = err("[storage]\npath = \"/x\"\n[[host]]\nname = \"a\"\nfolders = [\"/x\"]\n");
    assert!(e.contains("address") && e.contains("line 3"), "{e}");
    let e = err(
        "[storage]\npath = \"/x\"\n[[host]]\nname = \"a\"\naddress = \"h\"\nfolders = [\"/x\"]\n",
    );
    assert!(e.contains("user"), "{e}");
}

#[test]
fn wrong_types_are_reported_by_line() {
    let e = err("[storage]\npath = 5\n");
    assert!(e.contains("line 2"), "{e}");
}

#[test]
fn locate_prefers_flag_then_env() {
    assert_eq!(
        Config::locate(Some(Path::new("/a.toml"))),
        PathBuf::from("/a.toml")
    );
}

#[test]
fn the_example_config_parses() {
    let c = parse(include_str!("../../examples/snapnest.toml")).unwrap();
    assert_eq!(c.daemon.max_concurrent, 1);
    assert_eq!(c.min_free, None);
    let laptop = c.host("laptop").unwrap();
    assert!(laptop.automation.schedule.cron.is_some());
    assert_eq!(laptop.automation.keep.daily, Some(7));
}

#[test]
fn daemon_and_automation_defaults() {
    let c = parse(GOOD).unwrap();
    assert_eq!(c.daemon.state_dir, PathBuf::from("/var/lib/snapnest"));
    assert_eq!(c.daemon.presence_interval, Duration::from_secs(30));
    let a = &c.hosts[0].automation;
    assert_eq!(
        a.schedule.every,
        Some(Duration::from_secs(86400)),
        "a day fresh by default"
    );
    assert!(a.keep.is_empty(), "nothing is deleted unless asked");
    assert_eq!(a.notify, crate::hooks::Notify::Off);
    assert_eq!(a.stale_after, Some(Duration::from_secs(3 * 86400)));
}

#[test]
fn automation_keys_are_checked_with_their_line() {
    let with = |extra: &str| format!("{GOOD}{extra}\n");
    let e = err(&with("schedule = \"0 2 * *\""));
    assert!(
        e.contains("line 25") && e.contains("key `host \"photos\": schedule`"),
        "{e}"
    );
    let e = err(&with("keep = { dayly = 3 }"));
    assert!(
        e.contains("key `host \"photos\": keep`") && e.contains("dayly"),
        "{e}"
    );
    let e = err(&with("blackout = [\"9-17\"]"));
    assert!(e.contains("blackout"), "{e}");
    let e = err(&with("before = { run = \"x\", where = \"remote\" }"));
    assert!(
        e.contains("source = \"local\""),
        "a local host has no remote side: {e}"
    );
    let e = err(&with("notify = \"linux\""));
    assert!(e.contains("notify") && e.contains("local"), "{e}");
    let e = err(&format!("{GOOD}\n[daemon]\nmax_concurrent = 0\n"));
    assert!(
        e.contains("daemon.max_concurrent") && e.contains("1 to 64"),
        "{e}"
    );
    let e = err(&format!("{GOOD}\n[daemon]\nlog = \"journal\"\n"));
    assert!(e.contains("daemon.log"), "{e}");
    let e = err(&GOOD.replace(
        "path = \"/mnt/usb/snapnest\"",
        "path = \"/mnt/usb/snapnest\"\nmin_free = \"150%\"",
    ));
    assert!(
        e.contains("storage.min_free") && e.contains("line 4"),
        "{e}"
    );
    let c = parse(&with("schedule = \"manual\"")).unwrap();
    assert!(matches!(
        c.hosts[1]
            .automation
            .schedule
            .due_at(None, chrono::Utc::now(), &chrono::Utc),
        crate::schedule::Due::Manual
    ));
}

#[test]
fn a_host_saying_manual_is_not_undone_by_a_default_every() {
    let text = GOOD
        .replace(
            "bwlimit = \"2MiB/s\"",
            "bwlimit = \"2MiB/s\"\nevery = \"6h\"",
        )
        .replace(
            "bwlimit = \"8Mbit\"",
            "bwlimit = \"8Mbit\"\nschedule = \"manual\"",
        );
    let c = parse(&text).unwrap();
    let due = |i: usize| {
        c.hosts[i]
            .automation
            .schedule
            .due_at(None, chrono::Utc::now(), &chrono::Utc)
    };
    assert!(
        matches!(due(1), crate::schedule::Due::Manual),
        "{:?}",
        due(1)
    );
    assert!(!matches!(due(0), crate::schedule::Due::Manual));
    let e = err(&text.replace(
        "schedule = \"manual\"",
        "schedule = \"manual\"\nevery = \"1h\"",
    ));
    assert!(
        e.contains("cannot be combined") && e.contains("every"),
        "{e}"
    );
}

#[test]
fn a_syntax_error_names_line_and_column_but_never_echoes_the_line() {
    let text = GOOD.replace(
        "user = \"backup\"",
        "user = \"backup\"\ntoken = \"s3cret-value",
    );
    let e = err(&text);
    assert!(e.contains("line 14"), "{e}");
    assert!(
        !e.contains("s3cret"),
        "the line's content must not be shown: {e}"
    );
}
