//! lifeboat and restic respect each other's locks on a shared repository.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{TestEnv, restic};

fn lock_files(repo: &Path) -> Vec<String> {
    std::fs::read_dir(repo.join("locks"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for_lock(repo: &Path) -> String {
    let start = Instant::now();
    loop {
        if let Some(id) = lock_files(repo).into_iter().next() {
            return id;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no lock appeared"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn an_exclusive_restic_lock_stops_lifeboat() {
    let env = TestEnv::new("lock-excl");
    env.init();
    let volume = env.volume("data", &[]);
    env.busybox(&[format!("{volume}:/v")], "echo x > /v/f").ok();

    // `restic key passwd` holds an exclusive lock while it waits for the
    // new password on its standard input.
    let mut holder = env.hold_exclusive_restic_lock();

    let run = env.lifeboat(&["backup", &volume]);
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(run.stderr.contains("exclusive lock"), "{}", run.stderr);
    assert!(lock_files(&env.repo()).len() == 1, "lifeboat left its lock");

    // Let restic finish (keep the password), then lifeboat works.
    if let Some(mut stdin) = holder.stdin.take() {
        let _ = writeln!(stdin, "{}\n{}", env.password, env.password);
    }
    let _ = holder.wait();
    env.lifeboat(&["backup", &volume]).ok();
}

#[test]
fn restic_cannot_prune_while_lifeboat_works_and_reads_its_lock() {
    let env = TestEnv::new("lock-shared");
    env.init();
    let volume = env.random_volume("big", 200);

    let backup = env.start_lifeboat(&["backup", &volume]);
    let lock = wait_for_lock(&env.repo());
    let pid = backup.id().to_string();
    let _ = Command::new("kill").args(["-STOP", &pid]).status();

    let described = restic(&env.repo(), &env.password, &["cat", "lock", &lock]);
    let prune = restic(&env.repo(), &env.password, &["prune"]);

    let _ = Command::new("kill").args(["-CONT", &pid]).status();
    let status = backup.wait_with_output().expect("lifeboat ends").status;

    let described = described.ok();
    assert!(
        described.stdout.contains(&format!("\"pid\": {pid}")),
        "{}",
        described.stdout
    );
    assert!(
        described.stdout.contains("\"exclusive\": false"),
        "{}",
        described.stdout
    );
    assert_ne!(prune.code, 0, "restic pruned under a running backup");
    assert!(prune.stderr.contains("locked"), "{}", prune.stderr);
    assert!(status.success(), "the backup failed after being paused");
    assert!(lock_files(&env.repo()).is_empty(), "lifeboat left its lock");
    restic(&env.repo(), &env.password, &["check"]).ok();
}
