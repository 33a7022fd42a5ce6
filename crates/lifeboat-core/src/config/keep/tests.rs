use super::*;

/// A time as a snapshot records it: `2026-03-29T01:30:00+01:00`.
fn at(text: &str) -> TakenAt {
    let instant: Timestamp = text.parse().expect("a time with an offset");
    let wall: DateTime = text[..19].parse().expect("a wall-clock time");
    let utc = wall
        .to_zoned(jiff::tz::TimeZone::UTC)
        .expect("valid")
        .timestamp();
    let seconds = utc.as_second() - instant.as_second();
    let offset = Offset::from_seconds(i32::try_from(seconds).expect("valid")).expect("valid");
    let taken = TakenAt::new(instant, offset);
    assert_eq!(taken.wall, wall, "{text}");
    taken
}

/// The indexes of the snapshots kept, newest first as given.
fn kept(rules: &str, times: &[&str], now: &str) -> Vec<usize> {
    let rules: KeepRules = rules.parse().expect("rules");
    let taken: Vec<TakenAt> = times.iter().map(|t| at(t)).collect();
    rules
        .apply_in(&taken, now.parse().expect("now"), &TimeZone::UTC)
        .iter()
        .enumerate()
        .filter(|(_, reasons)| !reasons.is_empty())
        .map(|(i, _)| i)
        .collect()
}

const NOW: &str = "2030-01-01T00:00:00Z";

#[test]
fn rules_parse_and_print_in_a_fixed_order() {
    for (text, printed) in [
        ("last=3", "last=3"),
        ("daily=7,last=2", "last=2,daily=7"),
        (" weekly = 4 , monthly=12 ", "weekly=4,monthly=12"),
        ("yearly=10,hourly=24", "hourly=24,yearly=10"),
        ("within=30d", "within=30d"),
        ("within=2w", "within=14d"),
        ("within=1y6m", "within=1y6m"),
        ("within=1d12h,last=0,daily=1", "daily=1,within=1d12h"),
    ] {
        let rules: KeepRules = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(rules.to_string(), printed, "{text}");
        assert_eq!(
            printed.parse::<KeepRules>().expect("valid"),
            rules,
            "{printed}"
        );
    }
    let rules: KeepRules = "last=2,hourly=3,daily=4,weekly=5,monthly=6,yearly=7,within=1y2m3w4d5h"
        .parse()
        .expect("valid");
    assert_eq!(
        rules,
        KeepRules {
            last: 2,
            hourly: 3,
            daily: 4,
            weekly: 5,
            monthly: 6,
            yearly: 7,
            within: Some(Within {
                years: 1,
                months: 2,
                days: 25,
                hours: 5
            }),
        }
    );
}

#[test]
fn a_bad_rule_is_an_error_naming_it_never_keep_nothing() {
    for (bad, says) in [
        ("", "no rule"),
        ("   ", "no rule"),
        ("last", "\"last\" is not KEY=VALUE"),
        ("last=3,", "\"\" is not KEY=VALUE"),
        ("last=x", "last=x: the count must be a whole number"),
        ("last=-1", "last=-1: the count must be a whole number"),
        ("last=1.5", "last=1.5"),
        ("daily=99999999999", "daily=99999999999"),
        ("keep=3", "unknown key \"keep\""),
        ("Last=3", "unknown key \"Last\""),
        ("last=1,last=2", "last is given twice"),
        ("last=0", "keep no snapshot"),
        ("last=0,daily=0,weekly=0", "keep no snapshot"),
        ("within=", "invalid duration \"\""),
        ("within=30", "invalid duration \"30\""),
        ("within=30x", "invalid duration \"30x\""),
        ("within=d", "invalid duration \"d\""),
        ("within=0d", "it is zero"),
        ("within=-1d", "invalid duration \"-1d\""),
        ("within=99999999999d", "invalid duration"),
        ("within=2147483647d1w", "invalid duration"),
    ] {
        let err = bad
            .parse::<KeepRules>()
            .err()
            .unwrap_or_else(|| panic!("{bad:?} was taken"));
        assert_eq!(err.class(), crate::error::ErrorClass::BadRequest);
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("invalid keep rules {bad:?}: ")),
            "{bad:?}: {message}"
        );
        assert!(message.contains(says), "{bad:?}: {message}");
    }
}

#[test]
fn last_keeps_the_newest_and_a_short_history_whole() {
    let times = [
        "2026-12-05T03:00:00Z",
        "2026-12-04T03:00:00Z",
        "2026-12-03T03:00:00Z",
        "2026-12-02T03:00:00Z",
        "2026-12-01T03:00:00Z",
    ];
    assert_eq!(kept("last=3", &times, NOW), [0, 1, 2]);
    assert_eq!(kept("last=1", &times, NOW), [0]);
    assert_eq!(kept("last=5", &times, NOW), [0, 1, 2, 3, 4]);
    assert_eq!(kept("last=9", &times, NOW), [0, 1, 2, 3, 4]);
}

#[test]
fn periods_keep_the_newest_of_each_and_the_oldest_while_counts_last() {
    let times = [
        "2026-12-05T20:00:00Z",
        "2026-12-05T08:00:00Z",
        "2026-12-04T20:00:00Z",
        "2026-12-04T08:00:00Z",
        "2026-12-03T20:00:00Z",
    ];
    assert_eq!(kept("daily=2", &times, NOW), [0, 2]);
    assert_eq!(kept("daily=3", &times, NOW), [0, 2, 4]);
    assert_eq!(kept("daily=9", &times, NOW), [0, 2, 4]);
    assert_eq!(kept("hourly=2", &times, NOW), [0, 1]);
    // Two days: with a count left, the oldest is kept though its day
    // has a newer snapshot; with the counts used up, it goes.
    assert_eq!(kept("daily=3", &times[..4], NOW), [0, 2, 3]);
    assert_eq!(kept("daily=2", &times[..4], NOW), [0, 2]);
    // Reasons add up: last and daily keep the same newest one.
    let rules: KeepRules = "last=1,daily=2".parse().expect("valid");
    let taken: Vec<TakenAt> = times.iter().map(|t| at(t)).collect();
    let reasons = rules.apply(&taken, NOW.parse().expect("valid"));
    assert_eq!(reasons[0], [KeepReason::Last, KeepReason::Daily]);
    assert_eq!(reasons[1], []);
    assert_eq!(reasons[2], [KeepReason::Daily]);
    assert_eq!(reasons[2][0].to_string(), "daily snapshot");
}

#[test]
fn months_and_years_turn_on_the_calendar() {
    let times = [
        "2027-01-01T00:30:00Z",
        "2026-12-31T23:30:00Z",
        "2026-12-01T00:00:00Z",
        "2026-11-30T23:59:59Z",
        "2026-02-28T12:00:00Z",
        "2025-12-31T12:00:00Z",
    ];
    assert_eq!(kept("monthly=3", &times, NOW), [0, 1, 3]);
    assert_eq!(kept("yearly=2", &times, NOW), [0, 1]);
    assert_eq!(kept("yearly=3", &times, NOW), [0, 1, 5]);
}

#[test]
fn weeks_are_iso_weeks_across_the_new_year() {
    // 2021-01-03 is a Sunday of ISO week 53 of 2020, with 2020-12-28;
    // 2021-01-04 starts week 1 of 2021.
    let times = [
        "2021-01-04T10:00:00Z",
        "2021-01-03T10:00:00Z",
        "2020-12-31T10:00:00Z",
        "2020-12-28T10:00:00Z",
        "2020-12-27T10:00:00Z",
    ];
    assert_eq!(kept("weekly=3", &times, NOW), [0, 1, 4]);
    assert_eq!(kept("weekly=2", &times, NOW), [0, 1]);
}

#[test]
fn the_hours_are_those_of_the_clock_the_snapshot_was_taken_on() {
    // Summer time begins in Berlin: 02:00 +01:00 becomes 03:00 +02:00.
    let spring = [
        "2026-03-29T03:30:00+02:00",
        "2026-03-29T01:30:00+01:00",
        "2026-03-28T23:30:00+01:00",
    ];
    assert_eq!(kept("hourly=3", &spring, NOW), [0, 1, 2]);
    assert_eq!(kept("daily=1", &spring, NOW), [0]);
    assert_eq!(kept("daily=2", &spring, NOW), [0, 2]);
    // Winter time comes back: 02:30 happens twice, an hour apart, and is
    // one hour on the clock.
    let autumn = [
        "2026-10-25T02:30:00+01:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-25T01:30:00+02:00",
    ];
    assert_eq!(kept("hourly=2", &autumn, NOW), [0, 2]);
    // The same instant on two clocks can fall on two days.
    let zones = ["2026-12-01T23:30:00-01:00", "2026-12-02T00:30:00+00:00"];
    assert_eq!(kept("daily=1", &zones, NOW), [0]);
    assert_eq!(kept("daily=2", &zones, NOW), [0, 1]);
}

#[test]
fn equal_times_are_taken_in_the_order_given() {
    let times = [
        "2026-12-05T03:00:00Z",
        "2026-12-05T03:00:00Z",
        "2026-12-05T03:00:00Z",
    ];
    assert_eq!(kept("last=1", &times, NOW), [0]);
    assert_eq!(kept("daily=1", &times, NOW), [0]);
    // A count left keeps the oldest, equal or not.
    assert_eq!(kept("daily=2", &times, NOW), [0, 2]);
}

#[test]
fn within_counts_back_from_the_newest_snapshot_not_from_now() {
    let times = [
        "2026-12-07T12:00:00Z",
        "2026-12-06T12:00:00Z",
        "2026-12-05T12:00:01Z",
        "2026-12-05T12:00:00Z",
        "2026-11-01T12:00:00Z",
    ];
    assert_eq!(kept("within=2d", &times, NOW), [0, 1, 2]);
    // Before the newest was taken, the one before it is the newest.
    assert_eq!(
        kept("within=2d", &times, "2026-12-07T11:00:00Z"),
        [0, 1, 2, 3]
    );
    assert_eq!(kept("within=1d23h", &times, NOW), [0, 1]);
    // A snapshot from the future (a clock set wrong) is kept, and the
    // newest in the past counts.
    let future = [
        "2026-12-09T12:00:00Z",
        "2026-12-07T12:00:00Z",
        "2026-12-06T12:00:00Z",
        "2026-12-01T12:00:00Z",
    ];
    assert_eq!(
        kept("within=2d", &future, "2026-12-08T00:00:00Z"),
        [0, 1, 2]
    );
    // All in the future: nothing is older than the newest in the past.
    assert_eq!(
        kept("within=1d", &future, "2026-01-01T00:00:00Z"),
        [0, 1, 2, 3]
    );
}

#[test]
fn within_months_and_years_run_past_the_end_of_a_month_as_restic_counts() {
    // 31 March less a month is "31 February", that is 3 March.
    let march = [
        "2026-03-31T10:00:00Z",
        "2026-03-04T10:00:00Z",
        "2026-03-03T10:00:00Z",
        "2026-03-02T10:00:00Z",
        "2026-02-28T10:00:00Z",
    ];
    assert_eq!(kept("within=1m", &march, NOW), [0, 1]);
    // 29 February 2024 less a year is 1 March 2023.
    let leap = [
        "2024-02-29T00:00:00Z",
        "2023-03-01T00:00:01Z",
        "2023-03-01T00:00:00Z",
        "2023-02-28T12:00:00Z",
    ];
    assert_eq!(kept("within=1y", &leap, NOW), [0, 1]);
    // Days run over the start of a month too, and hours after them.
    let days = [
        "2026-03-02T06:00:00Z",
        "2026-02-27T07:00:00Z",
        "2026-02-27T05:00:00Z",
    ];
    assert_eq!(kept("within=3d", &days, NOW), [0, 1]);
    assert_eq!(kept("within=3d1h", &days, NOW), [0, 1]);
    assert_eq!(kept("within=3d2h", &days, NOW), [0, 1, 2]);
}

#[test]
fn the_label_wins_over_the_section_which_wins_over_the_defaults() {
    let config: Config = toml::from_str(
        "[defaults]\nkeep = \"daily=7\"\n[volume.v]\nkeep = \"last=3\"\n[bind.\"/srv/a\"]\nkeep = \"weekly=2\"\n",
    )
    .expect("valid");
    let none = BTreeMap::new();
    let labelled: BTreeMap<String, String> =
        [(KEEP_LABEL.to_string(), "monthly=6".to_string())].into();
    let rules = |kind, name: &str, labels| {
        keep_rules(kind, name, labels, "", &config)
            .expect("valid")
            .map(|(rules, from)| (rules.to_string(), from))
    };
    assert_eq!(
        rules(MountKind::Volume, "v", &labelled),
        Some((
            "monthly=6".to_string(),
            "label lifeboat.keep=monthly=6 on volume v".to_string()
        ))
    );
    assert_eq!(
        rules(MountKind::Volume, "v", &none),
        Some((
            "last=3".to_string(),
            "configuration file: [volume.\"v\"] keep = \"last=3\"".to_string()
        ))
    );
    assert_eq!(
        rules(MountKind::Bind, "/srv/a", &none).map(|r| r.0),
        Some("weekly=2".to_string())
    );
    assert_eq!(
        rules(MountKind::Volume, "other", &none),
        Some((
            "daily=7".to_string(),
            "configuration file: [defaults] keep = \"daily=7\"".to_string()
        ))
    );
    assert_eq!(
        keep_rules(MountKind::Volume, "other", &none, "", &Config::default()).expect("valid"),
        None
    );
    let bad: BTreeMap<String, String> = [(KEEP_LABEL.to_string(), "lots".to_string())].into();
    let err = keep_rules(MountKind::Volume, "v", &bad, "", &config)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.starts_with("label lifeboat.keep on volume v: invalid keep rules \"lots\""),
        "{err}"
    );
    for bad in [
        "[defaults]\nkeep = \"last=0\"\n",
        "[volume.v]\nkeep = \"daily=x\"\n",
        "[defaults]\nkeeps = \"daily=1\"\n",
    ] {
        assert!(toml::from_str::<Config>(bad).is_err(), "{bad}");
    }
    let message = toml::from_str::<Config>("[volume.v]\nkeep = \"daily=x\"\n")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        message.contains("invalid keep rules \"daily=x\""),
        "{message}"
    );
}

#[test]
fn spans_beyond_the_calendar_keep_everything_and_never_fail() {
    let times = ["2026-12-07T12:00:00Z", "0001-01-01T00:00:00Z"];
    for rules in [
        "within=7400000d",
        "within=1100000w",
        "within=2147483647y",
        "within=2147483647h",
    ] {
        assert_eq!(kept(rules, &times, NOW), [0, 1], "{rules}");
    }
}

#[test]
fn equal_newest_times_count_back_from_the_first_listed() {
    // The same instant on two clocks: the first one's calendar counts.
    let times = [
        "2026-03-31T23:30:00-01:00",
        "2026-04-01T00:30:00+00:00",
        "2026-03-01T00:00:00+00:00",
    ];
    // From 31 March on its clock, a month back is 3 March (23:30 -01:00).
    assert_eq!(kept("within=1m", &times, NOW), [0, 1]);
    assert_eq!(kept("within=1m1d", &times, NOW), [0, 1]);
    // From 1 April, it would be 1 March, 00:30: the third is older still.
    let reordered = [times[1], times[0], times[2]];
    assert_eq!(kept("within=1m", &reordered, NOW), [0, 1]);
    assert_eq!(kept("within=1m1d", &reordered, NOW), [0, 1, 2]);
}

#[test]
fn within_follows_this_hosts_summer_time_when_the_newest_was_taken_on_its_clock() {
    let berlin = TimeZone::get("Europe/Berlin").expect("the time zone database");
    let rules: KeepRules = "within=1m".parse().expect("rules");
    // A month before 1 April 00:30 in summer time is 1 March 00:30 in
    // winter time, 23:30 UTC: on Berlin's clock the hour stays, on a
    // fixed +02:00 it would be 22:30 UTC.
    let taken = [
        at("2026-04-01T00:30:00+02:00"),
        at("2026-03-01T00:00:00+01:00"),
    ];
    let now = NOW.parse().expect("now");
    let in_berlin = rules.apply_in(&taken, now, &berlin);
    assert!(in_berlin[1].is_empty(), "{in_berlin:?}");
    let elsewhere = rules.apply_in(&taken, now, &TimeZone::UTC);
    assert_eq!(
        elsewhere[1],
        [KeepReason::Within(rules.within.expect("within"))]
    );
}
