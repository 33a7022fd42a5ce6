//! `lifeboat prune`: unused volumes go only when a snapshot holds their
//! data, protected ones never, and a pruned volume comes back whole.

use crate::roundtrip::{Times, listing};
use crate::support::{TestEnv, docker, restic};

fn fill(env: &TestEnv, volume: &str, script: &str) {
    env.busybox(&[format!("{volume}:/v")], script).ok();
}

fn exists(volume: &str) -> bool {
    docker(&["volume", "inspect", volume]).code == 0
}

fn state_of(listing: &serde_json::Value, volume: &str) -> String {
    listing["candidates"]
        .as_array()
        .expect("candidates")
        .iter()
        .find(|c| c["name"] == volume)
        .unwrap_or_else(|| panic!("{volume} not listed: {listing:#}"))["state"]
        .as_str()
        .expect("a state")
        .to_string()
}

#[test]
fn prune_removes_only_what_a_snapshot_holds_and_brings_it_back_whole() {
    let env = TestEnv::new("prune");
    env.init();
    let saved = env.volume("saved", &["team=data"]);
    let unsaved = env.volume("unsaved", &[]);
    let changed = env.volume("changed", &[]);
    let protected = env.volume("protected", &["lifeboat.protect=true"]);
    let in_use = env.volume("in-use", &[]);
    for v in [&saved, &unsaved, &changed, &protected, &in_use] {
        fill(
            &env,
            v,
            "mkdir -p /v/d && echo hello > /v/d/a && seq 1 5000 > /v/b && ln -s d/a /v/l",
        );
    }
    env.container(
        "user",
        &[
            "-v",
            &format!("{in_use}:/data"),
            "lifeboat-test/busybox:1",
            "true",
        ],
        false,
    );
    let original = listing(&env, &saved, Times::Exact);
    // A snapshot must be newer than the last change by over a second.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    for v in [&saved, &changed, &protected] {
        env.lifeboat(&["backup", v, "--via", "host"]).ok();
    }
    std::thread::sleep(std::time::Duration::from_millis(2100));
    fill(&env, &changed, "echo more >> /v/b");

    // Naming a volume a container mounts is refused, whatever it holds.
    let refused = env.lifeboat(&["prune", &in_use, "--yes"]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(refused.stderr.contains("in use"), "{}", refused.stderr);

    let names = [&saved, &unsaved, &changed, &protected];
    let mut dry = vec!["prune", "--json"];
    dry.extend(names.iter().map(|s| s.as_str()));
    let listed = env.lifeboat(&dry).ok().json();
    assert_eq!(listed["dry_run"], true);
    assert_eq!(state_of(&listed, &saved), "backed-up");
    assert_eq!(state_of(&listed, &unsaved), "no-backup");
    assert_eq!(state_of(&listed, &changed), "changed-since-backup");
    assert_eq!(state_of(&listed, &protected), "protected");
    assert!(
        names.iter().all(|v| exists(v)),
        "a dry run removed a volume"
    );

    let mut yes = dry.clone();
    yes.push("--yes");
    let pruned = env.lifeboat(&yes).ok().json();
    assert!(!exists(&saved), "the backed-up volume is still there");
    for v in [&unsaved, &changed, &protected] {
        assert!(exists(v), "{v} was removed without a current snapshot");
    }
    let outcome = pruned["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["name"] == saved.as_str())
        .expect("an outcome for the saved volume")
        .clone();
    let kept = outcome["kept_snapshot"]["id"]
        .as_str()
        .expect("a kept snapshot");
    assert!(outcome["failure"].is_null(), "{outcome}");
    // What stays says why, by class too: a protected volume is refused.
    let stayed = pruned["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .find(|o| o["name"] == protected.as_str())
        .expect("an outcome for the protected volume");
    assert_eq!(stayed["failure"], "refused", "{stayed}");
    assert_eq!(stayed["failed"], false, "{stayed}");
    let tags = restic(
        &env.repo(),
        &env.password,
        &["snapshots", "--json", "--tag", "pruned"],
    )
    .ok();
    assert!(
        tags.stdout.contains(kept),
        "restic does not see {kept} tagged pruned"
    );

    // Back, byte for byte, with its labels.
    env.adopt_volume(&saved);
    env.lifeboat(&["restore", "--pruned", &saved]).ok();
    assert_eq!(listing(&env, &saved, Times::Exact), original);
    let labels = docker(&["volume", "inspect", "-f", "{{json .Labels}}", &saved]).ok();
    assert!(
        labels.stdout.contains("\"team\":\"data\""),
        "{}",
        labels.stdout
    );

    // Backing up first takes the rest, except what is protected.
    let unsaved_listing = listing(&env, &unsaved, Times::Exact);
    let changed_listing = listing(&env, &changed, Times::Exact);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let mut first = yes.clone();
    first.push("--backup-first");
    first.retain(|a| *a != saved.as_str());
    env.lifeboat(&first).ok();
    assert!(!exists(&unsaved) && !exists(&changed));
    assert!(exists(&protected), "a protected volume was removed");
    env.lifeboat(&["restore", "--pruned", &unsaved]).ok();
    assert_eq!(listing(&env, &unsaved, Times::Exact), unsaved_listing);
    // With what was written after its earlier backup.
    env.lifeboat(&["restore", "--pruned", &changed]).ok();
    assert_eq!(listing(&env, &changed, Times::Exact), changed_listing);
    restic(&env.repo(), &env.password, &["check"]).ok();
}

#[test]
fn restoring_a_volume_never_pruned_says_so() {
    let env = TestEnv::new("prune-none");
    env.init();
    let run = env.lifeboat(&["restore", "--pruned", &env.name("never")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("no snapshot of a pruned volume"),
        "{}",
        run.stderr
    );
}
