//! Bad input gets a clear error and a documented exit code, and loses
//! nothing.

use std::process::Command;

use crate::support::{TestEnv, restic};

#[test]
fn an_unknown_volume_is_a_usage_error() {
    let env = TestEnv::new("bad-unknown");
    let missing = format!("{}-missing", env.prefix);
    let run = env.lifeboat(&["backup", &missing]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains(&missing), "{}", run.stderr);
    assert!(
        !env.repo().exists(),
        "a failed request created a repository"
    );
}

#[test]
fn an_unreachable_engine_names_what_was_tried() {
    let env = TestEnv::new("bad-engine");
    for host in ["unix:///nonexistent/docker.sock", "tcp://127.0.0.1:1"] {
        let run = env.lifeboat_with(&["ls"], &[("DOCKER_HOST", host)]);
        assert_eq!(run.code, 4, "{host}: {}", run.stderr);
        assert!(run.stderr.contains(host), "{}", run.stderr);
        assert_eq!(run.stderr.trim().lines().count(), 1, "{}", run.stderr);
    }
}

#[test]
fn repository_errors_have_their_own_exit_codes() {
    let env = TestEnv::new("bad-repo");
    let run = env.lifeboat(&["snapshots"]);
    assert_eq!(run.code, 5, "missing repository: {}", run.stderr);
    assert!(run.stderr.contains("lifeboat init"), "{}", run.stderr);

    env.init();
    let run = env.lifeboat_with(&["snapshots"], &[("LIFEBOAT_PASSWORD", "wrong")]);
    assert_eq!(run.code, 6, "wrong password: {}", run.stderr);
    assert!(run.stderr.contains("password"), "{}", run.stderr);

    let run = env.lifeboat(&["init"]);
    assert_ne!(run.code, 0, "init over an existing repository");
    assert!(run.stderr.contains("already exists"), "{}", run.stderr);
    env.lifeboat(&["snapshots"]).ok();
}

#[test]
fn an_unwritable_repository_fails_cleanly() {
    let env = TestEnv::new("bad-readonly");
    let dir = env.tmpfs("ro-repo", "size=64m");
    let repo = dir.join("repo");
    let repo_arg = repo.to_string_lossy().to_string();
    env.lifeboat(&["init", "--repo", &repo_arg]).ok();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo data > /v/f")
        .ok();

    remount(&dir, "remount,ro");
    let run = env.lifeboat(&["backup", &volume, "--repo", &repo_arg]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("FAILED"), "{}", run.stderr);
    assert!(
        run.stderr.contains("Read-only file system"),
        "{}",
        run.stderr
    );
    let fresh = dir.join("other");
    let run = env.lifeboat(&["init", "--repo", &fresh.to_string_lossy()]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&*fresh.to_string_lossy()),
        "{}",
        run.stderr
    );

    remount(&dir, "remount,rw");
    env.lifeboat(&["backup", &volume, "--repo", &repo_arg]).ok();
    restic(&repo, &env.password, &["check"]).ok();
}

#[test]
fn a_full_repository_disk_fails_cleanly_and_recovers() {
    let env = TestEnv::new("bad-full");
    let dir = env.tmpfs("full-repo", "size=12m");
    let repo = dir.join("repo");
    let repo_arg = repo.to_string_lossy().to_string();
    env.lifeboat(&["init", "--repo", &repo_arg]).ok();
    let volume = env.volume("big", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        "dd if=/dev/urandom of=/v/random bs=1M count=40 2>/dev/null",
    )
    .ok();

    let run = env.lifeboat(&["backup", &volume, "--repo", &repo_arg, "--json"]);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let snapshots = env
        .lifeboat(&["snapshots", "--repo", &repo_arg, "--json"])
        .ok();
    assert_eq!(
        snapshots.json().as_array().map(Vec::len),
        Some(0),
        "a failed backup left a snapshot"
    );
    restic(&repo, &env.password, &["check"]).ok();

    remount(&dir, "remount,size=256m");
    env.lifeboat(&["backup", &volume, "--repo", &repo_arg]).ok();
    restic(&repo, &env.password, &["check", "--read-data"]).ok();
}

fn remount(dir: &std::path::Path, options: &str) {
    let status = Command::new("mount")
        .args(["-o", options])
        .arg(dir)
        .status()
        .expect("mount");
    assert!(status.success(), "mount -o {options} {}", dir.display());
}

#[test]
fn a_backup_where_some_volumes_fail_is_partial() {
    let env = TestEnv::new("bad-partial");
    env.init();
    let good = env.volume("good", &[]);
    env.busybox(&[format!("{good}:/v")], "echo ok > /v/f").ok();
    // A bind mount whose source vanished after its container was created:
    // the engine still lists it, but nothing can read it.
    let gone = env.dir.path().join("gone");
    std::fs::create_dir(&gone).expect("bind source");
    let gone_arg = gone.to_string_lossy().to_string();
    env.container(
        "app",
        &[
            "-v",
            &format!("{gone_arg}:/data"),
            crate::support::BUSYBOX,
            "true",
        ],
        false,
    );
    std::fs::remove_dir(&gone).expect("remove bind source");

    let run = env.lifeboat(&["backup", &good, &gone_arg, "--json"]);
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert!(report["targets"][0]["snapshot"]["id"].is_string());
    assert!(report["targets"][0]["error"].is_null());
    assert!(report["targets"][1]["snapshot"].is_null());
    let error = report["targets"][1]["error"].as_str().expect("an error");
    assert!(error.contains(&gone_arg), "{error}");
    // The failure keeps its class for scripts: the engine refused to
    // mount a source that is gone.
    assert!(report["targets"][0]["failure"].is_null());
    assert_eq!(
        report["targets"][1]["failure"], "engine",
        "{}",
        report["targets"][1]
    );
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1));

    // Only failures: exit 1.
    let run = env.lifeboat(&["backup", &gone_arg]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("FAILED"), "{}", run.stderr);
}

#[test]
fn restore_refuses_system_paths_engine_storage_and_directories_in_use() {
    let env = TestEnv::new("bad-restore-to");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo x > /v/f").ok();
    env.lifeboat(&["backup", &volume]).ok();

    for target in ["/etc", "/", "/usr"] {
        let run = env.lifeboat(&[
            "restore", "latest", "--volume", &volume, "--to", target, "--force",
        ]);
        assert_eq!(run.code, 2, "{target}: {}", run.stderr);
        assert!(run.stderr.contains("host system"), "{}", run.stderr);
    }
    let storage = crate::support::mountpoint(&volume);
    let run = env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &volume,
        "--to",
        &storage.to_string_lossy(),
        "--force",
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("engine's storage"), "{}", run.stderr);

    // A directory a running container bind-mounts (here: its parent).
    let dir = env.dir.path().join("served");
    std::fs::create_dir(&dir).expect("dir");
    env.container(
        "web",
        &[
            "-v",
            &format!("{}:/srv", env.dir.path().display()),
            crate::support::BUSYBOX,
            "sleep",
            "300",
        ],
        true,
    );
    let run = env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &volume,
        "--to",
        &dir.to_string_lossy(),
    ]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("in use by running container"),
        "{}",
        run.stderr
    );
    assert_eq!(
        std::fs::read_dir(&dir).expect("dir").count(),
        0,
        "a refused restore wrote"
    );
}
