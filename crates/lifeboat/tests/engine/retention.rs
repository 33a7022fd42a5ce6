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
fn forget_applies_the_rules_to_each_volume_on_its_own() {
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
    std::thread::sleep(std::time::Duration::from_millis(1100));
    env.lifeboat(&["backup", &volume]).ok();
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

/// The SHA-256 of `/v/big` in a volume, read in a container.
fn digest(env: &TestEnv, volume: &str) -> String {
    let run = env
        .busybox(&[format!("{volume}:/v:ro")], "sha256sum /v/big")
        .ok();
    run.stdout
        .split_whitespace()
        .next()
        .expect("a digest")
        .to_string()
}

/// New random content in `/v/big`.
fn churn(env: &TestEnv, volume: &str, megabytes: u32) {
    env.busybox(
        &[format!("{volume}:/v")],
        &format!("dd if=/dev/urandom of=/v/big bs=1M count={megabytes} 2>/dev/null"),
    )
    .ok();
}

/// Restores the newest snapshot of `volume` into a new volume and checks
/// its content is `want`.
fn restores_to(env: &TestEnv, volume: &str, want: &str) {
    let copy = env.name("copy");
    env.lifeboat(&["restore", "latest", "--volume", volume, "--to", &copy])
        .ok();
    assert_eq!(digest(env, &copy), want, "the restored content");
    docker(&["volume", "rm", "-f", &copy]).ok();
}

#[test]
fn forget_prune_reclaims_the_space_and_restic_checks_every_byte() {
    let env = TestEnv::new("forget-prune");
    env.init();
    let volume = env.random_volume("data", 4);
    for time in [
        "2026-01-01T03:00:00Z",
        "2026-01-02T03:00:00Z",
        "2026-01-03T03:00:00Z",
    ] {
        churn(&env, &volume, 4);
        env.lifeboat(&["backup", &volume, "--time", time]).ok();
    }
    let newest = digest(&env, &volume);

    let planned = env
        .lifeboat(&[
            "forget",
            &volume,
            "--keep",
            "last=1",
            "--prune",
            "--dry-run",
            "--json",
        ])
        .ok()
        .json();
    let plan = &planned["prune"];
    assert_eq!(plan["dry_run"], true, "{planned:#}");
    assert!(
        plan["bytes_removed"].as_u64() >= Some(8_000_000),
        "{planned:#}"
    );
    assert!(plan["size_after"].is_null(), "{planned:#}");
    assert_eq!(snapshot_count(&env), 3, "a dry run removed snapshots");

    let report = env
        .lifeboat(&["forget", &volume, "--keep", "last=1", "--prune", "--json"])
        .ok()
        .json();
    let prune = &report["prune"];
    let before = prune["size_before"].as_u64().expect("size before");
    let after = prune["size_after"].as_u64().expect("size after");
    assert!(
        before >= after + 8_000_000,
        "{before} -> {after}: {report:#}"
    );
    assert!(after >= 4_000_000, "the kept data went too: {report:#}");
    assert_eq!(snapshot_count(&env), 1);
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
    restores_to(&env, &volume, &newest);
    // Nothing left to reclaim.
    let again = env
        .lifeboat(&["forget", "--prune-only", "--json"])
        .ok()
        .json();
    assert_eq!(again["prune"]["packs_removed"], 0, "{again:#}");
}

/// A guard that continues and kills the processes it holds, however the
/// test ends.
struct Children(Vec<std::process::Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            signal(child, "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn signal(child: &std::process::Child, name: &str) {
    let _ = std::process::Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .stderr(std::process::Stdio::null())
        .status();
}

fn lock_count(env: &TestEnv) -> usize {
    std::fs::read_dir(env.repo().join("locks")).map_or(0, |d| d.count())
}

fn wait_for_locks(env: &TestEnv, count: usize) {
    crate::support::wait_until(
        &format!("{count} lock files"),
        std::time::Duration::from_secs(60),
        || lock_count(env) >= count,
    );
}

#[test]
fn a_prune_killed_at_any_point_loses_nothing_kept() {
    let env = TestEnv::new("prune-killed");
    env.init();
    let volume = env.random_volume("data", 2);
    // Each round leaves 4 MB that no snapshot needs, and kills the prune
    // a little later into its work than the last (a whole prune of it
    // takes about 0.2 s here).
    for (round, delay) in [0u64, 10, 25, 45, 70, 110].into_iter().enumerate() {
        for n in 0..3 {
            churn(&env, &volume, 2);
            let time = format!("2026-01-{:02}T03:{n:02}:00Z", round + 1);
            env.lifeboat(&["backup", &volume, "--time", &time]).ok();
        }
        env.lifeboat(&["forget", &volume, "--keep", "last=1"]).ok();
        let mut prune = Children(vec![env.start_lifeboat(&["forget", "--prune-only"])]);
        // Its shared lock, then its exclusive one: pruning has begun (or,
        // on a quick machine, is over already).
        crate::support::wait_until(
            "the prune's exclusive lock",
            std::time::Duration::from_secs(60),
            || lock_count(&env) >= 2 || matches!(prune.0[0].try_wait(), Ok(Some(_))),
        );
        std::thread::sleep(std::time::Duration::from_millis(delay));
        let _ = prune.0[0].kill();
        let _ = prune.0[0].wait();
        drop(prune);
        // Whatever it had done, restic finds the repository whole, once
        // the killed process's locks are cleared as after any kill.
        restic(&env.repo(), &env.password, &["unlock"]).ok();
        restic(&env.repo(), &env.password, &["check"]).ok();
    }
    let newest = digest(&env, &volume);
    env.lifeboat(&["forget", "--prune-only"]).ok();
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
    assert_eq!(snapshot_count(&env), 1);
    restores_to(&env, &volume, &newest);
}

#[test]
fn a_prune_waits_for_a_running_backup_and_keeps_new_ones_out() {
    let env = TestEnv::new("prune-locks");
    env.init();
    let big = env.random_volume("big", 200);
    let small = env.volume("small", &[]);
    env.busybox(&[format!("{small}:/v")], "echo x > /v/f").ok();

    // A backup that holds the repository: stopped half-way.
    let mut running = Children(vec![env.start_lifeboat(&["backup", &big])]);
    wait_for_locks(&env, 1);
    signal(&running.0[0], "STOP");

    // Told to wait one second, a prune gives up as locked, naming it.
    let run = env.lifeboat(&["forget", "--prune-only", "--lock-wait", "1"]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(run.stderr.contains("waiting up to 1s"), "{}", run.stderr);
    assert!(run.stderr.contains("still holds it"), "{}", run.stderr);
    assert_eq!(lock_count(&env), 1, "the prune left a lock");

    // Told to wait longer, it waits; meanwhile a new backup is refused.
    running
        .0
        .push(env.start_lifeboat(&["forget", "--prune-only", "--lock-wait", "120"]));
    wait_for_locks(&env, 3);
    let refused = env.lifeboat(&["backup", &small]);
    assert_eq!(refused.code, 7, "{}", refused.stderr);
    assert!(
        refused.stderr.contains("exclusive lock"),
        "{}",
        refused.stderr
    );

    // The backup goes on and ends; then the prune runs.
    signal(&running.0[0], "CONT");
    let backup = running.0.remove(0).wait_with_output().expect("backup ends");
    assert!(
        backup.status.success(),
        "{}",
        String::from_utf8_lossy(&backup.stderr)
    );
    let prune = running.0.remove(0).wait_with_output().expect("prune ends");
    let said = String::from_utf8_lossy(&prune.stderr);
    assert!(prune.status.success(), "{said}");
    assert!(said.contains("waiting up to 120s"), "{said}");
    assert_eq!(snapshot_count(&env), 1);
    restic(&env.repo(), &env.password, &["check", "--read-data"]).ok();
    assert_eq!(lock_count(&env), 0, "locks left behind");
}
