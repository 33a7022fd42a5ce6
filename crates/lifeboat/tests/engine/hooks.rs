//! Hooks run inside the containers before and after their volume's backup.

use crate::support::{BUSYBOX, TestEnv, docker, restic};

/// A container with hooks, mounting `volume` at /data and a marks volume
/// at /marks where the hooks leave traces.
fn with_hooks(env: &TestEnv, what: &str, volume: &str, marks: &str, labels: &[&str]) -> String {
    let mut args = vec!["--init".to_string()];
    for l in labels {
        args.push("--label".into());
        args.push((*l).to_string());
    }
    args.extend([
        "-v".into(),
        format!("{volume}:/data"),
        "-v".into(),
        format!("{marks}:/marks"),
        BUSYBOX.into(),
        "sleep".into(),
        "3000".into(),
    ]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    env.container(what, &args, true)
}

fn marks(env: &TestEnv, marks: &str) -> String {
    env.busybox(&[format!("{marks}:/m:ro")], "ls /m")
        .ok()
        .stdout
}

#[test]
fn hooks_run_around_the_copy_and_a_failed_pre_hook_stops_only_its_volume() {
    let env = TestEnv::new("hooks");
    env.init();
    let marks_volume = env.volume("marks", &[]);
    let good = env.volume("good", &[]);
    let bad = env.volume("bad", &[]);
    with_hooks(
        &env,
        "app",
        &good,
        &marks_volume,
        &[
            "lifeboat.exec-pre=echo flushed > /data/flushed && touch /marks/pre",
            "lifeboat.exec-post=rm /data/flushed && touch /marks/post",
        ],
    );
    with_hooks(
        &env,
        "broken",
        &bad,
        &marks_volume,
        &[
            "lifeboat.exec-pre=echo cannot lock the tables >&2; exit 3",
            "docker-volume-backup.archive-post=touch /marks/broken-post",
        ],
    );

    let run = env.lifeboat(&["backup", &good, &bad, "--json"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let good_report = &report["targets"][0];
    let bad_report = &report["targets"][1];
    // The pre hook ran before the copy (its file is in the snapshot), the
    // post hook after (the file is gone from the volume).
    let id = good_report["snapshot"]["id"]
        .as_str()
        .expect("snapshot of the good volume");
    let listed = restic(&env.repo(), &env.password, &["ls", id]).ok().stdout;
    assert!(listed.contains("/flushed"), "{listed}");
    let now = env.busybox(&[format!("{good}:/v:ro")], "ls /v").ok().stdout;
    assert!(!now.contains("flushed"), "{now}");
    // The failed pre hook: no snapshot, a message naming container,
    // command and cause; its post hook (an offen label) ran anyway.
    assert!(bad_report["snapshot"].is_null());
    let error = bad_report["error"].as_str().expect("an error");
    assert!(
        error.contains("container") && error.contains("broken"),
        "{error}"
    );
    assert!(
        error.contains("exit status 3") && error.contains("cannot lock the tables"),
        "{error}"
    );
    let traces = marks(&env, &marks_volume);
    for mark in ["pre", "post", "broken-post"] {
        assert!(
            traces.lines().any(|l| l == mark),
            "missing mark {mark}: {traces}"
        );
    }
}

#[test]
fn post_hooks_run_when_the_backup_fails_and_hooks_can_be_allowed_to_fail() {
    let env = TestEnv::new("hooks-fail");
    env.init();
    let marks_volume = env.volume("marks", &[]);
    let data = env.volume("data", &[]);
    let container = with_hooks(
        &env,
        "app",
        &data,
        &marks_volume,
        &[
            "lifeboat.exec-pre=sleep 30",
            "lifeboat.exec-timeout=1",
            "lifeboat.exec-on-error=continue",
            "lifeboat.exec-post=touch /marks/post",
        ],
    );
    // A forced dump of a volume that holds no database fails after the
    // pre hook; the post hook still runs.
    let run = env.lifeboat(&["backup", &data, "--strategy", "dump", "--json"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let report = run.json();
    assert!(
        report["targets"][0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("cannot dump")
    );
    let hooks = report["targets"][0]["hooks"]
        .as_array()
        .expect("hooks")
        .clone();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    assert_eq!(hooks[0]["ok"], false);
    assert!(
        hooks[0]["output"]
            .as_str()
            .unwrap_or_default()
            .contains("still running after 1s")
    );
    assert!(marks(&env, &marks_volume).lines().any(|l| l == "post"));

    // With on-error=continue a failed pre hook does not stop the backup.
    docker(&["exec", &container, "rm", "-f", "/marks/post"]).ok();
    let run = env.lifeboat(&["backup", &data, "--json"]).ok().json();
    assert!(run["targets"][0]["snapshot"]["id"].is_string(), "{run}");
    assert_eq!(run["targets"][0]["hooks"][0]["ok"], false);
    assert!(marks(&env, &marks_volume).lines().any(|l| l == "post"));
}
