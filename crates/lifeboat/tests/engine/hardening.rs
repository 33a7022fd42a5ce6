//! Hostile and unusual volumes, and what a killed or interrupted lifeboat
//! leaves: no restore reports success unless the target holds exactly the
//! snapshot, no single volume stops the backup of the others, no log level
//! prints a credential, and every exit code is the documented one.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::roundtrip::{Times, listing};
use crate::support::{BUSYBOX, TestEnv, docker, mountpoint, restic, wait_until};

fn snapshot_ids(report: &serde_json::Value) -> Vec<String> {
    report["targets"]
        .as_array()
        .expect("targets")
        .iter()
        .map(|t| {
            t["snapshot"]["id"]
                .as_str()
                .unwrap_or_else(|| panic!("no snapshot for {}: {}", t["name"], t["error"]))
                .to_string()
        })
        .collect()
}

#[test]
fn a_forced_restore_into_a_bind_option_volume_is_exactly_the_snapshot_and_its_undo_exactly_before()
{
    // Regression: emptying the volume removed and re-created it, which
    // left the bound directory's files in place; the restore reported
    // success with stale files beside the restored ones.
    let env = TestEnv::new("hard-bindopt");
    env.init();
    let dir = env.dir.path().join("bound");
    std::fs::create_dir(&dir).expect("bound directory");
    let volume = env.name("bound");
    docker(&[
        "volume",
        "create",
        "--opt",
        "type=none",
        "--opt",
        "o=bind",
        "--opt",
        &format!("device={}", dir.display()),
        &volume,
    ])
    .ok();
    let v = format!("{volume}:/v");
    env.busybox(
        std::slice::from_ref(&v),
        "mkdir -p /v/pg_wal && echo old > /v/data && echo seg1 > /v/pg_wal/1 && ln -s data /v/link && chown -R 70:70 /v",
    )
    .ok();
    let original = listing(&env, &volume, Times::Seconds);
    env.lifeboat(&["backup", &volume]).ok();
    // Newer files beside older data: what a database must never start on.
    env.busybox(
        std::slice::from_ref(&v),
        "echo new > /v/data && echo seg2 > /v/pg_wal/2 && mkdir /v/stale && echo x > /v/stale/f",
    )
    .ok();
    let changed = listing(&env, &volume, Times::Seconds);

    let refused = env.lifeboat(&[
        "restore", "latest", "--volume", &volume, "--force", "--via", "engine",
    ]);
    assert_eq!(refused.code, 2, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains("cannot be emptied through the engine"),
        "{}",
        refused.stderr
    );
    assert_eq!(listing(&env, &volume, Times::Seconds), changed);

    let report = env
        .lifeboat(&[
            "restore", "latest", "--volume", &volume, "--force", "--json",
        ])
        .ok()
        .json();
    assert_eq!(report["writer"], "host");
    assert_eq!(listing(&env, &volume, Times::Seconds), original);

    let previous = report["previous_content"]["id"]
        .as_str()
        .expect("what was overwritten was snapshotted")
        .to_string();
    env.lifeboat(&["restore", &previous, "--volume", &volume, "--force"])
        .ok();
    assert_eq!(listing(&env, &volume, Times::Seconds), changed);

    // "Into a new volume" made with the snapshot's options would be bound
    // to the same directory: refused, and the volume it made removed.
    let copy = env.name("copy");
    for force in [&[][..], &["--force"][..]] {
        let mut args = vec!["restore", "latest", "--volume", &volume, "--to", &copy];
        args.extend(force);
        let run = env.lifeboat(&args);
        assert_eq!(run.code, 2, "{}", run.stderr);
        assert!(run.stderr.contains("directory"), "{}", run.stderr);
        assert_ne!(docker(&["volume", "inspect", &copy]).code, 0);
        assert_eq!(listing(&env, &volume, Times::Seconds), changed);
    }
}

#[test]
fn a_forced_restore_does_not_empty_a_file_system_mounted_inside_the_target() {
    let env = TestEnv::new("hard-mount");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo x > /v/f").ok();
    env.lifeboat(&["backup", &volume]).ok();
    let target = env.dir.path().join("target");
    let disk = env.tmpfs("target/disk", "size=8m");
    std::fs::write(disk.join("precious"), b"on another file system").expect("write");
    std::fs::write(target.join("mine"), b"the target's own").expect("write");
    let target_arg = target.to_string_lossy().to_string();

    let run = env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &volume,
        "--to",
        &target_arg,
        "--force",
    ]);
    // Refused before anything, the snapshot of the target included.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("mounted at"), "{}", run.stderr);
    assert!(!run.stderr.contains("pre-restore"), "{}", run.stderr);
    assert!(
        disk.join("precious").exists(),
        "the mounted file system was emptied"
    );
    assert!(target.join("mine").exists(), "the target was emptied");
}

#[test]
fn a_live_lock_of_the_host_is_kept_by_lifeboat_in_another_pid_namespace() {
    // A lifeboat in a container that shares the host's name cannot see the
    // host's processes: it must not take their locks for a dead process's.
    let env = TestEnv::new("hard-pidns");
    env.init();
    let locks = || {
        std::fs::read_dir(env.repo().join("locks"))
            .expect("locks")
            .filter_map(Result::ok)
            .count()
    };
    let mut holder = env.hold_exclusive_restic_lock();
    let run = crate::support::Run::from(
        Command::new("unshare")
            .args(["--pid", "--fork", "--mount-proc"])
            .arg(env!("CARGO_BIN_EXE_lifeboat"))
            .arg("snapshots")
            .env("LIFEBOAT_REPO", env.repo())
            .env("LIFEBOAT_PASSWORD", &env.password)
            .env("LIFEBOAT_STATE_DIR", env.state_dir())
            .env("LIFEBOAT_CACHE_DIR", env.cache_dir())
            .output()
            .expect("unshare"),
    );
    let kept = locks();
    let _ = holder.kill();
    let _ = holder.wait();
    assert_eq!(
        run.code, 7,
        "the live exclusive lock was not seen: {}",
        run.stderr
    );
    assert_eq!(kept, 1, "the live lock was removed");
}

#[test]
fn a_restore_into_a_tmpfs_volume_is_refused_and_leaves_nothing() {
    // Regression: the restore reported success, and the files were gone
    // as soon as lifeboat's helper unmounted the volume.
    let env = TestEnv::new("hard-tmpfs");
    env.init();
    let tmp = env.name("tmp");
    docker(&[
        "volume",
        "create",
        "--opt",
        "type=tmpfs",
        "--opt",
        "device=tmpfs",
        &tmp,
    ])
    .ok();
    // Backed up while a container holds it mounted, with data in it.
    env.container(
        "holder",
        &[
            "-v",
            &format!("{tmp}:/v"),
            BUSYBOX,
            "sh",
            "-c",
            "echo x > /v/f; sleep 600",
        ],
        true,
    );
    wait_until("the holder wrote", Duration::from_secs(30), || {
        docker(&[
            "exec",
            &format!("{}-holder", env.prefix),
            "test",
            "-f",
            "/v/f",
        ])
        .code
            == 0
    });
    env.lifeboat(&["backup", &tmp]).ok();
    docker(&["rm", "-f", &format!("{}-holder", env.prefix)]).ok();

    let run = env.lifeboat(&["restore", "latest", "--volume", &tmp, "--to", &tmp]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("tmpfs"), "{}", run.stderr);

    // A new volume made from its snapshot would be a tmpfs too: refused,
    // and not left behind.
    let fresh = env.name("fresh");
    let run = env.lifeboat(&["restore", "latest", "--volume", &tmp, "--to", &fresh]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_ne!(
        docker(&["volume", "inspect", &fresh]).code,
        0,
        "the refused restore left the volume it made"
    );
}

#[test]
fn backup_a_deep_b_publishes_all_three_and_the_deep_one_restores() {
    // Regression: 1,000 directories deep overflowed the stack: the whole
    // run aborted (134), later volumes got no snapshot and no report.
    let env = TestEnv::new("hard-deep");
    env.init();
    let a = env.volume("a", &[]);
    let deep = env.volume("deep", &[]);
    let b = env.volume("b", &[]);
    for v in [&a, &b] {
        env.busybox(&[format!("{v}:/v")], "echo data > /v/f").ok();
    }
    // 1,500 levels: a path of 3,000 bytes, under the system's 4,096.
    env.busybox(
        &[format!("{deep}:/v")],
        "cd /v && i=0 && while [ $i -lt 1500 ]; do mkdir d && cd d || exit 1; i=$((i+1)); done && echo bottom > f",
    )
    .ok();
    let count = |volume: &str| {
        env.busybox(
            &[format!("{volume}:/v:ro")],
            "find /v | wc -l && cat /v/$(i=0; p=d; while [ $i -lt 1499 ]; do p=$p/d; i=$((i+1)); done; echo $p)/f",
        )
        .ok()
        .stdout
    };
    assert_eq!(count(&deep), "1502\nbottom\n");

    for via in ["host", "engine"] {
        let run = env.lifeboat(&["backup", &a, &deep, &b, "--via", via, "--json"]);
        assert_eq!(run.code, 0, "{via}: {}", run.stderr);
        assert_eq!(snapshot_ids(&run.json()).len(), 3, "{via}");
        for writer in ["host", "engine"] {
            let restored = env.name(&format!("deep-{via}-{writer}"));
            env.lifeboat(&[
                "restore", "latest", "--volume", &deep, "--to", &restored, "--via", writer,
            ])
            .ok();
            assert_eq!(count(&restored), "1502\nbottom\n", "{via} then {writer}");
        }
    }
}

#[test]
fn a_socket_is_left_out_and_said_so_and_restores_on_both_paths() {
    // Regression: the host-path writer failed its own check ("does not
    // match the snapshot: app.sock") after it had overwritten the target.
    let env = TestEnv::new("hard-socket");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo data > /v/f")
        .ok();
    let socket = mountpoint(&volume).join("app.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).expect("a socket");

    let run = env.lifeboat(&["backup", &volume]).ok();
    assert!(
        run.stderr.contains("1 socket(s) left out"),
        "{}",
        run.stderr
    );
    let report = env.lifeboat(&["backup", &volume, "--json"]).ok().json();
    assert_eq!(
        report["targets"][0]["sockets"].as_array().map(Vec::len),
        Some(1)
    );
    drop(listener);

    for via in ["host", "engine"] {
        env.busybox(&[format!("{volume}:/v")], "echo changed > /v/f")
            .ok();
        env.lifeboat(&[
            "restore", "latest", "--volume", &volume, "--force", "--via", via,
        ])
        .ok();
        let content = env
            .busybox(&[format!("{volume}:/v:ro")], "ls -A /v; cat /v/f")
            .ok()
            .stdout;
        assert_eq!(content, "f\ndata\n", "{via}");
    }
}

#[test]
fn no_log_level_prints_a_credential() {
    // Regression: -vvv printed the engine client's debugging lines, whole
    // container inspections with their environment, passwords included.
    let env = TestEnv::new("hard-secrets");
    env.init();
    let secret = format!("s3cret-{}", env.prefix);
    let (container, volume) = env.database(
        "pg",
        "lifeboat-test/postgres:15",
        "/var/lib/postgresql/data",
        &[&format!("POSTGRES_PASSWORD={secret}")],
        &[],
    );
    let files = env.volume("files", &[]);
    env.busybox(&[format!("{files}:/v")], "echo x > /v/f").ok();
    let restored = env.name("restored");
    let brought_up = env.name("brought-up");
    let other_repo = env.dir.path().join("other-repo").display().to_string();
    let commands: Vec<Vec<&str>> = vec![
        vec!["init", "--repo", &other_repo],
        vec!["ls"],
        vec!["audit"],
        vec!["backup", "--plan", &volume, &files],
        vec!["backup", &volume, &files],
        vec!["snapshots"],
        vec!["restore", "latest", "--volume", &files, "--to", &restored],
        vec![
            "restore", "latest", "--volume", &volume, "--into", &container, "--force",
        ],
        vec![
            "restore",
            "latest",
            "--volume",
            &volume,
            "--to",
            &brought_up,
            "--image",
            "lifeboat-test/postgres:15",
        ],
        vec!["prune"],
    ];
    for command in commands {
        let mut args = vec!["-vvv"];
        args.extend(&command);
        let run = env.lifeboat(&args).ok();
        let output = format!("{}{}", run.stdout, run.stderr);
        assert!(
            !output.contains(&secret) && !output.contains("PASSWORD="),
            "{command:?} printed a credential:\n{output}"
        );
        assert!(output.lines().count() > 1, "{command:?} printed nothing");
    }
    let run = env
        .lifeboat_with(&["ls"], &[("LIFEBOAT_LOG", "trace")])
        .ok();
    assert!(!format!("{}{}", run.stdout, run.stderr).contains(&secret));
}

#[test]
fn a_truncated_snapshot_file_leaves_the_other_snapshots_restorable() {
    // Regression: one damaged snapshot file made every restore and
    // `snapshots` fail.
    let env = TestEnv::new("hard-damaged");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo one > /v/f")
        .ok();
    let first = snapshot_ids(&env.lifeboat(&["backup", &volume, "--json"]).ok().json())[0].clone();
    env.busybox(&[format!("{volume}:/v")], "echo two > /v/f")
        .ok();
    let second = snapshot_ids(&env.lifeboat(&["backup", &volume, "--json"]).ok().json())[0].clone();
    assert_eq!(first.len(), 64, "not a full id: {first}");

    let file = env.repo().join("snapshots").join(&second);
    let length = std::fs::metadata(&file).expect("the snapshot file").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(length / 2))
        .expect("truncate");
    // What was cached must not hide the damage.
    let _ = std::fs::remove_dir_all(env.cache_dir());

    let run = env.lifeboat(&["snapshots", "--json"]).ok();
    let listed: Vec<String> = run
        .json()
        .as_array()
        .expect("a list")
        .iter()
        .map(|s| s["snapshot"]["id"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(listed, vec![first.clone()]);
    assert!(run.stderr.contains(&second), "{}", run.stderr);

    // The full id restores, and so does `latest`, now the first.
    let restored = env.name("restored");
    env.lifeboat(&["restore", &first, "--to", &restored]).ok();
    let content = env
        .busybox(&[format!("{restored}:/v:ro")], "cat /v/f")
        .ok()
        .stdout;
    assert_eq!(content, "one\n");
    let run = env.lifeboat(&["restore", &second, "--to", &env.name("never")]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("cannot be read"), "{}", run.stderr);
}

#[test]
fn names_come_back_exactly_through_the_engine_reader() {
    // Regression: the tar reader split PAX records at newlines, so a name
    // with a newline and a byte that is not UTF-8 was stored altered, and
    // a crafted name could rename an entry.
    let env = TestEnv::new("hard-names");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(
        &[format!("{volume}:/v")],
        r#"cd /v && touch "$(printf 'new\nline-\351')" "$(printf 'x\n30 path=evil\ny')" "$(printf 'long-%0200d' 0)""#,
    )
    .ok();
    let names = |volume: &str| {
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(mountpoint(volume))
            .expect("the volume's directory")
            .map(|e| {
                std::os::unix::ffi::OsStrExt::as_bytes(e.expect("entry").file_name().as_os_str())
                    .to_vec()
            })
            .collect();
        names.sort();
        names
    };
    let original = names(&volume);
    assert_eq!(original.len(), 3);
    env.lifeboat(&["backup", &volume, "--via", "engine"]).ok();
    let restored = env.name("restored");
    env.lifeboat(&["restore", "latest", "--volume", &volume, "--to", &restored])
        .ok();
    assert_eq!(names(&restored), original);
}

#[test]
fn bad_input_gets_the_documented_exit_code_and_changes_nothing() {
    let env = TestEnv::new("hard-input");
    env.init();
    let label = format!("test={}", env.prefix);
    let volume = env.volume("data", &[&label]);
    env.busybox(&[format!("{volume}:/v")], "echo x > /v/f").ok();
    env.lifeboat(&["backup", &volume]).ok();
    let labelled = || {
        docker(&["volume", "ls", "-q", "--filter", &format!("label={label}")])
            .ok()
            .stdout
            .lines()
            .count()
    };
    // An empty name made the engine invent one, and the restore went
    // there; a name the engine refuses was its error, exit 1.
    for to in ["", "bad name", "./relative", "a"] {
        let run = env.lifeboat(&["restore", "latest", "--volume", &volume, "--to", to]);
        assert_eq!(run.code, 2, "--to {to:?}: {}", run.stderr);
        assert!(run.stderr.contains("not a volume name"), "{}", run.stderr);
    }
    assert_eq!(labelled(), 1, "a refused restore made a volume");

    let missing = env.dir.path().join("no-such-password-file");
    let run = env.lifeboat_with(
        &["snapshots"],
        &[
            ("LIFEBOAT_PASSWORD", ""),
            ("LIFEBOAT_PASSWORD_FILE", &missing.to_string_lossy()),
        ],
    );
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(
        run.stderr.contains(&*missing.to_string_lossy()),
        "{}",
        run.stderr
    );
    let empty = env.dir.path().join("empty-password-file");
    std::fs::write(&empty, b" \n").expect("an empty password file");
    let run = env.lifeboat_with(
        &["snapshots"],
        &[
            ("LIFEBOAT_PASSWORD", ""),
            ("LIFEBOAT_PASSWORD_FILE", &empty.to_string_lossy()),
        ],
    );
    assert_eq!(run.code, 6, "{}", run.stderr);
    assert!(run.stderr.contains("holds no password"), "{}", run.stderr);

    let file = env.dir.path().join("a-file");
    std::fs::write(&file, b"").expect("a file");
    let run = env.lifeboat(&["init", "--repo", &file.to_string_lossy()]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not a directory"), "{}", run.stderr);
}

#[test]
fn a_reader_that_goes_away_does_not_stop_lifeboat() {
    // Regression: `lifeboat backup X | head -1` panicked (exit 101).
    let env = TestEnv::new("hard-pipe");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo x > /v/f").ok();
    let mut child = Command::new(env!("CARGO_BIN_EXE_lifeboat"))
        .args(["backup", &volume])
        .env("LIFEBOAT_REPO", env.repo())
        .env("LIFEBOAT_PASSWORD", &env.password)
        .env("LIFEBOAT_STATE_DIR", env.state_dir())
        .env("LIFEBOAT_CACHE_DIR", env.cache_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start lifeboat");
    // The reader goes away before anything is written.
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let snapshots = env.lifeboat(&["snapshots", "--json"]).ok().json();
    assert_eq!(snapshots.as_array().map(Vec::len), Some(1));
}

#[test]
fn a_new_repository_is_its_owners_alone_and_restic_reads_the_same_password_file() {
    let env = TestEnv::new("hard-repo");
    let password_file = env.dir.path().join("password");
    // White space around the password: restic trims it.
    std::fs::write(&password_file, format!("  {}  \n", env.password)).expect("password file");
    let file = password_file.to_string_lossy().to_string();
    let with_file = [
        ("LIFEBOAT_PASSWORD", ""),
        ("LIFEBOAT_PASSWORD_FILE", &*file),
    ];
    env.lifeboat_with(&["init"], &with_file).ok();
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&env.repo()), 0o700);
    for sub in ["keys", "snapshots", "index", "data", "locks"] {
        assert_eq!(mode(&env.repo().join(sub)), 0o700, "{sub}");
    }
    let run = Command::new("restic")
        .arg("--repo")
        .arg(env.repo())
        .args(["--no-cache", "--password-file", &file, "snapshots"])
        .output()
        .expect("restic");
    assert!(
        run.status.success(),
        "restic cannot open it with the same file: {}",
        String::from_utf8_lossy(&run.stderr)
    );
    env.lifeboat_with(&["snapshots"], &with_file).ok();
}

#[test]
fn after_a_sigkill_one_more_command_leaves_restic_nothing_to_unlock_and_no_partial_pack() {
    let env = TestEnv::new("hard-kill");
    env.init();
    let volume = env.random_volume("big", 200);
    let temporaries = || {
        std::fs::read_dir(env.repo().join("data"))
            .expect("data")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .count()
    };
    let mut child = env.start_lifeboat(&["backup", &volume]);
    wait_until("a pack is being written", Duration::from_secs(60), || {
        temporaries() > 0
    });
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(temporaries() > 0, "the killed backup left no partial pack");
    assert!(
        std::fs::read_dir(env.repo().join("locks"))
            .expect("locks")
            .count()
            > 0,
        "the killed backup left no lock"
    );

    env.lifeboat(&["snapshots"]).ok();
    assert_eq!(temporaries(), 0, "the partial pack stayed");
    restic(&env.repo(), &env.password, &["check"]).ok();
}

#[test]
fn a_forced_restore_that_fails_puts_back_what_was_there() {
    // Regression: a failed --force restore (here: the disk fills) left the
    // target half written.
    let env = TestEnv::new("hard-undo");
    env.init();
    let small = env.tmpfs("small", "size=16m");
    let target = small.join("target");
    std::fs::create_dir(&target).expect("target");
    let target_arg = target.to_string_lossy().to_string();
    env.busybox(
        &[format!("{target_arg}:/v")],
        "mkdir /v/keep && echo precious > /v/keep/file && ln -s keep/file /v/link && dd if=/dev/urandom of=/v/blob bs=1M count=4 2>/dev/null",
    )
    .ok();
    let before = listing(&env, &target_arg, Times::Exact);
    let big = env.random_volume("big", 24);
    env.lifeboat(&["backup", &big]).ok();

    let run = env.lifeboat(&[
        "restore",
        "latest",
        "--volume",
        &big,
        "--to",
        &target_arg,
        "--force",
    ]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("holds again what it held before"),
        "{}",
        run.stderr
    );
    assert_eq!(listing(&env, &target_arg, Times::Exact), before);
}

#[test]
fn an_interrupted_forced_restore_puts_back_what_was_there() {
    // Regression: Ctrl-C during a restore killed lifeboat where it stood,
    // the target half written.
    let env = TestEnv::new("hard-restore-int");
    env.init();
    let big = env.random_volume("big", 400);
    env.lifeboat(&["backup", &big]).ok();
    let target = env.volume("target", &[]);
    env.busybox(
        &[format!("{target}:/v")],
        "echo precious > /v/keep && ln -s keep /v/link",
    )
    .ok();
    let before = listing(&env, &target, Times::Exact);

    let child = env.start_lifeboat(&[
        "restore", "latest", "--volume", &big, "--to", &target, "--force",
    ]);
    let written = mountpoint(&target).join("big");
    wait_until("the restore writes", Duration::from_secs(60), || {
        std::fs::metadata(&written).is_ok_and(|m| m.len() > 0)
    });
    // Paused while it writes, so that the signal cannot come too late.
    signal_paused(child.id(), "-INT");
    let out = child.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        stderr.contains("holds again what it held before"),
        "{stderr}"
    );
    assert_eq!(listing(&env, &target, Times::Exact), before);
}

#[test]
fn a_restore_interrupted_while_it_snapshots_the_target_changes_nothing() {
    let env = TestEnv::new("hard-pre-int");
    env.init();
    let small = env.volume("small", &[]);
    env.busybox(&[format!("{small}:/v")], "echo new > /v/f")
        .ok();
    env.lifeboat(&["backup", &small]).ok();
    let target = env.random_volume("target", 400);
    env.busybox(&[format!("{target}:/v")], "ln -s big /v/link")
        .ok();
    let before = listing(&env, &target, Times::Exact);
    let snapshots = || {
        env.lifeboat(&["snapshots", "--json"])
            .ok()
            .json()
            .as_array()
            .map(Vec::len)
    };
    let count = snapshots();

    let child = env.start_lifeboat(&[
        "restore", "latest", "--volume", &small, "--to", &target, "--force",
    ]);
    // The snapshot of what the target holds is being written.
    wait_until(
        "the pre-restore snapshot runs",
        Duration::from_secs(60),
        || {
            std::fs::read_dir(env.repo().join("data")).is_ok_and(|d| {
                d.filter_map(Result::ok)
                    .any(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            })
        },
    );
    signal_paused(child.id(), "-INT");
    let out = child.wait_with_output().expect("lifeboat ends");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("before anything was written"), "{stderr}");
    assert_eq!(listing(&env, &target, Times::Exact), before);
    assert_eq!(
        snapshots(),
        count,
        "the stopped pre-restore snapshot was published"
    );
}

#[test]
fn a_volume_made_again_on_its_old_directory_is_restored_with_force() {
    // Disaster recovery: the volume is gone, its bound directory still
    // holds old files. Made again from the snapshot, it is not empty: that
    // takes --force, which snapshots the old files first.
    let env = TestEnv::new("hard-remade");
    env.init();
    let dir = env.dir.path().join("bound");
    std::fs::create_dir(&dir).expect("bound directory");
    let volume = env.name("bound");
    let create = |name: &str| {
        docker(&[
            "volume",
            "create",
            "--opt",
            "type=none",
            "--opt",
            "o=bind",
            "--opt",
            &format!("device={}", dir.display()),
            name,
        ])
        .ok();
    };
    create(&volume);
    std::fs::write(dir.join("data"), b"good").expect("write");
    env.lifeboat(&["backup", &volume]).ok();
    std::fs::write(dir.join("data"), b"damaged").expect("write");
    docker(&["volume", "rm", &volume]).ok();

    let run = env.lifeboat(&["restore", "latest", "--volume", &volume]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("holds files already"), "{}", run.stderr);
    env.lifeboat(&["restore", "latest", "--volume", &volume, "--force"])
        .ok();
    assert_eq!(std::fs::read(dir.join("data")).expect("read"), b"good");
}

#[test]
fn an_interrupted_engine_archive_backup_leaves_no_helper() {
    // Regression: the helper container stayed until the next run and kept
    // `docker volume rm` from removing the volume.
    let env = TestEnv::new("hard-sigint");
    env.init();
    // 8 GiB of holes: nothing on disk, but the engine's archive streams
    // every zero, so the backup is still running when the signal comes,
    // however fast or loaded the machine.
    let volume = env.volume("big", &[]);
    env.busybox(&[format!("{volume}:/v")], "truncate -s 8G /v/big")
        .ok();
    let child = env.start_lifeboat(&["backup", &volume, "--via", "engine"]);
    let owner = format!("label=lifeboat.helper.owner={}/{}", hostname(), child.id());
    let helpers = || docker(&["ps", "-aq", "--filter", &owner]).ok().stdout;
    wait_until("the helper exists", Duration::from_secs(60), || {
        !helpers().trim().is_empty()
    });
    signal_paused(child.id(), "-INT");
    let signalled = std::time::Instant::now();
    let out = child.wait_with_output().expect("lifeboat ends");
    assert_eq!(
        out.status.code(),
        Some(130),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Not a speed target: a hang. Removing the helper waited for the
    // engine to stream the whole volume (40 s and more for these zeros),
    // since the engine holds a helper while its archive stream is open.
    assert!(
        signalled.elapsed() < Duration::from_secs(30),
        "lifeboat took {:?} to end after SIGINT",
        signalled.elapsed()
    );
    assert_eq!(helpers().trim(), "", "a helper container stayed");
    docker(&["volume", "rm", &volume]).ok();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_string()
}

/// Stops a process, sends it `signal`, and lets it go on: it is where it
/// was when the signal was sent, however busy the machine.
fn signal_paused(pid: u32, signal: &str) {
    for step in ["-STOP", signal, "-CONT"] {
        let sent = Command::new("kill")
            .args([step, &pid.to_string()])
            .status()
            .expect("kill");
        assert!(sent.success(), "kill {step} {pid}");
    }
}
