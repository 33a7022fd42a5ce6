use super::*;

#[test]
fn compressed_lock_files_are_read() {
    let key = MasterKey::new();
    let json = br#"{"time":"2026-01-01T00:00:00Z","exclusive":true,"hostname":"h","username":"u","pid":1}"#;
    let mut packed = vec![2u8];
    packed.extend(zstd::encode_all(&json[..], 3).expect("compress"));
    let sealed = seal(&key, &packed);
    let info: LockInfo =
        serde_json::from_slice(&unseal(&key, &sealed).expect("opens")).expect("json");
    assert!(info.exclusive);
}

#[test]
fn staleness_follows_restic() {
    let mut info = LockInfo::ours(true);
    assert!(!info.is_stale(), "our own live process");
    info.time = "2001-01-01T00:00:00Z".into();
    assert!(info.is_stale(), "older than thirty minutes");
    let mut gone = LockInfo::ours(true);
    gone.pid = i64::from(i32::MAX);
    assert!(gone.is_stale(), "a dead process on this host");
    let mut elsewhere = gone.clone();
    elsewhere.hostname = "some-other-host".into();
    assert!(
        !elsewhere.is_stale(),
        "processes elsewhere cannot be checked"
    );
}

#[test]
fn locks_of_dead_processes_of_this_host_are_removed() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let key = MasterKey::new();
    std::fs::create_dir_all(dir.path().join("locks")).map_err(|e| Error::io("locks", e))?;
    let mut dead = LockInfo::ours(true);
    dead.pid = i64::from(i32::MAX);
    let dead = write_lock(dir.path(), &key, &dead)?;
    let mut elsewhere = LockInfo::ours(false);
    elsewhere.hostname = "some-other-host".into();
    elsewhere.pid = i64::from(i32::MAX);
    let elsewhere = write_lock(dir.path(), &key, &elsewhere)?;
    // The dead exclusive lock no longer stands in the way.
    let guard = lock_shared(dir.path(), &key, "test")?.expect("locked");
    assert!(!dead.exists(), "the dead process's lock stayed");
    assert!(elsewhere.exists(), "another host's lock was removed");
    drop(guard);
    Ok(())
}

#[test]
fn the_exclusive_lock_waits_for_others_but_not_for_its_own_shared_lock() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let key = MasterKey::new();
    let locks = dir.path().join("locks");
    let count = || std::fs::read_dir(&locks).map_or(0, |d| d.count());
    let never = || false;
    // The repository handle's own shared lock does not stand in the
    // way; another shared lock of this very process does.
    let shared = lock_shared(dir.path(), &key, "test")?.expect("a lock");
    let exclusive = lock_exclusive(
        dir.path(),
        &key,
        "test",
        Some(&shared),
        Duration::ZERO,
        &|_| {},
        &never,
    )?;
    assert_eq!(count(), 2);
    drop(exclusive);
    let refused = lock_exclusive(
        dir.path(),
        &key,
        "test",
        None,
        Duration::ZERO,
        &|_| {},
        &never,
    );
    assert!(matches!(refused, Err(Error::RepositoryLocked { .. })));
    drop(shared);
    assert_eq!(count(), 0, "locks left behind");
    // Another host's backup does, for as long as the wait.
    let mut theirs = LockInfo::ours(false);
    theirs.hostname = "backup-host".into();
    let backup = write_lock(dir.path(), &key, &theirs)?;
    let told = Mutex::new(Vec::new());
    let started = Instant::now();
    let err = lock_exclusive(
        dir.path(),
        &key,
        "test",
        None,
        Duration::from_millis(600),
        &|why| told.lock().expect("told").push(why.to_string()),
        &never,
    )
    .expect_err("locked");
    assert!(started.elapsed() >= Duration::from_millis(600));
    assert!(matches!(err, Error::RepositoryLocked { .. }), "{err}");
    assert!(err.to_string().contains("backup-host"), "{err}");
    let told = told.into_inner().expect("told");
    assert_eq!(told.len(), 1, "{told:?}");
    assert!(told[0].contains("for a lock of"), "{told:?}");
    assert_eq!(count(), 1, "the refused exclusive lock was left");
    // Asked to stop, it stops waiting.
    let stopped = lock_exclusive(
        dir.path(),
        &key,
        "test",
        None,
        Duration::from_secs(60),
        &|_| {},
        &|| true,
    );
    assert!(matches!(stopped, Err(Error::Interrupted(_))));
    std::fs::remove_file(&backup).map_err(|e| Error::io(&backup, e))?;
    // A lock file nobody can read may be anyone's: it counts.
    let garbage = locks.join("0".repeat(64));
    std::fs::write(&garbage, b"not a lock").map_err(|e| Error::io(&garbage, e))?;
    let err = lock_exclusive(
        dir.path(),
        &key,
        "test",
        None,
        Duration::ZERO,
        &|_| {},
        &never,
    )
    .expect_err("an unreadable lock counts");
    assert!(err.to_string().contains("unreadable lock file"), "{err}");
    assert_eq!(count(), 1);
    Ok(())
}

#[test]
fn of_two_exclusive_lockers_waiting_for_each_other_one_goes_on() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let key = MasterKey::new();
    let never = || false;
    let both = std::thread::scope(|s| {
        let run = || {
            s.spawn(|| {
                lock_exclusive(
                    dir.path(),
                    &key,
                    "test",
                    None,
                    Duration::from_secs(20),
                    &|_| {},
                    &never,
                )
                // Held a moment, then let go for the other.
                .map(|lock| {
                    std::thread::sleep(Duration::from_millis(300));
                    drop(lock);
                })
            })
        };
        let (a, b) = (run(), run());
        (a.join(), b.join())
    });
    assert!(
        matches!(both, (Ok(Ok(_)), Ok(Ok(_)))),
        "both must get the lock in turn"
    );
    Ok(())
}

#[test]
fn an_exclusive_lock_is_refused_and_ours_is_removed() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let key = MasterKey::new();
    std::fs::create_dir_all(dir.path().join("locks")).map_err(|e| Error::io("locks", e))?;
    let mut theirs = LockInfo::ours(true);
    theirs.hostname = "prune-host".into();
    let held = write_lock(dir.path(), &key, &theirs)?;
    let err = lock_shared(dir.path(), &key, "test").expect_err("locked");
    assert!(matches!(err, Error::RepositoryLocked { .. }), "{err}");
    assert!(err.to_string().contains("prune-host"), "{err}");
    let left: Vec<_> = std::fs::read_dir(dir.path().join("locks"))
        .map_err(|e| Error::io("locks", e))?
        .collect();
    assert_eq!(left.len(), 1, "our lock was not removed");

    std::fs::remove_file(held).map_err(|e| Error::io("lock", e))?;
    let guard = lock_shared(dir.path(), &key, "test")?.expect("a writable repository is locked");
    assert_eq!(
        std::fs::read_dir(dir.path().join("locks"))
            .map_err(|e| Error::io("locks", e))?
            .count(),
        1
    );
    drop(guard);
    assert_eq!(
        std::fs::read_dir(dir.path().join("locks"))
            .map_err(|e| Error::io("locks", e))?
            .count(),
        0,
        "the lock outlived its guard"
    );
    Ok(())
}
