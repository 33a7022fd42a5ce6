//! `lifeboat forget`: the same decisions as restic's for the same rules,
//! and the safety rules on top, judged by restic on the same repository.

use std::collections::BTreeSet;

use crate::support::{TestEnv, docker, restic, restic_current};

/// A history of backups of `volume` at the given times.
fn history(env: &TestEnv, volume: &str, times: &[&str]) {
    for time in times {
        env.lifeboat(&["backup", volume, "--time", time]).ok();
    }
}

/// The short ids lifeboat keeps, for every target, from its JSON report.
fn kept_by_lifeboat(report: &serde_json::Value) -> BTreeSet<String> {
    report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .flat_map(|t| t["snapshots"].as_array().expect("snapshots").clone())
        .filter(|s| s["keep"] == true)
        .map(|s| s["short_id"].as_str().expect("id").to_string())
        .collect()
}

/// The short ids restic keeps, for every group.
fn kept_by_restic(report: &serde_json::Value) -> BTreeSet<String> {
    report
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["keep"].as_array().cloned().unwrap_or_default())
        .map(|s| s["short_id"].as_str().expect("id").to_string())
        .collect()
}

/// restic's flags for lifeboat's rules: `daily=3,within=1m` becomes
/// `--keep-daily 3 --keep-within 1m`.
fn restic_flags(rules: &str) -> Vec<String> {
    rules
        .split(',')
        .flat_map(|rule| {
            let (key, value) = rule.split_once('=').expect("KEY=VALUE");
            [format!("--keep-{key}"), value.to_string()]
        })
        .collect()
}

/// Times across month and year ends, summer and winter time, and clocks
/// whose day is not UTC's.
const TIMES: &[&str] = &[
    "2024-12-30T23:30:00+01:00",
    "2024-12-31T12:00:00+01:00",
    "2025-01-01T00:30:00+01:00",
    "2025-01-06T09:00:00+01:00",
    "2025-02-28T23:59:00+01:00",
    "2025-03-01T00:30:00+02:00",
    "2025-03-30T01:30:00+01:00",
    "2025-03-30T03:30:00+02:00",
    "2025-03-31T10:00:00+02:00",
    "2025-05-31T23:00:00-05:00",
    "2025-06-01T08:00:00+02:00",
    "2025-06-01T09:00:00+02:00",
    "2025-10-26T02:30:00+02:00",
    "2025-10-26T02:30:00+01:00",
    "2025-12-31T23:59:59Z",
    "2026-01-01T00:00:00Z",
];

#[test]
fn forget_keeps_what_restic_keeps_for_the_same_rules() {
    let env = TestEnv::new("forget-restic");
    env.init();
    let volume = env.volume("data", &[]);
    history(&env, &volume, TIMES);
    for rules in [
        "last=3",
        "hourly=4",
        "daily=5",
        "weekly=4",
        "monthly=4",
        "yearly=2",
        "monthly=20",
        "daily=2,weekly=3,monthly=4,yearly=5",
        "last=1,hourly=2",
        "within=2m",
        "within=1y2d",
        "within=3d12h",
        "within=1m,daily=3",
    ] {
        let ours = env
            .lifeboat(&["forget", &volume, "--keep", rules, "--dry-run", "--json"])
            .ok()
            .json();
        let mut args = vec!["forget", "--dry-run", "--json", "--group-by", "host,paths"];
        let flags = restic_flags(rules);
        args.extend(flags.iter().map(String::as_str));
        let theirs = restic_current(&env.repo(), &env.password, &args).ok();
        let theirs: serde_json::Value =
            serde_json::from_str(theirs.stdout.lines().last().expect("restic's JSON"))
                .expect("restic's JSON");
        assert_eq!(
            kept_by_lifeboat(&ours),
            kept_by_restic(&theirs),
            "{rules}: lifeboat kept {ours:#}"
        );
        // A dry run removes nothing.
        assert_eq!(snapshot_count(&env), TIMES.len(), "{rules}");
    }
}

fn snapshot_count(env: &TestEnv) -> usize {
    restic(&env.repo(), &env.password, &["snapshots", "--json"])
        .ok()
        .json()
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn forget_removes_per_volume_and_never_the_last_of_one() {
    let env = TestEnv::new("forget-remove");
    env.init();
    let busy = env.volume("busy", &[]);
    let quiet = env.volume("quiet", &[]);
    history(
        &env,
        &busy,
        &[
            "2026-01-01T03:00:00Z",
            "2026-01-02T03:00:00Z",
            "2026-01-03T03:00:00Z",
            "2026-01-04T03:00:00Z",
        ],
    );
    history(&env, &quiet, &["2025-06-01T03:00:00Z"]);

    let run = env.lifeboat(&["forget", "--keep", "last=2", "--json"]).ok();
    let report = run.json();
    let targets = report["targets"].as_array().expect("targets");
    assert_eq!(targets.len(), 2, "{report:#}");
    let removed: Vec<(String, u64)> = targets
        .iter()
        .map(|t| {
            (
                t["name"].as_str().expect("name").to_string(),
                t["removed"].as_u64().expect("removed"),
            )
        })
        .collect();
    assert_eq!(removed, vec![(busy.clone(), 2), (quiet.clone(), 0)]);

    // What restic sees: the two newest of one volume, the one of the other.
    let left = restic(&env.repo(), &env.password, &["snapshots", "--json"])
        .ok()
        .json();
    let mut times: Vec<(String, String)> = left
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| {
            let path = s["paths"][0].as_str().expect("path").to_string();
            let time = s["time"].as_str().expect("time")[..10].to_string();
            (path, time)
        })
        .collect();
    times.sort();
    assert_eq!(
        times,
        vec![
            (format!("/volumes/{busy}"), "2026-01-03".to_string()),
            (format!("/volumes/{busy}"), "2026-01-04".to_string()),
            (format!("/volumes/{quiet}"), "2025-06-01".to_string()),
        ]
    );
    restic(&env.repo(), &env.password, &["check"]).ok();
    // The kept snapshots still restore.
    let target = env.dir.path().join("restored");
    let target_arg = target.to_string_lossy().to_string();
    env.lifeboat(&["restore", "latest", "--volume", &busy, "--to", &target_arg])
        .ok();
}

#[test]
fn the_safety_rules_keep_what_the_rules_alone_would_drop() {
    let env = TestEnv::new("forget-safety");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo old > /v/f")
        .ok();
    history(
        &env,
        &volume,
        &["2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z"],
    );
    // A forced restore saves what it overwrites, now: the newest
    // snapshot, but not a restore point. `within=1h` of it keeps it alone;
    // the newest backup, a year older, is kept all the same.
    env.lifeboat(&["restore", "latest", "--volume", &volume, "--force"])
        .ok();
    let report = env
        .lifeboat(&["forget", &volume, "--keep", "within=1h", "--json"])
        .ok()
        .json();
    let snapshots = report["targets"][0]["snapshots"]
        .as_array()
        .expect("snapshots")
        .clone();
    let reasons: Vec<(bool, Vec<String>)> = snapshots
        .iter()
        .map(|s| {
            (
                s["keep"] == true,
                s["reasons"]
                    .as_array()
                    .expect("reasons")
                    .iter()
                    .map(|r| r.as_str().expect("reason").to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        reasons,
        vec![
            (true, vec!["within 1h".to_string()]),
            (
                true,
                vec!["newest snapshot of the target (never removed)".to_string()]
            ),
            (false, vec![]),
        ],
        "{report:#}"
    );
    assert!(
        report["drills"]
            .as_str()
            .is_some_and(|d| d.contains("no restore drill is recorded yet")),
        "{report:#}"
    );
    assert_eq!(snapshot_count(&env), 2);
}

#[test]
fn the_last_copy_of_a_pruned_volume_is_kept_unless_asked() {
    let env = TestEnv::new("forget-pruned");
    env.init();
    let volume = env.volume("gone", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo data > /v/f")
        .ok();
    history(&env, &volume, &["2026-01-01T03:00:00Z"]);
    // A snapshot counts as current for prune when taken in a later second
    // than the last change (file times have seconds here).
    std::thread::sleep(std::time::Duration::from_millis(2100));
    env.lifeboat(&["backup", &volume]).ok();
    let pruned = env.lifeboat(&["prune", &volume, "--yes"]).ok();
    assert_ne!(
        docker(&["volume", "inspect", &volume]).code,
        0,
        "not pruned: {}",
        pruned.stdout
    );
    // A new volume of the same name, backed up later: the copy kept for
    // the pruned one is no longer the newest snapshot of the name.
    docker(&["volume", "create", &volume]).ok();
    history(&env, &volume, &["2030-01-01T03:00:00Z"]);
    let tagged = restic(
        &env.repo(),
        &env.password,
        &["snapshots", "--json", "--tag", "pruned"],
    )
    .ok()
    .json();
    let copy = tagged[0]["short_id"]
        .as_str()
        .expect("a pruned copy")
        .to_string();
    assert_eq!(tagged.as_array().map(Vec::len), Some(1));

    let decision = |extra: &[&str]| {
        let mut args = vec!["forget", &volume, "--keep", "last=1", "--dry-run", "--json"];
        args.extend(extra);
        let report = env.lifeboat(&args).ok().json();
        report["targets"][0]["snapshots"]
            .as_array()
            .expect("snapshots")
            .iter()
            .find(|s| s["short_id"] == copy.as_str())
            .cloned()
            .unwrap_or_else(|| panic!("{copy} in {report:#}"))
    };
    let kept = decision(&[]);
    assert_eq!(kept["keep"], true, "{kept:#}");
    assert_eq!(
        kept["reasons"],
        serde_json::json!(["last copy of a pruned volume (tagged pruned)"])
    );
    let dropped = decision(&["--include-pruned"]);
    assert_eq!(dropped["keep"], false, "{dropped:#}");

    env.lifeboat(&["forget", &volume, "--keep", "last=1"]).ok();
    let left = restic(&env.repo(), &env.password, &["snapshots", "--json"])
        .ok()
        .json();
    let mut ids: Vec<&str> = left
        .as_array()
        .expect("snapshots")
        .iter()
        .map(|s| s["short_id"].as_str().expect("id"))
        .collect();
    ids.sort_unstable();
    assert_eq!(ids.len(), 2, "{left:#}");
    assert!(ids.contains(&copy.as_str()), "{left:#}");
}

#[test]
fn rules_come_from_the_flag_the_label_or_the_file_and_never_from_a_guess() {
    let env = TestEnv::new("forget-rules");
    env.init();
    let labelled = env.volume("labelled", &["lifeboat.keep=last=1"]);
    let configured = env.volume("configured", &[]);
    let bare = env.volume("bare", &[]);
    let broken = env.volume("broken", &["lifeboat.keep=lots"]);
    for volume in [&labelled, &configured, &bare, &broken] {
        history(
            &env,
            volume,
            &["2026-01-01T03:00:00Z", "2026-01-02T03:00:00Z"],
        );
    }
    let config = env.dir.path().join("lifeboat.toml");
    std::fs::write(
        &config,
        format!("[volume.\"{configured}\"]\nkeep = \"daily=1\"\n"),
    )
    .expect("write the configuration");
    let config = config.to_string_lossy().to_string();

    let run = env.lifeboat(&["forget", "--config", &config, "--dry-run", "--json"]);
    // Two targets without usable rules, two with: partial.
    assert_eq!(run.code, 3, "{}", run.stderr);
    let report = run.json();
    let by_name = |name: &str| {
        report["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} in {report:#}"))
    };
    assert_eq!(by_name(&labelled)["rules"], "last=1");
    assert_eq!(
        by_name(&labelled)["rules_from"],
        format!("label lifeboat.keep=last=1 on volume {labelled}")
    );
    assert_eq!(by_name(&configured)["rules"], "daily=1");
    let refused = by_name(&bare);
    assert_eq!(refused["failure"], "bad-request");
    assert!(
        refused["error"]
            .as_str()
            .is_some_and(|e| e.contains("no keep rules") && e.contains("--keep")),
        "{refused:#}"
    );
    let broken = by_name(&broken);
    assert!(
        broken["error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid keep rules \"lots\"")),
        "{broken:#}"
    );

    // Without --dry-run the refused targets lose nothing.
    let run = env.lifeboat(&["forget", "--config", &config]);
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert_eq!(snapshot_count(&env), 2 + 2 + 1 + 1);

    // A rule that does not parse is refused before anything.
    for bad in ["last=0", "daily=x", "keep=3", "within=5"] {
        let run = env.lifeboat(&["forget", "--keep", bad]);
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains(bad), "{bad}: {}", run.stderr);
    }
    let run = env.lifeboat(&["forget", "no-such-volume", "--keep", "last=1"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no-such-volume"), "{}", run.stderr);
    assert_eq!(snapshot_count(&env), 6);
}
