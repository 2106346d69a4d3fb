//! Table tests: every expected kept set is written out by hand from borg's algorithm.

use super::*;
use chrono_tz::Europe::Berlin;

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn snap(id: i64, name: &str, created: &str, good: bool) -> Snap {
    Snap {
        id,
        name: name.to_string(),
        created: at(created),
        good,
    }
}

/// Good snapshots named by their UTC time ("2028-03-06_2300"), ids increasing with time.
fn series(start: &str, step: TimeDelta, n: i32) -> Vec<Snap> {
    let named = |i: i32, created: DateTime<Utc>| Snap {
        id: i.into(),
        name: created.format("%Y-%m-%d_%H%M").to_string(),
        created,
        good: true,
    };
    (0..n).map(|i| named(i, at(start) + step * i)).collect()
}

/// `keep = { … }` through the real parser, so the tests read like the config.
fn keep(rules: &str) -> Keep {
    let t: toml::Table = toml::from_str(&format!("keep = {{ {rules} }}")).unwrap();
    Keep::from_toml(&t["keep"]).unwrap()
}

fn kept(v: &[Verdict]) -> Vec<&str> {
    v.iter()
        .filter(|v| v.keep)
        .map(|v| v.name.as_str())
        .collect()
}

/// "name: reason; reason" for each kept snapshot, newest first.
fn explain(v: &[Verdict]) -> Vec<String> {
    let line = |v: &Verdict| format!("{}: {}", v.name, v.reasons.join("; "));
    v.iter().filter(|v| v.keep).map(line).collect()
}

fn utc(snaps: &[Snap], rules: &str, now: &str) -> Vec<Verdict> {
    plan(snaps, &keep(rules), at(now), &Utc)
}

fn berlin(snaps: &[Snap], rules: &str, now: &str) -> Vec<Verdict> {
    plan(snaps, &keep(rules), at(now), &Berlin)
}

/// 400 days of hourly snapshots, 2027-02-01 00:00 … 2028-03-06 23:00 UTC (over the 2028 leap day).
fn hourly_400_days() -> Vec<Snap> {
    let mut s = series("2027-02-01T00:00:00Z", TimeDelta::hours(1), 400 * 24);
    s.reverse(); // input order must not matter
    s
}

#[test]
#[rustfmt::skip]
fn single_rules_over_400_days_of_hourly_snapshots() {
    let snaps = hourly_400_days();
    let table: &[(&str, &[&str])] = &[
        ("last = 3", &["2028-03-06_2300", "2028-03-06_2200", "2028-03-06_2100"]),
        ("daily = 7", &["2028-03-06_2300", "2028-03-05_2300", "2028-03-04_2300", "2028-03-03_2300",
                        "2028-03-02_2300", "2028-03-01_2300", "2028-02-29_2300"]),
        // 2028-03-06 is a Monday: ISO week 10 has only that day so far.
        ("weekly = 4", &["2028-03-06_2300", "2028-03-05_2300", "2028-02-27_2300", "2028-02-20_2300"]),
        ("monthly = 12", &["2028-03-06_2300", "2028-02-29_2300", "2028-01-31_2300", "2027-12-31_2300",
                           "2027-11-30_2300", "2027-10-31_2300", "2027-09-30_2300", "2027-08-31_2300",
                           "2027-07-31_2300", "2027-06-30_2300", "2027-05-31_2300", "2027-04-30_2300"]),
        // Only two years exist: the oldest snapshot is kept as "yearly #3 (oldest)".
        ("yearly = 3", &["2028-03-06_2300", "2027-12-31_2300", "2027-02-01_0000"]),
    ];
    for (rules, expected) in table {
        let v = utc(&snaps, rules, "2028-03-07T00:00:00Z");
        assert_eq!(v.len(), 9600, "{rules}");
        assert_eq!(kept(&v), *expected, "{rules}");
    }
    let v = utc(&snaps, "yearly = 3", "2028-03-07T00:00:00Z");
    assert_eq!(v[9599].reasons, ["yearly #3 (oldest)"]);
    assert_eq!(v[0].reasons, ["yearly #1", "newest snapshot", "newest good snapshot"]);
    assert_eq!(v[1].reasons, ["not kept by any rule"]);
}

#[test]
#[rustfmt::skip]
fn all_rules_together_follow_borg_order_and_skip_already_kept() {
    let rules = "last = 3, daily = 7, weekly = 4, monthly = 12, yearly = 2";
    let v = utc(&hourly_400_days(), rules, "2028-03-07T00:00:00Z");
    assert_eq!(explain(&v), [
        "2028-03-06_2300: last #1; newest snapshot; newest good snapshot",
        "2028-03-06_2200: last #2", "2028-03-06_2100: last #3",
        // The rest of 03-06 is daily's first period, already represented by a `last` keep.
        "2028-03-05_2300: daily #1", "2028-03-04_2300: daily #2", "2028-03-03_2300: daily #3",
        "2028-03-02_2300: daily #4", "2028-03-01_2300: daily #5", "2028-02-29_2300: daily #6",
        "2028-02-28_2300: daily #7",
        // Weeks 10 and 9 are represented by last/daily keeps; weekly starts at week 8.
        "2028-02-27_2300: weekly #1", "2028-02-20_2300: weekly #2",
        "2028-02-13_2300: weekly #3", "2028-02-06_2300: weekly #4",
        // March and February 2028 are already represented.
        "2028-01-31_2300: monthly #1", "2027-12-31_2300: monthly #2",
        "2027-11-30_2300: monthly #3", "2027-10-31_2300: monthly #4",
        "2027-09-30_2300: monthly #5", "2027-08-31_2300: monthly #6",
        "2027-07-31_2300: monthly #7", "2027-06-30_2300: monthly #8",
        "2027-05-31_2300: monthly #9", "2027-04-30_2300: monthly #10",
        "2027-03-31_2300: monthly #11", "2027-02-28_2300: monthly #12",
        // 2028 and 2027 are both represented: yearly keeps nothing new but the oldest.
        "2027-02-01_0000: yearly #1 (oldest)",
    ]);
}

#[test]
fn within_counts_back_from_now_and_is_strict() {
    let v = utc(
        &hourly_400_days(),
        "within = \"2d\"",
        "2028-03-07T00:00:00Z",
    );
    let k = kept(&v);
    assert_eq!(k.len(), 47);
    assert_eq!((k[0], k[46]), ("2028-03-06_2300", "2028-03-05_0100"));
    assert_eq!(v[1].reasons, ["within 2d"]);

    let snaps = [
        snap(4, "a", "2026-06-10T08:00:00Z", true),
        snap(3, "b", "2026-06-08T12:01:00Z", true),
        snap(2, "exactly-2d", "2026-06-08T12:00:00Z", true),
        snap(1, "c", "2026-06-01T00:00:00Z", true),
    ];
    let v = utc(&snaps, "within = \"48h\"", "2026-06-10T12:00:00Z");
    assert_eq!(kept(&v), ["a", "b"]);
    assert_eq!(v[1].reasons, ["within 2d"]);
}

#[test]
fn weekly_uses_iso_weeks_across_the_year_boundary() {
    // 2026-12-28 (Mon) … 2027-01-03 (Sun) is ISO week 2026-W53; 2027-01-04 starts 2027-W01.
    let snaps = [
        snap(1, "12-15", "2026-12-15T12:00:00Z", true),
        snap(2, "12-22", "2026-12-22T12:00:00Z", true),
        snap(3, "12-29", "2026-12-29T12:00:00Z", true),
        snap(4, "12-31", "2026-12-31T12:00:00Z", true),
        snap(5, "01-01", "2027-01-01T12:00:00Z", true),
        snap(6, "01-03", "2027-01-03T12:00:00Z", true),
        snap(7, "01-04", "2027-01-04T12:00:00Z", true),
        snap(8, "01-07", "2027-01-07T12:00:00Z", true),
    ];
    let v = utc(&snaps, "weekly = 4", "2027-01-10T00:00:00Z");
    assert_eq!(kept(&v), ["01-07", "01-03", "12-22", "12-15"]);
}

#[test]
fn rules_skip_snapshots_kept_earlier_but_still_advance_the_period() {
    // last 2 + daily 3: A and B are `last`; 05-03 is then daily's first period but A is
    // already kept, so daily takes C, E, F (a count including A would stop at E).
    let snaps = [
        snap(1, "F", "2026-04-30T12:00:00Z", true),
        snap(2, "E", "2026-05-01T23:00:00Z", true),
        snap(3, "D", "2026-05-02T07:00:00Z", true),
        snap(4, "C", "2026-05-02T22:00:00Z", true),
        snap(5, "B", "2026-05-03T08:00:00Z", true),
        snap(6, "A", "2026-05-03T20:00:00Z", true),
    ];
    let v = utc(&snaps, "last = 2, daily = 3", "2026-05-04T00:00:00Z");
    assert_eq!(kept(&v), ["A", "B", "C", "E", "F"]);
    assert_eq!(v[2].reasons, ["daily #1"]);
    assert_eq!(v[3].reasons, ["not kept by any rule"]);

    // last 1 + daily 2: B shares A's day, so daily never takes B even though no daily keep
    // represents 05-03; C is daily #1, and the oldest (C) is already kept.
    let v = utc(&snaps[3..], "last = 1, daily = 2", "2026-05-04T00:00:00Z");
    let expected = [
        "A: last #1; newest snapshot; newest good snapshot",
        "C: daily #1",
    ];
    assert_eq!(explain(&v), expected);
}

#[test]
fn last_is_borgs_keep_secondly() {
    // borg's --keep-last is --keep-secondly: two snapshots within one second are one period.
    let snaps = [
        snap(1, "10:00:30", "2026-05-03T10:00:30Z", true),
        snap(2, "10:15:00", "2026-05-03T10:15:00Z", true),
        snap(3, "10:20:00.2", "2026-05-03T10:20:00.200Z", true),
        snap(4, "10:20:00.7", "2026-05-03T10:20:00.700Z", true),
    ];
    let v = utc(&snaps, "last = 3", "2026-05-03T11:00:00Z");
    assert_eq!(kept(&v), ["10:20:00.7", "10:15:00", "10:00:30"]);
    assert_eq!(v[3].reasons, ["last #3"]);
}

#[test]
fn irregular_laptop_history_with_gaps() {
    #[rustfmt::skip]
    let snaps = [
        snap(1, "L1", "2026-01-05T09:00:00Z", true), snap(2, "L2", "2026-01-05T18:00:00Z", true),
        snap(3, "L3", "2026-01-20T10:00:00Z", true), snap(4, "L4", "2026-02-02T08:00:00Z", true),
        snap(5, "L5", "2026-02-02T12:00:00Z", false), snap(6, "L6", "2026-02-02T20:00:00Z", true),
        snap(7, "L7", "2026-02-03T09:00:00Z", true), snap(8, "L8", "2026-03-02T09:00:00Z", true),
        snap(9, "L9", "2026-03-03T09:00:00Z", true), snap(10, "L10", "2026-03-03T21:00:00Z", true),
        snap(11, "L11", "2026-03-05T10:00:00Z", true),
    ];
    let rules = "daily = 3, weekly = 2, monthly = 3";
    let v = utc(&snaps, rules, "2026-03-06T00:00:00Z");
    // Monthly finds March, February and January already represented and keeps only the oldest.
    #[rustfmt::skip]
    assert_eq!(explain(&v), [
        "L11: daily #1; newest snapshot; newest good snapshot", "L10: daily #2", "L8: daily #3",
        "L7: weekly #1", "L3: weekly #2", "L1: monthly #1 (oldest)",
    ]);
}

#[test]
fn a_rule_short_of_periods_keeps_the_oldest() {
    let snaps = [
        snap(1, "01-05", "2026-01-05T12:00:00Z", true),
        snap(2, "01-20", "2026-01-20T12:00:00Z", true),
        snap(3, "02-01", "2026-02-01T12:00:00Z", true),
        snap(4, "02-10", "2026-02-10T12:00:00Z", true),
        snap(5, "03-15", "2026-03-15T12:00:00Z", true),
    ];
    let v = utc(&snaps, "monthly = 6", "2026-03-16T00:00:00Z");
    assert_eq!(kept(&v), ["03-15", "02-10", "01-20", "01-05"]);
    assert_eq!(v[4].reasons, ["monthly #4 (oldest)"]);
}

#[test]
fn dst_spring_forward_in_berlin_buckets_by_local_day() {
    // 2026-03-29 02:00 CET jumps to 03:00 CEST. S1 is 23:30 local on 03-28, S2 00:30 on 03-29.
    let snaps = [
        snap(1, "S1", "2026-03-28T22:30:00Z", true),
        snap(2, "S2", "2026-03-28T23:30:00Z", true),
        snap(3, "S3", "2026-03-29T00:59:00Z", true), // 01:59 CET
        snap(4, "S4", "2026-03-29T01:00:00Z", true), // 03:00 CEST
        snap(5, "S5", "2026-03-29T21:30:00Z", true), // 23:30 CEST, 03-29
        snap(6, "S6", "2026-03-29T22:30:00Z", true), // 00:30 CEST, 03-30
    ];
    let now = "2026-03-30T06:00:00Z";
    assert_eq!(kept(&berlin(&snaps, "daily = 10", now)), ["S6", "S5", "S1"]);
    // Bucketing by UTC days would have kept S6, S2, S1 instead.
    assert_eq!(kept(&utc(&snaps, "daily = 10", now)), ["S6", "S2", "S1"]);
    let v = berlin(&snaps, "hourly = 10", now);
    assert_eq!(kept(&v), ["S6", "S5", "S4", "S3", "S2", "S1"]);
}

#[test]
fn dst_fall_back_in_berlin_merges_the_repeated_hour() {
    // 2026-10-25 03:00 CEST falls back to 02:00 CET: 02:xx happens twice. Like borg (local
    // wall-clock strings), both real hours are one hourly bucket "2026-10-25 02".
    let snaps = [
        snap(1, "A1", "2026-10-24T21:30:00Z", true), // 23:30 CEST, 10-24
        snap(2, "A2", "2026-10-24T22:30:00Z", true), // 00:30 CEST, 10-25
        snap(3, "A3", "2026-10-25T00:10:00Z", true), // 02:10 CEST (first 02)
        snap(4, "A4", "2026-10-25T00:50:00Z", true), // 02:50 CEST (first 02)
        snap(5, "A5", "2026-10-25T01:20:00Z", true), // 02:20 CET (second 02)
        snap(6, "A6", "2026-10-25T02:05:00Z", true), // 03:05 CET
        snap(7, "A7", "2026-10-25T22:59:00Z", true), // 23:59 CET, 10-25
        snap(8, "A8", "2026-10-25T23:00:00Z", true), // 00:00 CET, 10-26
    ];
    let now = "2026-10-26T06:00:00Z";
    let v = berlin(&snaps, "hourly = 24", now);
    assert_eq!(kept(&v), ["A8", "A7", "A6", "A5", "A2", "A1"]);
    assert_eq!(v[3].reasons, ["hourly #4"]);
    assert_eq!(kept(&berlin(&snaps, "daily = 3", now)), ["A8", "A7", "A1"]);
    assert_eq!(kept(&utc(&snaps, "daily = 3", now)), ["A8", "A2", "A1"]);
}

#[test]
fn clock_jumps_never_panic_and_future_snapshots_count_as_newest() {
    // F was written while the clock ran ten days ahead; the clock has since been corrected.
    let snaps = [
        snap(1, "old", "2026-06-01T00:00:00Z", true),
        snap(2, "N2", "2026-06-09T13:00:00Z", true),
        snap(3, "N1", "2026-06-10T11:00:00Z", true),
        snap(4, "F", "2026-06-20T00:00:00Z", true),
    ];
    let now = "2026-06-10T12:00:00Z";
    let v = utc(&snaps, "within = \"2d\"", now);
    assert_eq!(kept(&v), ["F", "N1", "N2"]);
    assert_eq!(
        v[0].reasons,
        ["within 2d", "newest snapshot", "newest good snapshot"]
    );
    assert_eq!(kept(&utc(&snaps, "last = 1", now)), ["F"]);

    // Extremes of chrono's range and an endless window: no overflow, no panic.
    let mut extreme = snaps.to_vec();
    let (max, min) = (DateTime::<Utc>::MAX_UTC, DateTime::<Utc>::MIN_UTC);
    extreme.push(Snap {
        id: 5,
        name: "max".into(),
        created: max,
        good: false,
    });
    extreme.push(Snap {
        id: 0,
        name: "min".into(),
        created: min,
        good: true,
    });
    let rules = "last = 1, hourly = 2, daily = 2, weekly = 2, monthly = 2, yearly = 2";
    let all = Keep {
        within: Some(Duration::from_secs(u64::MAX)),
        ..keep(rules)
    };
    let v = plan(&extreme, &all, at(now), &Berlin);
    assert_eq!(kept(&v), ["max", "F", "N1", "N2", "old", "min"]);
    // weekly: max #1, F (2026-W25) #2, N1 (W24, N2 shares it), old (W23), min; min is also
    // the oldest, so no "(oldest)" keep is added.
    let v = plan(&extreme, &keep("weekly = 20"), min, &Berlin);
    assert_eq!(kept(&v), ["max", "F", "N1", "old", "min"]);
    assert_eq!(v[1].reasons, ["weekly #2", "newest good snapshot"]);
    assert_eq!(v[5].reasons, ["weekly #5"]);
}

#[test]
fn newest_and_newest_good_are_always_kept() {
    let snaps = [
        snap(1, "O", "2026-05-01T02:00:00Z", true),
        snap(2, "G", "2026-05-02T02:00:00Z", true),
        snap(3, "P", "2026-05-03T02:00:00Z", false),
    ];
    let v = utc(&snaps, "last = 1", "2026-05-03T03:00:00Z");
    assert_eq!(
        explain(&v),
        ["P: last #1; newest snapshot", "G: newest good snapshot"]
    );
    let pruned = vec!["not kept by any rule".to_string()];
    assert_eq!(
        v[2],
        Verdict {
            id: 1,
            name: "O".into(),
            keep: false,
            reasons: pruned
        }
    );
    // A window that covers nothing: the safety keeps alone remain.
    let v = utc(&snaps, "within = \"1H\"", "2027-01-01T00:00:00Z");
    assert_eq!(kept(&v), ["P", "G"]);
}

#[test]
fn empty_rules_keep_everything_and_empty_history_gives_empty_plan() {
    let snaps = series("2026-01-01T00:00:00Z", TimeDelta::days(1), 3);
    let zeros = Keep {
        daily: Some(0),
        within: Some(Duration::ZERO),
        ..Keep::default()
    };
    for k in [Keep::default(), zeros] {
        assert!(k.is_empty());
        let v = plan(&snaps, &k, at("2026-02-01T00:00:00Z"), &Utc);
        assert_eq!(
            kept(&v),
            ["2026-01-03_0000", "2026-01-02_0000", "2026-01-01_0000"]
        );
        assert_eq!(v[2].reasons, ["no keep rules set: keeping everything"]);
    }
    assert!(!keep("yearly = 1").is_empty());
    assert!(utc(&[], "daily = 7", "2026-02-01T00:00:00Z").is_empty());
}

#[test]
#[rustfmt::skip]
fn keep_from_toml_and_describe() {
    let k = keep(r#"last = 3, hourly = 24, daily = 7, weekly = 4, monthly = 12, yearly = 2, within = "2d""#);
    let day = 86400;
    assert_eq!(k, Keep {
        last: Some(3), hourly: Some(24), daily: Some(7), weekly: Some(4), monthly: Some(12),
        yearly: Some(2), within: Some(Duration::from_secs(2 * day)),
    });
    assert_eq!(k.describe(), "last 3, hourly 24, daily 7, weekly 4, monthly 12, yearly 2, within 2d");
    assert_eq!(Keep::default().describe(), "no rules (keep everything)");
    let within = [("3H", 3 * 3600, "3h"), ("1w", 7 * day, "1w"), ("1m", 31 * day, "31d"),
                  ("1y", 365 * day, "1y"), ("36h", 36 * 3600, "36h"), ("90min", 5400, "1h 30m")];
    for (text, secs, shown) in within {
        let k = keep(&format!("within = \"{text}\""));
        assert_eq!(k.within, Some(Duration::from_secs(secs)), "{text}");
        assert_eq!(k.describe(), format!("within {shown}"));
        assert_eq!(keep(&format!("within = \"{shown}\"")), k, "describe must read back");
    }
    let errors = [
        ("daily = -1", "`daily` must be at least 1, got -1"),
        ("daily = 0", "`daily` must be at least 1, got 0"),
        ("dayly = 3", "unknown key `dayly` (allowed: last, hourly, daily, weekly, monthly, yearly, within)"),
        ("within = \"soon\"", "`within` = \"soon\" is not a duration"),
        ("within = \"0d\"", "must be longer than zero"),
        ("within = 2", "`within` must be a duration string"),
        ("daily = \"7\"", "`daily` must be a whole number like 7, got \"7\""),
        ("weekly = 2.5", "`weekly` must be a whole number"),
        ("yearly = 99999999999", "too large"),
    ];
    for (rules, msg) in errors {
        let t: toml::Table = toml::from_str(&format!("keep = {{ {rules} }}")).unwrap();
        let err = Keep::from_toml(&t["keep"]).unwrap_err();
        assert!(err.contains(msg), "{rules}: {err}");
    }
    let err = Keep::from_toml(&toml::Value::Integer(7)).unwrap_err();
    assert!(err.starts_with("expected an inline table"), "{err}");
}

#[test]
#[rustfmt::skip]
fn min_free_parse_describe_and_shortfall() {
    let ok = [("10%", MinFree::Percent(10.0), "10%"), ("0%", MinFree::Percent(0.0), "0%"),
              (" 12.5 % ", MinFree::Percent(12.5), "12.5%"), ("90%", MinFree::Percent(90.0), "90%"),
              ("20GiB", MinFree::Bytes(20 << 30), "20GiB"), ("500 MB", MinFree::Bytes(500_000_000), "500MB"),
              ("4096", MinFree::Bytes(4096), "4KiB"), ("1001", MinFree::Bytes(1001), "1001 bytes")];
    for (text, want, shown) in ok {
        let got = MinFree::parse(text).unwrap();
        assert_eq!(got, want, "{text}");
        assert_eq!(got.describe(), shown);
    }
    for bad in ["150%", "90.5%", "-5%", "lots", "", "%", "NaN%", "12 parsecs"] {
        assert!(MinFree::parse(bad).is_err(), "{bad}");
    }
    assert!(MinFree::parse("150%").unwrap_err().contains("between 0% and 90%"));
    let ten = MinFree::Percent(10.0);
    assert_eq!(ten.bytes_short(1000, 50), 50);
    assert_eq!(ten.bytes_short(1000, 100), 0);
    assert_eq!(ten.bytes_short(1000, 900), 0);
    assert_eq!(MinFree::Percent(12.5).bytes_short(1001, 100), 26); // floor rounds up: 125.125 → 126
    assert_eq!(MinFree::Percent(0.0).bytes_short(1000, 0), 0);
    assert_eq!(MinFree::Bytes(500).bytes_short(10_000, 200), 300);
    assert_eq!(MinFree::Bytes(500).bytes_short(10_000, 500), 0);
}

#[test]
fn space_victims_oldest_first_sparing_each_hosts_newest_and_newest_good() {
    let h = |host: &str, s: Snap| (host.to_string(), s);
    #[rustfmt::skip]
    let all = [
        h("b", snap(6, "b3", "2026-01-06T00:00:00Z", true)),
        h("a", snap(1, "a1", "2026-01-01T00:00:00Z", true)),
        h("c", snap(7, "c1", "2026-01-01T00:00:00Z", false)), // same time as a1: lower id first
        h("a", snap(3, "a3", "2026-01-05T00:00:00Z", false)), // a's newest, partial
        h("b", snap(5, "b2", "2026-01-04T00:00:00Z", true)),
        h("a", snap(2, "a2", "2026-01-03T00:00:00Z", true)),  // a's newest good
        h("c", snap(8, "c2", "2026-01-07T00:00:00Z", false)),
        h("b", snap(4, "b1", "2026-01-02T00:00:00Z", true)),
        h("d", snap(9, "d1", "2025-01-01T00:00:00Z", true)),  // d's only snapshot
    ];
    let victims = space_victims(&all);
    let names: Vec<String> = victims
        .iter()
        .map(|(host, s)| format!("{host}/{}", s.name))
        .collect();
    // c has no good snapshot: only its newest (c2) is spared.
    assert_eq!(names, ["a/a1", "c/c1", "b/b1", "b/b2"]);
    assert!(space_victims(&[]).is_empty());
}

#[test]
fn a_clock_set_back_never_prunes_the_snapshot_just_published() {
    // The box booted without NTP and came up in 2020: the run just published (id 3) looks
    // oldest by time, but it is what `latest` points to and the only copy of today's files.
    let snaps = [
        snap(1, "a", "2026-06-01T02:00:00Z", true),
        snap(2, "b", "2026-06-02T02:00:00Z", true),
        snap(3, "c", "2020-01-01T00:00:00Z", true),
    ];
    let v = utc(&snaps, "last = 1", "2020-01-01T00:05:00Z");
    assert_eq!(kept(&v), ["b", "c"]);
    assert_eq!(
        explain(&v)[1],
        "c: most recently published (the clock may have jumped); most recently published good snapshot"
    );
    let all: Vec<(String, Snap)> = snaps.iter().map(|s| ("h".to_string(), s.clone())).collect();
    let names: Vec<String> = space_victims(&all)
        .into_iter()
        .map(|(_, s)| s.name)
        .collect();
    assert_eq!(names, ["a"]);
}
