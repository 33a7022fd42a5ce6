//! The stop strategy: writers and their dependents stop in order, start
//! again in reverse, and always start again, even after lifeboat is killed.

use std::process::Command;
use std::time::Duration;

use crate::support::{BUSYBOX, TestEnv, docker, wait_until};

fn state(container: &str, field: &str) -> String {
    docker(&[
        "inspect",
        "-f",
        &format!("{{{{.State.{field}}}}}"),
        container,
    ])
    .ok()
    .stdout
    .trim()
    .to_string()
}

fn running(container: &str) -> bool {
    state(container, "Running") == "true"
}

/// One of the engine's timestamps (RFC 3339, UTC, with the fraction's
/// trailing zeros dropped), as seconds and nanoseconds to compare.
fn instant(container: &str, field: &str) -> (String, u32) {
    let stamp = state(container, field);
    let stamp = stamp.strip_suffix('Z').unwrap_or(&stamp);
    let (seconds, fraction) = stamp.split_once('.').unwrap_or((stamp, ""));
    let nanos = format!("{fraction:0<9}")
        .parse()
        .expect("a fraction of a second");
    (seconds.to_string(), nanos)
}

/// A volume with `megabytes` of incompressible data, and a writer
/// container (labelled for the stop strategy) appending to it.
fn busy_volume(env: &TestEnv, megabytes: u32, labels: &[&str]) -> (String, String) {
    let volume = env.volume("data", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        &format!("dd if=/dev/urandom of=/v/bulk bs=1M count={megabytes} 2>/dev/null"),
    )
    .ok();
    let mut args = vec!["--init", "--label", "lifeboat.strategy=stop"];
    for label in labels {
        args.extend(["--label", label]);
    }
    let mount = format!("{volume}:/data");
    args.extend([
        "-v",
        &mount,
        BUSYBOX,
        "sh",
        "-c",
        "while true; do date >> /data/log; sleep 0.1; done",
    ]);
    let writer = env.container("writer", &args, true);
    (volume, writer)
}

fn window_of(report: &serde_json::Value, container: &str) -> f64 {
    report["targets"][0]["stop_windows"]
        .as_array()
        .expect("stop windows")
        .iter()
        .find(|w| w["container"] == container)
        .and_then(|w| w["seconds"].as_f64())
        .unwrap_or_else(|| panic!("no stop window for {container}: {report}"))
}

#[test]
fn writers_and_dependents_stop_in_order_and_only_they_start_again() {
    let env = TestEnv::new("stop-order");
    env.init();
    let (volume, writer) = busy_volume(&env, 300, &[]);
    let dependent = env.container(
        "dependent",
        &[
            "--init",
            "--network",
            &format!("container:{writer}"),
            BUSYBOX,
            "sleep",
            "3000",
        ],
        true,
    );
    let reader = env.container(
        "reader",
        &[
            "--init",
            "-v",
            &format!("{volume}:/data:ro"),
            BUSYBOX,
            "sleep",
            "3000",
        ],
        true,
    );
    let idle = env.container(
        "idle",
        &["-v", &format!("{volume}:/data"), BUSYBOX, "true"],
        false,
    );
    let reader_started = state(&reader, "StartedAt");

    let plan = env
        .lifeboat(&["backup", &volume, "--plan", "--json"])
        .ok()
        .json();
    let order: Vec<&str> = plan[0]["stop"]
        .as_array()
        .expect("stop list")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(order, [dependent.as_str(), writer.as_str()]);

    let report = env.lifeboat(&["backup", &volume, "--json"]).ok().json();
    assert_eq!(report["targets"][0]["strategy"], "stop");
    // Judged by the engine's own timestamps: the dependent stopped first
    // and started last.
    assert!(instant(&dependent, "FinishedAt") <= instant(&writer, "FinishedAt"));
    assert!(instant(&writer, "StartedAt") <= instant(&dependent, "StartedAt"));
    assert!(running(&writer) && running(&dependent));
    assert_eq!(
        state(&reader, "StartedAt"),
        reader_started,
        "a read-only user was stopped"
    );
    assert_eq!(
        state(&idle, "Status"),
        "created",
        "a container that was not running was started"
    );
    let two_pass = window_of(&report, &writer);

    // Only the consistent snapshot remains, and restic agrees with it.
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1), "{snapshots}");
    crate::support::restic(&env.repo(), &env.password, &["check"]).ok();

    // The same copy made while stopped, from scratch: the window covers it
    // whole. With 300 MB unchanged, the two-pass window is far shorter.
    let fresh = env.dir.path().join("fresh-repo");
    let fresh = fresh.to_string_lossy();
    env.lifeboat(&["init", "--repo", &fresh]).ok();
    let single = env
        .lifeboat(&[
            "backup",
            &volume,
            "--single-pass",
            "--repo",
            &fresh,
            "--json",
        ])
        .ok()
        .json();
    let single_pass = window_of(&single, &writer);
    eprintln!(
        "stop window of {writer}: two-pass {two_pass:.3}s, single stopped copy {single_pass:.3}s"
    );
    assert!(
        two_pass < single_pass,
        "two-pass window {two_pass:.3}s is not shorter than a stopped full copy {single_pass:.3}s"
    );
}

#[test]
fn a_killed_lifeboat_s_stopped_containers_start_again_with_the_next_command() {
    let env = TestEnv::new("stop-kill");
    env.init();
    let (volume, writer) = busy_volume(&env, 400, &[]);
    let mut backup = env.start_lifeboat(&["backup", &volume, "--single-pass"]);
    wait_until("the writer is stopped", Duration::from_secs(60), || {
        !running(&writer)
    });
    backup.kill().expect("SIGKILL");
    let _ = backup.wait();
    assert!(!running(&writer), "nothing should have started it yet");

    let run = env.lifeboat(&["ls", "--no-sizes"]).ok();
    let started = format!("started {writer}");
    assert!(run.stderr.contains(&started), "{}", run.stderr);
    assert!(running(&writer));
    // Once only.
    let again = env.lifeboat(&["ls", "--no-sizes"]).ok();
    assert!(!again.stderr.contains(&started), "{}", again.stderr);
}

#[test]
fn an_interrupted_backup_starts_its_containers_again_and_runs_its_post_hooks() {
    let env = TestEnv::new("stop-int");
    env.init();
    let (volume, writer) = busy_volume(
        &env,
        400,
        &[
            "lifeboat.exec-pre=touch /data/pre-ran",
            "lifeboat.exec-post=touch /data/post-ran",
        ],
    );
    let backup = env.start_lifeboat(&["backup", &volume, "--single-pass"]);
    wait_until("the writer is stopped", Duration::from_secs(60), || {
        !running(&writer)
    });
    let pid = backup.id().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let out = backup.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(running(&writer), "{stderr}");
    docker(&["exec", &writer, "test", "-f", "/data/pre-ran"]).ok();
    let post = docker(&["exec", &writer, "test", "-f", "/data/post-ran"]);
    assert_eq!(post.code, 0, "the post hook owed did not run: {stderr}");
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(
        snapshots.as_array().map(Vec::len),
        Some(0),
        "an interrupted backup left a snapshot"
    );
}

/// A journal left by a killed lifeboat starts only what is still
/// lifeboat's to start: a container someone started since it was stopped
/// is left as it is, running or stopped again.
#[test]
fn a_journal_starts_only_what_lifeboat_stopped_and_no_one_started_since() {
    let env = TestEnv::new("stop-journal");
    let sleeper = |what: &str| env.container(what, &["--init", BUSYBOX, "sleep", "3000"], true);
    let ours = sleeper("ours");
    let restarted = sleeper("restarted");
    let stopped_again = sleeper("stopped-again");
    std::thread::sleep(Duration::from_millis(50));
    let requested = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%S.%NZ"])
        .output()
        .expect("date");
    let requested = String::from_utf8_lossy(&requested.stdout)
        .trim()
        .to_string();
    for c in [&ours, &restarted, &stopped_again] {
        docker(&["stop", "-t", "1", c]).ok();
    }
    docker(&["start", &restarted]).ok();
    docker(&["start", &stopped_again]).ok();
    docker(&["stop", "-t", "1", &stopped_again]).ok();

    let stopped: Vec<serde_json::Value> = [&ours, &restarted, &stopped_again]
        .iter()
        .map(|c| serde_json::json!({"id": c, "name": c, "requested": requested, "grace": 1}))
        .collect();
    let engine = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unix:///var/run/docker.sock".to_string());
    let journal = serde_json::json!({
        "pid": 999_999_999,
        "started": 1,
        "boot": "another boot",
        "host": "elsewhere",
        "engine": engine,
        "stopped": stopped,
        "pending": [],
    });
    let dir = env.state_dir().join("journal");
    std::fs::create_dir_all(&dir).expect("journal dir");
    let path = dir.join("999999999-test.json");
    std::fs::write(&path, journal.to_string()).expect("journal");

    let run = env.lifeboat(&["ls", "--no-sizes"]).ok();
    assert!(
        run.stderr.contains(&format!("started {ours}")),
        "{}",
        run.stderr
    );
    assert!(running(&ours));
    assert!(running(&restarted), "{}", run.stderr);
    assert!(!run.stderr.contains(&format!("started {restarted}")));
    assert!(!running(&stopped_again), "started against its owner's stop");
    assert!(!path.exists(), "the journal was not cleared");
}
