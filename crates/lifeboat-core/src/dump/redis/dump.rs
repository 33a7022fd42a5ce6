//! Taking the dump: a fresh RDB saved, pinned, checked and read.

use super::*;

/// What the backup needs to run a Redis dump.
pub(super) struct Prepared {
    pub(crate) files: Vec<(String, DumpOpen)>,
    /// The hard link pinning the saved file; remove it after.
    pub(crate) pinned: String,
}

/// Saves, pins, checks and describes the RDB.
pub(super) async fn prepare(
    engine: &Engine,
    from: &DumpFrom,
    log: &SharedLog,
    progress: &Arc<TransferProgress>,
    journal: &mut Journal,
) -> Result<Prepared> {
    let container = &from.container;
    let dir = config(engine, container, "dir").await?;
    let file = config(engine, container, "dbfilename").await?;
    if dir.is_empty() || file.is_empty() {
        return Err(Error::DumpFailed(format!(
            "redis in container {container} did not say where it saves (dir {dir:?}, dbfilename {file:?})"
        )));
    }
    // Read before anything is left in the data directory.
    let version = cli_output(engine, container, &["INFO", "server"]).await?;
    let appendonly = config(engine, container, "appendonly").await?;
    save(engine, container).await?;

    let pinned = format!("{dir}/.lifeboat-{}.rdb", crate::random_hex(6));
    // The link is a full copy's worth of disk once the live file is
    // replaced: whoever ends this run removes it, the journal if need be.
    journal.owe(std::slice::from_ref(&unpin(container, &pinned)))?;
    let source = format!("{dir}/{file}");
    let pin = ["ln", "-f", "--", source.as_str(), pinned.as_str()].map(String::from);
    let checked = async {
        run(engine, container, &pin, "pinning the saved RDB").await?;
        let check = ["redis-check-rdb".to_string(), pinned.clone()];
        let out = run(engine, container, &check, "redis-check-rdb").await?;
        parse_check(&String::from_utf8_lossy(&out)).ok_or_else(|| {
            Error::DumpFailed(format!(
                "redis-check-rdb in container {container} did not find the saved RDB sound"
            ))
        })
    }
    .await;
    let keys = match checked {
        Ok(keys) => keys,
        Err(e) => {
            remove_pinned(engine, container, &pinned, journal).await;
            return Err(e);
        }
    };
    let manifest = DumpManifest {
        database: Some(Database::Redis),
        container: container.clone(),
        image: from.image.clone(),
        data_path: from.data_path.clone(),
        server_version: info_field(&version, "redis_version")
            .unwrap_or_default()
            .to_string(),
        counts: "exact: keys in the saved RDB that do not expire on loading, as redis-check-rdb read them".into(),
        databases: vec![DatabaseDump {
            name: "redis".into(),
            file: RDB_FILE.into(),
            tables: BTreeMap::new(),
            keys: Some(keys),
        }],
        settings: [("appendonly".to_string(), appendonly)].into(),
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Other(e.to_string()))?;
    let files = vec![
        (
            RDB_FILE.to_string(),
            DumpOpen::Command(Box::new(CommandOpen {
                engine: engine.clone(),
                handle: tokio::runtime::Handle::current(),
                container: container.clone(),
                command: vec!["cat".into(), "--".into(), pinned.clone()],
                what: "reading the saved RDB".into(),
                tap: None,
                log: log.clone(),
                progress: progress.clone(),
            })),
        ),
        (crate::dump::MANIFEST.to_string(), DumpOpen::Bytes(json)),
    ];
    Ok(Prepared { files, pinned })
}

/// Runs a background save and waits for it to end successfully.
pub(super) async fn save(engine: &Engine, container: &str) -> Result<()> {
    // A save already running (an automatic one) must end first: BGSAVE
    // refuses to start a second.
    wait_for_saves(engine, container).await?;
    let before = cli_output(engine, container, &["INFO", "persistence"]).await?;
    let saves_before = info_field(&before, "rdb_saves").and_then(|n| n.parse::<u64>().ok());
    let lastsave_before: u64 = cli_output(engine, container, &["LASTSAVE"])
        .await?
        .parse()
        .unwrap_or(0);
    if saves_before.is_none() {
        // Without a save counter (before Redis 7), LASTSAVE tells a new
        // save from an old one only once the second has changed.
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    // SCHEDULE waits for an append-only rewrite in progress instead of
    // failing.
    cli_output(engine, container, &["BGSAVE", "SCHEDULE"]).await?;
    let started = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let info = cli_output(engine, container, &["INFO", "persistence"]).await?;
        let in_progress = info_field(&info, "rdb_bgsave_in_progress") != Some("0");
        let scheduled = info_field(&info, "rdb_bgsave_scheduled") == Some("1")
            || info_field(&info, "aof_rewrite_in_progress") == Some("1");
        let done = match (
            saves_before,
            info_field(&info, "rdb_saves").and_then(|n| n.parse::<u64>().ok()),
        ) {
            (Some(before), Some(now)) => now > before,
            _ => {
                let last: u64 = cli_output(engine, container, &["LASTSAVE"])
                    .await?
                    .parse()
                    .unwrap_or(0);
                last > lastsave_before
            }
        };
        let status_ok = info_field(&info, "rdb_last_bgsave_status") == Some("ok");
        if !in_progress && !scheduled {
            if done && status_ok {
                return Ok(());
            }
            // A failed save does not move LASTSAVE: it would never be
            // "done"; its status says so.
            if !status_ok || started.elapsed() > Duration::from_secs(5) {
                return Err(Error::DumpFailed(format!(
                    "BGSAVE in container {container} failed (rdb_last_bgsave_status: {}); see the server's log",
                    info_field(&info, "rdb_last_bgsave_status").unwrap_or("unknown")
                )));
            }
        }
        if started.elapsed() > SAVE_TIMEOUT {
            return Err(Error::DumpFailed(format!(
                "BGSAVE in container {container} did not finish within {SAVE_TIMEOUT:?}"
            )));
        }
    }
}

/// Waits until no background save runs.
pub(super) async fn wait_for_saves(engine: &Engine, container: &str) -> Result<()> {
    let started = Instant::now();
    loop {
        let info = cli_output(engine, container, &["INFO", "persistence"]).await?;
        if info_field(&info, "rdb_bgsave_in_progress") != Some("1") {
            return Ok(());
        }
        if started.elapsed() > SAVE_TIMEOUT {
            return Err(Error::DumpFailed(format!(
                "a save in container {container} did not finish within {SAVE_TIMEOUT:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The number of keys `redis-check-rdb` read that loading keeps (those
/// already expired are dropped on loading), when it found the file sound.
pub(super) fn parse_check(output: &str) -> Option<u64> {
    if !output.contains("RDB looks OK") {
        return None;
    }
    let field = |suffix: &str| {
        output.lines().find_map(|l| {
            let rest = l.split("[info]").nth(1)?.trim();
            rest.strip_suffix(suffix)?.trim().parse::<u64>().ok()
        })
    };
    let read = field("keys read")?;
    Some(read.saturating_sub(field("already expired").unwrap_or(0)))
}

/// The command that removes the pinning link.
pub(super) fn unpin(container: &str, pinned: &str) -> Pending {
    Pending::new(
        container,
        ["rm", "-f", "--", pinned].map(String::from).to_vec(),
        "removing the RDB pinned for a backup".to_string(),
    )
}

/// Removes the pinning link; the journal stops owing it.
pub(super) async fn remove_pinned(
    engine: &Engine,
    container: &str,
    pinned: &str,
    journal: &mut Journal,
) {
    let command = unpin(container, pinned);
    match run(
        engine,
        container,
        &command.command,
        "removing the pinned RDB",
    )
    .await
    {
        Ok(_) => {
            if let Err(e) = journal.paid(&command) {
                tracing::warn!("{e}");
            }
        }
        Err(e) => tracing::warn!("{e}"),
    }
}

/// The keys the container holds, if any.
pub(super) async fn holds(engine: &Engine, container: &str) -> Result<Vec<String>> {
    let keys = count_keys(engine, container).await?;
    Ok(if keys > 0 {
        vec![format!("{keys} keys")]
    } else {
        Vec::new()
    })
}

pub(super) async fn count_keys(engine: &Engine, container: &str) -> Result<u64> {
    let keyspace = cli_output(engine, container, &["INFO", "keyspace"]).await?;
    Ok(keyspace
        .lines()
        .filter_map(|l| {
            let keys = l
                .split(':')
                .nth(1)?
                .split(',')
                .next()?
                .strip_prefix("keys=")?;
            keys.parse::<u64>().ok()
        })
        .sum())
}
