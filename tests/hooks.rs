//! Hooks and notifications against real processes and a real sshd on 127.0.0.1.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{local_host, Sshd};
use snapnest::config::{Config, Host};
use snapnest::hooks::{notify, run_hook, Event, Hook, HookEnv, Notify, Where};

/// A host parsed from a real config, as the daemon will have it.
fn host_from(dir: &Path, host_table: &str) -> Host {
    let file = dir.join("snapnest.toml");
    let text = format!(
        "[storage]\npath = \"{}\"\n\n{host_table}",
        dir.join("store").display()
    );
    fs::write(&file, &text).unwrap();
    let config = Config::parse(&text, &file).unwrap();
    config.hosts[0].clone()
}

fn hook(run: &str, place: Where, secs: u64) -> Hook {
    Hook {
        run: run.to_string(),
        place,
        timeout: Duration::from_secs(secs),
    }
}

/// An `after` environment with every value set.
fn after_env(host: &str, message: &str) -> HookEnv {
    let mut env = HookEnv::before(host, Some(42));
    env.event = Event::After;
    env.result = "partial".into();
    env.snapshot = Some("2026-11-24_020000".into());
    env.stats.files = 1234;
    env.stats.bytes = 5_000_000;
    env.stats.new_files = 3;
    env.stats.new_bytes = 56_000;
    env.stats.linked = 1231;
    env.stats.warnings = 1;
    env.stats.errors = 2;
    env.duration = Duration::from_secs(75);
    env.message = Some(message.into());
    env
}

/// A text no shell must run: each form would create `canary` if it were interpreted.
fn hostile(canary: &Path) -> String {
    let c = canary.display();
    format!("'; touch {c}; ' $(touch {c}) `touch {c}` \"; touch {c}; \" \\ $HOME %PATH% & | < >\nline 2")
}

/// True when `pid` is gone or a zombie.
fn dead(pid: u32) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let gone = match fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => stat
                .rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z'),
        };
        if gone || Instant::now() > deadline {
            return gone;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn read_pid(path: &Path) -> u32 {
    fs::read_to_string(path).unwrap().trim().parse().unwrap()
}

#[test]
fn local_hook_sees_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &local_host("laptop", dir.path()));
    let out = dir.path().join("env");
    let run = format!("env -0 > {}; echo done", out.display());
    let env = after_env("laptop", "3 files could not be read");
    let outcome = run_hook(&hook(&run, Where::Local, 10), &host, &env).unwrap();
    assert_eq!(outcome.status, 0);
    assert_eq!(outcome.output_tail, "done\n");
    let text = fs::read_to_string(&out).unwrap();
    let mut seen: Vec<(String, String)> = text
        .split('\0')
        .filter(|kv| kv.starts_with("SNAPNEST_"))
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    seen.sort();
    let mut want = env.vars();
    want.sort();
    assert_eq!(seen, want);
    for kv in [
        ("SNAPNEST_EVENT", "after"),
        ("SNAPNEST_RESULT", "partial"),
        ("SNAPNEST_RUN_ID", "42"),
        ("SNAPNEST_FILES", "1234"),
        ("SNAPNEST_NEW_BYTES", "56000"),
        ("SNAPNEST_DURATION", "75"),
        ("SNAPNEST_SNAPSHOT", "2026-11-24_020000"),
    ] {
        assert!(seen.contains(&(kv.0.into(), kv.1.into())), "{kv:?}");
    }
}

#[test]
fn failing_local_hook_reports_exit_and_output_tail() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &local_host("laptop", dir.path()));
    let env = HookEnv::before("laptop", None);
    let run = "echo dumping; echo 'pg_dump: connection refused' >&2; exit 3";
    let err = run_hook(&hook(run, Where::Local, 10), &host, &env)
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "before hook failed (exit 3): dumping | pg_dump: connection refused"
    );
    // A chatty hook: only the end is kept.
    let err = run_hook(&hook("seq 1 200000; exit 1", Where::Local, 30), &host, &env)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("before hook failed (exit 1): …"), "{err}");
    assert!(err.ends_with("199999 | 200000"), "{err}");
    assert!(err.len() < 3000, "{} bytes", err.len());
    // The command text (it may hold a password) is not in the message.
    let err = run_hook(
        &hook("PGPASSWORD=hunter2 no-such-tool-xyz", Where::Local, 10),
        &host,
        &env,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("(exit 127)"), "{err}");
    assert!(!err.contains("hunter2"), "{err}");
}

#[test]
fn local_hook_past_its_timeout_is_killed_with_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &local_host("laptop", dir.path()));
    let (sh, bg) = (dir.path().join("sh.pid"), dir.path().join("bg.pid"));
    // The background child ignores TERM, so only the KILL that follows stops it.
    let run = format!(
        "echo $$ > {}; (trap '' TERM; exec sleep 60) & echo $! > {}; echo waiting; sleep 60",
        sh.display(),
        bg.display()
    );
    let started = Instant::now();
    let err = run_hook(
        &hook(&run, Where::Local, 1),
        &host,
        &HookEnv::before("laptop", None),
    )
    .unwrap_err()
    .to_string();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        err,
        "before hook timed out after 1s: it was killed with its child processes: waiting"
    );
    assert!(dead(read_pid(&sh)), "the hook's shell survived");
    assert!(dead(read_pid(&bg)), "the hook's background child survived");
}

#[test]
fn remote_hook_runs_on_the_host_side() {
    let sshd = Sshd::start_with(&["SetEnv SNAPNEST_TEST_SIDE=remote"]);
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &sshd.host_toml("laptop", &[dir.path()], ""));
    let out = dir.path().join("side");
    let run = format!(
        "printf '%s|%s|%s|%s' \"$SNAPNEST_TEST_SIDE\" \"$SNAPNEST_HOST\" \"$SNAPNEST_EVENT\" \"$SNAPNEST_FILES\" > {}; echo visible",
        out.display()
    );
    let env = after_env("laptop", "fine");
    let outcome = run_hook(&hook(&run, Where::Remote, 10), &host, &env).unwrap();
    assert_eq!(outcome.output_tail, "visible\n");
    assert_eq!(
        fs::read_to_string(&out).unwrap(),
        "remote|laptop|after|1234"
    );
    // The same hook run locally does not see the sshd's environment.
    run_hook(&hook(&run, Where::Local, 10), &host, &env).unwrap();
    assert_eq!(fs::read_to_string(&out).unwrap(), "|laptop|after|1234");

    let err = run_hook(
        &hook("echo oops >&2; exit 4", Where::Remote, 10),
        &host,
        &env,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(err, "after hook on the host failed (exit 4): oops");
}

#[test]
fn remote_hook_past_its_timeout_is_stopped_on_the_host() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &sshd.host_toml("laptop", &[dir.path()], ""));
    let pid = dir.path().join("pid");
    let run = format!("sleep 60 & echo $! > {}; wait", pid.display());
    let started = Instant::now();
    let err = run_hook(
        &hook(&run, Where::Remote, 1),
        &host,
        &HookEnv::before("laptop", None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(
        err,
        "before hook on the host timed out after 1s: it was stopped on the host"
    );
    assert!(dead(read_pid(&pid)), "the remote hook's child survived");
}

#[test]
fn hostile_values_arrive_verbatim_and_run_nothing() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &sshd.host_toml("laptop", &[dir.path()], ""));
    let canary = PathBuf::from(format!("/tmp/pwned-{}", uuid::Uuid::new_v4()));
    let message = hostile(&canary);
    let mut env = after_env("laptop", &message);
    env.snapshot = Some(format!("snap'$(touch {})'", canary.display()));
    let out = dir.path().join("got");
    let run = format!(
        "printf '%s\\0%s' \"$SNAPNEST_MESSAGE\" \"$SNAPNEST_SNAPSHOT\" > {}",
        out.display()
    );
    for place in [Where::Local, Where::Remote] {
        let _ = fs::remove_file(&out);
        run_hook(&hook(&run, place, 10), &host, &env).unwrap();
        let got = fs::read_to_string(&out).unwrap();
        assert_eq!(
            got,
            format!("{message}\0{}", env.snapshot.as_deref().unwrap()),
            "{place:?}"
        );
        assert!(!canary.exists(), "{place:?}: a value was executed");
    }
}

#[test]
fn remote_hook_with_a_wrong_host_key_is_not_run() {
    let sshd = Sshd::start();
    let dir = tempfile::tempdir().unwrap();
    common::keygen(&dir.path().join("other"));
    let other = common::fingerprint_of(&dir.path().join("other.pub"));
    let table = sshd
        .host_toml("laptop", &[dir.path()], "")
        .replace(&sshd.fingerprint, &other);
    let host = host_from(dir.path(), &table);
    let marker = dir.path().join("ran");
    let run = format!("touch {}", marker.display());
    let err = run_hook(
        &hook(&run, Where::Remote, 10),
        &host,
        &HookEnv::before("laptop", None),
    )
    .unwrap_err()
    .to_string();
    assert!(err.to_lowercase().contains("host key"), "{err}");
    assert!(!marker.exists(), "the hook ran despite the wrong host key");
    let err = notify(&host, &Notify::Macos, "t", "b").unwrap_err();
    assert!(err.to_lowercase().contains("host key"), "{err}");
}

#[test]
fn remote_hook_on_a_local_source_host_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = host_from(dir.path(), &local_host("nas", dir.path()));
    let marker = dir.path().join("ran");
    let run = format!("touch {}", marker.display());
    let err = run_hook(
        &hook(&run, Where::Remote, 10),
        &host,
        &HookEnv::before("nas", None),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("was not run") && err.contains("source = \"local\""),
        "{err}"
    );
    assert!(!marker.exists());
}

/// A folder of recording stand-ins for notify-send, osascript and msg, first on the
/// sshd's PATH; each writes its argv (NUL-separated) and what it saw to `rec/<tool>`.
struct Desktop {
    dir: tempfile::TempDir,
    _sshd: Sshd,
    host: Host,
}

impl Desktop {
    fn start() -> Desktop {
        let dir = tempfile::tempdir().unwrap();
        let (bin, rec) = (dir.path().join("bin"), dir.path().join("rec"));
        fs::create_dir(&bin).unwrap();
        fs::create_dir(&rec).unwrap();
        // Readable by `nobody`, for the notify_user case.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&rec, fs::Permissions::from_mode(0o777)).unwrap();
        for tool in ["notify-send", "osascript", "msg"] {
            let script = format!(
                "#!/bin/sh\nout={rec}/{tool}\nprintf 'uid=%s\\nbus=%s\\n' \"$(id -u)\" \"$DBUS_SESSION_BUS_ADDRESS\" > \"$out.env\"\n\
                 for a in \"$@\"; do printf '%s\\0' \"$a\"; done > \"$out\"\n",
                rec = rec.display()
            );
            fs::write(bin.join(tool), script).unwrap();
            fs::set_permissions(bin.join(tool), fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = format!(
            "SetEnv PATH={}:/usr/bin:/bin:/usr/sbin:/sbin",
            bin.display()
        );
        let sshd = Sshd::start_with(&[&path]);
        let host = host_from(dir.path(), &sshd.host_toml("laptop", &[dir.path()], ""));
        Desktop {
            dir,
            _sshd: sshd,
            host,
        }
    }

    /// The recorded argv of `tool`, and what it saw (uid, bus).
    fn recorded(&self, tool: &str) -> (Vec<String>, String) {
        let rec = self.dir.path().join("rec").join(tool);
        let argv = fs::read_to_string(&rec).unwrap_or_else(|e| panic!("{tool} did not run: {e}"));
        let seen = fs::read_to_string(rec.with_extension("env")).unwrap();
        fs::remove_file(&rec).unwrap();
        fs::remove_file(rec.with_extension("env")).unwrap();
        let mut argv: Vec<String> = argv.split('\0').map(String::from).collect();
        assert_eq!(argv.pop().as_deref(), Some(""));
        (argv, seen)
    }
}

#[test]
fn linux_notification_reaches_notify_send_verbatim() {
    let d = Desktop::start();
    let canary = PathBuf::from(format!("/tmp/pwned-{}", uuid::Uuid::new_v4()));
    let title = "Backup failed";
    let c = canary.display();
    let body = format!("it's '; touch {c}; ' $(touch {c}) \"x\" `touch {c}` & 100%");
    notify(&d.host, &Notify::Linux { user: None }, title, &body).unwrap();
    let (argv, seen) = d.recorded("notify-send");
    assert_eq!(argv, ["-a", "snapnest", title, body.as_str()]);
    assert_eq!(seen, "uid=0\nbus=unix:path=/run/user/0/bus\n");

    // As the desktop user when it is not the SSH user.
    let nobody = Notify::parse("linux", Some("nobody")).unwrap();
    notify(&d.host, &nobody, title, "short").unwrap();
    let (argv, seen) = d.recorded("notify-send");
    assert_eq!(argv, ["-a", "snapnest", title, "short"]);
    assert_eq!(seen, "uid=65534\nbus=unix:path=/run/user/65534/bus\n");
    // The same user as the SSH login: no switch.
    let root = Notify::parse("linux", Some("root")).unwrap();
    notify(&d.host, &root, title, "as root").unwrap();
    assert_eq!(
        d.recorded("notify-send").1,
        "uid=0\nbus=unix:path=/run/user/0/bus\n"
    );
    assert!(!canary.exists());

    // One line, cut to about 200 characters.
    notify(
        &d.host,
        &Notify::Linux { user: None },
        "a\nb",
        &"x".repeat(1000),
    )
    .unwrap();
    let (argv, _) = d.recorded("notify-send");
    assert_eq!(argv[2], "a b");
    assert_eq!(argv[3], format!("{}…", "x".repeat(199)));
}

#[test]
fn macos_notification_is_one_escaped_applescript() {
    let d = Desktop::start();
    let canary = PathBuf::from(format!("/tmp/pwned-{}", uuid::Uuid::new_v4()));
    let body = format!(r#"say "hi" \ it's $(touch {})"#, canary.display());
    notify(&d.host, &Notify::Macos, "Backup \"overdue\"", &body).unwrap();
    let (argv, _) = d.recorded("osascript");
    let want = format!(
        r#"display notification "say \"hi\" \\ it's $(touch {})" with title "Backup \"overdue\"""#,
        canary.display()
    );
    assert_eq!(argv, ["-e", want.as_str()]);
    assert!(!canary.exists());
}

#[test]
fn windows_notification_drops_what_cmd_would_interpret() {
    let d = Desktop::start();
    let body = r#"laptop: 100% "done" & more | x <y> ^z C:\Users"#;
    notify(&d.host, &Notify::Windows, "Backup finished", body).unwrap();
    // On a Windows host cmd.exe runs `msg * /TIME:60 "…"`; here sh does, and may expand `*`.
    let (argv, _) = d.recorded("msg");
    assert!(argv.len() >= 3, "{argv:?}");
    assert_eq!(
        argv[argv.len() - 2..],
        [
            "/TIME:60",
            "Backup finished: laptop: 100 done  more  x y z C:/Users"
        ]
    );
}

#[test]
fn failing_notification_says_why() {
    let d = Desktop::start();
    fs::write(
        d.dir.path().join("bin/osascript"),
        "#!/bin/sh\necho 'execution error: not allowed' >&2\nexit 1\n",
    )
    .unwrap();
    let err = notify(&d.host, &Notify::Macos, "t", "b").unwrap_err();
    assert_eq!(
        err,
        "notification: osascript failed (exit 1): execution error: not allowed"
    );
    assert_eq!(notify(&d.host, &Notify::Off, "t", "b"), Ok(()));
}

#[test]
fn remote_hook_on_a_host_without_timeout_is_abandoned() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::write(bin.join("timeout"), "#!/bin/sh\nexit 125\n").unwrap();
    fs::set_permissions(bin.join("timeout"), fs::Permissions::from_mode(0o755)).unwrap();
    let sshd = Sshd::start_with(&[&format!("SetEnv PATH={}:/usr/bin:/bin", bin.display())]);
    let host = host_from(dir.path(), &sshd.host_toml("laptop", &[dir.path()], ""));
    let started = Instant::now();
    let err = run_hook(
        &hook("echo started; sleep 20", Where::Remote, 1),
        &host,
        &HookEnv::before("laptop", None),
    )
    .unwrap_err()
    .to_string();
    let took = started.elapsed();
    // 1s timeout + 10s for the host's own `timeout`, then the connection is dropped.
    assert!(
        took >= Duration::from_secs(11) && took < Duration::from_secs(15),
        "{took:?}"
    );
    assert_eq!(err, "before hook on the host timed out after 1s: the connection was closed; the host has no working `timeout` command, so the hook may still be running there: started");
}
