//! Restoring the RDB: staged in the data directory, swapped in with a
//! restart, the keys counted; the previous files kept until then.

use super::*;

/// How a running Redis persists, as far as a restore must know.
pub(super) struct Persistence {
    pub(super) dir: String,
    pub(super) rdb: String,
    pub(super) aof: bool,
    /// The append-only directory (Redis 7), empty before.
    pub(super) aof_dir: String,
    pub(super) aof_file: String,
    /// `uid:gid` of the data directory.
    pub(super) owner: (u64, u64),
}

/// Swaps the container's data for the dump's RDB with a restart and checks
/// the key count.
///
/// The RDB is staged in the data directory first, while Redis runs. Then,
/// with saving and the append-only file off so that nothing writes over
/// the swap, the current files are moved aside and the staged ones into
/// their place, and Redis restarts on them. Until the restart begins, the
/// journal owes a rollback (files and settings back as they were), run on
/// any failure, interruption, or by the next lifeboat command after a kill;
/// once it begins, the restored files are in place and a restart of any
/// kind loads them. The files moved aside are removed only once the
/// restored key count matches the backup's.
pub(super) async fn restore_into(
    engine: &Engine,
    container: &str,
    auto_remove: bool,
    manifest: &DumpManifest,
    dumps: &crate::dump::DumpFiles,
    journal: &mut Journal,
) -> Result<Vec<RestoredDatabase>> {
    if auto_remove {
        return Err(Error::Refused(format!(
            "container {container} was started with --rm: the restart a Redis restore needs would remove it; restore into a container without --rm"
        )));
    }
    // Everything that can be read is read before anything changes.
    let node = dumps.node(RDB_FILE).await?;
    let dir = config(engine, container, "dir").await?;
    let owner = {
        let out = run(
            engine,
            container,
            &["stat".into(), "-c".into(), "%u:%g".into(), dir.clone()],
            "reading the data directory's owner",
        )
        .await?;
        let text = String::from_utf8_lossy(&out);
        let (u, g) = text.trim().split_once(':').unwrap_or(("0", "0"));
        (u.parse().unwrap_or(0), g.parse().unwrap_or(0))
    };
    let p = Persistence {
        rdb: config(engine, container, "dbfilename").await?,
        aof: config(engine, container, "appendonly").await? == "yes",
        aof_dir: config(engine, container, "appenddirname")
            .await
            .unwrap_or_default(),
        aof_file: config(engine, container, "appendfilename").await?,
        dir,
        owner,
    };
    let save_setting = config(engine, container, "save").await?;
    let names: Vec<String> = [&p.rdb, &p.aof_dir, &p.aof_file]
        .into_iter()
        .filter(|n| !n.is_empty() && !n.contains(['/', '\n']))
        .cloned()
        .collect();
    let token = crate::random_hex(4);
    let staging = format!(".lifeboat-restore-{token}");
    let aside = format!("{}/.lifeboat-before-restore-{token}", p.dir);

    let staged = stage(engine, container, &p, &staging, dumps, node).await;
    let rollback = {
        let mut args = vec![
            p.dir.as_str(),
            aside.as_str(),
            staging.as_str(),
            save_setting.as_str(),
            if p.aof { "yes" } else { "no" },
        ];
        args.extend(names.iter().map(String::as_str));
        Pending::new(
            container,
            with_credentials(ROLLBACK, &args),
            "putting back the data and settings of an unfinished restore".to_string(),
        )
    };
    if let Err(e) = staged {
        let _ = run(
            engine,
            container,
            &rollback.command,
            "removing the staged RDB",
        )
        .await;
        return Err(e);
    }
    journal.owe(std::slice::from_ref(&rollback))?;
    let swapped = async {
        cli_output(engine, container, &["CONFIG", "SET", "save", ""]).await?;
        cli_output(engine, container, &["CONFIG", "SET", "appendonly", "no"]).await?;
        let mut args = vec![p.dir.as_str(), aside.as_str(), staging.as_str()];
        args.extend(names.iter().map(String::as_str));
        run(
            engine,
            container,
            &crate::dump::shell(SWAP, &args),
            "swapping in the restored files",
        )
        .await
    }
    .await;
    if let Err(e) = swapped {
        let undone = run(engine, container, &rollback.command, "rolling back").await;
        return match undone {
            Ok(_) => {
                journal.paid(&rollback)?;
                Err(e)
            }
            Err(undo) => Err(e.context(|e| format!(
                "{e}; putting the data back failed too ({undo}): the next lifeboat command retries; the files are in {aside} inside the container"
            ))),
        };
    }
    // From here a restart loads the restored files, which is what was asked.
    journal.paid(&rollback)?;

    let entry = crate::stop::StopEntry {
        id: container.to_string(),
        name: container.to_string(),
        why: "restoring its data".to_string(),
        auto_remove,
    };
    let mut window = crate::stop::StopWindow::new(engine, journal);
    let stopped = window.stop(std::slice::from_ref(&entry)).await;
    // Whatever happened, the container runs again.
    let (_, failed_starts) = window.restart().await;
    let kept = |e: Error| {
        e.context(|e| format!("{e}; the container's previous data files are in {aside} inside it"))
    };
    stopped.map_err(kept)?;
    if !failed_starts.is_empty() {
        return Err(kept(Error::Context {
            class: crate::error::ErrorClass::Engine,
            message: failed_starts.join("; "),
        }));
    }
    let keys = wait_and_count(engine, container).await.map_err(kept)?;
    let recorded = manifest.databases.first().and_then(|d| d.keys);
    let mismatches = match recorded {
        Some(r) if r != keys => vec![format!(
            "{keys} keys, {r} recorded (the previous data files are in {aside} inside the container)"
        )],
        _ => Vec::new(),
    };
    if mismatches.is_empty() {
        let command = ["rm", "-rf", "--", aside.as_str()].map(String::from);
        if let Err(e) = run(engine, container, &command, "removing the data set aside").await {
            tracing::warn!("{e}");
        }
    }
    Ok(vec![RestoredDatabase {
        name: "redis".into(),
        tables_checked: 0,
        mismatches,
        keys: Some(keys),
    }])
}

/// Moves the current data files aside and the staged ones into their place
/// (arguments: the data directory, the aside directory, the staging
/// directory's name, then the names of the data files).
pub(super) const SWAP: &str = r#"dir="$1"; aside="$2"; staging="$1/$3"; shift 3
mkdir -p -- "$aside" || exit 1
for name in "$@"; do
  if [ -e "$dir/$name" ]; then mv -- "$dir/$name" "$aside/" || exit 1; fi
done
for name in "$@"; do
  if [ -e "$staging/$name" ]; then
    printf '%s\n' "$name" >> "$aside/.moved-in" && mv -- "$staging/$name" "$dir/" || exit 1
  fi
done
rmdir -- "$staging""#;

/// Undoes what a restore changed while Redis ran: the staged files go, the
/// files set aside come back, and the settings are as they were
/// (arguments: the data directory, the aside directory, the staging
/// directory's name, the `save` setting, `appendonly`, then the names of
/// the data files).
pub(super) const ROLLBACK: &str = r#"dir="$1"; aside="$2"; staging="$1/$3"; save="$4"; aof="$5"; shift 5
if [ -f "$aside/.moved-in" ]; then
  while IFS= read -r name; do rm -rf -- "$dir/$name" || exit 1; done < "$aside/.moved-in"
  rm -f -- "$aside/.moved-in"
fi
for name in "$@"; do
  if [ -e "$aside/$name" ]; then mv -- "$aside/$name" "$dir/" || exit 1; fi
done
rm -rf -- "$staging"
if [ -d "$aside" ]; then rmdir -- "$aside" || exit 1; fi
[ "$(redis-cli --raw CONFIG SET appendonly "$aof")" = OK ] || exit 1
[ "$(redis-cli --raw CONFIG SET save "$save")" = OK ] || exit 1"#;

/// A script run with the client's password set from the container's
/// environment.
pub(super) fn with_credentials(script: &str, args: &[&str]) -> Vec<String> {
    let mut inner = vec!["sh", "-c", script, "lifeboat"];
    inner.extend_from_slice(args);
    shell(WITH_CREDENTIALS, &inner)
}

/// Writes the RDB (and, with the append-only file on, its base) into a
/// staging directory inside the data directory.
pub(super) async fn stage(
    engine: &Engine,
    container: &str,
    p: &Persistence,
    staging: &str,
    dumps: &crate::dump::DumpFiles,
    node: crate::repo::SnapshotNode,
) -> Result<()> {
    let mut entries: Vec<(String, Option<Vec<u8>>)> = vec![(p.rdb.clone(), None)];
    if p.aof {
        if p.aof_dir.is_empty() {
            entries.push((p.aof_file.clone(), None));
        } else {
            let base = format!("{}.1.base.rdb", p.aof_file);
            entries.push((format!("{}/{base}", p.aof_dir), None));
            let manifest = format!("file {base} seq 1 type b\n");
            entries.push((
                format!("{}/{}.manifest", p.aof_dir, p.aof_file),
                Some(manifest.into_bytes()),
            ));
        }
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    let files = dumps.clone();
    let (uid, gid) = p.owner;
    let mut dirs = vec![staging.to_string()];
    if p.aof && !p.aof_dir.is_empty() {
        dirs.push(format!("{staging}/{}", p.aof_dir));
    }
    let staging = staging.to_string();
    let producer = tokio::task::spawn_blocking(move || -> Result<()> {
        let out = crate::pipe::ChannelWriter::new(tx, files.progress.clone());
        let mut builder = tar::Builder::new(out);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let header = |size: u64, kind: tar::EntryType, mode: u32| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(size);
            h.set_mode(mode);
            h.set_uid(uid);
            h.set_gid(gid);
            h.set_mtime(now);
            h
        };
        let tar_error =
            |e: std::io::Error| Error::Other(format!("writing the RDB for the engine: {e}"));
        for dir in &dirs {
            builder
                .append_data(
                    &mut header(0, tar::EntryType::Directory, 0o755),
                    dir,
                    std::io::empty(),
                )
                .map_err(tar_error)?;
        }
        for (name, bytes) in &entries {
            let name = format!("{staging}/{name}");
            match bytes {
                Some(b) => builder
                    .append_data(
                        &mut header(b.len() as u64, tar::EntryType::Regular, 0o644),
                        &name,
                        b.as_slice(),
                    )
                    .map_err(tar_error)?,
                None => {
                    let content = files.reader.content(&node)?;
                    let length = content.length();
                    builder
                        .append_data(
                            &mut header(length, tar::EntryType::Regular, 0o644),
                            &name,
                            content,
                        )
                        .map_err(tar_error)?;
                }
            }
        }
        builder
            .into_inner()
            .and_then(|mut w| std::io::Write::flush(&mut w))
            .map_err(tar_error)
    });
    let uploaded = engine
        .upload_into(container, &p.dir, crate::pipe::receiver_stream(rx))
        .await;
    let produced = producer
        .await
        .map_err(|e| Error::Other(format!("writing the RDB stopped: {e}")))?;
    produced?;
    uploaded
}

/// Waits for the restarted server to finish loading, then counts its keys.
pub(super) async fn wait_and_count(engine: &Engine, container: &str) -> Result<u64> {
    let started = Instant::now();
    loop {
        if let Ok(info) = cli_output(engine, container, &["INFO", "persistence"]).await
            && info_field(&info, "loading") == Some("0")
        {
            return count_keys(engine, container).await;
        }
        if started.elapsed() > Duration::from_secs(300) {
            return Err(Error::DumpFailed(format!(
                "redis in container {container} did not come back within five minutes after the restore"
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
