use super::*;
use chrono_tz::America::New_York;
use chrono_tz::Australia::Lord_Howe;
use chrono_tz::Europe::Berlin;
use chrono_tz::{Tz, UTC};

/// "2026-03-29 01:00Z" is UTC; without the Z it is wall time in `tz` (first occurrence).
fn at(tz: &Tz, s: &str) -> DateTime<Utc> {
    let naive = |s: &str| NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M").expect(s);
    match s.strip_suffix('Z') {
        Some(u) => naive(u).and_utc(),
        None => tz
            .from_local_datetime(&naive(s))
            .earliest()
            .expect(s)
            .to_utc(),
    }
}

#[test]
fn cron_slots() {
    // (what, line, zone, after, the next slots in order)
    #[rustfmt::skip]
    let table: &[(&str, &str, Tz, &str, &[&str])] = &[
        ("spring gap: 02:30 runs once at 03:00 CEST", "30 2 * * *", Berlin, "2026-03-29 00:00Z",
            &["2026-03-29 01:00Z", "2026-03-30 00:30Z"]),
        ("fall back: 02:30 runs at the first 02:30 only", "30 2 * * *", Berlin, "2026-10-24 23:00Z",
            &["2026-10-25 00:30Z", "2026-10-26 01:30Z"]),
        ("fall back: from inside the repeated hour, no rerun", "30 2 * * *", Berlin, "2026-10-25 01:10Z",
            &["2026-10-26 01:30Z"]),
        ("fall back hourly: repeated 02:00 slot fires once", "@hourly", Berlin, "2026-10-24 22:00Z",
            &["2026-10-24 23:00Z", "2026-10-25 00:00Z", "2026-10-25 02:00Z", "2026-10-25 03:00Z"]),
        ("spring hourly: 02:00 and 03:00 merge into one run", "0 * * * *", Berlin, "2026-03-28 23:30Z",
            &["2026-03-29 00:00Z", "2026-03-29 01:00Z", "2026-03-29 02:00Z"]),
        ("spring, every 15 min: gap slots merge, then resume", "*/15 * * * *", Berlin, "2026-03-29 00:50Z",
            &["2026-03-29 01:00Z", "2026-03-29 01:15Z"]),
        ("New York spring gap", "30 2 * * *", New_York, "2026-03-08 05:00Z", &["2026-03-08 07:00Z", "2026-03-09 06:30Z"]),
        ("New York fall back", "30 1 * * *", New_York, "2026-11-01 04:00Z", &["2026-11-01 05:30Z", "2026-11-02 06:30Z"]),
        ("Lord Howe 30-min gap", "15 2 * * *", Lord_Howe, "2026-10-03 12:00Z", &["2026-10-03 15:30Z", "2026-10-04 15:15Z"]),
        ("Lord Howe 30-min fold", "45 1 * * *", Lord_Howe, "2026-04-04 12:00Z", &["2026-04-04 14:45Z", "2026-04-05 15:15Z"]),
        ("31st skips 30-day months", "0 3 31 * *", UTC, "2026-04-01 00:00", &["2026-05-31 03:00", "2026-07-31 03:00"]),
        ("1st of month over the year end", "0 0 1 * *", UTC, "2026-12-31 12:00", &["2027-01-01 00:00"]),
        ("leap day", "0 12 29 2 *", UTC, "2026-01-01 00:00", &["2028-02-29 12:00", "2032-02-29 12:00"]),
        ("strictly after a slot", "0 9 * * *", UTC, "2026-06-01 09:00", &["2026-06-02 09:00"]),
        ("Mon-Fri (2026-06-06 is a Saturday)", "0 9 * * 1-5", UTC, "2026-06-06 00:00", &["2026-06-08 09:00", "2026-06-09 09:00"]),
        ("0 is Sunday", "0 9 * * 0", UTC, "2026-06-01 00:00", &["2026-06-07 09:00", "2026-06-14 09:00"]),
        ("7 is Sunday", "* * * * 7", UTC, "2026-06-06 12:00", &["2026-06-07 00:00", "2026-06-07 00:01"]),
        ("day names", "0 9 * * SAT,sun", UTC, "2026-06-01 00:00", &["2026-06-06 09:00", "2026-06-07 09:00", "2026-06-13 09:00"]),
        ("5-7 is Fri,Sat,Sun", "0 9 * * 5-7", UTC, "2026-06-01 00:00",
            &["2026-06-05 09:00", "2026-06-06 09:00", "2026-06-07 09:00", "2026-06-12 09:00"]),
        ("wrapping day range", "0 9 * * Fri-Mon", UTC, "2026-06-05 12:00",
            &["2026-06-06 09:00", "2026-06-07 09:00", "2026-06-08 09:00", "2026-06-12 09:00"]),
        ("day-of-month OR day-of-week", "0 9 13 * FRI", UTC, "2026-06-01 00:00",
            &["2026-06-05 09:00", "2026-06-12 09:00", "2026-06-13 09:00", "2026-06-19 09:00"]),
        ("'*/2' is unrestricted to vixie: AND", "0 9 */2 * MON", UTC, "2026-06-01 00:00",
            &["2026-06-01 09:00", "2026-06-15 09:00", "2026-06-29 09:00"]),
        ("month names and lists", "0 0 1 jan,JUL *", UTC, "2026-02-01 00:00", &["2026-07-01 00:00", "2027-01-01 00:00"]),
        ("steps", "*/20 9-10 * * *", UTC, "2026-06-01 10:05", &["2026-06-01 10:20", "2026-06-01 10:40", "2026-06-02 09:00"]),
        ("@weekly is Sunday midnight", "@weekly", UTC, "2026-06-01 00:00", &["2026-06-07 00:00"]),
    ];
    for (what, line, tz, after, want) in table {
        let spec = CronSpec::parse(line).unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut t = at(tz, after);
        for w in *want {
            t = spec
                .next_after(t, tz)
                .unwrap_or_else(|| panic!("{what}: no slot after {t}"));
            assert_eq!(t, at(tz, w), "{what}: {line} wanted {w}");
        }
    }
}

#[test]
fn daily_job_runs_once_per_local_day_through_a_dst_year() {
    for (line, tz) in [
        ("30 2 * * *", Berlin),
        ("0 0 * * *", New_York),
        ("15 2 * * *", Lord_Howe),
    ] {
        let spec = CronSpec::parse(line).unwrap();
        let (mut t, mut runs) = (at(&tz, "2026-01-01 00:00Z"), Vec::new());
        while t < at(&tz, "2027-01-01 00:00Z") {
            let next = spec.next_after(t, &tz).unwrap();
            assert!(next > t, "{line} in {tz}: went back from {t} to {next}");
            runs.push(next.with_timezone(&tz).date_naive());
            t = next;
        }
        let n = runs.len();
        runs.dedup();
        assert_eq!(
            (n, runs.len()),
            (366, 366),
            "{line} in {tz}: runs, distinct local days"
        );
    }
}

#[test]
fn cron_errors_say_what_is_wrong() {
    #[rustfmt::skip]
    let table: &[(&str, &[&str])] = &[
        ("0 2 * *", &["4 fields"]),
        ("0 0 2 * * *", &["6 fields", "seconds"]),
        ("0 0 2 * * * 2027", &["7 fields"]),
        ("61 * * * *", &["minute", "61", "0-59"]),
        ("* * * * 8", &["day-of-week", "8", "0-7"]),
        ("0 0 * * MONDAY", &["\"MONDAY\" is not a number or name"]),
        ("every day", &["2 fields"]),
        ("", &["0 fields"]),
        ("5-1 * * * *", &["backwards"]),
        ("*/0 * * * *", &["step \"0\""]),
        ("0 0 31 2,4 *", &["never matches"]),
        ("@reboot", &["unknown shorthand \"@reboot\""]),
    ];
    for (line, needles) in table {
        let e = CronSpec::parse(line)
            .err()
            .unwrap_or_else(|| panic!("{line:?} parsed"));
        for n in needles.iter().chain(&["e.g. \"30 2 * * *\""]) {
            assert!(e.contains(n), "{line:?}: {e:?} lacks {n:?}");
        }
    }
    assert_eq!(CronSpec::parse("  @Daily ").unwrap().as_str(), "@Daily");
}

#[test]
fn due_at_rules() {
    let now = at(&UTC, "2026-06-03 12:00");
    let h = |n: i64| now + TimeDelta::hours(n);
    let sched = |cron: Option<&str>, every: Option<&str>| Schedule {
        cron: cron.map(|c| CronSpec::parse(c).unwrap()),
        every: every.map(|e| parse_every(e).unwrap()),
        blackout: vec![],
    };
    let daily = Some("0 2 * * *");
    // (what, cron, every, last good, expected)
    #[rustfmt::skip]
    let table = [
        ("never backed up", None, Some("6h"), None, Due::Now),
        ("no rules: manual only", None, None, Some(h(-100)), Due::Manual),
        ("no rules, never backed up: still manual", None, None, None, Due::Manual),
        ("every 6h, 7h ago: overdue", None, Some("6h"), Some(h(-7)), Due::At(h(-1))),
        ("every 6h, 5h ago: in 1h", None, Some("6h"), Some(h(-5)), Due::At(h(1))),
        ("clock set back: a future run counts as now", None, Some("6h"), Some(h(3)), Due::At(h(6))),
        ("cron catch-up: away at 02:00", daily, None, Some(h(-34)), Due::At(h(-10))),
        ("cron after today's run: tomorrow", daily, None, Some(h(-9)), Due::At(h(14))),
        ("cron, clock set back: from now", daily, None, Some(h(3)), Due::At(h(14))),
        ("clock jumped forward: one overdue run", daily, None, Some(h(-24 * 400)), Due::At(at(&UTC, "2025-04-30 02:00"))),
        ("both: the earlier (cron)", daily, Some("6h"), Some(h(-11)), Due::At(h(-10))),
        ("both: the earlier (every)", daily, Some("1h"), Some(h(-9)), Due::At(h(-8))),
    ];
    for (what, cron, every, last, want) in table {
        assert_eq!(sched(cron, every).due_at(last, now, &UTC), want, "{what}");
    }
    // Local slots: 02:00 Berlin summer time is 00:00 UTC.
    let berlin = sched(daily, None).due_at(Some(h(-24)), now, &Berlin);
    assert_eq!(berlin, Due::At(at(&UTC, "2026-06-03 00:00")));
}

#[test]
fn blackout_windows() {
    // (what, windows, t, blacked out until); Berlin wall time unless it ends in Z.
    // 2026-06-03 is a Wednesday.
    #[rustfmt::skip]
    let table: &[(&str, &[&str], &str, Option<&str>)] = &[
        ("weekday office hours", &["Mon-Fri 09:00-18:00"], "2026-06-03 10:00", Some("2026-06-03 18:00")),
        ("start is inside", &["Mon-Fri 09:00-18:00"], "2026-06-03 09:00", Some("2026-06-03 18:00")),
        ("end is outside", &["Mon-Fri 09:00-18:00"], "2026-06-03 18:00", None),
        ("before the start", &["Mon-Fri 09:00-18:00"], "2026-06-03 08:59", None),
        ("Saturday is free", &["Mon-Fri 09:00-18:00"], "2026-06-06 10:00", None),
        ("over midnight, Sunday night", &["22:00-06:30"], "2026-06-07 23:00", Some("2026-06-08 06:30")),
        ("over midnight, early morning", &["22:00-06:30"], "2026-06-08 03:00", Some("2026-06-08 06:30")),
        ("Fri-Mon nights: Monday evening", &["Fri-Mon 20:00-08:00"], "2026-06-08 21:00", Some("2026-06-09 08:00")),
        ("Fri-Mon nights: Tuesday morning", &["Fri-Mon 20:00-08:00"], "2026-06-09 07:00", Some("2026-06-09 08:00")),
        ("Fri-Mon nights: Friday morning is Thursday's", &["Fri-Mon 20:00-08:00"], "2026-06-05 07:00", None),
        ("Fri-Mon nights: Tuesday evening", &["Fri-Mon 20:00-08:00"], "2026-06-09 21:00", None),
        ("spring forward night is an hour shorter", &["22:00-06:30"], "2026-03-28 23:00", Some("2026-03-29 04:30Z")),
        ("fall back night is an hour longer", &["22:00-06:30"], "2026-10-24 23:00", Some("2026-10-25 05:30Z")),
        ("end inside the spring gap", &["00:00-02:30"], "2026-03-29 01:00", Some("2026-03-29 01:00Z")),
        ("end in the repeated hour, second pass", &["00:00-02:30"], "2026-10-25 01:10Z", Some("2026-10-25 01:30Z")),
        ("overlapping: end of the later", &["09:00-12:00", "11:00-14:00"], "2026-06-03 10:00", Some("2026-06-03 14:00")),
        ("back to back over midnight", &["Mon 22:00-24:00", "Tue 00:00-06:00"], "2026-06-08 23:00", Some("2026-06-09 06:00")),
        ("whole weekend", &["Sat,Sun 00:00-24:00"], "2026-06-06 10:00", Some("2026-06-08 00:00")),
    ];
    for (what, windows, t, want) in table {
        let blackout = windows.iter().map(|w| Window::parse(w).unwrap()).collect();
        let s = Schedule {
            blackout,
            ..Default::default()
        };
        let (t, want) = (at(&Berlin, t), want.map(|w| at(&Berlin, w)));
        assert_eq!(s.blackout_until(t, &Berlin), want, "{what}");
        assert_eq!(
            s.next_allowed(t, &Berlin),
            want.unwrap_or(t),
            "{what}: next_allowed"
        );
    }
    let always = Schedule {
        blackout: vec![Window::parse("00:00-24:00").unwrap()],
        ..Default::default()
    };
    let end = always.blackout_until(at(&UTC, "2026-01-01 00:00"), &Berlin);
    assert_eq!(
        end,
        Some(at(&Berlin, "2027-02-05 00:00")),
        "endless blackout: bounded search"
    );
}

#[test]
fn window_parsing() {
    #[rustfmt::skip]
    let same = [
        ("mon-FRI 9:00 - 18:00", "Mon,Tue,Wed,Thu,Fri 09:00-18:00"),
        ("Sat, Sunday 1:00-2:00", "Sat-Sun 01:00-02:00"),
        ("Fri-Mon 20:00-08:00", "Fri,Sat,Sun,Mon 20:00-08:00"),
        ("00:00-24:00", "Mon-Sun 00:00-24:00"),
    ];
    for (a, b) in same {
        assert!(Window::parse(a).is_ok(), "{a}");
        assert_eq!(Window::parse(a), Window::parse(b), "{a} vs {b}");
    }
    assert_ne!(
        Window::parse("Fri-Mon 20:00-08:00"),
        Window::parse("Fri,Mon 20:00-08:00")
    );
    #[rustfmt::skip]
    let bad = [
        ("09:00-09:00", "start equals end"),
        ("Mon-Fry 09:00-10:00", "unknown day \"fry\""),
        ("25:00-26:00", "\"25:00\" is not a time of day"),
        ("10:00-10:60", "\"10:60\" is not a time"),
        ("24:00-06:00", "24:00 can only end"),
        ("9-17", "\"9\" is not HH:MM"),
        ("Mon", "missing the time range"),
    ];
    for (w, needle) in bad {
        let e = Window::parse(w)
            .err()
            .unwrap_or_else(|| panic!("{w:?} parsed"));
        assert!(
            e.contains(needle) && e.contains("e.g. \"Mon-Fri 09:00-18:00\""),
            "{w:?}: {e:?}"
        );
    }
}

#[test]
fn every_parsing() {
    assert_eq!(parse_every("6h"), Ok(Duration::from_secs(6 * 3600)));
    assert_eq!(parse_every(" 90min "), Ok(Duration::from_secs(90 * 60)));
    assert_eq!(parse_every("1m"), Ok(Duration::from_secs(60)));
    for (s, needle) in [
        ("30s", "minimum of 1 minute"),
        ("soon", "not a duration"),
        ("", "not a duration"),
    ] {
        let e = parse_every(s).unwrap_err();
        assert!(
            e.contains(needle) && e.contains("e.g. \"6h\""),
            "{s:?}: {e}"
        );
    }
}

#[test]
fn backoff_doubles_to_six_hours() {
    let m = |n: u64| Duration::from_secs(n * 60);
    #[rustfmt::skip]
    let table = [(0, m(0)), (1, m(5)), (2, m(10)), (3, m(20)), (7, m(320)), (8, m(360)), (1000, m(360)), (u32::MAX, m(360))];
    for (failures, want) in table {
        assert_eq!(backoff(failures), want, "{failures} failures");
    }
}
